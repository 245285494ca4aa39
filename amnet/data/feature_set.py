"""The on-disk layout of a prepared feature set, and the one place its file names are spelled.

::

    <root>/<video_id>.npy     (T, C) float features, one file per video
    <root>/annotations.json   ActivityNet-style ground truth (``amnet.data.annotations``)
    <root>/manifest.json      what the set holds: shapes, sha256s, timing (``amnet.data.manifest``)

Everything that needs a path in such a folder (the dataset, the features stage, the test-set
fingerprint of tracking, ``amnet detect``'s sidecar lookup, the model's input example) asks a
:class:`FeatureSet` instead of joining the names itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amnet.errors import DataError
from amnet.io import read_json_object

if TYPE_CHECKING:
    from amnet.data.annotations import AnnotationSet

__all__ = ["ANNOTATIONS_FILE", "FEATURE_SUFFIX", "MANIFEST_FILE", "FeatureSet"]

ANNOTATIONS_FILE = "annotations.json"
MANIFEST_FILE = "manifest.json"
FEATURE_SUFFIX = ".npy"


@dataclass(frozen=True)
class FeatureSet:
    """A feature-set folder: its file paths, its readers and its videos.

    ``root`` is kept as given; :meth:`at` makes a relative one absolute against the CWD (for
    callers that may change directory later).
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def at(cls, root: str | Path) -> FeatureSet:
        """The feature set at ``root``, relative paths resolved against the CWD."""
        path = Path(root)
        return cls(path if path.is_absolute() else Path.cwd() / path)

    # ----------------------------------------------------------------------- paths

    @property
    def annotations_path(self) -> Path:
        return self.root / ANNOTATIONS_FILE

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_FILE

    def feature_path(self, video_id: str) -> Path:
        """``<root>/<video_id>.npy``."""
        return self.root / f"{video_id}{FEATURE_SUFFIX}"

    def feature_files(self) -> list[Path]:
        """Every ``<video_id>.npy`` in the folder (hidden files skipped), sorted by name."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir()
                      if p.is_file() and p.suffix == FEATURE_SUFFIX and not p.name.startswith("."))

    def video_ids(self) -> list[str]:
        """Ids of the videos that have a feature file, sorted."""
        return [p.stem for p in self.feature_files()]

    # ----------------------------------------------------------------------- readers

    def raw_annotations(self) -> dict[str, Any] | None:
        """The annotation file's per-video objects (``database``, or the whole file when it
        has no such key) as stored; ``None`` when there is no annotation file."""
        ann = read_json_object(self.annotations_path)
        if ann is None:
            return None
        db = ann.get("database", ann)
        if not isinstance(db, dict):
            raise DataError(f"{self.annotations_path}: field 'database' must be an object "
                            "video_id -> entry")
        return db

    def subset_entries(self, subset: str) -> dict[str, dict[str, Any]]:
        """Raw annotation entries of the videos in ``subset`` (case-insensitive), by id;
        empty when there is no annotation file or no such video."""
        db = self.raw_annotations() or {}
        want = subset.lower()
        return {vid: v for vid, v in db.items()
                if isinstance(v, dict) and str(v.get("subset", "")).lower() == want}

    def raw_manifest(self) -> dict[str, Any] | None:
        """The manifest as stored (any layout, unchecked); ``None`` when there is none."""
        return read_json_object(self.manifest_path)

    def manifest_entries(self, video_ids: Iterable[str]) -> dict[str, Any]:
        """The raw manifest entries of ``video_ids`` by id, for either layout: ``videos`` as an
        object keyed by id (``amnet-features/1``) or as a list of entries naming their
        ``video`` / ``id``. Empty when there is no manifest or it lists none of them."""
        man = self.raw_manifest()
        per_video = man.get("videos") if man is not None else None
        wanted = set(video_ids)
        if isinstance(per_video, dict):
            return {k: per_video[k] for k in sorted(wanted) if k in per_video}
        if isinstance(per_video, list):
            out = {}
            for e in per_video:
                if isinstance(e, dict) and str(e.get("video", e.get("id", ""))) in wanted:
                    out[str(e.get("video", e.get("id", "")))] = e
            return out
        return {}

    def manifest(self) -> dict[str, Any] | None:
        """The ``amnet-features/1`` manifest, checked (``amnet.data.manifest.read_manifest``)."""
        from amnet.data.manifest import read_manifest  # manifest.py imports this module

        return read_manifest(self.root)

    def annotations(self, **kwargs: Any) -> AnnotationSet:
        """The parsed ground truth (:func:`amnet.data.annotations.load_annotations` options)."""
        from amnet.data.annotations import load_annotations

        return load_annotations(self.annotations_path, **kwargs)
