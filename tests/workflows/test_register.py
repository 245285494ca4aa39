"""Registry promotion rule on a real SQLite store, and once against a real `mlflow server`."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow.tracking import MlflowClient

from amnet.evaluation.map import evaluate_detections
from workflows import register, tracking
from workflows.config import WorkflowConfig, load_config
from workflows.tracking import TrackingError


def trained_run(cfg: WorkflowConfig, tiny: SimpleNamespace, quality: float, *, fingerprint: str,
                log_model: bool = True) -> tuple[str, float]:
    """A run as train + evaluate leave it: a logged model, test metrics, fingerprint tag."""
    gt = tiny.gt_of(Path(cfg.data.root))
    preds = tiny.predictions(quality)
    result = evaluate_detections(gt, preds, subset="Test", tiou=cfg.eval.tiou)
    torch.manual_seed(int(quality * 100))
    with tracking.start_run(cfg, run_name=f"q{quality}") as run:
        if log_model:
            tracking.log_model(tiny.TinyDetector(), torch.randn(1, 8, 16), None, tiny.CLASSES, cfg)
        tracking.log_evaluation(result, preds, fingerprint=fingerprint)
    return run.info.run_id, result.average_mAP


def version_tags(cfg: WorkflowConfig, version: int) -> dict[str, str]:
    return MlflowClient().get_model_version(cfg.tracking.registered_model, str(version)).tags


def champion(cfg: WorkflowConfig) -> int:
    mv = MlflowClient().get_model_version_by_alias(cfg.tracking.registered_model,
                                                   cfg.tracking.champion_alias)
    return int(mv.version)


@pytest.mark.slow
def test_champion_moves_only_to_a_better_model_on_the_same_test_set(
        tmp_path: Path, sqlite_overrides: list[str], tiny: SimpleNamespace) -> None:
    root = tiny.make_feature_set(tmp_path / "features")
    cfg = load_config(None, [*sqlite_overrides, f"data.root={root}"])
    fp = tracking.test_set_fingerprint(cfg)

    first, s1 = trained_run(cfg, tiny, 0.8, fingerprint=fp)
    r = register.promote(cfg, first)
    assert (r["version"], r["decision"], champion(cfg)) == (1, "champion", 1)
    assert "no 'champion'" in version_tags(cfg, 1)["promotion.reason"]

    worse, s2 = trained_run(cfg, tiny, 0.6, fingerprint=fp)
    assert s2 < s1
    r = register.promote(cfg, worse)
    assert (r["version"], r["decision"], champion(cfg)) == (2, "rejected", 1)
    tags = version_tags(cfg, 2)
    assert tags["promotion.decision"] == "rejected"
    assert tags["promotion.champion_version"] == "1"
    assert float(tags["promotion.champion_score"]) == pytest.approx(s1)
    assert float(tags["score"]) == pytest.approx(s2, abs=1e-6)

    better, s3 = trained_run(cfg, tiny, 1.0, fingerprint=fp)
    assert s3 > s1
    r = register.promote(cfg, better)
    assert (r["version"], r["decision"], champion(cfg)) == (3, "champion", 3)
    assert f"> {s1:.4f}" in version_tags(cfg, 3)["promotion.reason"]

    # an equal score is not a win
    tie, _ = trained_run(cfg, tiny, 1.0, fingerprint=fp)
    assert register.promote(cfg, tie)["decision"] == "rejected"
    assert champion(cfg) == 3

    # a higher score on ANOTHER test set is not comparable: kept out unless forced
    other, _ = trained_run(cfg, tiny, 1.0, fingerprint="another-test-set")
    r = register.promote(cfg, other)
    assert r["decision"] == "rejected" and "another test set" in r["reason"]
    assert champion(cfg) == 3
    r = register.promote(cfg, other, force=True)
    assert r["decision"] == "champion" and champion(cfg) == r["version"]


def test_promote_refuses_unevaluated_or_modelless_runs(tmp_path: Path, sqlite_overrides: list[str],
                                                       tiny: SimpleNamespace) -> None:
    root = tiny.make_feature_set(tmp_path / "features")
    cfg = load_config(None, [*sqlite_overrides, f"data.root={root}"])
    with tracking.start_run(cfg, run_name="bare") as run:
        pass
    with pytest.raises(TrackingError, match="evaluate it on the test set"):
        register.promote(cfg, run.info.run_id)
    no_model, _ = trained_run(cfg, tiny, 0.8, fingerprint="x", log_model=False)
    with pytest.raises(TrackingError, match="no logged model"):
        register.promote(cfg, no_model)
    with pytest.raises(TrackingError, match="not in the tracking store"):
        register.promote(cfg, "0" * 32)


def test_promote_cli_writes_the_decision(tmp_path: Path, sqlite_overrides: list[str],
                                         tiny: SimpleNamespace) -> None:
    from workflows.cli import main

    root = tiny.make_feature_set(tmp_path / "features")
    overrides = [*sqlite_overrides, f"data.root={root}"]
    cfg = load_config(None, overrides)
    run_id, score = trained_run(cfg, tiny, 0.8, fingerprint=tracking.test_set_fingerprint(cfg))
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps({"run_id": run_id}))
    out = tmp_path / "register.json"
    params = tmp_path / "p.yaml"
    params.write_text("{}\n")
    argv = ["promote", "-p", str(params), "--run-file", str(run_file), "--out", str(out)]
    for o in overrides:
        argv += ["-s", o]
    assert main(argv) == 0
    got = json.loads(out.read_text())
    assert got["decision"] == "champion" and got["score"] == pytest.approx(score)
    assert main([*argv[:3], "--run-file", str(tmp_path / "missing.json")]) == 2


@pytest.mark.slow
def test_server_tracking_registry_and_alias_load(mlflow_server: str, server_overrides: list[str],
                                                 tmp_path: Path, tiny: SimpleNamespace) -> None:
    """Everything a pipeline does, through a real `mlflow server` on 127.0.0.1."""
    root = tiny.make_feature_set(tmp_path / "features")
    cfg = load_config(None, [*server_overrides, f"data.root={root}",
                             "tracking.artifact_root=.mlflow/artifacts"])
    assert tracking.resolve_tracking_uri(cfg) == mlflow_server
    fp = tracking.test_set_fingerprint(cfg)
    run_id, score = trained_run(cfg, tiny, 0.8, fingerprint=fp)
    cb = tracking.epoch_logger(run_id)
    cb(0, {"loss/cls": 0.7, "lr": 1e-4})
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.metrics["test/average_mAP"] == pytest.approx(score)
    assert run.data.metrics["loss/cls"] == pytest.approx(0.7)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    assert register.promote(cfg, run_id)["decision"] == "champion"
    model, got_cfg, names = tracking.load_registered_model(
        f"models:/{cfg.tracking.registered_model}@{cfg.tracking.champion_alias}")
    assert names == tiny.CLASSES and got_cfg.data.root == str(root)
    x = torch.randn(1, 8, 12)
    assert model(x, torch.ones(1, 12, dtype=torch.bool)).cls_logits.shape == (1, 12, 2)
