"""``feature_set_tags``: the DVC hash of the feature set is found however ``data.root`` is
spelled (relative to another CWD, absolute, through a symlink), and only for the right out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from workflows.config import load_config
from workflows.tracking import feature_set_tags

MD5 = "0123456789abcdef0123456789abcdef.dir"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A project whose dvc.lock records data/features (and another out) with their md5s."""
    root = tmp_path / "proj"
    (root / ".git").mkdir(parents=True)
    (root / "data" / "features").mkdir(parents=True)
    (root / "data" / "other").mkdir()
    (root / "sub").mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "features": {"cmd": "x", "outs": [{"path": "data/features", "md5": MD5}]},
        "other": {"cmd": "y", "outs": [{"path": "data/other", "md5": "feed.dir"}]}}}))
    return root


def tags_for(root: str | Path, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return feature_set_tags(load_config(None, [f"data.root={root}"]))


@pytest.mark.parametrize("spell", ["relative", "dot-relative", "absolute", "from-subfolder",
                                   "outside-cwd", "symlink"])
def test_dvc_hash_whatever_the_spelling(repo: Path, tmp_path: Path, spell: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    link = tmp_path / "link-to-features"
    os.symlink(repo / "data" / "features", link)
    root, cwd = {"relative": ("data/features", repo),
                 "dot-relative": ("./data/../data/features/", repo),
                 "absolute": (repo / "data" / "features", repo),
                 "from-subfolder": ("../data/features", repo / "sub"),
                 "outside-cwd": (repo / "data" / "features", tmp_path),
                 "symlink": (link, repo)}[spell]
    assert tags_for(root, cwd, monkeypatch).get("dvc.features.md5") == MD5


def test_no_hash_for_an_unrecorded_or_other_folder(repo: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert tags_for(repo / "data" / "other", repo, monkeypatch)["dvc.features.md5"] == "feed.dir"
    (repo / "data" / "fresh").mkdir()
    assert "dvc.features.md5" not in tags_for("data/fresh", repo, monkeypatch)
    assert "dvc.features.md5" not in tags_for(tmp_path / "elsewhere", repo, monkeypatch)
    (repo / "dvc.lock").write_text("stages: [not, a, mapping\n")  # broken lock: no tag, no error
    assert "dvc.features.md5" not in tags_for("data/features", repo, monkeypatch)
