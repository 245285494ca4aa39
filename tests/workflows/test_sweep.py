"""Ray Tune + Optuna + ASHA sweeps on a real local Ray cluster (2 CPUs, dashboard on).

Both trial kinds run: in-process trials (with an injected crash, a Ctrl-C and ``--resume``)
and a TorchTrainer with 2 workers inside each trial. MLflow is a real SQLite store.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")  # shorter report polling

from amnet.data.synthetic import generate_synthetic
from amnet.errors import ConfigError
from workflows import ray_utils
from workflows.config import WorkflowConfig, load_config
from workflows.sweep import (
    METRIC,
    Dim,
    SweepError,
    optuna_study,
    run_sweep,
    search_dims,
    trial_base,
    tune_space,
    with_values,
    write_best_params,
)

REPO = Path(__file__).resolve().parents[2]


def tiny_overrides(root: Path, storage: Path) -> list[str]:
    return [f"data.root={root}", "data.feature_dim=32", "data.num_classes=4",
            "data.max_seq_len=64", "data.synthetic.n_train=8", "data.synthetic.n_test=4",
            "data.synthetic.num_classes=4", "data.synthetic.feature_dim=32",
            "data.synthetic.duration_scale=0.1",
            "model.fpn_levels=3", "model.embed_dim=32", "model.n_heads=2",
            "model.regression_ranges=[[0,4],[4,8],[8,10000]]",
            "train.batch_size=4", "train.lr=0.001", "train.warmup_epochs=0",
            "ray.local_cpus=2", f"ray.storage_path={storage}",
            "sweep.epochs=2", "sweep.gam_depth=[1, 2]", "sweep.max_concurrent=2"]


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep") / "features"
    cfg = load_config(None, tiny_overrides(root, root.parent / "ray"))
    generate_synthetic(cfg.data.synthetic, root, stride=cfg.data.stride, window=cfg.data.window)
    return root


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    """A sweep params file on top of the project's default.yaml (as params/sweep.yaml is)."""
    path = tmp_path / "params" / "sweep.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"base": str(REPO / "params" / "default.yaml")}))
    return path


@pytest.fixture
def make_cfg(features: Path, params_file: Path, sqlite_overrides: list[str], tmp_path: Path):
    def make(*extra: str) -> WorkflowConfig:
        return load_config(params_file, [*tiny_overrides(features, tmp_path / "ray"),
                                         *sqlite_overrides,
                                         f"sweep.best_params_out={tmp_path / 'best.yaml'}",
                                         *extra])
    return make


@pytest.fixture(scope="module")
def ray_cluster(features: Path) -> Iterator[None]:
    import ray

    cfg = load_config(None, tiny_overrides(features, features.parent / "ray"))
    started = ray_utils.init_ray(cfg, dashboard=True)  # dashboard: Train-in-Tune needs it
    yield
    if started:
        ray.shutdown()


# --------------------------------------------------------------------------- no Ray

def test_trial_values_go_through_config_validation() -> None:
    base = load_config(None)
    cfg = with_values(base, {"train.lr": 1e-05, "model.gam_depth": 3, "loss.lambda1": 0.5},
                      "t")
    assert (cfg.train.lr, cfg.model.gam_depth, cfg.loss.lambda1) == (1e-05, 3, 0.5)
    with pytest.raises(ConfigError, match=r"'loss\.lambda1' must be >= 0"):
        with_values(base, {"loss.lambda1": -0.1}, "t")
    dims = search_dims(base.replace("sweep.lr=[0.0001, 0.001]"))
    assert [d.key for d in dims] == ["loss.lambda1", "loss.lambda2", "model.gam_depth", "train.lr"]
    space = tune_space(dims)
    assert space["model.gam_depth"].lower == 1 and space["model.gam_depth"].upper == 4
    assert space["train.lr"].lower == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="log-uniform bounds must be > 0"):
        search_dims(base.replace("sweep.weight_decay=[0.0, 0.1]"))


def test_sweeps_select_on_the_validation_split() -> None:
    assert METRIC == "val/average_mAP"  # what ASHA stops on and the best config maximises
    base = load_config(None)
    assert trial_base(base).train.eval_every == 1
    with pytest.raises(SweepError, match=r"data\.val_fraction=0"):
        trial_base(base.replace("data.val_fraction=0"))


def test_best_params_file_is_a_train_params_file(tmp_path: Path, params_file: Path) -> None:
    out = tmp_path / "params" / "best.yaml"
    write_best_params(out, {"loss.lambda1": 1.25, "model.gam_depth": 3},
                      params_path=str(params_file), comment="test")
    text = out.read_text()
    assert text.startswith("# test\n")
    assert yaml.safe_load(text)["base"] == "sweep.yaml"  # relative to the best file
    cfg = load_config(out)
    default = load_config(REPO / "params" / "default.yaml")
    assert (cfg.loss.lambda1, cfg.model.gam_depth) == (1.25, 3)
    assert cfg.train.epochs == default.train.epochs  # the rest: the sweep file (on default)


def test_optuna_study_rebuilt_from_trial_rows() -> None:
    import optuna

    dims = [Dim("loss.lambda1", 0.5, 2.0), Dim("model.gam_depth", 1, 3, integer=True)]
    rows = [{"trial": "a", "status": "completed", "loss.lambda1": 1.0, "model.gam_depth": 2,
             METRIC: 0.3},
            {"trial": "b", "status": "failed", "loss.lambda1": 1.9, "model.gam_depth": 1,
             METRIC: math.nan},
            {"trial": "c", "status": "early_stopped", "loss.lambda1": 0.7,
             "model.gam_depth": 3, METRIC: 0.1}]
    study = optuna_study(rows, dims)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                      optuna.trial.TrialState.COMPLETE]
    assert study.best_trial.params == {"loss.lambda1": 1.0, "model.gam_depth": 2}


def test_best_config_keeps_integer_keys_integer_after_a_failed_trial(
        tmp_path: Path, params_file: Path, sqlite_overrides: list[str]) -> None:
    # a trial that crashed before Tune recorded its config has no sampled values: pandas then
    # holds the GAM depth column as float, and 2.0 is not an int to the config
    from workflows import tracking
    from workflows.sweep.summary import summarise

    cfg = load_config(params_file, [*sqlite_overrides, "sweep.num_samples=3",
                                    f"sweep.best_params_out={tmp_path / 'best.yaml'}"])
    dims = [Dim("loss.lambda1", 0.5, 2.0), Dim("model.gam_depth", 1, 3, integer=True)]
    rows = [{"trial": "trial_a", "status": "failed", "epochs": 0, "loss.lambda1": None,
             "model.gam_depth": None, METRIC: math.nan, "error": "boom"},
            {"trial": "trial_b", "status": "completed", "epochs": 2, "loss.lambda1": 1.5,
             "model.gam_depth": 2, METRIC: 0.3, "error": ""},
            {"trial": "trial_c", "status": "completed", "epochs": 2, "loss.lambda1": 0.7,
             "model.gam_depth": 3, METRIC: 0.1, "error": ""}]
    with tracking.start_run(cfg, run_name="parent") as run:
        res = summarise(cfg, rows, dims, "s", run.info.run_id, str(params_file), 1.0)
    assert res["best"] == {"loss.lambda1": 1.5, "model.gam_depth": 2}
    assert type(res["best"]["model.gam_depth"]) is int
    assert load_config(res["best_params_path"]).model.gam_depth == 2


def test_cli_resume_of_an_unknown_sweep_is_one_clear_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from workflows.cli import main

    code = main(["sweep", "-p", str(REPO / "params" / "sweep.yaml"), "-s",
                 f"ray.storage_path={tmp_path}", "--resume", "no-such-sweep"])
    assert code == 2  # the CLI's AmnetError path: one line, no traceback, nothing started
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"cannot resume 'no-such-sweep': {tmp_path / 'no-such-sweep' / 'amnet_sweep.json'} "
        f"not found (expected the folder of a sweep started by `amnet sweep` under {tmp_path})"]


# --------------------------------------------------------------------------- Ray

class InterruptOnce:
    """A Tune callback that presses Ctrl-C (SIGINT to this process) after the first trial.

    Tune pickles callbacks into the experiment and restores them on resume, so "once" is a
    marker file, not an attribute.
    """

    def __new__(cls, marker: Path):  # built lazily: ray.tune.Callback is imported by Ray
        from ray.tune import Callback

        class _Interrupt(Callback):
            def on_trial_complete(self, iteration: int, trials: list, trial: object,
                                  **info: object) -> None:
                if not marker.exists():
                    marker.touch()
                    os.kill(os.getpid(), signal.SIGINT)

        return _Interrupt()


def _children(uri: str, parent_id: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(search_all_experiments=True,
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")


def test_in_process_sweep_survives_a_crash_and_resumes_after_ctrl_c(
        make_cfg, ray_cluster: None, params_file: Path, tmp_path: Path,
        mlflow_sqlite_uri: str) -> None:
    # λ1 ∈ [-1.5, 2]: with sweep.seed=0 TPE's start-up samples put one λ1 below 0, which the
    # config rejects ('loss.lambda1' must be >= 0): that trial fails, the sweep goes on.
    cfg = make_cfg("sweep.num_samples=4", "sweep.lambda1=[-1.5, 2.0]")
    best_file = tmp_path / "best.yaml"

    first = run_sweep(cfg, params_path=str(params_file),
                      callbacks=[InterruptOnce(tmp_path / "interrupted")])
    assert first.interrupted
    assert not best_file.exists(), "an interrupted sweep must not write the best config"
    done_before = first.trials[first.trials["status"].isin(["completed", "early_stopped"])]
    assert len(done_before) >= 1

    second = run_sweep(cfg, params_path=str(params_file), resume=first.name)
    t = second.trials.set_index("trial")
    assert not second.interrupted and second.parent_run_id == first.parent_run_id
    assert len(t) == 4
    failed = t[t["status"] == "failed"]
    assert len(failed) >= 1 and (failed["loss.lambda1"] < 0).all()
    assert failed["error"].str.contains("must be >= 0").all()
    ok = t[t["status"] != "failed"]
    assert len(ok) >= 2 and (ok["loss.lambda1"] >= 0).all()
    assert set(ok["status"]) <= {"completed", "early_stopped"}
    for trial, row in done_before.set_index("trial").iterrows():  # not re-run on resume
        assert t.loc[trial, "epochs"] == row["epochs"]
        assert t.loc[trial, METRIC] == row[METRIC]

    # best config: the non-failed trial with the highest last average mAP, as a params file
    best_trial = ok[METRIC].idxmax()
    assert second.best == pytest.approx({k: ok.loc[best_trial, k] for k in second.best})
    assert second.best_params_path == best_file
    best_cfg = load_config(best_file)
    assert best_cfg.loss.lambda1 == pytest.approx(second.best["loss.lambda1"])
    assert best_cfg.loss.lambda2 == pytest.approx(second.best["loss.lambda2"])
    assert best_cfg.model.gam_depth == second.best["model.gam_depth"]

    # MLflow: one parent, one child per trial with λ1, λ2, GAM depth and per-epoch mAP
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_sqlite_uri)
    kids = _children(mlflow_sqlite_uri, second.parent_run_id)
    assert len(kids) == 4, "a resumed sweep reuses its trials' child runs"
    by_trial = {f"trial_{r['tags.amnet.sweep_trial_id']}": r for _, r in kids.iterrows()}
    assert set(by_trial) == set(t.index)
    for trial, run in by_trial.items():
        for key in ("loss.lambda1", "loss.lambda2"):  # the sampled values, failed or not
            assert float(run[f"params.trial.{key}"]) == pytest.approx(t.loc[trial, key])
        assert run["params.trial.model.gam_depth"] == str(t.loc[trial, "model.gam_depth"])
        if t.loc[trial, "status"] == "failed":
            assert run["status"] == "FAILED" and "must be >= 0" in run["tags.amnet.error"]
            continue
        assert run["status"] == "FINISHED"
        for key in ("loss.lambda1", "loss.lambda2"):  # ... and the config the trial trained
            assert float(run[f"params.{key}"]) == pytest.approx(t.loc[trial, key])
        assert run["params.model.gam_depth"] == str(t.loc[trial, "model.gam_depth"])
        steps = [m.step for m in client.get_metric_history(run["run_id"], METRIC)]
        assert steps == list(range(int(t.loc[trial, "epochs"])))
        assert run[f"metrics.{METRIC}"] == pytest.approx(t.loc[trial, METRIC])
        # a trial is scored on the validation split only: no test number can feed the choice
        logged = client.get_run(run["run_id"]).data.metrics
        assert not [k for k in logged if k.startswith("test/") or k.startswith("mAP_")
                    or k == "average_mAP"]
    parent = client.get_run(second.parent_run_id)
    assert float(parent.data.params["best.loss.lambda1"]) == pytest.approx(
        second.best["loss.lambda1"])
    assert parent.data.metrics[f"best/{METRIC}"] == pytest.approx(second.best_metric)
    arts = {a.path for a in client.list_artifacts(second.parent_run_id, "sweep")}
    assert {"sweep/trials.json", "sweep/trials.csv", "sweep/best.yaml",
            "sweep/optimization_history.png", "sweep/param_importances.png"} <= arts


def test_sweep_with_a_torch_trainer_in_each_trial(
        make_cfg, ray_cluster: None, params_file: Path, tmp_path: Path,
        mlflow_sqlite_uri: str) -> None:
    # 2 workers x 1 CPU per trial on 2 CPUs: the trials must run one after the other, the
    # first one's placement group released before the second starts.
    cfg = make_cfg("sweep.num_samples=2", "sweep.workers_per_trial=2")
    res = run_sweep(cfg, params_path=str(params_file))
    t = res.trials.set_index("trial")
    assert not res.interrupted and len(t) == 2
    assert (t["status"] != "failed").all(), t["error"].tolist()
    for trial in t.index:  # each trial ran its own Ray Train run (named after the trial)
        inner = Path(cfg.ray.storage_path) / f"{res.name}-{trial.removeprefix('trial_')}"
        assert (inner / "checkpoint_manager_snapshot.json").is_file()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_sqlite_uri)
    kids = _children(mlflow_sqlite_uri, res.parent_run_id)
    assert len(kids) == 2
    for _, run in kids.iterrows():  # rank 0 logged each epoch into the trial's child run
        trial = f"trial_{run['tags.amnet.sweep_trial_id']}"
        steps = [m.step for m in client.get_metric_history(run["run_id"], METRIC)]
        n = int(t.loc[trial, "epochs"])  # Tune's count; the workers may run ahead of ASHA's
        assert steps[:n] == list(range(n)) and len(set(steps)) == len(steps)  # stop decision
        assert run["params.sweep.workers_per_trial"] == "2"
    assert res.best_params_path is not None and load_config(res.best_params_path)
