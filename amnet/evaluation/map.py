"""Detection mAP at tIoU thresholds, exactly as the ActivityNet detection protocol scores it.

The rules (those of the public ``ANETdetection`` evaluator that THUMOS14 and ActivityNet papers
report, written anew here and vectorised):

1. Each class and each threshold is scored independently. A class's predictions are visited by
   descending score with a **stable** sort (equal scores keep file order: the order of the
   ``results`` mapping, then row order). Everything is float64.
2. A prediction is a true positive iff some still-unmatched ground truth (GT) of the same class
   in the same video has tIoU ≥ t (inclusive). It takes the one of highest tIoU, falling back to
   the next best when that one is already taken; GTs of equal tIoU go in file order (the public
   code leaves that tie to numpy's unstable ``argsort``, so no order can match it everywhere).
   Each GT is matched at most once per threshold.
3. Predictions on a video without GT of their class, or on a video outside the evaluated subset
   (or absent from the GT file), are false positives. Nothing is clipped to [0, duration].
   tIoU is :func:`amnet.evaluation.tiou.pairwise_tiou`; a zero union (zero-length prediction
   on a zero-length GT) gives 0, where the public code's 0/0 = NaN would count as a match.
4. AP is the all-points interpolated precision (each precision replaced by the maximum at equal
   or higher recall) summed over the recall steps; no 11-point sampling, no merging of tied
   scores. mAP@t is the mean over **all** classes that have GT in the subset (a class without
   predictions scores 0); the average mAP is the mean over thresholds.

Validation runs before scoring. A reversed segment (end < start), a non-finite score or
boundary, or a label that the GT file never uses raises :class:`PredictionError` naming the video
and row. ``lenient=True`` instead scores reversed and zero-length segments as false positives
and skips unknown labels (counted in :attr:`MAPResult.n_skipped`), as the public evaluator
effectively does. A label used by the GT file only outside the evaluated subset has no class to
be scored in and is ignored, as its AP is not part of the mean.

Speed: the greedy matching is sequential per (video, class, threshold), but its only state is
which GTs are taken, so it runs in *rounds*: all candidate (prediction, GT) pairs with tIoU ≥ t
of every class, video and threshold at once are sorted by (threshold, video-class group,
prediction rank, −tIoU, GT index); in each round the first remaining pair of every group is the
next true positive of that group (every pair before it was dropped because its GT was taken),
and the pairs of taken GTs and of the matched prediction are dropped. Rounds ≤ the largest
number of GTs in one (video, class); total work O(E log E + Σ_rounds |E_round|) for E candidate
pairs, with no Python loop over predictions. AP is then one cumulative sum per class over all
thresholds together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from amnet.errors import ConfigError, DataError
from amnet.evaluation.matching import candidate_pairs, greedy_match
from amnet.evaluation.parse import (
    GroundTruth,
    Predictions,
    gt_database,
    is_real,
    load_json,
    parse_ground_truth,
    parse_predictions,
    read_predictions,
)

__all__ = [
    "ANET_TIOU",
    "THUMOS_TIOU",
    "MAPResult",
    "default_tiou",
    "evaluate_detections",
    "evaluate_files",
    "is_thumos_style",
]

log = logging.getLogger(__name__)

THUMOS_TIOU: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
#: The public evaluator's own ``np.linspace(0.5, 0.95, 10)`` values (bit for bit: a tIoU that
#: lands exactly on a threshold must be judged the same way).
ANET_TIOU: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))


def tiou_key(t: float) -> str:
    """``0.5`` → ``"0.5"``, ``0.6000000000000001`` → ``"0.6"`` (JSON keys, metric names)."""
    return format(round(float(t), 6), "g")


@dataclass
class MAPResult:
    """Scores of one predictions file; every AP/mAP is a fraction in [0, 1]."""

    tiou: list[float]
    mAP: dict[float, float]
    average_mAP: float
    per_class_AP: dict[float, dict[str, float]]
    n_skipped: int = 0
    #: predictions scored as false positives because their segment was reversed / zero-length
    #: (lenient mode only; strict mode rejects reversed segments)
    n_forced_fp: int = 0
    n_predictions: int = 0
    n_ground_truth: int = 0
    classes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """``{"mAP": {"0.3": …}, "average_mAP": …, "per_class_AP": {"0.5": {label: AP}}}``."""
        return {
            "mAP": {tiou_key(t): float(v) for t, v in self.mAP.items()},
            "average_mAP": float(self.average_mAP),
            "per_class_AP": {tiou_key(t): {c: float(a) for c, a in aps.items()}
                             for t, aps in self.per_class_AP.items()},
        }

    def metrics(self) -> dict[str, float]:
        """Flat, MLflow-safe names: ``{"mAP_0.3": …, …, "average_mAP": …}``."""
        out = {f"mAP_{tiou_key(t)}": float(v) for t, v in self.mAP.items()}
        out["average_mAP"] = float(self.average_mAP)
        return out

    def table(self) -> str:
        """A readable two-column table in percent, one row per threshold plus the average."""
        lines = [f"{'tIoU':>6}  {'mAP (%)':>8}", f"{'-' * 6}  {'-' * 8}"]
        lines += [f"{tiou_key(t):>6}  {100 * v:8.2f}" for t, v in self.mAP.items()]
        lines += [f"{'-' * 6}  {'-' * 8}", f"{'avg':>6}  {100 * self.average_mAP:8.2f}"]
        notes = [f"{self.n_ground_truth} GT instances in {len(self.classes)} classes, "
                 f"{self.n_predictions} predictions scored"]
        if self.n_skipped:
            notes.append(f"{self.n_skipped} predictions with unknown labels skipped (lenient)")
        if self.n_forced_fp:
            notes.append(f"{self.n_forced_fp} reversed/zero-length segments scored as false "
                         "positives (lenient)")
        return "\n".join(lines + notes)


# --------------------------------------------------------------------------- parsing

def is_thumos_style(gt: Mapping[str, Any]) -> bool:
    """Whether ``gt`` is THUMOS14-shaped, which decides the default thresholds.

    Rule: a ``version`` naming THUMOS → yes, naming ActivityNet → no; otherwise yes unless a
    video sits in an ActivityNet-named subset (``training`` or ``testing``, any case). THUMOS14
    (``Validation`` + ``Test``) and this project's synthetic set are therefore THUMOS-style.
    """
    version = str(gt.get("version", "")).lower() if isinstance(gt, Mapping) else ""
    if "thumos" in version:
        return True
    if "activitynet" in version:
        return False
    subsets = {str(v.get("subset", "")).lower() for v in gt_database(gt).values()
               if isinstance(v, Mapping)}
    return not subsets & {"training", "testing"}


def default_tiou(gt: Mapping[str, Any]) -> list[float]:
    """THUMOS14's 0.3:0.1:0.7 for THUMOS-style GT (:func:`is_thumos_style`), else 0.5:0.05:0.95."""
    return list(THUMOS_TIOU if is_thumos_style(gt) else ANET_TIOU)


def _parse_ground_truth(gt: Mapping[str, Any], subset: str) -> GroundTruth:
    g = parse_ground_truth(gt, subset)
    if not g.classes:
        raise DataError(f"ground truth: subset {subset!r} has {len(g.videos)} videos but no "
                        "annotations, so there is no class to score")
    return g


@dataclass
class _Predictions:
    segments: np.ndarray   # (P, 2) float64
    scores: np.ndarray     # (P,) float64
    labels: np.ndarray     # (P,) int64 into the GT's evaluated classes
    video: np.ndarray      # (P,) int64: GT subset index, or ≥ n_subset_videos when outside it
    forced_fp: np.ndarray  # (P,) bool: reversed / zero-length (lenient)
    n_skipped: int


def _index_predictions(p: Predictions, gt: GroundTruth, lenient: bool) -> _Predictions:
    """Map parsed predictions onto the GT's classes and videos."""
    seg = p.segments
    lut = np.array([gt.label_index.get(name, -1) for name in p.label_names] or [-1],
                   dtype=np.int64)
    label = lut[p.label_codes]
    unknown = label < 0
    n_skipped = int(unknown.sum())
    if n_skipped:
        log.warning("lenient: skipped %d predictions whose label is not a GT class "
                    "(e.g. %r)", n_skipped,
                    p.label_names[int(p.label_codes[int(np.argmax(unknown))])])
    forced_fp = (seg[:, 1] < seg[:, 0]) | (seg[:, 1] == seg[:, 0])
    # Videos in the GT subset keep their index; the rest get indices past it (no GT → FP).
    video_map = np.fromiter((gt.videos.get(v, len(gt.videos) + k)
                             for k, v in enumerate(p.video_ids)),
                            dtype=np.int64, count=len(p.video_ids))
    video = video_map[p.video]
    if len(p) and not (video_map < len(gt.videos)).any():
        log.warning("none of the %d predicted videos is in the evaluated GT subset; every "
                    "prediction is a false positive (wrong --subset or GT file?)",
                    len(p.video_ids))
    # Labels the GT uses only outside the subset have no class to be scored in.
    keep = (label >= 0) & (label < len(gt.classes))
    return _Predictions(segments=seg[keep], scores=p.scores[keep], labels=label[keep],
                        video=video[keep], forced_fp=forced_fp[keep] & lenient,
                        n_skipped=n_skipped)


# --------------------------------------------------------------------------- scoring

def _check_tiou(tiou: Iterable[float]) -> list[float]:
    out = []
    for t in tiou:
        if not is_real(t) or not 0 < t <= 1:
            raise ConfigError(f"tIoU thresholds must be numbers in (0, 1], got {t!r}")
        out.append(float(t))
    if not out:
        raise ConfigError("tIoU thresholds: need at least one")
    if len(set(out)) != len(out):
        raise ConfigError(f"tIoU thresholds must be distinct, got {out}")
    return out


def _candidate_pairs(gt: GroundTruth, pred: _Predictions, rank: np.ndarray, t_min: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction rank, GT index, tIoU) of every same-class, same-video pair with tIoU ≥
    ``t_min``, over the (video, class) groups that hold GT."""
    n_videos = len(gt.videos) + int(pred.video.max(initial=-1)) + 1
    g_key = gt.labels * n_videos + gt.video
    p_key = pred.labels * n_videos + pred.video
    scoreable = np.flatnonzero(~pred.forced_fp)
    p_order = scoreable[np.argsort(_narrow(p_key[scoreable]), kind="stable")]
    p_sorted = p_key[p_order]
    g_order = np.argsort(g_key, kind="stable")  # file order within a group
    g_sorted = g_key[g_order]
    keys, g_start = np.unique(g_sorted, return_index=True)
    g_end = np.append(g_start[1:], len(g_sorted))
    p_lo = np.searchsorted(p_sorted, keys, side="left")
    p_hi = np.searchsorted(p_sorted, keys, side="right")
    pi, gi, iou = candidate_pairs(p_order, p_lo, p_hi, g_order, g_start, g_end, pred.segments,
                                  gt.segments, t_min)
    return rank[pi], gi, iou


def _narrow(keys: np.ndarray) -> np.ndarray:
    """``keys`` as int16 when they fit: numpy's stable sort is then a radix sort."""
    if keys.size and keys.min() >= 0 and keys.max() < 1 << 15:
        return keys.astype(np.int16)
    return keys


def rank_order(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices in (class, descending score, file order) order: ``np.lexsort((-scores,
    labels))``, 4–7× faster. numpy's SIMD quicksort orders the scores, the rare runs of equal
    scores are put back in file order, then a radix sort (16-bit class codes) groups the
    classes stably."""
    order = np.argsort(-scores)
    v = scores[order]
    tied = np.flatnonzero(v[1:] == v[:-1])
    if tied.size:  # every position in a run of equal scores, and which run it belongs to
        pos = np.unique(np.concatenate([tied, tied + 1]))
        run = np.cumsum(np.r_[True, np.diff(pos) > 1] | np.r_[True, v[pos[1:]] != v[pos[:-1]]])
        order[pos] = order[pos][np.lexsort((order[pos], run))]
    return order[np.argsort(_narrow(labels[order]), kind="stable")]


def _interpolated_ap(tp: np.ndarray, npos: int) -> np.ndarray:
    """All-points interpolated AP per threshold row of ``tp`` ``(T, n)`` (ranked predictions).

    The reference builds precision / recall at every rank; only true positives move recall, and
    the precision envelope's maxima sit on them, so the same terms (bit for bit: k / (i + 1)
    and k / npos are what the cumulative sums divide) come from the true positives alone, and
    their sum is taken over the same array as the reference's.
    """
    T = tp.shape[0]
    ap = np.zeros(T)
    for t in range(T):  # T ≤ 10
        pos = np.flatnonzero(tp[t])
        k = np.arange(1, pos.size + 1, dtype=np.float64)
        prec = k / (pos + 1).astype(np.float64)
        rec = k / npos
        env = np.maximum.accumulate(prec[::-1])[::-1]  # envelope from the right
        terms = (rec - np.r_[0.0, rec[:-1]]) * env
        if pos.size == 0 or rec[-1] != 1.0:  # the reference's closing point (recall 1, precision 0)
            terms = np.r_[terms, (1.0 - (rec[-1] if pos.size else 0.0)) * 0.0]
        ap[t] = np.sum(terms)
    return ap


def evaluate_detections(gt: Mapping[str, Any], predictions: Mapping[str, Any], *,
                        subset: str = "Test", tiou: Iterable[float] | None = None,
                        lenient: bool = False) -> MAPResult:
    """Score an ActivityNet results dict against an ActivityNet-style GT dict (module docstring).

    Args:
        gt: ``{"database": {video: {"subset", "annotations": [{"label", "segment"}]}}, ...}``.
        predictions: ``{"results": {video: [{"label", "score", "segment"}]}, ...}``.
        subset: GT subset to score (case-insensitive).
        tiou: thresholds; ``None`` → :func:`default_tiou` (THUMOS14 or ActivityNet set).
        lenient: score reversed/zero-length segments as false positives and skip unknown
            labels instead of raising :class:`PredictionError`.
    """
    tious = _check_tiou(default_tiou(gt) if tiou is None else tiou)
    g = _parse_ground_truth(gt, subset)
    p = parse_predictions(predictions, known=None if lenient else g.label_index,
                          allow_reversed=lenient)
    return _score(g, p, tious, lenient)


def _score(g: GroundTruth, parsed: Predictions, tious: list[float], lenient: bool
           ) -> MAPResult:
    p = _index_predictions(parsed, g, lenient)
    C, P = len(g.classes), len(p.scores)
    order = rank_order(p.labels, p.scores)
    rank = np.empty(P, dtype=np.int64)
    rank[order] = np.arange(P)
    pairs = _candidate_pairs(g, p, rank, min(tious))
    tp = greedy_match(pairs, tious, P, len(g.labels))
    npos = np.bincount(g.labels, minlength=C)
    bounds = np.searchsorted(p.labels[order], np.arange(C + 1))
    ap = np.zeros((len(tious), C))
    for c in range(C):
        lo, hi = bounds[c], bounds[c + 1]
        if hi > lo:
            ap[:, c] = _interpolated_ap(tp[:, lo:hi], int(npos[c]))
    mAP = ap.mean(axis=1)
    return MAPResult(
        tiou=tious,
        mAP={t: float(m) for t, m in zip(tious, mAP, strict=True)},
        average_mAP=float(mAP.mean()),
        per_class_AP={t: {c: float(a) for c, a in zip(g.classes, ap[i], strict=True)}
                      for i, t in enumerate(tious)},
        n_skipped=p.n_skipped, n_forced_fp=int(p.forced_fp.sum()), n_predictions=P,
        n_ground_truth=len(g.labels), classes=list(g.classes))


def evaluate_files(gt_path: str | Path, pred_path: str | Path, *, subset: str = "Test",
                   tiou: Iterable[float] | None = None, lenient: bool = False) -> MAPResult:
    """:func:`evaluate_detections` on two JSON files; errors name the file. The results
    file is decoded straight into columns (:func:`~amnet.evaluation.parse.read_predictions`)."""
    gt = load_json(gt_path, "ground truth", DataError)
    try:
        tious = _check_tiou(default_tiou(gt) if tiou is None else tiou)
        g = _parse_ground_truth(gt, subset)
    except DataError as e:
        raise DataError(f"{gt_path}: {e}") from None
    p = read_predictions(pred_path, known=None if lenient else g.label_index,
                         allow_reversed=lenient)
    return _score(g, p, tious, lenient)
