"""``manifest.json`` beside every prepared feature set: what exactly training read.

Lists each video's file, shape, dtype and sha256, the annotation file's sha256, the snippet
geometry (fps per video, stride, window), the class list and where the set came from. It is
written deterministically (sorted keys, no timestamps), so the same data gives the same bytes
and DVC's hash of the folder changes only when the data does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from amnet.data.annotations import AnnotationSet, load_annotations
from amnet.data.feature_set import ANNOTATIONS_FILE, MANIFEST_FILE
from amnet.data.features import feature_path, load_feature_file, read_header
from amnet.errors import DataError

__all__ = ["ANNOTATIONS_FILE", "MANIFEST_FILE", "MANIFEST_FORMAT", "check_video",
           "describe_features", "read_manifest", "verify_manifest", "write_manifest"]

MANIFEST_FORMAT = "amnet-features/1"
_REQUIRED = ("format", "feature_dim", "stride", "window", "classes", "annotations", "videos")


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def dump_json(obj: Any, path: Path) -> None:
    """Deterministic JSON (sorted keys, fixed indent, trailing newline)."""
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")


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
        path = feature_path(root, vid)
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


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or ``None`` when there is no such file (sidecar files)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_manifest(root: str | Path) -> dict[str, Any] | None:
    """The manifest of ``root`` (checked for its fields), or ``None`` when there is none."""
    path = Path(root) / MANIFEST_FILE
    m = read_json_object(path)
    if m is None:
        return None
    for key in _REQUIRED:
        if key not in m:
            raise DataError(f"{path}: missing field {key!r}")
    if m["format"] != MANIFEST_FORMAT:
        raise DataError(f"{path}: field 'format' is {m['format']!r}, expected {MANIFEST_FORMAT!r}")
    if not isinstance(m["videos"], dict):
        raise DataError(f"{path}: field 'videos' must be an object video_id -> entry")
    for vid, e in m["videos"].items():
        for key in ("file", "shape", "dtype", "sha256"):
            if not isinstance(e, dict) or key not in e:
                raise DataError(f"{path}: video {vid!r}: missing field {key!r}")
    return m


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
    ann_path = root / m["annotations"]["file"]
    if not ann_path.is_file():
        raise DataError(f"{root / MANIFEST_FILE}: annotation file {ann_path} is missing")
    if checksums and sha256_file(ann_path) != m["annotations"]["sha256"]:
        raise DataError(f"{ann_path}: changed since {root / MANIFEST_FILE} was written")
    for vid, e in sorted(m["videos"].items()):
        path = root / e["file"]
        shape, dtype = read_header(path, vid)
        sha = None
        if checksums:
            _, sha = load_feature_file(path, vid, with_sha256=True)
        check_video(m, root, vid, shape, str(dtype), sha)
    return m
