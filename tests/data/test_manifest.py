"""manifest.json: written deterministically, read back, verified against the files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datahelpers import video, write_set

from amnet.data.manifest import read_manifest, verify_manifest, write_manifest
from amnet.errors import DataError


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    root = write_set(tmp_path / "s", {"a": video(), "b": video("Test")},
                     feats={"b": np.ones((99, 8))})  # float64 kept as stored
    write_manifest(root, stride=2, window=4, classes=["Jump", "Throw", "Swim"],
                   source={"kind": "test"})
    return root


def test_contents(prepared: Path) -> None:
    m = read_manifest(prepared)
    assert m is not None
    assert (m["stride"], m["window"], m["feature_dim"]) == (2, 4, 8)
    assert m["classes"] == ["Jump", "Throw", "Swim"]
    assert m["videos"]["a"]["shape"] == [99, 8] and m["videos"]["a"]["dtype"] == "float32"
    assert m["videos"]["b"]["dtype"] == "float64" and m["videos"]["b"]["subset"] == "Test"
    assert m["videos"]["a"]["fps"] == 10.0 and len(m["videos"]["a"]["sha256"]) == 64
    assert verify_manifest(prepared) == m


def test_deterministic_bytes(prepared: Path) -> None:
    first = (prepared / "manifest.json").read_bytes()
    write_manifest(prepared, stride=2, window=4, classes=["Jump", "Throw", "Swim"],
                   source={"kind": "test"})
    assert (prepared / "manifest.json").read_bytes() == first


def test_changed_feature_file_detected(prepared: Path) -> None:
    np.save(prepared / "a.npy", np.zeros((99, 8), np.float32))  # same shape, other data
    verify_manifest(prepared, checksums=False)  # headers still agree
    with pytest.raises(DataError, match=r"video 'a': a.npy changed since the manifest"):
        verify_manifest(prepared)


def test_changed_shape_and_annotations_detected(prepared: Path) -> None:
    np.save(prepared / "a.npy", np.zeros((50, 8), np.float32))
    with pytest.raises(DataError, match=r"video 'a': file has shape \[50, 8\], manifest says "
                                        r"\[99, 8\]"):
        verify_manifest(prepared, checksums=False)
    (prepared / "annotations.json").write_text(
        (prepared / "annotations.json").read_text().replace("Jump", "Throw"))
    with pytest.raises(DataError, match=r"annotations\.json: changed since"):
        verify_manifest(prepared)


def test_missing_file_and_fields(prepared: Path, tmp_path: Path) -> None:
    (prepared / "b.npy").unlink()
    with pytest.raises(DataError, match="video 'b': feature file not found"):
        verify_manifest(prepared)
    m = json.loads((prepared / "manifest.json").read_text())
    del m["classes"]
    (prepared / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match=r"manifest\.json: missing field 'classes'"):
        read_manifest(prepared)
    assert read_manifest(tmp_path) is None
    with pytest.raises(DataError, match=r"no manifest\.json"):
        verify_manifest(tmp_path)


def test_mixed_dimensions_refused(tmp_path: Path) -> None:
    root = write_set(tmp_path / "s", {"a": video(), "b": video()},
                     feats={"b": np.ones((99, 6), np.float32)})
    with pytest.raises(DataError, match=r"different dimensions \[6, 8\]"):
        write_manifest(root, stride=2, window=4)


@pytest.mark.parametrize(("edit", "expect"), [
    (lambda m: m.update(stride="4"), r"field 'stride' must be a whole number >= 1, got '4'"),
    (lambda m: m.update(window=4.0), r"field 'window' must be a whole number >= 1, got 4.0"),
    (lambda m: m.update(feature_dim=True), r"field 'feature_dim' must be a whole number"),
    (lambda m: m["videos"]["a"].update(fps="fast"),
     r"video 'a': field 'fps' must be a positive number, got 'fast'"),
    (lambda m: m["videos"]["a"].update(file="../victim.npy"),
     r"video 'a': field 'file' '\.\./victim\.npy' is not a plain file name"),
    (lambda m: m["videos"]["a"].update(file="/etc/passwd"), r"is not a plain file name"),
    (lambda m: m["annotations"].update(file="../gt.json"),
     r"field 'annotations\.file' '\.\./gt\.json' is not a plain file name"),
    (lambda m: m["videos"].update({"../x": m["videos"]["a"]}),
     r"'videos': video id '\.\./x' is not a plain file name"),
    (lambda m: m["videos"]["a"].update(shape=[99]), r"field 'shape' must be \[T, C\]"),
    (lambda m: m.update(classes="Jump"), r"field 'classes' must be a list of class names"),
])
def test_manifest_field_types_and_names(prepared: Path, edit, expect: str) -> None:
    m = json.loads((prepared / "manifest.json").read_text())
    edit(m)
    (prepared / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataError, match=expect):
        read_manifest(prepared)


def test_manifest_with_duplicate_keys_is_refused(prepared: Path) -> None:
    text = (prepared / "manifest.json").read_text()
    (prepared / "manifest.json").write_text(text.replace('{', '{"stride": 4, ', 1))
    with pytest.raises(DataError, match=r"duplicate key 'stride'"):
        read_manifest(prepared)
