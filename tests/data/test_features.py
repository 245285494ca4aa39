"""Feature files: every bad file is a DataError naming the video, the file and the expectation,
raised by TALDataset's constructor (before any training step)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datahelpers import video, write_set

from amnet.config import DataConfig
from amnet.data.dataset import TALDataset
from amnet.data.features import load_feature_file, read_header
from amnet.errors import DataError

GOOD = np.random.default_rng(0).random((99, 8))  # 20 s at fps 10, stride 2, window 4


def _nan() -> np.ndarray:
    a = GOOD.astype(np.float32)
    a[5, 3] = np.nan
    return a


def _inf() -> np.ndarray:
    a = GOOD.copy()
    a[7, 1] = -np.inf
    return a


BAD = {
    "wrong rank (1-D)": (lambda: GOOD[:, 0].astype(np.float32), r"rank 1.*expected rank 2"),
    "wrong rank (3-D)": (lambda: GOOD.reshape(99, 2, 4).astype(np.float32), r"rank 3"),
    "wrong dimension": (lambda: GOOD[:, :6].astype(np.float32),
                        r"feature dimension is 6, expected 8 \(data.feature_dim\)"),
    "NaN": (_nan, r"1 non-finite feature value\(s\).*snippet 5, channel 3"),
    "Inf": (_inf, r"non-finite.*snippet 7, channel 1"),
    "float32 overflow": (lambda: np.full((99, 8), 1e300), r"non-finite.*after conversion"),
    "zero-length": (lambda: np.zeros((0, 8), np.float32), r"zero-length video.*0 snippets"),
    "integer dtype": (lambda: np.ones((99, 8), np.int64), r"dtype int64 is not a float type"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_feature_file_stops_dataset(case: str, tmp_path: Path, data_cfg: DataConfig) -> None:
    make, expect = BAD[case]
    root = write_set(tmp_path / "s", {"good": video(), "bad_vid": video()},
                     feats={"bad_vid": make()})
    with pytest.raises(DataError, match=rf"video 'bad_vid' \(.*bad_vid.npy\): .*{expect}"):
        TALDataset(data_cfg, "Validation", training=True, root=root)


def test_missing_feature_file(tmp_path: Path, data_cfg: DataConfig) -> None:
    root = write_set(tmp_path / "s", {"good": video(), "gone": video()})
    (root / "gone.npy").unlink()
    with pytest.raises(DataError, match=r"video 'gone': feature file not found: .*gone.npy"):
        TALDataset(data_cfg, "Validation", training=False, root=root)


@pytest.mark.parametrize("content", [b"not a numpy file", b"\x93NUMPY\x01\x00garbage"])
def test_unreadable_feature_file(content: bytes, tmp_path: Path, data_cfg: DataConfig) -> None:
    root = write_set(tmp_path / "s", {"good": video(), "junk": video()})
    (root / "junk.npy").write_bytes(content)
    with pytest.raises(DataError, match=r"video 'junk': unreadable feature file .*junk.npy"):
        TALDataset(data_cfg, "Validation", training=False, root=root)


def test_pickled_object_array_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="video 'obj': unreadable feature file"):
        load_feature_file(p, "obj")


def test_float64_is_converted_to_float32(tmp_path: Path) -> None:
    p = tmp_path / "v.npy"
    np.save(p, GOOD)
    arr, sha = load_feature_file(p, "v", feature_dim=8, with_sha256=True)
    assert arr.dtype == np.float32 and arr.shape == (99, 8)
    np.testing.assert_allclose(arr, GOOD, rtol=1e-6)
    assert sha is not None and len(sha) == 64
    assert read_header(p, "v") == ((99, 8), np.dtype("float64"))


def test_only_split_files_are_checked(tmp_path: Path, data_cfg: DataConfig) -> None:
    """A broken Test file does not stop the training split (each split validates its own)."""
    root = write_set(tmp_path / "s", {"a": video(), "t": video("Test")},
                     feats={"t": np.full((99, 8), np.nan, np.float32)})
    assert len(TALDataset(data_cfg, "Validation", training=True, root=root)) == 1
    with pytest.raises(DataError, match="video 't'"):
        TALDataset(data_cfg, "Test", training=False, root=root)


@pytest.mark.parametrize("vid", ["../x", "/abs/x", "a/b", "nul\x00", "tab\t", ""])
def test_feature_path_refuses_ids_that_leave_the_folder(tmp_path: Path, vid: str) -> None:
    from amnet.data.features import feature_path

    with pytest.raises(DataError, match=r"gt\.json: video id"):
        feature_path(tmp_path, vid, source="gt.json")
    assert feature_path(tmp_path, "video_validation_0000051") == (
        tmp_path / "video_validation_0000051.npy")
