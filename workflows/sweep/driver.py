"""Running a sweep: Ray Tune + Optuna (TPE) + ASHA, the MLflow parent run, ``--resume``.

Each trial trains ``sweep.epochs`` epochs and reports ``val/average_mAP`` (the held-out
validation split, never Test) every epoch, which ASHA uses to stop weak trials early. With
``sweep.workers_per_trial > 1`` (a TorchTrainer inside each trial) Ray's dashboard is started
so the placement groups of trials ASHA stops are removed, and concurrency is capped so the
running trials' worker groups fit.

MLflow: one parent run per sweep; every trial is a child run (``parent_run_id``) with its full
config as params, the sampled values as ``trial.*`` params and per-epoch metrics; at the end
each child is tagged with its trial's final status. ``--resume NAME`` continues an interrupted
sweep (``Tuner.restore``): finished and failed trials are kept as they are, unfinished ones
continue from their last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amnet.io import read_json_object, write_json
from workflows import ray_utils
from workflows.config import WorkflowConfig
from workflows.sweep.space import METRIC, MODE, Dim, SweepError, search_dims, trial_base, tune_space
from workflows.sweep.summary import summarise
from workflows.sweep.trial import TAG_TRIAL, run_trial

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["STATE_FILE", "SweepResult", "run_sweep", "saved_trial_status"]

STATE_FILE = "amnet_sweep.json"   # parent run id + params path, next to Tune's experiment state


@dataclass
class SweepResult:
    name: str
    path: str                         # Tune experiment folder (give it to --resume)
    parent_run_id: str
    trials: pd.DataFrame              # one row per trial: status, sampled values, metrics
    best: dict[str, Any] | None       # sampled values of the best trial
    best_metric: float | None
    best_params_path: Path | None
    interrupted: bool


def saved_trial_status(path: Path) -> dict[str, str]:
    """Trial id → status in the experiment state Tune saved (what ``--resume`` will see).

    After an interruption the in-memory ResultGrid shows stopped trials as TERMINATED; the
    saved state has them PENDING (to be continued), so read it from disk.
    """
    from ray.tune import ExperimentAnalysis

    return {t.trial_id: t.status for t in ExperimentAnalysis(str(path)).trials}


def _trial_rows(results: Any, dims: Sequence[Dim], epochs: int,
                tune_status: dict[str, str]) -> list[dict[str, Any]]:
    """One row per trial: status, sampled values, last and best validation mAP, error."""
    rows = []
    for r in results:
        m = r.metrics or {}
        it = int(m.get("training_iteration", 0) or 0)
        trial = Path(r.path).name
        st = tune_status.get(trial.removeprefix("trial_"), "TERMINATED")
        if r.error is not None or st == "ERROR":
            status = "failed"
        elif st != "TERMINATED":
            status = "unfinished"
        else:
            status = "completed" if it >= epochs else "early_stopped"
        df = r.metrics_dataframe
        best = (float(df[METRIC].max()) if df is not None and METRIC in df
                and df[METRIC].notna().any() else math.nan)
        row = {"trial": trial, "status": status, "epochs": it}
        row.update({d.key: (r.config or {}).get(d.key) for d in dims})
        row.update({METRIC: float(m.get(METRIC, math.nan)), f"best_{METRIC}": best,
                    "loss/total": float(m.get("loss/total", math.nan)),
                    "error": ray_utils.error_summary(r.error) if r.error is not None else ""})
        rows.append(row)
    return rows


def _close_children(cfg: WorkflowConfig, parent_run_id: str, rows: list[dict[str, Any]]) -> None:
    """Tag every child run with its trial's final status; end runs a stopped actor left open."""
    from mlflow.tracking import MlflowClient

    from workflows import tracking

    client = MlflowClient()
    exp_id = tracking.get_or_create_experiment(cfg)
    status = {r["trial"]: r["status"] for r in rows}
    for run in client.search_runs([exp_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"):
        st = status.get(f"trial_{run.data.tags.get(TAG_TRIAL, '')}", "unfinished")
        client.set_tag(run.info.run_id, "amnet.trial_status", st)
        if st == "early_stopped":
            client.set_tag(run.info.run_id, "amnet.early_stopped", "true")
        if run.info.status == "RUNNING" and st != "unfinished":  # unfinished: --resume goes on
            client.set_terminated(run.info.run_id, "FAILED" if st == "failed" else "FINISHED")


@contextlib.contextmanager
def _parent_run(cfg: WorkflowConfig, name: str, state_file: Path, resume: bool) -> Iterator[str]:
    from workflows import tracking

    run_id = (read_json_object(state_file, missing_ok=False) or {})["parent_run_id"] \
        if resume else None
    tags = {"amnet.kind": "sweep", "ray.run_name": name}
    with tracking.start_run(cfg, run_name=name, tags=tags, run_id=run_id) as run:
        yield run.info.run_id


def run_sweep(cfg: WorkflowConfig, *, params_path: str | None = None, resume: str | None = None,
              callbacks: Sequence[Any] = ()) -> SweepResult:
    """Run (or, with ``resume=<name or path>``, continue) a sweep; returns its summary.

    ``callbacks``: extra ``ray.tune.Callback`` objects (e.g. a stopper or progress hook).
    """
    import mlflow
    import ray
    from ray import tune

    from workflows.ray_train import check_train_request, portable_config

    s = cfg.sweep
    cfg = portable_config(cfg)
    dims = search_dims(cfg)
    base = trial_base(cfg)
    pattern_b = s.workers_per_trial > 1
    if pattern_b:
        check_train_request(base)
    storage = ray_utils.storage_path(cfg)
    if resume:
        path = Path(resume) if Path(resume).is_absolute() else Path(storage) / resume
        name = path.name
    else:
        name = ray_utils.fresh_run_name(cfg.replace("ray.run_name="), "sweep")
        path = Path(storage) / name
    state_file = path / STATE_FILE
    if resume and not state_file.is_file():
        raise SweepError(f"cannot resume {resume!r}: {state_file} not found (expected the "
                         f"folder of a sweep started by `amnet sweep` under {storage})")
    n_val = _validation_videos(cfg)
    owned = ray_utils.init_ray(cfg, dashboard=pattern_b)
    try:
        if pattern_b:  # the trial only drives a TorchTrainer: it holds (almost) nothing
            request = ray_utils.Request("a sweep trial (Ray Train)",
                                        ray_utils.worker_resources(base), s.workers_per_trial)
            trial_res = {"cpu": 0, "memory": 1}  # a trial needs some non-zero resource
        else:
            request = ray_utils.Request("a sweep trial",
                                        {"CPU": s.cpus_per_trial, "GPU": s.gpus_per_trial}, 1)
            trial_res = {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial}
        ray_utils.check_fits(cfg, request)
        concurrent = ray_utils.max_concurrent(cfg, request.total(), s.max_concurrent)
        if pattern_b and ray_utils.is_local_cluster(cfg):
            _check_dashboard()
        t0 = time.perf_counter()
        with _parent_run(cfg, name, state_file, bool(resume)) as parent_id:
            trainable = tune.with_resources(
                tune.with_parameters(run_trial, base=base.to_dict(), parent_run_id=parent_id,
                                     sweep_name=name), trial_res)
            if resume:
                if not tune.Tuner.can_restore(str(path)):
                    raise SweepError(f"no Tune experiment state in {path} to resume")
                tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True,
                                           resume_errored=False, restart_errored=False)
                log.info("resuming sweep %s from %s", name, path)
            else:
                path.mkdir(parents=True, exist_ok=True)
                write_json(state_file, {"parent_run_id": parent_id, "params_path": params_path})
                tuner = _new_tuner(cfg, dims, trainable, name, storage, concurrent, callbacks)
                log.info("sweep %s: %d trials, %d at a time, %s per trial (%s), selecting on "
                         "%s over %d held-out validation videos", name, s.num_samples,
                         concurrent, request.total(),
                         "Ray Train inside each trial" if pattern_b else "in-process", METRIC,
                         n_val)
            results = tuner.fit()
            rows = _trial_rows(results, dims, s.epochs, saved_trial_status(path))
            summary = summarise(cfg, rows, dims, name, parent_id, params_path,
                                time.perf_counter() - t0)
            mlflow.set_tag("amnet.sweep_path", str(path))
        _close_children(cfg, parent_id, rows)
    finally:
        if owned:
            ray.shutdown()
    return SweepResult(name=name, path=str(path), parent_run_id=parent_id, **summary)


def _validation_videos(cfg: WorkflowConfig) -> int:
    """How many videos the validation split holds; :class:`SweepError` when none (a sweep
    selects, and only on the validation split)."""
    from amnet.data.feature_set import FeatureSet
    from amnet.data.split import split_videos

    d = cfg.data
    ann = FeatureSet.at(d.root).annotations(default_fps=d.default_fps,
                                           segment_policy=d.segment_policy)
    split = split_videos(ann.subset(d.train_subset), d.val_fraction, d.val_seed)
    if not split.val:
        raise SweepError(f"{ann.source}: data.val_fraction={d.val_fraction} holds no video of "
                         f"{d.train_subset!r} out (no class has two videos); a sweep selects "
                         "on the validation split only")
    return len(split.val)


def _check_dashboard() -> None:
    """Train-inside-Tune needs the State API (dashboard) to free stopped trials' groups."""
    import ray

    if not ray.get_runtime_context().gcs_address:
        return
    try:
        from ray.util.state import list_placement_groups

        list_placement_groups(limit=1)
    except Exception as e:  # the State API answers only when the dashboard runs
        raise SweepError(
            "sweep.workers_per_trial > 1 needs Ray's dashboard (State API) so the placement "
            "groups of trials ASHA stops are freed; start Ray with include_dashboard=True "
            f"(pip install 'ray[default]'): {e}") from None


def _trial_log() -> Any:
    """A Tune callback: one log line per finished / failed trial (not Tune's result tables)."""
    from ray.tune import Callback

    class TrialLog(Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            r = trial.last_result or {}
            log.info("%s done after %s epoch(s): %s=%.4f %s", trial.trial_id,
                     r.get("training_iteration"), METRIC, r.get(METRIC, math.nan),
                     {k: v for k, v in trial.config.items()})

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            log.warning("%s failed: %s (traceback in %s)", trial.trial_id, trial.config,
                        trial.error_file)

    return TrialLog()


def _new_tuner(cfg: WorkflowConfig, dims: Sequence[Dim], trainable: Any, name: str, storage: str,
               concurrent: int, callbacks: Sequence[Any]) -> Any:
    import optuna
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    s = cfg.sweep
    search = OptunaSearch(sampler=TPESampler(seed=s.seed), metric=METRIC, mode=MODE)
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=s.epochs,
                              grace_period=min(s.grace_period, s.epochs),
                              reduction_factor=s.reduction_factor)
    return tune.Tuner(
        trainable, param_space=tune_space(dims),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE, search_alg=search, scheduler=scheduler,
            num_samples=s.num_samples, max_concurrent_trials=concurrent,
            reuse_actors=s.workers_per_trial == 1,
            trial_name_creator=lambda t: f"trial_{t.trial_id}",
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
        run_config=tune.RunConfig(
            name=name, storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=0),  # a crash is the trial's result
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[_trial_log(), *callbacks], verbose=0))
