"""The ablation matrix on a real local Ray cluster (2 CPUs) and a real SQLite MLflow store, on a
tiny synthetic config (seconds per cell): cells run as tagged child runs of one parent, a
crashing cell is recorded while the rest finish, and a rerun resumes without redoing finished
cells."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dvc_project import TINY, _merge
from mlflow.tracking import MlflowClient

from amnet.data.synthetic import generate_synthetic
from workflows import ray_utils
from workflows.config import load_config
from workflows.matrix.runner import RESULT_FILE, cell_dir, run_matrix
from workflows.matrix.spec import build_spec, training_key

REPO = Path(__file__).resolve().parents[2]
SEEDS = [0, 1]
ROWS = {
    "baseline": {"tables": ["table2"], "label": "Baseline",
                 "overrides": ["model.ame=false", "model.gam=false",
                               "model.self_attention=false", "model.matching_head=false",
                               "infer.confidence=sigmoid"]},
    "full": {"tables": ["table2", "table4"], "label": "AMNet", "overrides": []},
    # the same config as `full` (λ1 is 1 by default): one cell, not two
    "lam_1_1": {"tables": ["table5"], "label": "λ1=1 λ2=1", "overrides": ["loss.lambda1=1"]},
    # scoring only (infer.*): trained once with `full`, scored under its own settings
    "full_top3": {"tables": ["variants"], "label": "top 3",
                  "overrides": ["infer.max_detections=3"]},
    # valid-looking, fails inside the cell: the features are 16-d
    "broken": {"tables": ["table2"], "label": "broken", "overrides": ["data.feature_dim=17"]},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mlflow_sqlite_uri: str) -> dict:
    root = tmp_path_factory.mktemp("matrix")
    default = yaml.safe_load((REPO / "params" / "default.yaml").read_text())
    params = _merge(default, json.loads(json.dumps(TINY)))
    params["data"]["root"] = str(root / "features")
    params["tracking"].update(tracking_uri=mlflow_sqlite_uri, experiment="matrix_test",
                              artifact_root=str(root / "artifacts"))
    # a generous worker-group start-up: two TorchTrainers start at once on a loaded machine
    params["ray"].update(local_cpus=2, storage_path=str(root / "ray"), startup_timeout_s=120)
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    rows_file = {"matrix": {"preset": "tiny", "seeds": SEEDS, "cpus_per_cell": 1},
                 "presets": {"tiny": [r for r in ROWS if r != "full_top3"],
                             "ok": ["baseline", "full"], "shared": ["full", "full_top3"],
                             "alone": ["full_top3"]},
                 "common": ["train.epochs=2", "train.eval_every=0"], "rows": ROWS}
    (root / "ablations.yaml").write_text(yaml.safe_dump(rows_file, allow_unicode=True))
    cfg = load_config(root / "params.yaml")
    generate_synthetic(cfg.data.synthetic, cfg.data.root, stride=cfg.data.stride,
                       window=cfg.data.window)
    return {"root": root, "params": root / "params.yaml", "rows": root / "ablations.yaml",
            "uri": mlflow_sqlite_uri, "out": root / "out"}


@pytest.fixture(scope="module")
def ray_cluster(project: dict) -> Iterator[None]:
    import ray

    owned = ray_utils.init_ray(load_config(project["params"]))
    yield
    if owned:
        ray.shutdown()


def test_rows_that_resolve_to_one_config_share_a_cell(project: dict) -> None:
    spec = build_spec(project["params"], project["rows"])
    assert spec.rows == [r for r in ROWS if r != "full_top3"] and spec.seeds == SEEDS
    assert len(spec.cells) == 3 * len(SEEDS)  # lam_1_1 is full's cell
    for seed in SEEDS:
        assert spec.by_row_seed[("lam_1_1", seed)] == spec.by_row_seed[("full", seed)]
        assert spec.by_row_seed[("baseline", seed)] != spec.by_row_seed[("full", seed)]
    full = spec.cell(spec.by_row_seed[("full", 0)])
    assert full.rows == ["full", "lam_1_1"] and full.cfg.train.seed == 0
    assert full.cfg.tracking.experiment == "matrix_test-ablations"
    # the key is what the cell computes: another tracking store or Ray sizing is the same cell
    other = build_spec(project["params"], project["rows"],
                       overrides=["tracking.experiment=x", "ray.local_cpus=8"])
    assert [c.key for c in other.cells] == [c.key for c in spec.cells]
    longer = build_spec(project["params"], project["rows"], overrides=["train.epochs=3"])
    assert not {c.key for c in longer.cells} & {c.key for c in spec.cells}


@pytest.mark.slow
def test_matrix_runs_tags_records_a_crash_and_resumes(project: dict, ray_cluster: None,
                                                      capsys: pytest.CaptureFixture) -> None:
    from workflows.cli import main

    out, metrics = project["out"], project["root"] / "matrix.json"
    argv = ["matrix", "-q", "-p", str(project["params"]), "--ablations", str(project["rows"]),
            "--out", str(out), "--metrics", str(metrics)]
    assert main(argv) == 1  # a cell failed: non-zero, after every cell ran
    err = capsys.readouterr().err
    assert "2 of 6 cell(s) failed: broken seed 0; broken seed 1" in err

    spec = build_spec(project["params"], project["rows"])
    results = {c.key: json.loads((cell_dir(out, c.key) / RESULT_FILE).read_text())
               for c in spec.cells}
    ok = {k: r for k, r in results.items() if r["status"] == "ok"}
    failed = {k: r for k, r in results.items() if r["status"] == "failed"}
    assert len(ok) == 4 and len(failed) == 2
    assert {r["rows"][0] for r in failed.values()} == {"broken"}
    for r in failed.values():
        assert "\n" not in r["error"] and "17" in r["error"], r["error"]
    for r in ok.values():
        assert r["torch_threads"] == 1  # a cell's torch threads = its CPU share
        assert 0 <= r["metrics"]["test/average_mAP"] <= 1
        assert "val/average_mAP" in r["metrics"]
        assert (cell_dir(out, r["key"]) / "per_class_ap.json").is_file()

    summary = json.loads(metrics.read_text())
    assert summary["failed_cells"] == 2 and summary["seeds"] == SEEDS
    full = summary["rows"]["full"]
    assert full["n_seeds"] == 2 and set(full["seeds"]) == {"0", "1"}
    assert summary["rows"]["lam_1_1"]["seeds"] == full["seeds"]  # one cell, two rows
    vals = [full["seeds"][s]["test/average_mAP"] for s in ("0", "1")]
    assert full["test/average_mAP"] == pytest.approx(sum(vals) / 2)
    assert summary["rows"]["broken"]["n_seeds"] == 0
    assert "17" in summary["rows"]["broken"]["seeds"]["0"]["error"]

    # MLflow: one parent, one child run per cell, tagged so the UI groups by row
    client = MlflowClient(project["uri"])
    exp = client.get_experiment_by_name("matrix_test-ablations")
    parent_id = json.loads((out / "mlflow_parent.json").read_text())["run_id"]
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 6
    by_cell = {(c.data.tags["row"], c.data.tags["seed"]): c for c in children}
    assert set(by_cell) == {(r, str(s)) for r in ("baseline", "full", "broken") for s in SEEDS}
    f0 = by_cell[("full", "0")]
    assert f0.data.tags["rows"] == "full,lam_1_1"
    assert f0.data.tags["tables"] == "table2,table4,table5"
    assert f0.info.status == "FINISHED"
    key0 = spec.by_row_seed[("full", 0)]
    assert f0.data.metrics["test/average_mAP"] == results[key0]["metrics"]["test/average_mAP"]
    assert f0.data.params["train.seed"] == "0"
    broken = by_cell[("broken", "1")]
    assert broken.info.status == "FAILED" and "17" in broken.data.tags["amnet.error"]
    assert client.get_run(parent_id).data.tags["matrix.failed_cells"].count(",") == 1

    # resume: a rerun redoes only the failed cells
    before = {k: (cell_dir(out, k) / RESULT_FILE).read_bytes() for k in ok}
    again = run_matrix(spec, out)
    assert sorted(again.ran) == sorted(failed) and sorted(again.skipped) == sorted(ok)
    assert {k: (cell_dir(out, k) / RESULT_FILE).read_bytes() for k in ok} == before
    assert again.parent_run_id == parent_id  # the same parent run, re-opened
    # ... and a deleted result reruns that cell only (the preset without the broken row)
    gone = spec.by_row_seed[("baseline", 1)]
    shutil.rmtree(cell_dir(out, gone))
    third = run_matrix(build_spec(project["params"], project["rows"], preset="ok"), out)
    assert third.ran == [gone] and not third.failed and len(third.skipped) == 3
    redone = json.loads((cell_dir(out, gone) / RESULT_FILE).read_text())
    assert redone["metrics"] == results[gone]["metrics"]  # same seed, same numbers


def test_rows_differing_only_in_scoring_train_once(project: dict, ray_cluster: None,
                                                   tmp_path: Path) -> None:
    """`full_top3` differs from `full` in infer.* only: one task trains once and scores both;
    its numbers equal those of `full_top3` trained alone (same seed), its MLflow run has no
    epoch curve and names the training cell."""
    spec = build_spec(project["params"], project["rows"], preset="shared", seeds=[0])
    full, top3 = spec.by_row_seed[("full", 0)], spec.by_row_seed[("full_top3", 0)]
    assert full != top3 and training_key(spec.cell(full).cfg) == training_key(
        spec.cell(top3).cfg)
    res = run_matrix(spec, tmp_path / "shared")
    assert not res.failed, {k: r["error"] for k, r in res.results.items()}
    assert res.results[top3]["trained_in"] == full and "trained_in" not in res.results[full]
    preds = json.loads((cell_dir(tmp_path / "shared", top3) / "predictions.json").read_text())
    assert max(len(v) for v in preds["results"].values()) == 3  # scored with its own infer
    alone = run_matrix(build_spec(project["params"], project["rows"], preset="alone",
                                  seeds=[0]), tmp_path / "alone")
    assert alone.results[top3]["metrics"] == res.results[top3]["metrics"]
    assert "val/average_mAP" in res.results[top3]["metrics"]
    client = MlflowClient(project["uri"])
    run = client.get_run(res.results[top3]["run_id"])
    assert run.data.tags["amnet.trained_in"] == full
    assert "loss/total" not in run.data.metrics and "val/average_mAP" in run.data.metrics
    assert "loss/total" in client.get_run(res.results[full]["run_id"]).data.metrics


def test_kept_models_are_scored_by_a_later_scoring_only_row(project: dict, ray_cluster: None,
                                                            tmp_path: Path) -> None:
    """matrix.keep_models: each training leaves an inference-only model.pt; a scoring-only row
    run later scores it (no training) with the numbers a shared training gives; a damaged
    model.pt costs a training, not the cell."""
    from amnet.engine import load_checkpoint, load_model_for_inference
    from amnet.errors import ModelLoadError
    from workflows.matrix.runner import MODEL_FILE

    rows = yaml.safe_load(project["rows"].read_text())
    rows["matrix"]["keep_models"] = True
    rows_file = tmp_path / "ablations.yaml"
    rows_file.write_text(yaml.safe_dump(rows, allow_unicode=True))
    out = tmp_path / "out"
    ok = build_spec(project["params"], rows_file, preset="ok", seeds=[0])
    first = run_matrix(ok, out)
    shared = build_spec(project["params"], rows_file, preset="shared", seeds=[0])
    full, top3 = shared.by_row_seed[("full", 0)], shared.by_row_seed[("full_top3", 0)]
    assert not first.failed and full in first.ran
    kept = cell_dir(out, full) / MODEL_FILE
    model, _, classes = load_model_for_inference(kept)
    assert classes and not model.training
    with pytest.raises(ModelLoadError, match="inference-only"):
        load_checkpoint(kept)
    later = run_matrix(shared, out)
    assert later.ran == [top3] and later.results[top3]["trained_in"] == full
    run = MlflowClient(project["uri"]).get_run(later.results[top3]["run_id"])
    assert "loss/total" not in run.data.metrics
    together = run_matrix(build_spec(project["params"], project["rows"], preset="shared",
                                     seeds=[0]), tmp_path / "together")
    assert later.results[top3]["metrics"] == together.results[top3]["metrics"]
    # a foreign or damaged kept model: the row trains instead, with the same numbers
    base = cell_dir(out, ok.by_row_seed[("baseline", 0)]) / MODEL_FILE
    for content in (base.read_bytes(), b"not a checkpoint"):  # the baseline's model, garbage
        assert base != kept and base.is_file()
        kept.write_bytes(content)
        shutil.rmtree(cell_dir(out, top3))
        again = run_matrix(shared, out)
        assert again.ran == [top3] and "trained_in" not in again.results[top3]
        assert again.results[top3]["metrics"] == together.results[top3]["metrics"]


@pytest.mark.slow
def test_a_cell_as_a_torch_trainer_does_not_deadlock(project: dict, ray_cluster: None,
                                                     tmp_path: Path) -> None:
    """``matrix.workers_per_cell: 1``: two cells, each a TorchTrainer of one 1-CPU worker, on
    2 CPUs: the cell tasks hold no CPU, so both worker groups fit and both cells finish."""
    rows = yaml.safe_load(project["rows"].read_text())
    rows["matrix"].update(workers_per_cell=1, preset="ok")
    rows_file = tmp_path / "ablations.yaml"
    rows_file.write_text(yaml.safe_dump(rows, allow_unicode=True))
    spec = build_spec(project["params"], rows_file, seeds=[0],
                      overrides=[f"ray.storage_path={tmp_path / 'ray'}"])
    res = run_matrix(spec, tmp_path / "out")
    assert not res.failed, {k: r["error"] for k, r in res.results.items()}
    assert len(res.ran) == 2
    for r in res.results.values():
        assert 0 <= r["metrics"]["test/average_mAP"] <= 1 and "val/average_mAP" in r["metrics"]
    child = MlflowClient(project["uri"]).get_run(res.results[res.ran[0]]["run_id"])
    assert "loss/total" in child.data.metrics  # rank 0 logged the epochs into the cell's run
