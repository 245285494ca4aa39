"""Shared fixtures: real MLflow stores (a session SQLite DB, a session `mlflow server`)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from amnet.data.manifest import write_manifest
from amnet.model.output import ModelOutput

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Never let a developer's MLFLOW_TRACKING_URI leak into tests: each test names its store.
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def mlflow_sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the session (creating the schema costs ~7 s, so only once)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def tracking_overrides(uri: str, tmp_path: Path, name: str) -> list[str]:
    """Config overrides isolating one test: its own experiment, registered model, artifacts."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", name)[-60:]
    return [f"tracking.tracking_uri={uri}", f"tracking.artifact_root={tmp_path / 'artifacts'}",
            f"tracking.experiment=exp_{name}", f"tracking.registered_model=model_{name}"]


@pytest.fixture
def sqlite_overrides(mlflow_sqlite_uri: str, tmp_path: Path,
                     request: pytest.FixtureRequest) -> list[str]:
    return tracking_overrides(mlflow_sqlite_uri, tmp_path, request.node.name)


@pytest.fixture
def server_overrides(mlflow_server: str, tmp_path: Path,
                     request: pytest.FixtureRequest) -> list[str]:
    return tracking_overrides(mlflow_server, tmp_path, request.node.name)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (free port), job execution off (2 processes)."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    log_path = root / "server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [str(exe), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited ({proc.returncode}):\n"
                        f"{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server not healthy in 120 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)
    yield uri
    os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group (uvicorn child)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --------------------------------------------------------------------------- tiny data

CLASSES = ["Jump", "Throw"]


class TinyDetector(torch.nn.Module):
    """A one-level stand-in for AMNet with the same forward contract (feats, mask) → ModelOutput."""

    def __init__(self, in_dim: int = 8, num_classes: int = 2) -> None:
        super().__init__()
        self.head = torch.nn.Conv1d(in_dim, num_classes + 3, 1)
        self.num_classes = num_classes

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        y = self.head(feats).transpose(1, 2)  # (B, T, C + 3)
        t = feats.shape[-1]
        c = self.num_classes
        return ModelOutput(cls_logits=y[..., :c], offsets=y[..., c:c + 2].exp(),
                           match_logits=y[..., c + 2], points=torch.arange(t, dtype=torch.float32),
                           strides=torch.ones(t), level_ids=torch.zeros(t, dtype=torch.long),
                           mask=mask, level_lengths=[t])


def make_feature_set(root: Path, shift: float = 0.0) -> Path:
    """A real 4-video feature set (annotations + .npy + manifest) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    db = {}
    for i, subset in enumerate(["Validation", "Validation", "Test", "Test"]):
        vid = f"video_{i}"
        np.save(root / f"{vid}.npy", np.full((20, 8), i, dtype=np.float32))
        db[vid] = {"subset": subset, "duration": 10.0, "fps": 10.0,
                   "annotations": [{"label": CLASSES[i % 2], "segment": [1.0 + shift, 4.0]},
                                   {"label": CLASSES[(i + 1) % 2], "segment": [5.0, 8.0]}]}
    (root / "annotations.json").write_text(json.dumps({"database": db}))
    write_manifest(root, stride=4, window=16, classes=CLASSES)
    return root


def predictions(quality: float) -> dict:
    """Test-set predictions: ``quality`` 1 hits every GT exactly, lower values shift them."""
    off = (1.0 - quality) * 5.0
    res = {}
    for i in (2, 3):
        res[f"video_{i}"] = [
            {"label": CLASSES[i % 2], "score": 0.9, "segment": [1.0 + off, 4.0 + off]},
            {"label": CLASSES[(i + 1) % 2], "score": 0.8, "segment": [5.0 + off, 8.0]},
            {"label": CLASSES[i % 2], "score": 0.3, "segment": [0.0, 9.0]}]
    return {"results": res}


def gt_of(root: Path) -> dict:
    return json.loads((root / "annotations.json").read_text())


@pytest.fixture
def tiny() -> SimpleNamespace:
    """The helpers above for test modules (importing from conftest is fragile)."""
    return SimpleNamespace(CLASSES=CLASSES, TinyDetector=TinyDetector, gt_of=gt_of,
                           make_feature_set=make_feature_set, predictions=predictions)
