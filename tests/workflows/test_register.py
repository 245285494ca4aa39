"""The champion gate on evidence, on a real SQLite store (and once against a real `mlflow
server`): per-seed validation average mAP of the model's configuration, paired by seed
against the champion's, 95 % t interval above zero; the test split never decides."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow.tracking import MlflowClient

from amnet.data.synthetic import generate_synthetic
from workflows import register, tracking
from workflows.config import WorkflowConfig, load_config
from workflows.tracking import TrackingError

# a tiny synthetic set with a validation split (10 training videos, 3 classes)
TINY = ["data.synthetic.n_train=10", "data.synthetic.n_test=3", "data.synthetic.feature_dim=8",
        "data.feature_dim=8", "data.synthetic.num_classes=3", "data.num_classes=3",
        "data.synthetic.duration_scale=0.05"]


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("register") / "features"
    cfg = load_config(None, [*TINY, f"data.root={root}"])
    generate_synthetic(cfg.data.synthetic, root, stride=cfg.data.stride, window=cfg.data.window)
    return root


@pytest.fixture
def cfg(features: Path, sqlite_overrides: list[str]) -> WorkflowConfig:
    return load_config(None, [*TINY, *sqlite_overrides, f"data.root={features}"])


def model_run(cfg: WorkflowConfig, tiny: SimpleNamespace, test_score: float | None = 0.5,
              log_model: bool = True) -> str:
    """A run as train + evaluate leave it: a logged model and (reporting only) a test score."""
    torch.manual_seed(0)
    with tracking.start_run(cfg, run_name="model") as run:
        if log_model:
            tracking.log_model(tiny.TinyDetector(), torch.randn(1, 8, 16), None, tiny.CLASSES, cfg)
        if test_score is not None:
            tracking.log_evaluation({"mAP": {}, "average_mAP": test_score}, None,
                                    fingerprint=tracking.test_set_fingerprint(cfg))
    return run.info.run_id


def seeds(*values: float) -> dict[str, float]:
    return {str(i): v for i, v in enumerate(values)}


def version_tags(cfg: WorkflowConfig, version: int) -> dict[str, str]:
    return MlflowClient().get_model_version(cfg.tracking.registered_model, str(version)).tags


def champion(cfg: WorkflowConfig) -> int:
    mv = MlflowClient().get_model_version_by_alias(cfg.tracking.registered_model,
                                                   cfg.tracking.champion_alias)
    return int(mv.version)


def test_decide_by_hand() -> None:
    # d = (0.05, 0.04, 0.06): mean 0.05, s_d 0.01, half = 4.303 * 0.01 / sqrt(3) = 0.0248
    d, reason, iv = register.decide(seeds(0.35, 0.36, 0.37), seeds(0.30, 0.32, 0.31),
                                    same_val_set=True)
    assert d == "champion" and "above 0" in reason
    assert (iv.low, iv.high) == (pytest.approx(0.0252, abs=1e-4), pytest.approx(0.0748, abs=1e-4))
    # d = (0.01, 0.01, -0.01): the interval contains 0
    d, reason, iv = register.decide(seeds(0.31, 0.33, 0.30), seeds(0.30, 0.32, 0.31),
                                    same_val_set=True)
    assert d == "rejected" and "not above 0" in reason and iv.low < 0 < iv.high
    assert register.decide(seeds(0.9), seeds(0.1), same_val_set=True)[0] == "rejected"
    assert register.decide(seeds(0.9, 0.9), seeds(0.1, 0.1), same_val_set=False)[0] == "rejected"
    assert register.decide(seeds(0.1), None, same_val_set=False)[0] == "champion"


@pytest.mark.slow
def test_champion_moves_only_on_evidence(cfg: WorkflowConfig, tiny: SimpleNamespace) -> None:
    first = register.promote(cfg, model_run(cfg, tiny), evidence=seeds(0.30, 0.32, 0.31))
    assert (first["version"], first["decision"], champion(cfg)) == (1, "champion", 1)
    tags = version_tags(cfg, 1)
    assert "no 'champion'" in tags["promotion.reason"]
    assert json.loads(tags["evidence.val_seeds"]) == {"0": 0.30, "1": 0.32, "2": 0.31}
    assert tags["evidence.val_fingerprint"] == tracking.validation_set_fingerprint(cfg)

    # a far better TEST score with no validation evidence of a gain: rejected
    r = register.promote(cfg, model_run(cfg, tiny, test_score=0.99),
                         evidence=seeds(0.31, 0.33, 0.30))
    assert (r["decision"], champion(cfg)) == ("rejected", 1)
    tags = version_tags(cfg, 2)
    assert tags["promotion.decision"] == "rejected" and tags["promotion.champion_version"] == "1"
    assert "not above 0" in tags["promotion.reason"]
    assert tags["promotion.interval"].startswith("+0.0033 [")  # mean of (0.01, 0.01, -0.01)
    assert json.loads(tags["promotion.champion_val_seeds"]) == {"0": 0.30, "1": 0.32, "2": 0.31}
    assert r["interval"]["low"] < 0 < r["interval"]["high"]

    # paired gain with the interval above zero: promoted, the interval on the version
    r = register.promote(cfg, model_run(cfg, tiny, test_score=0.1),
                         evidence=seeds(0.35, 0.36, 0.37))
    assert (r["version"], r["decision"], champion(cfg)) == (3, "champion", 3)
    assert version_tags(cfg, 3)["promotion.interval"] == "+0.0500 [+0.0252, +0.0748] (n=3)"

    # one seed in common with the champion: no paired interval, no move
    r = register.promote(cfg, model_run(cfg, tiny), evidence={"2": 0.9, "7": 0.9})
    assert r["decision"] == "rejected" and "at least 2" in r["reason"]

    # another validation set (other tIoUs) is not comparable, unless forced
    other = cfg.replace("eval.tiou=[0.5]")
    r = register.promote(other, model_run(other, tiny), evidence=seeds(0.9, 0.9, 0.9))
    assert r["decision"] == "rejected" and "another validation set" in r["reason"]
    assert champion(cfg) == 3
    r = register.promote(other, model_run(other, tiny), evidence=seeds(0.1, 0.1, 0.1),
                         force=True)
    assert r["decision"] == "champion" and champion(cfg) == r["version"]


def test_promote_refuses_modelless_or_missing_runs(cfg: WorkflowConfig,
                                                   tiny: SimpleNamespace) -> None:
    with pytest.raises(TrackingError, match="no logged model"):
        register.promote(cfg, model_run(cfg, tiny, log_model=False), evidence=seeds(0.1, 0.2))
    with pytest.raises(TrackingError, match="not in the tracking store"):
        register.promote(cfg, "0" * 32, evidence=seeds(0.1, 0.2))


def test_matrix_evidence_reads_finished_seeds(tmp_path: Path) -> None:
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps({"rows": {"full": {"seeds": {
        "0": {"status": "ok", "val/average_mAP": 0.3, "test/average_mAP": 0.9},
        "1": {"status": "failed", "error": "x"},
        "2": {"status": "ok", "val/average_mAP": 0.4}}}}}))
    assert register.matrix_evidence(path) == {"0": 0.3, "2": 0.4}  # validation only
    with pytest.raises(TrackingError, match="no matrix row 'other'"):
        register.matrix_evidence(path, "other")


def test_promote_cli_writes_the_decision(cfg: WorkflowConfig, features: Path, tmp_path: Path,
                                         sqlite_overrides: list[str],
                                         tiny: SimpleNamespace) -> None:
    from workflows.cli import main

    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps({"run_id": model_run(cfg, tiny)}))
    matrix = tmp_path / "matrix.json"
    matrix.write_text(json.dumps({"rows": {"full": {"seeds": {
        "0": {"status": "ok", "val/average_mAP": 0.3},
        "1": {"status": "ok", "val/average_mAP": 0.4}}}}}))
    out = tmp_path / "register.json"
    params = tmp_path / "p.yaml"
    params.write_text("{}\n")
    argv = ["promote", "-p", str(params), "--run-file", str(run_file), "--matrix", str(matrix),
            "--out", str(out)]
    for o in [*TINY, *sqlite_overrides, f"data.root={features}"]:
        argv += ["-s", o]
    assert main(argv) == 0
    got = json.loads(out.read_text())
    assert got["decision"] == "champion" and got["evidence"] == {"0": 0.3, "1": 0.4}
    assert got["evidence_mean"] == pytest.approx(0.35)
    assert main([*argv[:3], "--run-file", str(tmp_path / "missing.json")]) == 2


@pytest.mark.slow
def test_server_tracking_registry_and_alias_load(mlflow_server: str, server_overrides: list[str],
                                                 features: Path, tiny: SimpleNamespace) -> None:
    """Everything a pipeline does, through a real `mlflow server` on 127.0.0.1."""
    cfg = load_config(None, [*TINY, *server_overrides, f"data.root={features}",
                             "tracking.artifact_root=.mlflow/artifacts"])
    assert tracking.resolve_tracking_uri(cfg) == mlflow_server
    run_id = model_run(cfg, tiny, test_score=0.4)
    cb = tracking.epoch_logger(run_id)
    cb(0, {"loss/cls": 0.7, "lr": 1e-4})
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.metrics["test/average_mAP"] == pytest.approx(0.4)
    assert run.data.metrics["loss/cls"] == pytest.approx(0.7)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    assert register.promote(cfg, run_id, evidence=seeds(0.2, 0.3))["decision"] == "champion"
    model, got_cfg, names = tracking.load_registered_model(
        f"models:/{cfg.tracking.registered_model}@{cfg.tracking.champion_alias}")
    assert names == tiny.CLASSES and got_cfg.data.root == str(features)
    x = torch.randn(1, 8, 12)
    assert model(x, torch.ones(1, 12, dtype=torch.bool)).cls_logits.shape == (1, 12, 2)
