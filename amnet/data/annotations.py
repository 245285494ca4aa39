"""ActivityNet-style annotation files (the layout of the public THUMOS14 / ActivityNet releases).

::

    {"database": {"<video_id>": {"subset": "Validation" | "Test" | ...,
                                 "duration": seconds, "fps": frames per second (optional),
                                 "annotations": [{"label": str, "segment": [start, end]}, ...]}}}

Every problem is reported as a :class:`~amnet.errors.DataError` naming the file, the video and
the field, before any training starts. Segment policy (``segment_policy``):

* ``end <= start`` (or a non-finite bound) is always rejected: there is no sensible repair.
* a segment reaching outside ``[0, duration]``:

  - ``"clip"`` (default): clipped to ``[0, duration]`` and counted in one logged warning;
    a segment lying *entirely* outside the video is dropped (also counted in the warning).
    The real THUMOS14 file needs this: 30 of its test instances lie past their video's end.
  - ``"reject"``: a :class:`DataError` naming the video and segment.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from amnet.data.features import check_video_id
from amnet.errors import DataError

__all__ = ["AnnotationSet", "VideoAnnotation", "load_annotations", "parse_annotations",
           "scoring_ground_truth"]

log = logging.getLogger(__name__)

SEGMENT_POLICIES = ("clip", "reject")


@dataclass
class VideoAnnotation:
    """One video's ground truth; ``segments`` is (N, 2) float64 in seconds, sorted by start."""

    video_id: str
    subset: str
    duration: float
    fps: float
    segments: np.ndarray
    labels: list[str]

    def __post_init__(self) -> None:
        self.segments = np.asarray(self.segments, dtype=np.float64).reshape(-1, 2)
        if len(self.labels) != len(self.segments):
            raise DataError(f"video {self.video_id!r}: {len(self.segments)} segments but "
                            f"{len(self.labels)} labels")


@dataclass
class AnnotationSet:
    """All videos of one annotation file plus the class list (sorted names unless given)."""

    videos: dict[str, VideoAnnotation]
    classes: list[str]
    source: str = "<memory>"
    class_index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.class_index = {c: i for i, c in enumerate(self.classes)}

    def subset(self, name: str) -> list[VideoAnnotation]:
        """Videos whose subset equals ``name`` (case-insensitive), sorted by id.

        Raises :class:`DataError` listing the subsets that exist when none match.
        """
        want = name.strip().lower()
        out = [v for _, v in sorted(self.videos.items()) if v.subset.lower() == want]
        if not out:
            have = sorted({v.subset for v in self.videos.values()})
            raise DataError(f"{self.source}: split {name!r} is empty: no video has subset "
                            f"{name!r} (subsets present: {have})")
        return out

    def classes_without_actions(self, name: str) -> list[str]:
        """Classes of :attr:`classes` with no annotated action in subset ``name`` (e.g. a
        label present only in the test subset: training would learn it from nothing)."""
        present = {lab for v in self.subset(name) for lab in v.labels}
        return [c for c in self.classes if c not in present]

    def labels_to_index(self, video: VideoAnnotation) -> np.ndarray:
        """Class indices (int64) of a video's labels."""
        return np.array([self.class_index[lab] for lab in video.labels], dtype=np.int64)

    def stats(self, subset: str | None = None) -> dict[str, float]:
        """Counts and medians (videos, actions/video, durations, action lengths) for reports."""
        vids = list(self.videos.values()) if subset is None else self.subset(subset)
        n = np.array([len(v.labels) for v in vids], dtype=np.float64)
        lengths = np.concatenate([v.segments[:, 1] - v.segments[:, 0] for v in vids] or [[]])
        dom = [max(v.labels.count(c) for c in set(v.labels)) / len(v.labels)
               for v in vids if v.labels]
        return {
            "videos": len(vids),
            "actions": int(n.sum()),
            "actions_per_video_mean": float(n.mean()) if len(n) else 0.0,
            "actions_per_video_median": float(np.median(n)) if len(n) else 0.0,
            "duration_median_s": float(np.median([v.duration for v in vids])),
            "action_length_median_s": float(np.median(lengths)) if lengths.size else 0.0,
            "action_length_min_s": float(lengths.min()) if lengths.size else 0.0,
            "action_length_max_s": float(lengths.max()) if lengths.size else 0.0,
            "dominant_class_share_median": float(np.median(dom)) if dom else 0.0,
            "classes_present": len({lab for v in vids for lab in v.labels}),
        }


# --------------------------------------------------------------------------- loading

def load_annotations(path: str | Path, *, default_fps: float | None = None,
                     segment_policy: str = "clip",
                     classes: Sequence[str] | None = None) -> AnnotationSet:
    """Read and validate an ActivityNet-style annotation JSON.

    ``default_fps`` fills videos without an ``fps`` field (else that is an error).
    ``classes``: the class list to use (e.g. from a feature manifest, or the list a model was
    trained with); a label outside it is an error. ``None`` = the sorted labels of the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read annotation file: {e}") from None
    return parse_annotations(text, source=str(path), default_fps=default_fps,
                             segment_policy=segment_policy, classes=classes)


def scoring_ground_truth(path: str | Path, subset: str | None = None,
                         video_ids: Iterable[str] | None = None) -> dict[str, Any]:
    """The annotation file **as given**, for scoring: what ``amnet eval GT.json`` scores against.

    The evaluation protocol scores every annotated instance of the scored subset, including
    those reaching past a video's end, so nothing here is clipped, dropped or reordered (the
    ``segment_policy`` repairs of :func:`load_annotations` exist for building training targets
    only). ``video_ids`` (with ``subset``) restricts the scored subset to those videos, e.g. a
    validation part carved out of a subset: the subset's other videos are left out; videos of
    other subsets stay (their labels stay known to the evaluator).

    The file is expected to have been validated already (e.g. by the dataset that reads it);
    unreadable or non-ActivityNet content still raises :class:`DataError` naming the file.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"annotation file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read annotation file: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("database"), dict):
        raise DataError(f"{path}: missing field 'database' (expected an ActivityNet-style "
                        "object {'database': {video_id: {...}}})")
    if video_ids is None:
        return raw
    if subset is None:
        raise ValueError("scoring_ground_truth: video_ids needs the subset it restricts")
    keep, want = set(video_ids), subset.lower()
    # the evaluator's own subset test (amnet.evaluation.map): str(subset).lower() == wanted
    db = {vid: v for vid, v in raw["database"].items()
          if vid in keep or not isinstance(v, dict) or str(v.get("subset", "")).lower() != want}
    return {**raw, "database": db}


def _no_duplicates(pairs: list[tuple[str, Any]], found: dict[int, list[str]]) -> dict[str, Any]:
    """``object_pairs_hook``: ``json`` silently keeps the last of repeated keys; record them."""
    obj: dict[str, Any] = {}
    dups = []
    for k, v in pairs:
        if k in obj:
            dups.append(k)
        obj[k] = v
    if dups:
        found[id(obj)] = dups
    return obj


def parse_annotations(text: str, *, source: str = "<string>", default_fps: float | None = None,
                      segment_policy: str = "clip",
                      classes: Sequence[str] | None = None) -> AnnotationSet:
    """:func:`load_annotations` on JSON text (``source`` names it in errors)."""
    if segment_policy not in SEGMENT_POLICIES:
        raise DataError(f"segment_policy must be one of {list(SEGMENT_POLICIES)}, "
                        f"got {segment_policy!r}")
    dups: dict[int, list[str]] = {}
    try:
        raw = json.loads(text, object_pairs_hook=lambda p: _no_duplicates(p, dups))
    except json.JSONDecodeError as e:
        raise DataError(f"{source}: not valid JSON (line {e.lineno}, column {e.colno}): "
                        f"{e.msg}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("database"), dict):
        raise DataError(f"{source}: missing field 'database' (expected an ActivityNet-style "
                        "object {'database': {video_id: {...}}})")
    db = raw["database"]
    if id(db) in dups:
        raise DataError(f"{source}: duplicate video id(s) {sorted(set(dups[id(db)]))} in "
                        "'database' (each video must appear once)")
    if dups:  # a repeated field inside some video / annotation: ambiguous which one is meant
        keys = sorted({k for ks in dups.values() for k in ks})
        raise DataError(f"{source}: duplicate field name(s) {keys} inside one object")
    if not db:
        raise DataError(f"{source}: 'database' is empty (expected at least one video)")
    if default_fps is not None and not (math.isfinite(default_fps) and default_fps > 0):
        raise DataError(f"default_fps must be a positive number, got {default_fps!r}")

    videos: dict[str, VideoAnnotation] = {}
    fixed: list[str] = []  # clip-policy repairs, reported once
    for vid, entry in db.items():
        check_video_id(vid, f"{source}: 'database'")  # ids become file names: refuse paths
        videos[vid] = _parse_video(vid, entry, source, default_fps, segment_policy, fixed)
    if fixed:
        log.warning("%s: %d segment(s) outside [0, duration] were clipped or dropped "
                    "(segment_policy='clip'), e.g. %s", source, len(fixed), "; ".join(fixed[:3]))

    found = sorted({lab for v in videos.values() for lab in v.labels})
    if classes is None:
        class_list = found
    else:
        class_list = list(classes)
        if len(set(class_list)) != len(class_list):
            raise DataError(f"{source}: the given class list has repeated names: {class_list}")
        known = set(class_list)
        for v in videos.values():
            for lab in v.labels:
                if lab not in known:
                    raise DataError(f"{source}: video {v.video_id!r}: unknown label {lab!r} "
                                    f"(expected one of the {len(class_list)} classes "
                                    f"{class_list[:8]}{' ...' if len(class_list) > 8 else ''})")
    if not class_list:
        raise DataError(f"{source}: no labels found in any video (expected at least one class)")
    return AnnotationSet(videos=videos, classes=class_list, source=source)


def _number(value: Any, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DataError(f"{where}: field {name!r} must be a number, got {value!r}")
    try:
        out = float(value)
    except ValueError:
        raise DataError(f"{where}: field {name!r} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise DataError(f"{where}: field {name!r} must be finite, got {value!r}")
    return out


def _parse_video(vid: str, entry: Any, source: str, default_fps: float | None,
                 policy: str, fixed: list[str]) -> VideoAnnotation:
    where = f"{source}: video {vid!r}"
    if not vid:
        raise DataError(f"{source}: empty video id in 'database'")
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object with subset/duration/annotations, "
                        f"got {type(entry).__name__}")
    for name in ("subset", "duration", "annotations"):
        if name not in entry:
            raise DataError(f"{where}: missing field {name!r}")
    subset = entry["subset"]
    if not isinstance(subset, str) or not subset.strip():
        raise DataError(f"{where}: field 'subset' must be a non-empty string, got {subset!r}")
    duration = _number(entry["duration"], where, "duration")
    if duration <= 0:
        raise DataError(f"{where}: zero-length video: field 'duration' must be > 0 seconds, "
                        f"got {entry['duration']!r}")
    if "fps" in entry and entry["fps"] is not None:
        fps = _number(entry["fps"], where, "fps")
        if fps <= 0:
            raise DataError(f"{where}: field 'fps' must be > 0, got {entry['fps']!r}")
    elif default_fps is not None:
        fps = float(default_fps)
    else:
        raise DataError(f"{where}: missing field 'fps' and no default fps given "
                        "(set data.default_fps)")
    anns = entry["annotations"]
    if not isinstance(anns, list):
        raise DataError(f"{where}: field 'annotations' must be a list, got {type(anns).__name__}")
    segs: list[tuple[float, float]] = []
    labels: list[str] = []
    for j, a in enumerate(anns):
        w = f"{where}: annotations[{j}]"
        if not isinstance(a, dict):
            raise DataError(f"{w}: expected an object with 'label' and 'segment'")
        for name in ("label", "segment"):
            if name not in a:
                raise DataError(f"{w}: missing field {name!r}")
        label = a["label"]
        if not isinstance(label, str) or not label:
            raise DataError(f"{w}: field 'label' must be a non-empty string, got {label!r}")
        seg = a["segment"]
        if not isinstance(seg, list | tuple) or len(seg) != 2:
            raise DataError(f"{w}: field 'segment' must be [start, end] in seconds, got {seg!r}")
        s, e = _number(seg[0], w, "segment[0]"), _number(seg[1], w, "segment[1]")
        if e <= s:
            raise DataError(f"{w}: segment {list(seg)} has end <= start "
                            "(expected start < end, in seconds)")
        if s < 0 or e > duration:
            if policy == "reject":
                raise DataError(f"{w}: segment {list(seg)} lies outside [0, {duration}] "
                                "(video duration; data.segment_policy='reject')")
            cs, ce = max(s, 0.0), min(e, duration)
            if ce <= cs:
                fixed.append(f"{vid} {list(seg)} dropped (duration {duration})")
                continue
            fixed.append(f"{vid} {list(seg)} -> [{cs}, {ce}]")
            s, e = cs, ce
        segs.append((s, e))
        labels.append(label)
    order = sorted(range(len(segs)), key=lambda i: segs[i])
    segments = np.array([segs[i] for i in order], dtype=np.float64).reshape(-1, 2)
    return VideoAnnotation(video_id=vid, subset=subset.strip(), duration=duration, fps=fps,
                           segments=segments,
                           labels=[labels[i] for i in order])
