"""`amnet extract`, `python -m workflows.extract`, and the DVC stage in a real temp git repo."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from amnet.extract import I3D
from workflows.cli import main

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

SMALL = {"fps": 25.0, "stride": 4, "window": 8, "resize": 40, "crop": 32, "width": 0.25,
         "device": "cpu", "batch_size": 4}

# The stage as the README/dvc.yaml documents it (in its own pipeline file, run from the root).
def project_stage() -> str:
    """The repo's own extraction stage, with the test's small weights and without the code
    deps (the temporary repo holds no copy of amnet/)."""
    spec = yaml.safe_load((REPO / "pipelines" / "extract" / "dvc.yaml").read_text())
    stage = spec["stages"]["extract"]
    stage["deps"] = [("weights/rgb_small.pt" if d.startswith("weights/") else d)
                     for d in stage["deps"] if not d.startswith(("amnet/", "workflows/"))]
    return yaml.safe_dump(spec, sort_keys=False)


def write_params(path: Path, **extract) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"extract": {**SMALL, **extract}}))
    return path


def test_amnet_extract_command(make_video, tmp_path, caplog):
    make_video("a.mp4", n_frames=30, folder=tmp_path / "videos")
    params = write_params(tmp_path / "extract.yaml", video_dir=str(tmp_path / "videos"),
                          out_dir=str(tmp_path / "out"), allow_random_init=True)
    assert main(["extract", "-p", str(params)]) == 0
    assert (tmp_path / "out" / "a.npy").is_file()
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["videos"]["a"]["n_snippets"] == (30 - 8) // 4 + 1

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(["extract", "-p", str(params), "-s", "extract.allow_random_init=false"]) == 2
    assert "extract.checkpoint' is empty" in caplog.text  # one line, no traceback
    assert "Traceback" not in caplog.text


def test_module_entry_point_reports_a_missing_checkpoint(tmp_path):
    """`python -m workflows.extract` (the DVC command): exit 2 and one clear line."""
    (tmp_path / "videos").mkdir()
    params = write_params(tmp_path / "extract.yaml", video_dir=str(tmp_path / "videos"),
                          checkpoint=str(tmp_path / "rgb_imagenet.pt"))
    proc = subprocess.run([sys.executable, "-m", "workflows.extract", "-p", str(params)],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    assert "rgb_imagenet.pt" in proc.stderr and "never downloaded" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_dvc_stage_extracts_only_the_added_video(make_video, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # tiny nets: see conftest

    def sh(*cmd: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
        return proc

    sh("git", "init", "-q")
    sh(str(BIN / "dvc"), "init", "-q")
    videos = repo / "data" / "videos"
    make_video("a.mp4", n_frames=30, folder=videos)
    make_video("b.mp4", n_frames=30, folder=videos)
    torch.manual_seed(0)
    (repo / "weights").mkdir()
    torch.save(I3D(width=0.25).state_dict(), repo / "weights" / "rgb_small.pt")
    write_params(repo / "params" / "extract.yaml", video_dir="data/videos",
                 out_dir="data/extracted", checkpoint="weights/rgb_small.pt")
    (repo / "pipelines" / "extract").mkdir(parents=True)
    (repo / "pipelines" / "extract" / "dvc.yaml").write_text(project_stage())
    target = "pipelines/extract/dvc.yaml"

    first = sh(str(BIN / "dvc"), "repro", target)
    out = repo / "data" / "extracted"
    assert "0 cached, 2 to extract" in first.stdout + first.stderr
    stamp = (out / "a.npy").stat().st_mtime_ns

    make_video("c.mp4", n_frames=30, folder=videos)
    second = sh(str(BIN / "dvc"), "repro", target)
    assert "2 cached, 1 to extract" in second.stdout + second.stderr
    assert (out / "a.npy").stat().st_mtime_ns == stamp
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["videos"]) == ["a", "b", "c"]

    third = sh(str(BIN / "dvc"), "repro", target)
    assert "didn't change" in third.stdout + third.stderr
    lock = yaml.safe_load((repo / "pipelines" / "extract" / "dvc.lock").read_text())
    assert lock["stages"]["extract"]["params"]["params/extract.yaml"]["extract"]["stride"] == 4
