"""FeatureSet: the paths, readers and video list of a feature-set folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amnet.data.feature_set import ANNOTATIONS_FILE, MANIFEST_FILE, FeatureSet
from amnet.data.manifest import write_manifest
from amnet.errors import DataError


def test_paths_and_videos(tiny_set: Path) -> None:
    fs = FeatureSet(tiny_set)
    assert fs.annotations_path == tiny_set / ANNOTATIONS_FILE == tiny_set / "annotations.json"
    assert fs.manifest_path == tiny_set / MANIFEST_FILE == tiny_set / "manifest.json"
    assert fs.feature_path("a") == tiny_set / "a.npy"
    (tiny_set / ".hidden.npy").write_bytes(b"")  # editor / rsync leftovers are not videos
    assert fs.video_ids() == ["a", "b", "c", "d"]
    assert FeatureSet(tiny_set / "absent").video_ids() == []


def test_relative_root_is_made_absolute(tiny_set: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_set.parent)
    fs = FeatureSet.at(tiny_set.name)
    assert fs.root == tiny_set and fs.root.is_absolute()


def test_readers(tiny_set: Path) -> None:
    fs = FeatureSet(tiny_set)
    assert sorted(fs.raw_annotations() or {}) == ["a", "b", "c", "d"]
    assert sorted(fs.subset_entries("test")) == ["c", "d"]  # case-insensitive
    assert fs.subset_entries("Training") == {}
    assert fs.raw_manifest() is None and fs.manifest() is None
    assert fs.manifest_entries(["c"]) == {}
    write_manifest(tiny_set, stride=2, window=4)
    assert fs.manifest() == fs.raw_manifest()
    entries = fs.manifest_entries(["c", "zz"])
    assert list(entries) == ["c"] and entries["c"]["file"] == "c.npy"
    assert sorted(fs.annotations().videos) == ["a", "b", "c", "d"]


def test_manifest_entries_of_a_list_layout(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(
        {"videos": [{"video": "a", "n": 1}, {"id": "b", "n": 2}, "junk"]}))
    assert FeatureSet(tmp_path).manifest_entries(["b"]) == {"b": {"id": "b", "n": 2}}


def test_bad_annotation_database_is_named(tmp_path: Path) -> None:
    (tmp_path / ANNOTATIONS_FILE).write_text(json.dumps({"database": [1, 2]}))
    with pytest.raises(DataError, match=r"annotations\.json: field 'database'"):
        FeatureSet(tmp_path).raw_annotations()
