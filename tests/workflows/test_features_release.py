"""A release tracked with `dvc add` (real dvc + git): the features stage checks it against the
checksum in the `.dvc` file beside it and refuses a release that changed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from amnet.data.manifest import verify_manifest
from amnet.errors import DataError
from workflows.config import load_config
from workflows.features import check_release_checksum, dvc_md5, prepare_features

REPO = Path(__file__).resolve().parents[2]
REAL_I3D = REPO / ".." / "shared" / "data" / "real_i3d"
DVC = str(Path(sys.executable).parent / "dvc")


@pytest.fixture
def tracked_release(tmp_path: Path) -> Path:
    """A git + DVC repo whose `releases/thumos14/` (2 videos) and annotations are `dvc add`ed."""
    repo = tmp_path / "repo"
    rel = repo / "releases" / "thumos14"
    rel.mkdir(parents=True)
    for vid in ("highjump", "tennis26"):
        shutil.copyfile(REAL_I3D / f"{vid}.npy", rel / f"{vid}.npy")
    shutil.copyfile(REAL_I3D / "annotations.json", repo / "releases" / "thumos14.json")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    for args in (["init", "-q"], ["config", "core.analytics", "false"],
                 ["add", "-q", "releases/thumos14", "releases/thumos14.json"]):
        subprocess.run([DVC, *args], cwd=repo, check=True, capture_output=True)
    return repo


def _cfg(repo: Path, out: Path) -> object:
    return load_config(None, [f"data.root={out}", "data.source=release",
                              f"data.release_dir={repo / 'releases' / 'thumos14'}",
                              f"data.release_annotations={repo / 'releases' / 'thumos14.json'}",
                              "data.feature_dim=2048"])


def test_checksum_is_the_one_dvc_records(tracked_release: Path) -> None:
    for name in ("thumos14", "thumos14.json"):
        path = tracked_release / "releases" / name
        recorded = yaml.safe_load(path.with_name(name + ".dvc").read_text())["outs"][0]["md5"]
        assert dvc_md5(path) == recorded
        assert check_release_checksum(path) == recorded
    assert check_release_checksum(tracked_release / "untracked") is None  # no .dvc, no check


def test_unchanged_release_imports(tracked_release: Path, tmp_path: Path) -> None:
    prepare_features(_cfg(tracked_release, tmp_path / "features"))
    assert verify_manifest(tmp_path / "features")["source"]["kind"] == "release"


def test_changed_release_file_is_refused_by_name(tracked_release: Path, tmp_path: Path) -> None:
    feats = tracked_release / "releases" / "thumos14" / "highjump.npy"
    arr = np.load(feats)
    feats.unlink()  # the workspace copy may be linked to DVC's cache: never write through it
    arr[0, 0] += 1.0
    np.save(feats, arr)  # same shape and dtype: only the checksum can tell
    with pytest.raises(DataError, match=r"data\.release_dir .* no longer matches .*thumos14\.dvc"
                                        r" .*changed \['highjump\.npy'\]"):
        prepare_features(_cfg(tracked_release, tmp_path / "features"))
    assert not (tmp_path / "features").exists()


def test_changed_annotations_are_refused(tracked_release: Path, tmp_path: Path) -> None:
    ann = tracked_release / "releases" / "thumos14.json"
    text = ann.read_text()
    ann.unlink()
    ann.write_text(text.replace("HighJump", "LongJump", 1))
    with pytest.raises(DataError, match=r"data\.release_annotations .* no longer matches"):
        prepare_features(_cfg(tracked_release, tmp_path / "features"))
