"""`dvc repro` end to end in a temporary git repo: real DVC, real SQLite MLflow (the default
store location), a tiny synthetic config, a matrix of two rows x two seeds.

Checks that the numbers DVC holds (`dvc metrics show --json`) are the numbers MLflow holds,
that the matrix's cell runs are tagged, that the model is registered with the champion alias and
loads by alias without params files, and that a second `dvc repro` is a no-op.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from dvc_project import ROWS, SEEDS, dvc, make_project


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    project = make_project(tmp_path_factory.mktemp("project"))
    t0 = time.monotonic()
    proc = dvc(project, "repro")
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    print(f"\ntiny `dvc repro`: {seconds:.1f} s")
    return {"project": project, "repro": proc, "seconds": seconds}


def _mlflow(project: Path) -> Any:  # an MlflowClient on the project's default store
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project / '.mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(uri)


@pytest.mark.slow
def test_dvc_and_mlflow_hold_the_same_metrics(pipeline: dict) -> None:
    project = pipeline["project"]
    shown = json.loads(dvc(project, "metrics", "show", "--json").stdout)
    ws = next(iter(shown.values()))["data"]  # the workspace entry
    main = ws["metrics/evaluate.json"]["data"]
    assert main.pop("split") == "test"  # the file says which split it scores
    assert set(main) == {"mAP_0.3", "mAP_0.4", "mAP_0.5", "mAP_0.6", "mAP_0.7", "average_mAP"}
    preds = json.loads((project / "outputs/evaluate/predictions.json").read_text())
    assert sum(len(v) for v in preds["results"].values()) > 0

    client = _mlflow(project)
    run_id = json.loads((project / "outputs/train/mlflow_run.json").read_text())["run_id"]
    run = client.get_run(run_id)
    for k, v in main.items():
        assert run.data.metrics[f"test/{k}"] == v
    # the training run holds the per-epoch losses DVC's train metrics end with
    train = ws["metrics/train.json"]["data"]
    for k in ("loss/total", "loss/cls", "loss/reg", "loss/mat", "loss/trip", "lr"):
        hist = sorted(client.get_metric_history(run_id, k), key=lambda m: m.step)
        assert [m.step for m in hist] == [0, 1], k
        assert hist[-1].value == pytest.approx(train[k], rel=1e-12, abs=1e-15), k
    assert hist[0].value != hist[-1].value  # the cosine schedule moved the learning rate
    assert run.data.params["model.embed_dim"] == "16"
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    feat_md5 = next(o["md5"] for o in lock["stages"]["features"]["outs"])
    assert run.data.tags["dvc.features.md5"] == feat_md5
    # the runs table shows what the run read: one dataset per split, DVC's hash as digest
    inputs = {i.dataset.name: (i.dataset.digest, {t.key: t.value for t in i.tags})
              for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"synthetic:train", "synthetic:val", "synthetic:test"}
    assert {d for d, _ in inputs.values()} == {feat_md5}
    assert {n: t["mlflow.data.context"] for n, (_, t) in inputs.items()} == {
        "synthetic:train": "train", "synthetic:val": "val", "synthetic:test": "test"}
    # ... and the UI opens the experiments on their runs (not the GenAI overview)
    for name in ("amnet", "amnet-ablations"):
        exp = client.get_experiment_by_name(name)
        assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "val/average_mAP" in run.data.metrics  # chosen on validation, reported on test
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, text=True,
                          capture_output=True, check=True).stdout.strip()
    assert run.data.tags["git.commit"] == head
    arts = {a.path for a in client.list_artifacts(run_id, "eval")}
    assert {"eval/map_table.json", "eval/predictions.json", "eval/per_class_ap.json"} <= arts
    logged = json.loads(Path(client.download_artifacts(run_id, "eval/predictions.json"))
                        .read_text())
    assert logged == preds
    assert {a.path for a in client.list_artifacts(run_id, "plots")} >= {
        "plots/per_class_ap.png", "plots/pr_curves.png"}

    # the matrix: one child run per (row, seed) cell under one parent, same numbers
    exp = client.get_experiment_by_name("amnet-ablations")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("amnet.kind") == "matrix"]
    assert len(parents) == 1
    cells = {(r.data.tags["row"], r.data.tags["seed"]): r for r in runs
             if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert set(cells) == {(row, str(s)) for row in ROWS for s in SEEDS}
    summary = ws["metrics/matrix.json"]["data"]
    for row in ROWS:
        entry = summary["rows"][row]
        assert entry["n_seeds"] == len(SEEDS)
        for s in SEEDS:
            m = entry["seeds"][str(s)]
            assert m["status"] == "ok"
            for k in ("test/average_mAP", "val/average_mAP"):  # test reported, val held out
                assert cells[(row, str(s))].data.metrics[k] == m[k]
        run = cells[(row, "0")]
        assert run.data.params["model.ame"] == ("False" if row == "baseline" else "True")
        assert {i.dataset.name for i in run.inputs.dataset_inputs} == {
            "synthetic:train", "synthetic:val", "synthetic:test"}
    # the report's Table 2 lists both rows, mean over seeds in percent, with a verdict
    t2 = (project / "reports" / "table2.md").read_text()
    full = summary["rows"]["full"]["test/average_mAP"]
    assert f"{100 * full:.1f}" in t2 and "Baseline" in t2
    assert any(v in t2 for v in ("reproduces", "not significant", "contradicts"))
    assert (project / "reports" / "experiments.png").is_file()


@pytest.mark.slow
def test_registered_champion_loads_by_alias(pipeline: dict) -> None:
    import torch

    from workflows.tracking import load_registered_model

    project = pipeline["project"]
    decision = json.loads((project / "outputs" / "register.json").read_text())
    assert decision["decision"] == "champion" and decision["version"] == 1
    client = _mlflow(project)
    mv = client.get_model_version_by_alias("amnet-tal", "champion")
    assert int(mv.version) == 1 and mv.tags["promotion.decision"] == "champion"
    model, cfg, classes = load_registered_model("models:/amnet-tal@champion")
    assert len(classes) == 4 and cfg.model.embed_dim == 16
    out = model(torch.randn(1, 16, 64), torch.ones(1, 64, dtype=torch.bool))
    assert out.cls_logits.shape[-1] == 4


@pytest.mark.slow
def test_noop_repro_and_plots(pipeline: dict) -> None:
    project = pipeline["project"]
    t0 = time.monotonic()
    proc = dvc(project, "repro")
    noop = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout, proc.stdout
    print(f"\nno-op `dvc repro`: {noop:.1f} s")
    status = dvc(project, "status")
    assert "up to date" in status.stdout, status.stdout
    plots = dvc(project, "plots", "show", "--json")
    assert plots.returncode == 0, plots.stderr
    shown = json.loads(plots.stdout)
    assert not shown.get("errors"), shown["errors"]
    assert {"per-class AP (test)", "precision-recall (test, class mean)",
            "ablations, average mAP per row"} <= set(shown["data"])
    assert (project / "plots" / "evaluate" / "per_class_ap.png").is_file()


def _outputs(project: Path) -> dict[str, bytes]:
    """The text files a repro writes that numbers live in (metrics, tables, plot data)."""
    files = [p for d in ("metrics", "reports", "plots") for p in sorted((project / d).rglob("*"))
             if p.suffix in (".json", ".csv", ".md")]
    files.append(project / "outputs" / "evaluate" / "predictions.json")
    return {str(p.relative_to(project)): p.read_bytes() for p in files}


@pytest.mark.slow
def test_a_fresh_copy_reproduces_the_same_bytes(pipeline: dict, tmp_path: Path) -> None:
    """Same seed, same machine, another fresh copy: `dvc repro` writes identical metrics,
    reports and plot data (issue 11, item 6)."""
    first = _outputs(pipeline["project"])
    assert len(first) > 10 and "metrics/train.json" in first
    project = make_project(tmp_path / "again")
    proc = dvc(project, "repro")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    second = _outputs(project)
    assert second.keys() == first.keys()
    differ = [name for name in first if first[name] != second[name]]
    assert not differ, f"differ between two fresh repros: {differ}"


@pytest.mark.slow
def test_exp_run_set_param_override(pipeline: dict) -> None:
    """`dvc exp run -S params/<file>.yaml:++key=value` (add or override; `loss` is not in the
    tiny file) reruns the train stage with the override,
    and the MLflow run it logs carries the new value. Runs last: it changes the workspace."""
    project = pipeline["project"]
    proc = dvc(project, "exp", "run", "-S", "params/default.yaml:++loss.lambda1=2", "train")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    train_params = lock["stages"]["train"]["params"]["params/default.yaml"]
    assert train_params["loss"]["lambda1"] == 2
    run_id = json.loads((project / "outputs" / "train" / "mlflow_run.json").read_text())["run_id"]
    run = _mlflow(project).get_run(run_id)
    assert float(run.data.params["loss.lambda1"]) == 2.0
