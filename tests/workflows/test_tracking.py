"""workflows.tracking against a real SQLite MLflow store (session DB, one experiment per test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from amnet.data.manifest import write_manifest
from amnet.evaluation.map import evaluate_detections
from amnet.io import sha256_file
from workflows import tracking
from workflows.config import load_config
from workflows.tracking import TrackingError

REPO = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- locations

def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # as DVC sets it, also for exp temp dirs
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config(None)
    assert tracking.resolve_tracking_uri(cfg) == f"sqlite:///{tmp_path}/.mlflow/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert tracking.resolve_tracking_uri(cfg) == "http://127.0.0.1:1"
    cfg = load_config(None, ["tracking.tracking_uri=sqlite:///rel/m.db"])
    assert tracking.resolve_tracking_uri(cfg) == f"sqlite:///{tmp_path}/rel/m.db"
    for bad in ("./mlruns", "file:///tmp/mlruns"):
        with pytest.raises(TrackingError, match="file store"):
            tracking.resolve_tracking_uri(load_config(None, [f"tracking.tracking_uri={bad}"]))


def test_project_root_inside_dvc_exp_tempdir(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "standalone" / "tmpabc"
    exe.mkdir(parents=True)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(exe)
    assert tracking.project_root() == tmp_path / "repo"


def test_unreachable_server_fails_fast(unused_port: int) -> None:
    uri = f"http://127.0.0.1:{unused_port}"
    cfg = load_config(None, [f"tracking.tracking_uri={uri}"])
    t0 = time.monotonic()
    with (pytest.raises(TrackingError, match="unreachable") as err,
          tracking.start_run(cfg, run_name="never")):
        pytest.fail("a run started against a dead server")
    assert uri in str(err.value)
    assert time.monotonic() - t0 < 10


# --------------------------------------------------------------------------- runs

def test_run_records_params_provenance_and_epochs(tmp_path: Path, sqlite_overrides: list[str],
                                                   tiny: SimpleNamespace,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    tiny.make_feature_set(repo / "data" / "features")
    (repo / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  features:\n    cmd: x\n    outs:\n"
        "    - path: data/features\n      hash: md5\n      md5: 0123abcd.dir\n")
    for cmd in (["init", "-q"], ["add", "."],
                ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True,
                            capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(repo)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    cfg = load_config(None, [*sqlite_overrides, "model.gam_depth=3"])

    with tracking.start_run(cfg, run_name="unit", tags={"ablation": "full"}) as run:
        cb = tracking.epoch_logger(run.info.run_id)
        for epoch in range(3):
            cb(epoch, {"loss/total": 3.0 - epoch, "loss/cls": 1.0 / (epoch + 1), "lr": 1e-4,
                       "mAP@0.5": 0.1 * epoch, "note": "text", "loss/trip": float("nan")})

    client = MlflowClient()
    r = client.get_run(run.info.run_id)
    assert r.info.status == "FINISHED"
    assert r.data.params["model.gam_depth"] == "3"
    assert json.loads(r.data.params["eval.tiou"]) == cfg.eval.tiou
    assert len(r.data.params) == len(cfg.flat())
    tags = r.data.tags
    assert tags["git.commit"] == commit == tags["mlflow.source.git.commit"]
    assert tags["dvc.features.md5"] == "0123abcd.dir"
    manifest = repo / "data" / "features" / "manifest.json"
    assert tags["features.manifest_sha256"] == sha256_file(manifest)
    assert tags["ablation"] == "full"
    hist = client.get_metric_history(run.info.run_id, "loss/cls")
    assert [(m.step, m.value) for m in sorted(hist, key=lambda m: m.step)] == [
        (0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "mAP_0.5")] == \
        pytest.approx([0.0, 0.1, 0.2])
    assert "loss/trip" not in r.data.metrics and "note" not in r.data.metrics
    # the experiment's artifacts live where the config says, absolute
    exp = client.get_experiment(r.info.experiment_id)
    assert exp.artifact_location == (tmp_path / "artifacts" / cfg.tracking.experiment).as_uri()


def test_log_evaluation_metrics_tables_and_artifacts(tmp_path: Path, tiny: SimpleNamespace,
                                                      sqlite_overrides: list[str]) -> None:
    root = tiny.make_feature_set(tmp_path / "features")
    cfg = load_config(None, [*sqlite_overrides, f"data.root={root}"])
    result = evaluate_detections(tiny.gt_of(root), tiny.predictions(0.8), subset="Test",
                                 tiou=cfg.eval.tiou)
    plot = tmp_path / "per_class_ap.csv"
    plot.write_text("class,AP\nJump,0.5\n")
    with tracking.start_run(cfg, run_name="eval") as run:
        logged = tracking.log_evaluation(result, tiny.predictions(0.8), {"per_class_ap_csv": plot})
    r = MlflowClient().get_run(run.info.run_id)
    for t, v in result.to_json()["mAP"].items():
        assert r.data.metrics[f"test/mAP_{t}"] == pytest.approx(v)
    assert r.data.metrics["test/average_mAP"] == pytest.approx(result.average_mAP)
    assert 0 < result.average_mAP < 1  # a real, non-trivial score was logged
    assert r.data.metrics["test/AP_0.5/Jump"] == pytest.approx(result.per_class_AP[0.5]["Jump"])
    assert logged == {k: pytest.approx(v) for k, v in r.data.metrics.items()}
    names = {f.path for f in mlflow.artifacts.list_artifacts(run_id=run.info.run_id,
                                                             artifact_path="eval")}
    assert {"eval/map_table.json", "eval/per_class_ap.json", "eval/predictions.json",
            "eval/metrics.json"} <= names
    table = MlflowClient().load_table(r.info.experiment_id, "eval/map_table.json",
                                      run_ids=[run.info.run_id])
    assert table.set_index("tIoU").loc["average", "mAP"] == pytest.approx(result.average_mAP)
    got = mlflow.artifacts.load_dict(f"{r.info.artifact_uri}/eval/predictions.json")
    assert got == tiny.predictions(0.8)
    assert [f.path for f in mlflow.artifacts.list_artifacts(
        run_id=run.info.run_id, artifact_path="plots")] == ["plots/per_class_ap.csv"]


def test_fingerprint_tracks_test_split_and_tiou(tmp_path: Path, tiny: SimpleNamespace) -> None:
    a = tiny.make_feature_set(tmp_path / "a")
    cfg = load_config(None, [f"data.root={a}"])
    fp = tracking.test_set_fingerprint(cfg)
    assert fp == tracking.test_set_fingerprint(cfg)
    assert fp != tracking.test_set_fingerprint(cfg.replace("eval.tiou=[0.5]"))
    b = tiny.make_feature_set(tmp_path / "b", shift=0.5)  # same features, moved GT segments
    assert fp != tracking.test_set_fingerprint(cfg.replace(f"data.root={b}"))
    # a changed *training* video does not change the test set
    np.save(a / "video_0.npy", np.zeros((20, 8), dtype=np.float32))
    write_manifest(a, stride=4, window=16, classes=tiny.CLASSES)
    assert fp == tracking.test_set_fingerprint(cfg)
    np.save(a / "video_3.npy", np.zeros((20, 8), dtype=np.float32))
    write_manifest(a, stride=4, window=16, classes=tiny.CLASSES)
    assert fp != tracking.test_set_fingerprint(cfg)
    with pytest.raises(TrackingError, match="no video in subset 'Nope'"):
        tracking.test_set_fingerprint(cfg, subset="Nope")


def test_logged_model_loads_without_params_files(tmp_path: Path, tiny: SimpleNamespace,
                                                 sqlite_overrides: list[str]) -> None:
    torch.manual_seed(0)
    cfg = load_config(None, [*sqlite_overrides, "data.feature_dim=8", "data.num_classes=2"])
    model = tiny.TinyDetector().eval()
    feats, mask = torch.randn(1, 8, 16), torch.ones(1, 16, dtype=torch.bool)
    with tracking.start_run(cfg, run_name="model") as run:
        info = tracking.log_model(model, feats, mask, tiny.CLASSES, cfg)
    assert MlflowClient().get_run(run.info.run_id).data.tags["amnet.model_uri"] == info.model_uri
    loaded, got_cfg, names = tracking.load_registered_model(info.model_uri)
    assert names == tiny.CLASSES
    assert got_cfg == cfg
    x = torch.randn(2, 8, 24)
    m = torch.ones(2, 24, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, m).cls_logits, model(x, m).cls_logits)
    # the pyfunc flavour: one tensor in, one packed tensor out, other batch and length
    pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    out = pyfunc.predict(x.numpy())
    assert out.shape == (2, 24, len(tiny.CLASSES) + 3)
    np.testing.assert_allclose(out[..., :2], torch.sigmoid(model(x, m).cls_logits).detach(),
                               rtol=1e-5, atol=1e-6)
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 8, -1]


def test_train_command_fails_fast_on_unreachable_server(tmp_path: Path, unused_port: int) -> None:
    """`amnet train` reports a dead tracking server in one line, before any training."""
    uri = f"http://127.0.0.1:{unused_port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "workflows.train", "-p", "params/default.yaml",
                           "--out", str(out), "-s", f"data.root={tmp_path / 'no-features'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "unreachable" in proc.stderr and uri in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()  # nothing trained, nothing written


@pytest.mark.slow
def test_amnet_ui_serves_the_project_store(tmp_path: Path, unused_port: int,
                                           sqlite_overrides: list[str]) -> None:
    """`amnet ui` becomes an `mlflow ui` on the configured store and stops on SIGTERM."""
    cfg = load_config(None, sqlite_overrides)
    with tracking.start_run(cfg, run_name="visible"):
        pass
    argv = [sys.executable, "-m", "workflows.cli", "ui", "-p", str(REPO / "params/default.yaml"),
            "--port", str(unused_port)]
    for o in sqlite_overrides:
        argv += ["-s", o]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{unused_port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                req = urllib.request.Request(
                    f"{url}/api/2.0/mlflow/experiments/get-by-name?"
                    f"experiment_name={cfg.tracking.experiment}")
                with urllib.request.urlopen(req, timeout=2) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "amnet ui did not answer in 90 s"
                time.sleep(0.5)
        assert body["experiment"]["name"] == cfg.tracking.experiment
    finally:
        proc.terminate()  # the exec'd mlflow process itself: nothing is left behind
        proc.wait(timeout=30)


def test_read_run_id(tmp_path: Path) -> None:
    path = tmp_path / "mlflow_run.json"
    assert tracking.read_run_id(path) is None
    with pytest.raises(TrackingError, match=r"no run file; train first .* or give --run-id"):
        tracking.read_run_id(path, required=True, hint=" or give --run-id")
    path.write_text(json.dumps({"experiment_id": "1"}))
    assert tracking.read_run_id(path) is None
    with pytest.raises(TrackingError, match="no 'run_id' field"):
        tracking.read_run_id(path, required=True)
    path.write_text(json.dumps({"run_id": "abc"}))
    assert tracking.read_run_id(path, required=True) == "abc"
