"""``amnet detect``'s inputs: which feature files, and how each video's snippets map to seconds.

Timing of each video (snippet ``i`` is centred at ``(i·stride + window/2)/fps`` seconds),
first source that has the value wins:

1. ``--fps`` / ``--stride`` / ``--window`` given on the command line;
2. ``manifest.json`` beside the features (written by ``amnet features`` / ``amnet extract``:
   per-video ``fps``/``stride``/``window``/``duration`` entries, else its top-level or
   ``settings`` values);
3. ``annotations.json`` beside the features (ActivityNet layout: per-video ``fps``,
   ``duration``);
4. what the model was trained with (``data.default_fps``, ``data.stride``, ``data.window`` of
   its stored config).

Duration (detections are clipped to ``[0, duration]``): the manifest's or the annotation
file's ``duration`` when known, else the end of the last snippet's frames,
``((T − 1)·stride + window) / fps``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amnet.config import Config
from amnet.data.feature_set import FEATURE_SUFFIX, MANIFEST_FILE, FeatureSet
from amnet.data.timing import snippet_to_seconds
from amnet.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["Sidecar", "VideoTiming", "check_header", "list_inputs", "read_sidecar",
           "video_timing"]


def list_inputs(path: str | Path) -> tuple[list[tuple[str, Path]], Path]:
    """``[(video_id, file)]`` sorted by id, and the folder whose sidecar files apply."""
    path = Path(path)
    if path.is_dir():
        files = FeatureSet(path).feature_files()
        if not files:
            raise DataError(f"{path}: empty folder: no <video_id>.npy feature files in it")
        return [(p.stem, p) for p in files], path
    if not path.exists():
        raise DataError(f"features not found: {path} (expected a <video_id>.npy file or a "
                        "folder of them)")
    if path.suffix != FEATURE_SUFFIX:
        raise DataError(f"{path}: not a .npy feature file (expected <video_id>.npy, T x C)")
    return [(path.stem, path)], path.parent


def _number(value: Any, where: str, field: str, kind: type) -> float | int | None:
    """A timing field: absent → None, else a finite positive number (whole for frames)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(f"{where}: field {field!r} must be a finite number, got {value!r}")
    if kind is int and float(value) != int(value):
        raise DataError(f"{where}: field {field!r} must be a whole number of frames, "
                        f"got {value!r}")
    if value <= 0:
        raise DataError(f"{where}: field {field!r} must be > 0, got {value!r}")
    return kind(value)


@dataclass
class Sidecar:
    """Timing facts beside the features: ``{video_id: {fps, stride, window, duration}}`` per
    source (``None`` = no such file), plus the manifest's folder-wide values."""

    manifest: dict[str, dict[str, Any]] | None
    manifest_defaults: dict[str, Any]
    annotations: dict[str, dict[str, Any]] | None
    folder: Path


def read_sidecar(folder: Path) -> Sidecar:
    """Parse ``manifest.json`` (both the ``amnet-features/1`` and ``amnet-extract/1`` layouts)
    and ``annotations.json`` beside the features, keeping only the timing fields."""
    fs = FeatureSet(folder)
    man_path, ann_path = fs.manifest_path, fs.annotations_path
    keys = {"fps": float, "stride": int, "window": int, "duration": float}
    manifest = defaults = None
    m = fs.raw_manifest()
    if m is not None:
        videos = m.get("videos")
        if not isinstance(videos, dict):
            raise DataError(f"{man_path}: field 'videos' must be an object video_id -> entry")
        defaults = {}
        settings = m.get("settings") if isinstance(m.get("settings"), dict) else {}
        for k, kind in keys.items():
            if k == "duration":
                continue
            v = m.get(k, settings.get(k))
            defaults[k] = _number(v, str(man_path), k, kind)
        manifest = {}
        for vid, e in videos.items():
            if not isinstance(e, dict):
                raise DataError(f"{man_path}: video {vid!r}: entry must be an object")
            manifest[vid] = {k: _number(e.get(k), f"{man_path}: video {vid!r}", k, kind)
                             for k, kind in keys.items()}
    annotations = None
    db = fs.raw_annotations()
    if db is not None:
        annotations = {}
        for vid, e in db.items():
            if isinstance(e, dict):
                where = f"{ann_path}: video {vid!r}"
                annotations[vid] = {"fps": _number(e.get("fps"), where, "fps", float),
                                    "duration": _number(e.get("duration"), where, "duration",
                                                        float)}
    return Sidecar(manifest, defaults or {}, annotations, folder)


@dataclass
class VideoTiming:
    """How one video's snippets map to seconds, and where each value came from."""

    fps: float
    stride: int
    window: int
    duration: float
    duration_source: str  # "manifest" | "annotations" | "features"

    def meta(self, video_id: str) -> dict[str, Any]:
        """The ``metas[i]`` that :func:`amnet.inference.postprocess` expects."""
        return {"video_id": video_id, "fps": self.fps, "stride": self.stride,
                "window": self.window, "duration": self.duration, "offset": 0}


def video_timing(video_id: str, num_snippets: int, sidecar: Sidecar, cfg: Config,
                 flags: dict[str, Any]) -> VideoTiming:
    """Resolve fps / stride / window / duration for one video (module docstring: precedence)."""
    man = (sidecar.manifest or {}).get(video_id, {})
    ann = (sidecar.annotations or {}).get(video_id, {})
    if sidecar.manifest is not None and video_id not in sidecar.manifest:
        log.warning("%s: video %r is not listed in %s; using the other timing sources",
                    sidecar.folder / MANIFEST_FILE, video_id, MANIFEST_FILE)
    trained = {"fps": cfg.data.default_fps, "stride": cfg.data.stride, "window": cfg.data.window}
    value: dict[str, Any] = {}
    for k in ("fps", "stride", "window"):
        candidates = [flags.get(k), man.get(k), sidecar.manifest_defaults.get(k)]
        if k == "fps":
            candidates.append(ann.get("fps"))
        value[k] = next((v for v in candidates if v is not None), trained[k])
    fps, stride, window = float(value["fps"]), int(value["stride"]), int(value["window"])
    covered = ((num_snippets - 1) * stride + window) / fps  # end of the last snippet's frames
    if man.get("duration") is not None:
        duration, source = float(man["duration"]), "manifest"
    elif ann.get("duration") is not None:
        duration, source = float(ann["duration"]), "annotations"
    else:
        duration, source = covered, "features"
    last_centre = snippet_to_seconds(num_snippets - 1, fps, stride, window)
    if source != "features" and last_centre > duration + window / fps:
        log.warning("video %r: its %d snippets reach %.2f s at %g fps / stride %d, past its "
                    "duration %.2f s (%s); detections are clipped to the duration — check the "
                    "fps/stride", video_id, num_snippets, last_centre, fps, stride, duration,
                    source)
    return VideoTiming(fps, stride, window, duration, source)


def check_header(path: Path, video_id: str, in_dim: int) -> int:
    """Cheap pre-flight of one file from its ``.npy`` header (no data read): rank, length,
    dtype and channel count, so that a bad file in a folder fails before any inference.
    Returns T."""
    from amnet.data.features import read_header, validate_features

    shape, dtype = read_header(path, video_id)
    ok = dtype.kind == "f" and len(shape) == 2 and shape[0] > 0 and shape[1] == in_dim
    if not ok:
        # The shared validator's message, on a zero-memory stand-in of the same shape/dtype.
        validate_features(np.broadcast_to(np.zeros((), dtype=dtype), shape), path=path,
                          video_id=video_id, feature_dim=in_dim)
    return int(shape[0])
