"""A clone restored with `dvc pull` has the run file but not the MLflow store it names.

``amnet evaluate`` then logs to a stand-in run (tagged with the recorded id, holding the model
again) and says so in one line; ``amnet promote`` registers that stand-in instead of demanding
a retrain. Real SQLite store, real AMNet checkpoint, the real CLI entry point.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow.tracking import MlflowClient

from amnet.engine import build_model, build_train_state, save_checkpoint
from workflows import tracking
from workflows.cli import main
from workflows.config import load_config

TINY = ["model.embed_dim=32", "model.n_heads=2", "model.fpn_levels=3", "model.gam_depth=1",
        "model.ame_layers=1", "model.head_layers=1",
        "model.regression_ranges=[[0,4],[4,8],[8,10000]]", "data.max_seq_len=64",
        "data.feature_dim=8", "data.num_classes=2", "data.stride=4", "data.window=16",
        "train.device=cpu"]
MISSING = "f" * 32  # a run id this store has never seen


@pytest.fixture
def clone(tmp_path: Path, sqlite_overrides: list[str], tiny: SimpleNamespace) -> SimpleNamespace:
    """What `dvc pull` leaves: features, a checkpoint and a run file naming a foreign run."""
    root = tiny.make_feature_set(tmp_path / "features")
    overrides = [*TINY, *sqlite_overrides, f"data.root={root}"]
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    model = build_model(cfg, 8, len(tiny.CLASSES))
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, build_train_state(cfg, model, 1), cfg, extra={"classes": tiny.CLASSES})
    run_file = tmp_path / "mlflow_run.json"
    run_file.write_text(json.dumps({"run_id": MISSING, "experiment_id": "7",
                                    "tracking_uri": "sqlite:////elsewhere/mlflow.db"}))
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    sets = [a for o in overrides for a in ("-s", o)]
    out = {k: tmp_path / f for k, f in {"metrics": "m/evaluate.json", "per_class": "m/pc.json",
                                        "predictions": "o/predictions.json",
                                        "plots": "plots"}.items()}
    evaluate = ["evaluate", "-p", str(params), *sets, "--checkpoint", str(ckpt),
                "--run-file", str(run_file), "--metrics", str(out["metrics"]),
                "--per-class", str(out["per_class"]), "--predictions", str(out["predictions"]),
                "--plots", str(out["plots"])]
    matrix = tmp_path / "matrix.json"  # the evidence the matrix stage would have written
    matrix.write_text(json.dumps({"rows": {"full": {"seeds": {
        "0": {"status": "ok", "val/average_mAP": 0.3},
        "1": {"status": "ok", "val/average_mAP": 0.4}}}}}))
    promote = ["promote", "-p", str(params), *sets, "--run-file", str(run_file),
               "--matrix", str(matrix), "--out", str(tmp_path / "register.json")]
    return SimpleNamespace(cfg=cfg, ckpt=ckpt, run_file=run_file, evaluate=evaluate,
                           promote=promote, out=out, tmp=tmp_path)


def _stand_ins(cfg: object) -> list:
    tracking.configure(cfg)  # type: ignore[arg-type]
    return tracking.stand_in_runs(cfg, MISSING)  # type: ignore[arg-type]


@pytest.mark.slow
def test_evaluate_and_promote_without_the_recorded_run(
        clone: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert main(clone.evaluate) == 0
    said = [r.getMessage() for r in caplog.records if MISSING in r.getMessage()]
    assert len(said) == 1, said
    assert str(clone.run_file) in said[0] and "not in the tracking store" in said[0]
    assert f"{tracking.TAG_SOURCE_RUN}={MISSING}" in said[0] and "a new run" in said[0]

    (run,) = _stand_ins(clone.cfg)
    tags = run.data.tags
    assert tags[tracking.TAG_SOURCE_RUN] == MISSING
    assert MISSING in tags["mlflow.note.content"]
    assert tags[tracking.TAG_MODEL_URI].startswith("models:/")  # the model rides along
    assert tags[tracking.TAG_FINGERPRINT] == tracking.test_set_fingerprint(clone.cfg)
    metrics = json.loads(clone.out["metrics"].read_text())
    assert run.data.metrics["test/average_mAP"] == pytest.approx(metrics["average_mAP"])

    # a second evaluate of the same checkpoint re-opens the stand-in instead of adding one
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(clone.evaluate) == 0
    said = [r.getMessage() for r in caplog.records if MISSING in r.getMessage()]
    assert len(said) == 1 and f"run {run.info.run_id}" in said[0], said
    assert [r.info.run_id for r in _stand_ins(clone.cfg)] == [run.info.run_id]

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(clone.promote) == 0
    got = json.loads((clone.tmp / "register.json").read_text())
    assert got["run_id"] == run.info.run_id and got["source_run_id"] == MISSING
    assert got["decision"] == "champion"
    mv = MlflowClient().get_model_version(clone.cfg.tracking.registered_model,
                                          str(got["version"]))
    assert mv.run_id == run.info.run_id
    said = [r.getMessage() for r in caplog.records if MISSING in r.getMessage()]
    assert len(said) == 1 and run.info.run_id in said[0], said


def test_promote_without_a_stand_in_says_what_to_run(
        clone: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert main(clone.promote) == 2
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert MISSING in line and "`amnet evaluate`" in line and "no run stands in" in line
    assert not (clone.tmp / "register.json").exists()


def test_a_broken_run_file_fails_before_inference(
        clone: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    clone.run_file.write_text(json.dumps({"run_id": ["not", "an", "id"]}))
    with caplog.at_level(logging.ERROR):
        assert main(clone.evaluate) == 2
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert str(clone.run_file) in line and "'run_id'" in line
    assert not any(p.exists() for p in clone.out.values())
    assert not (clone.tmp / "m").exists() and not (clone.tmp / "o").exists()
