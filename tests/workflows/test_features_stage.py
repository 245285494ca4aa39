"""`amnet features` / the DVC `features` stage: synthetic generation and release import."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from amnet.data.dataset import TALDataset
from amnet.data.manifest import verify_manifest
from amnet.errors import ConfigError, DataError
from workflows.cli import main
from workflows.config import load_config
from workflows.features import prepare_features

REPO = Path(__file__).resolve().parents[2]
REAL_I3D = REPO / ".." / "shared" / "data" / "real_i3d"
TINY = ["data.synthetic.n_train=3", "data.synthetic.n_test=2", "data.synthetic.feature_dim=16",
        "data.feature_dim=16", "data.synthetic.duration_scale=0.05"]


def _digest(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def test_synthetic_via_cli_is_reproducible(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data" / "features"
    args = ["features", "-s", f"data.root={root}"] + [a for s in TINY for a in ("-s", s)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Validation: 3 videos" in out and "Test: 2 videos" in out
    first = _digest(root)
    assert verify_manifest(root)["source"]["kind"] == "synthetic"
    np.save(root / "stale.npy", np.zeros((3, 16), np.float32))  # left from an older set
    assert main(args) == 0
    assert _digest(root) == first  # same bytes, stale file gone
    assert not list(tmp_path.joinpath("data").glob(".features.*"))  # no temp folders left
    cfg = load_config(None, [f"data.root={root}", *TINY])
    assert len(TALDataset(cfg.data, "Validation", training=True)) == 3


def test_module_entry_point(tmp_path: Path) -> None:
    """What dvc.yaml runs: python -m workflows.features -p <params> [-s ...]."""
    root = tmp_path / "f"
    cmd = [sys.executable, "-m", "workflows.features", "-p", str(REPO / "params/default.yaml"),
           "-s", f"data.root={root}"] + [a for s in TINY for a in ("-s", s)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert (root / "manifest.json").is_file() and len(list(root.glob("*.npy"))) == 5


def test_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    cfg = load_config(None, [f"data.root={tmp_path}", *TINY])
    with pytest.raises(DataError,
                       match=r"holds other things than a feature set \(\['notes.txt'\]\)"):
        prepare_features(cfg)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_synthetic_dimension_must_match(tmp_path: Path) -> None:
    cfg = load_config(None, [f"data.root={tmp_path / 'f'}", "data.synthetic.feature_dim=16"])
    with pytest.raises(ConfigError, match=r"'data.synthetic.feature_dim' \(16\) must equal "
                                          r"'data.feature_dim' \(256\)"):
        prepare_features(cfg)


def _release_cfg(root: Path, release: Path, annotations: Path) -> list[str]:
    return ["-s", f"data.root={root}", "-s", "data.source=release",
            "-s", f"data.release_dir={release}", "-s", f"data.release_annotations={annotations}",
            "-s", "data.feature_dim=2048"]


def test_import_real_release(tmp_path: Path) -> None:
    root = tmp_path / "real"
    assert main(["features", *_release_cfg(root, REAL_I3D, REAL_I3D / "annotations.json")]) == 0
    m = verify_manifest(root)
    assert m["source"]["transfer"] in ("hardlink", "copy", "mixed")
    assert m["source"]["hardlinked"] + m["source"]["copied"] == 2
    assert m["videos"]["highjump"]["dtype"] == "float64" and m["feature_dim"] == 2048
    for vid in ("highjump", "tennis26"):
        assert (root / f"{vid}.npy").read_bytes() == (REAL_I3D / f"{vid}.npy").read_bytes()
    cfg = load_config(None, ["data.feature_dim=2048", f"data.root={root}"])
    ds = TALDataset(cfg.data, "Test", training=False)
    assert ds[0]["feats"].shape == (2048, 164)


def test_import_release_missing_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    release = tmp_path / "rel"
    release.mkdir()
    (release / "highjump.npy").write_bytes((REAL_I3D / "highjump.npy").read_bytes())
    root = tmp_path / "out"
    rc = main(["features", *_release_cfg(root, release, REAL_I3D / "annotations.json")])
    assert rc == 2  # one clear line, no traceback
    assert "no feature file for 1 of 2 annotated videos, e.g. ['tennis26']" in caplog.text
    assert not root.exists()


def test_import_release_bad_file(tmp_path: Path) -> None:
    release = tmp_path / "rel"
    release.mkdir()
    ann = json.loads((REAL_I3D / "annotations.json").read_text())
    np.save(release / "highjump.npy", np.load(REAL_I3D / "highjump.npy")[:, :1024])
    np.save(release / "tennis26.npy", np.load(REAL_I3D / "tennis26.npy"))
    (release / "a.json").write_text(json.dumps(ann))
    cfg = load_config(None, _release_cfg(tmp_path / "o", release, release / "a.json")[1::2])
    with pytest.raises(DataError, match=r"video 'highjump' .*dimension is 1024, expected 2048"):
        prepare_features(cfg)
    assert not (tmp_path / "o").exists()


def test_release_needs_paths(tmp_path: Path) -> None:
    cfg = load_config(None, [f"data.root={tmp_path / 'o'}", "data.source=release"])
    with pytest.raises(ConfigError, match=r"'data\.release_dir' must be set"):
        prepare_features(cfg)
