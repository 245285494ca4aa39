"""``manifest.json`` beside every prepared feature set: what exactly training read.

Lists each video's file, shape, dtype and sha256, the annotation file's sha256, the snippet
geometry (fps per video, stride, window), the class list and where the set came from. It is
written deterministically (sorted keys, no timestamps), so the same data gives the same bytes
and DVC's hash of the folder changes only when the data does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from amnet.data.annotations import AnnotationSet, load_annotations
from amnet.data.feature_set import ANNOTATIONS_FILE, MANIFEST_FILE
from amnet.data.features import (
    check_plain_name,
    check_video_id,
    feature_path,
    load_feature_file,
    read_header,
)
from amnet.errors import DataError
from amnet.io import dump_json, read_json_object, sha256_file

__all__ = ["ANNOTATIONS_FILE", "MANIFEST_FILE", "MANIFEST_FORMAT", "check_video",
           "describe_features", "read_manifest", "verify_manifest", "write_manifest"]

MANIFEST_FORMAT = "amnet-features/1"
_REQUIRED = ("format", "feature_dim", "stride", "window", "classes", "annotations", "videos")


def describe_features(path: Path, video_id: str, feature_dim: int | None = None
                      ) -> dict[str, Any]:
    """Validate one feature file; its manifest facts: shape, dtype (as stored), sha256."""
    _, sha = load_feature_file(path, video_id, feature_dim=feature_dim, with_sha256=True)
    shape, dtype = read_header(path, video_id)
    return {"file": path.name, "shape": list(shape), "dtype": str(dtype), "sha256": sha}


def write_manifest(root: str | Path, *, stride: int, window: int,
                   classes: Sequence[str] | None = None, source: dict[str, Any] | None = None,
                   feature_dim: int | None = None, default_fps: float | None = None,
                   segment_policy: str = "clip",
                   entries: dict[str, dict[str, Any]] | None = None,
                   annotations: AnnotationSet | None = None) -> dict[str, Any]:
    """Describe ``<root>/annotations.json`` + every annotated ``<video>.npy``; write the manifest.

    Each feature file is read and validated (rank, dimension, finite values) on the way, unless
    ``entries`` already holds its :func:`describe_features` (validated elsewhere, e.g. at the
    source of a hardlink). ``annotations``: the already parsed ``annotations.json`` (saves
    parsing it again). Returns the manifest as a dict.
    """
    root = Path(root)
    ann_path = root / ANNOTATIONS_FILE
    ann = annotations or load_annotations(ann_path, default_fps=default_fps,
                                          segment_policy=segment_policy, classes=classes)
    videos: dict[str, Any] = {}
    dims = set()
    for vid, v in sorted(ann.videos.items()):
        path = feature_path(root, vid, source=ann.source)
        entry = (entries or {}).get(vid) or describe_features(path, vid, feature_dim)
        dims.add(entry["shape"][1])
        videos[vid] = {**entry, "file": path.name, "fps": v.fps, "subset": v.subset}
    if len(dims) > 1:
        raise DataError(f"{root}: feature files have different dimensions {sorted(dims)} "
                        "(expected one C for the whole set)")
    manifest = {
        "format": MANIFEST_FORMAT,
        "feature_dim": dims.pop(),
        "stride": int(stride),
        "window": int(window),
        "classes": list(ann.classes),
        "annotations": {"file": ANNOTATIONS_FILE, "sha256": sha256_file(ann_path)},
        "source": source or {},
        "videos": videos,
    }
    dump_json(manifest, root / MANIFEST_FILE)
    return manifest


def read_manifest(root: str | Path) -> dict[str, Any] | None:
    """The manifest of ``root`` (checked for its fields and their types), or ``None`` when
    there is none. Every file name in it must be a plain name inside ``root``."""
    path = Path(root) / MANIFEST_FILE
    m = read_json_object(path)
    if m is None:
        return None
    for key in _REQUIRED:
        if key not in m:
            raise DataError(f"{path}: missing field {key!r}")
    if m["format"] != MANIFEST_FORMAT:
        raise DataError(f"{path}: field 'format' is {m['format']!r}, expected {MANIFEST_FORMAT!r}")
    for key in ("feature_dim", "stride", "window"):
        _whole(m[key], f"{path}", key)
    classes = m["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise DataError(f"{path}: field 'classes' must be a list of class names, got "
                        f"{_short(classes)}")
    ann = m["annotations"]
    if not isinstance(ann, dict) or not isinstance(ann.get("sha256"), str):
        raise DataError(f"{path}: field 'annotations' must be an object with 'file' and "
                        f"'sha256', got {_short(ann)}")
    check_plain_name(ann.get("file"), what="field 'annotations.file'", source=path)
    if not isinstance(m["videos"], dict):
        raise DataError(f"{path}: field 'videos' must be an object video_id -> entry")
    for vid, e in m["videos"].items():
        check_video_id(vid, f"{path}: 'videos'")
        where = f"{path}: video {vid!r}"
        if not isinstance(e, dict):
            raise DataError(f"{where}: entry must be an object, got {_short(e)}")
        for key in ("file", "shape", "dtype", "sha256"):
            if key not in e:
                raise DataError(f"{where}: missing field {key!r}")
        check_plain_name(e["file"], what="field 'file'", source=where)
        shape = e["shape"]
        if (not isinstance(shape, list) or len(shape) != 2
                or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in shape)):
            raise DataError(f"{where}: field 'shape' must be [T, C] (two whole numbers), got "
                            f"{_short(shape)}")
        for key in ("dtype", "sha256"):
            if not isinstance(e[key], str):
                raise DataError(f"{where}: field {key!r} must be a string, got {_short(e[key])}")
        if e.get("fps") is not None:
            fps = e["fps"]
            if (isinstance(fps, bool) or not isinstance(fps, int | float)
                    or not math.isfinite(fps) or fps <= 0):
                raise DataError(f"{where}: field 'fps' must be a positive number, got "
                                f"{_short(fps)}")
    return m


def _whole(value: Any, where: str, key: str) -> int:
    """A manifest's snippet geometry: a whole number >= 1 (JSON ints only, not "4" or 4.0)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{where}: field {key!r} must be a whole number >= 1, got "
                        f"{_short(value)}")
    return value


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters (a hostile file may hold a huge value)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_video(manifest: dict[str, Any], root: Path, video_id: str, shape: tuple[int, ...],
                dtype: str, sha256: str | None) -> None:
    """Compare one file's facts with its manifest entry; :class:`DataError` on any mismatch."""
    where = f"{root / MANIFEST_FILE}: video {video_id!r}"
    entry = manifest["videos"].get(video_id)
    if entry is None:
        raise DataError(f"{where}: not listed in the manifest (re-run `amnet features`)")
    if list(shape) != list(entry["shape"]):
        raise DataError(f"{where}: file has shape {list(shape)}, manifest says {entry['shape']}")
    if dtype != entry["dtype"]:
        raise DataError(f"{where}: file has dtype {dtype}, manifest says {entry['dtype']}")
    if sha256 is not None and sha256 != entry["sha256"]:
        raise DataError(f"{where}: {entry['file']} changed since the manifest was written "
                        f"(sha256 {sha256[:12]}… != {entry['sha256'][:12]}…)")


def verify_manifest(root: str | Path, *, checksums: bool = True) -> dict[str, Any]:
    """Check that ``root`` holds exactly what its manifest says; return the manifest.

    ``checksums=False`` compares only shapes and dtypes (reads .npy headers, not the data).
    """
    root = Path(root)
    m = read_manifest(root)
    if m is None:
        raise DataError(f"{root}: no {MANIFEST_FILE} (expected a prepared feature set; "
                        "run `amnet features`)")
    ann_path = root / m["annotations"]["file"]  # a plain name: checked by read_manifest
    if not ann_path.is_file():
        raise DataError(f"{root / MANIFEST_FILE}: annotation file {ann_path} is missing")
    if checksums and sha256_file(ann_path) != m["annotations"]["sha256"]:
        raise DataError(f"{ann_path}: changed since {root / MANIFEST_FILE} was written")
    for vid, e in sorted(m["videos"].items()):
        path = root / e["file"]  # a plain name inside root: checked by read_manifest
        shape, dtype = read_header(path, vid)
        sha = None
        if checksums:
            _, sha = load_feature_file(path, vid, with_sha256=True)
        check_video(m, root, vid, shape, str(dtype), sha)
    return m
