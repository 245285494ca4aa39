"""Reading ground truth and predictions: one parser for the mAP evaluator and the error analysis.

Both score the same files by the same rules, so both see the same rows, the same errors and
the same labels: an ActivityNet-style annotation object (``{"database": {video: {"subset",
"duration", "annotations": [{"label", "segment"}]}}}``) and an ActivityNet results object
(``{"results": {video: [{"label", "score", "segment"}]}}``), read through :mod:`amnet.io`
(which refuses a repeated key: a video id given twice would otherwise silently keep the last).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Container, Mapping
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from amnet.errors import AmnetError, DataError, PredictionError
from amnet.io import FAST_JSON_BYTES, read_capped, read_json

__all__ = [
    "GroundTruth",
    "Predictions",
    "gt_database",
    "is_real",
    "load_json",
    "parse_ground_truth",
    "parse_predictions",
    "read_predictions",
]


def is_real(x: Any) -> bool:
    """A real number that is not a bool (numpy scalars included)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def load_json(path: str | Path, what: str, error: type[AmnetError]) -> Any:
    """The JSON in ``path`` (``what``: "ground truth" / "predictions"); every failure is an
    ``error`` naming the file: missing, not JSON, not UTF-8, a duplicate key. Large files
    are parsed by orjson (``amnet.io``'s ``fast`` path, duplicate keys still refused)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file not found: {path}")
    try:
        return read_json(path, fast=True)
    except DataError as e:  # the caller's error kind, amnet.io's message (names the file)
        raise error(str(e)) from None


# --------------------------------------------------------------------------- ground truth

@dataclass
class GroundTruth:
    """The annotations of one subset as index arrays (file order)."""

    subset: str
    videos: dict[str, int]       # subset video id → index, file order
    classes: list[str]           # labels of the subset's annotations, first-appearance order
    label_index: dict[str, int]  # every label the file uses → index (subset's classes first)
    segments: np.ndarray         # (G, 2) float64 seconds
    labels: np.ndarray           # (G,) int64 into classes
    video: np.ndarray            # (G,) int64 into videos
    durations: dict[str, float]  # every video of the file → duration, NaN where none given


def gt_database(gt: Mapping[str, Any]) -> Mapping[str, Any]:
    db = gt.get("database") if isinstance(gt, Mapping) else None
    if not isinstance(db, Mapping):
        raise DataError("ground truth: expected an ActivityNet-style object with a 'database' "
                        "mapping (video id → {subset, annotations})")
    return db


def _finite_pair(value: Any) -> tuple[float, float] | None:
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(map(is_real, value)):
        return None
    s, e = float(value[0]), float(value[1])
    return (s, e) if math.isfinite(s) and math.isfinite(e) else None


def parse_ground_truth(gt: Mapping[str, Any], subset: str) -> GroundTruth:
    """Validate every annotation of ``gt`` (any subset) and keep those of ``subset``
    (case-insensitive). Raises :class:`DataError` naming the video, annotation and field."""
    db = gt_database(gt)
    want = str(subset).lower()
    classes: dict[str, int] = {}
    other_labels: list[str] = []
    videos: dict[str, int] = {}
    durations: dict[str, float] = {}
    segs: list[tuple[float, float]] = []
    labels: list[int] = []
    vids: list[int] = []
    for vid, v in db.items():
        if not isinstance(v, Mapping):
            raise DataError(f"ground truth: video {vid!r}: expected an object with 'subset' and "
                            f"'annotations', got {type(v).__name__}")
        anns = v.get("annotations", [])
        if not isinstance(anns, list):
            raise DataError(f"ground truth: video {vid!r}: 'annotations' must be a list")
        dur = v.get("duration")
        durations[str(vid)] = float(dur) if is_real(dur) else math.nan
        in_subset = str(v.get("subset", "")).lower() == want
        if in_subset:
            videos[str(vid)] = len(videos)
        for i, a in enumerate(anns):
            label = a.get("label") if isinstance(a, Mapping) else None
            if not isinstance(label, str):
                raise DataError(f"ground truth: video {vid!r}, annotation {i}: 'label' must be "
                                f"a string, got {label!r}")
            seg = _finite_pair(a.get("segment"))
            if seg is None or seg[1] < seg[0]:
                raise DataError(f"ground truth: video {vid!r}, annotation {i}: 'segment' must "
                                "be [start, end] finite seconds with start <= end, got "
                                f"{a.get('segment')!r}")
            if not in_subset:
                other_labels.append(label)
                continue
            segs.append(seg)
            labels.append(classes.setdefault(label, len(classes)))
            vids.append(videos[str(vid)])
    if not videos:
        found = sorted({str(v.get("subset")) for v in db.values() if isinstance(v, Mapping)})
        raise DataError(f"ground truth: no video in subset {subset!r} (subsets present: "
                        f"{', '.join(found) or 'none'})")
    label_index = dict(classes)
    for lab in other_labels:
        label_index.setdefault(lab, len(label_index))
    return GroundTruth(
        subset=str(subset), videos=videos, classes=list(classes), label_index=label_index,
        segments=np.asarray(segs, dtype=np.float64).reshape(-1, 2),
        labels=np.asarray(labels, dtype=np.int64), video=np.asarray(vids, dtype=np.int64),
        durations=durations)


# --------------------------------------------------------------------------- predictions

@dataclass
class Predictions:
    """Every row of a results object, flat, in file order (results mapping, then rows)."""

    video_ids: list[str]     # the results mapping's keys, file order
    video: np.ndarray        # (P,) int64 into video_ids
    label_names: list[str]   # distinct labels, first-appearance order
    label_codes: np.ndarray  # (P,) int64 into label_names
    scores: np.ndarray       # (P,) float64
    segments: np.ndarray     # (P, 2) float64 seconds

    def __len__(self) -> int:
        return len(self.label_codes)

    @property
    def labels(self) -> list[str]:
        """The label of every row (a list of ``len(self)`` strings)."""
        return list(map(self.label_names.__getitem__, self.label_codes.tolist()))

    @classmethod
    def from_labels(cls, video_ids: list[str], video: np.ndarray, labels: list[str],
                    scores: np.ndarray, segments: np.ndarray) -> Predictions:
        names = list(dict.fromkeys(labels))
        code = {name: i for i, name in enumerate(names)}
        codes = np.fromiter(map(code.__getitem__, labels), dtype=np.int64, count=len(labels))
        return cls(video_ids=video_ids, video=video, label_names=names, label_codes=codes,
                   scores=scores, segments=segments)


def _bad_row(vid: str, i: int, row: Any, known: Container[str] | None,
             allow_reversed: bool, lenient_hint: bool) -> str | None:
    """Why row ``i`` of video ``vid`` cannot be scored (None when it can)."""
    where = f"predictions: video {vid!r}, row {i}"
    if not isinstance(row, Mapping):
        return f"{where}: expected an object with label, score, segment; got {row!r}"
    for key in ("label", "score", "segment"):
        if key not in row:
            return f"{where}: missing {key!r}"
    label, score, seg = row["label"], row["score"], row["segment"]
    if not isinstance(label, str):
        return f"{where}: 'label' must be a string, got {label!r}"
    if not is_real(score) or not math.isfinite(score):
        return f"{where}: 'score' must be a finite number, got {score!r}"
    if not isinstance(seg, list | tuple) or len(seg) != 2 or not all(map(is_real, seg)):
        return f"{where}: 'segment' must be [start, end] in seconds, got {seg!r}"
    if not all(math.isfinite(x) for x in seg):
        return f"{where}: 'segment' must be finite, got {seg!r}"
    if not allow_reversed and seg[1] < seg[0]:
        return (f"{where}: reversed segment {list(seg)!r} (end < start)"
                + ("; fix the file or use --lenient to score it as a false positive"
                   if lenient_hint else ""))
    if known is not None and label not in known:
        return (f"{where}: label {label!r} is not a class of the ground truth; fix the file "
                "or use --lenient to skip such rows")
    return None


def _diagnose(results: Mapping[str, Any], known: Container[str] | None,
              allow_reversed: bool, lenient_hint: bool) -> None:
    """Slow path, taken only when the fast checks fail: raise naming the first bad row, or
    return when every row is in fact fine (e.g. numpy scalars instead of Python floats)."""
    for vid, rows in results.items():
        if not isinstance(rows, list):
            raise PredictionError(f"predictions: video {vid!r}: expected a list of detections, "
                                  f"got {type(rows).__name__}")
        for i, row in enumerate(rows):
            msg = _bad_row(vid, i, row, known, allow_reversed, lenient_hint)
            if msg:
                raise PredictionError(msg)


def _results(predictions: Mapping[str, Any]) -> Mapping[str, Any]:
    res = predictions.get("results") if isinstance(predictions, Mapping) else None
    if not isinstance(res, Mapping):
        raise PredictionError("predictions: expected an ActivityNet results object with a "
                              "'results' mapping (video id → list of {label, score, segment})")
    return res


def parse_predictions(predictions: Mapping[str, Any], *, known: Container[str] | None,
                      allow_reversed: bool, lenient_hint: bool = True) -> Predictions:
    """Validate and flatten a results object.

    Args:
        predictions: ``{"results": {video: [{"label", "score", "segment"}]}}``.
        known: labels that may appear (``None``: any label; the caller decides about others).
        allow_reversed: accept ``end < start`` (lenient scoring counts it a false positive).
        lenient_hint: a refused reversed segment suggests ``--lenient`` (only where it helps).

    Raises :class:`PredictionError` naming the video, row and field of the first bad row.
    """
    results = _results(predictions)
    vids = [str(v) for v in results]
    per_video = list(results.values())
    if not all(isinstance(r, list) for r in per_video):
        _diagnose(results, known, allow_reversed, lenient_hint)
    counts = np.fromiter(map(len, per_video), dtype=np.int64, count=len(per_video))
    rows = list(chain.from_iterable(per_video))
    n = len(rows)

    # Fast path: C-level map/zip and exact type sets over the rows. On any surprise the slow
    # row-by-row check raises naming the first bad row, or passes (e.g. numpy scalars).
    def columns() -> tuple[list[Any], list[Any], list[Any]]:
        return tuple(list(map(itemgetter(k), rows)) for k in ("label", "score", "segment"))

    try:
        labels, scores, segs = columns()
        ok = (set(map(type, labels)) <= {str}
              and set(map(type, scores)) <= {int, float}
              and set(map(type, segs)) <= {list, tuple}
              and set(map(len, segs)) <= {2}
              and set(map(type, chain.from_iterable(segs))) <= {int, float})
    except (KeyError, TypeError):
        ok = False
    if not ok:
        _diagnose(results, known, allow_reversed, lenient_hint)
        labels, scores, segs = columns()
    score = np.asarray(scores, dtype=np.float64).reshape(n)
    seg = np.fromiter(chain.from_iterable(segs), dtype=np.float64, count=2 * n).reshape(n, 2)
    bad = ~(np.isfinite(score) & np.isfinite(seg).all(axis=1))
    if not allow_reversed:
        bad |= seg[:, 1] < seg[:, 0]
    unknown = known is not None and any(lab not in known for lab in set(labels))
    if unknown or bad.any():
        _diagnose(results, known, allow_reversed, lenient_hint)  # raises, naming the first bad row
    video = np.repeat(np.arange(len(vids), dtype=np.int64), counts)
    return Predictions.from_labels(vids, video, labels, score, seg)


# The plain layout of a large results file is scanned straight into columns (compiled, one
# pass: amnet.evaluation.results_scan). Anything that scanner does not take as is (another
# layout, an escape, a repeated key, a value the checks below refuse) falls back to the general
# path, which raises naming the row, so both paths accept and refuse the same files and give
# the same numbers bit for bit.

def _scanned_predictions(data: bytes, known: Container[str] | None,
                         allow_reversed: bool) -> Predictions | None:
    """:class:`Predictions` of ``data`` by the compiled scanner, or ``None`` → general path."""
    from amnet.evaluation.results_scan import scan_results  # numba: only when a file is big

    r = scan_results(data)
    if r is None or len(set(r.video_ids)) != len(r.video_ids):  # a repeated video id
        return None
    ok = np.isfinite(r.scores).all() and np.isfinite(r.segments).all()
    if ok and not allow_reversed:
        ok = not (r.segments[:, 1] < r.segments[:, 0]).any()
    if not ok or (known is not None and any(lab not in known for lab in r.label_names)):
        return None
    video = np.repeat(np.arange(len(r.video_ids), dtype=np.int64), r.counts)
    return Predictions(video_ids=r.video_ids, video=video, label_names=r.label_names,
                       label_codes=r.label_codes, scores=r.scores, segments=r.segments)


def read_predictions(path: str | Path, *, known: Container[str] | None, allow_reversed: bool,
                     lenient_hint: bool = True) -> Predictions:
    """:func:`parse_predictions` of the results file ``path``; every error names the file.

    Large files are scanned straight into columns; anything that path does not
    accept as is takes :func:`load_json` + :func:`parse_predictions`, which accept and refuse
    exactly the same files.
    """
    path = Path(path)
    if not path.is_file():
        raise PredictionError(f"predictions file not found: {path}")
    try:
        data = read_capped(path)
    except DataError as e:
        raise PredictionError(str(e)) from None
    p = _scanned_predictions(data, known, allow_reversed) if len(data) >= FAST_JSON_BYTES \
        else None
    if p is not None:
        return p
    try:
        return parse_predictions(load_json(path, "predictions", PredictionError), known=known,
                                 allow_reversed=allow_reversed, lenient_hint=lenient_hint)
    except PredictionError as e:
        msg = str(e)
        raise PredictionError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
