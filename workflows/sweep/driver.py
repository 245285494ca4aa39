"""``amnet sweep`` and the DVC ``sweep`` stage: Ray Tune + Optuna (TPE) + ASHA over AMNet.

Searches λ1, λ2 (Eq. 12) and the GAM depth, plus ``train.lr`` / ``train.weight_decay`` when
``sweep.lr`` / ``sweep.weight_decay`` give bounds. Each trial trains ``sweep.epochs`` epochs and
reports the validation ``average_mAP`` every epoch, which ASHA uses to stop weak trials early.

Two trial kinds (stack.md §2):

* ``sweep.workers_per_trial == 1`` (default, Pattern A): the trial trains one model in its own
  process, holding ``sweep.cpus_per_trial`` / ``sweep.gpus_per_trial``. Cheap: no Train start-up.
* ``> 1`` (Pattern B): the trial is a light driver (it holds no CPU) running a ``TorchTrainer``
  with that many workers (``ray.cpus_per_worker`` / ``ray.gpus_per_worker`` each). Ray's
  dashboard is started so the placement groups of trials ASHA stops are removed; concurrency is
  capped so the running trials' worker groups fit the local cluster.

MLflow: one parent run per sweep; every trial is a child run (``parent_run_id``) with its full
config as params, the sampled values as ``trial.*`` params and per-epoch metrics. At the end
the parent gets the best config, a table of all trials, and Optuna's optimisation-history and
parameter-importance plots (from an Optuna study rebuilt from the trial results, which works for
restored sweeps too). The best config goes to ``sweep.best_params_out`` as a params file that
``amnet train -p`` accepts (``base:`` the sweep's params file, plus the chosen keys).

``--resume NAME`` continues an interrupted sweep (``Tuner.restore``): finished and failed trials
are kept as they are, unfinished ones continue from their last checkpoint. A trial that raises
(e.g. a sampled value the config rejects) is recorded as failed and the sweep goes on.

Run as ``amnet sweep -p params/sweep.yaml`` or ``python -m workflows.sweep -p params/sweep.yaml``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amnet.config import Config, from_dict, load_config
from amnet.errors import AmnetError, ConfigError
from workflows import ray_utils

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

METRIC = "average_mAP"
MODE = "max"
STATE_FILE = "amnet_sweep.json"   # parent run id + params path, next to Tune's experiment state
TAG_TRIAL = "amnet.sweep_trial_id"
_NOT_LOGGED = ("epoch", "resumed_from", "checkpoint_path")


class SweepError(AmnetError):
    """A sweep that cannot start, cannot be resumed, or in which every trial failed."""


# --------------------------------------------------------------------------- search space

@dataclass(frozen=True)
class Dim:
    """One searched config key: ``[low, high]``, integer or (log-)uniform float."""

    key: str
    low: float
    high: float
    integer: bool = False
    log: bool = False


def search_dims(cfg: Config) -> list[Dim]:
    """The searched keys from ``cfg.sweep`` (a bound pair that is empty is not searched)."""
    s = cfg.sweep
    dims = [Dim("loss.lambda1", *s.lambda1), Dim("loss.lambda2", *s.lambda2),
            Dim("model.gam_depth", *s.gam_depth, integer=True)]
    if s.lr:
        dims.append(Dim("train.lr", *s.lr, log=True))
    if s.weight_decay:
        dims.append(Dim("train.weight_decay", *s.weight_decay, log=True))
    for d in dims:
        if d.log and d.low <= 0:
            raise ConfigError(f"sweep.{d.key.split('.')[-1]}: log-uniform bounds must be > 0, "
                              f"got [{d.low}, {d.high}]")
    return dims


def tune_space(dims: Sequence[Dim]) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    for d in dims:
        if d.low == d.high:
            space[d.key] = int(d.low) if d.integer else float(d.low)
        elif d.integer:
            space[d.key] = tune.randint(int(d.low), int(d.high) + 1)  # upper bound exclusive
        elif d.log:
            space[d.key] = tune.loguniform(d.low, d.high)
        else:
            space[d.key] = tune.uniform(d.low, d.high)
    return space


def with_values(base: Config, values: dict[str, Any], source: str) -> Config:
    """``base`` with dotted ``values`` set, validated (a rejected value raises ConfigError).

    Works on the dict, not on ``key=value`` strings: YAML would read ``1e-05`` as a string.
    """
    data = base.to_dict()
    for key, value in values.items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise ConfigError(f"{source}: unknown key {key!r}")
        node[leaf] = value.item() if hasattr(value, "item") else value
    return from_dict(data, source)


def trial_base(cfg: Config) -> Config:
    """What every trial shares: the sweep's epochs, mAP every epoch (ASHA), no run-name reuse."""
    s = cfg.sweep
    over = [f"train.epochs={s.epochs}", "train.eval_every=1", "ray.run_name="]
    if s.workers_per_trial > 1:
        over.append(f"ray.num_workers={s.workers_per_trial}")
    elif s.gpus_per_trial == 0:
        over.append("train.device=cpu")   # a CPU trial must not grab an unreserved GPU
    return cfg.replace(*over)


# --------------------------------------------------------------------------- trials

def _tune_report(metrics: dict[str, float], ckpt_dir: Path | None, epoch: int) -> None:
    from ray import tune

    ckpt = tune.Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None
    tune.report(metrics, checkpoint=ckpt)


def _find_child(cfg: Config, parent_run_id: str, trial_id: str) -> str | None:
    from mlflow.tracking import MlflowClient

    from workflows import tracking

    exp_id = tracking.get_or_create_experiment(cfg)
    runs = MlflowClient().search_runs(
        [exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and "
                                f"tags.`{TAG_TRIAL}` = '{trial_id}'", max_results=1)
    return runs[0].info.run_id if runs else None


def run_trial(config: dict[str, Any], *, base: dict[str, Any], parent_run_id: str,
              sweep_name: str) -> None:
    """One Tune trial: build the trial config, open its MLflow child run, train, report.

    A config the sampled values make invalid raises here (the trial is recorded as failed, in
    Tune and as a FAILED child run). When Tune stops the trial (ASHA, or its last epoch) the
    run ends as FINISHED; the driver then tags every child with its trial's final status.
    """
    import mlflow
    from ray import tune

    from workflows import tracking

    tctx = tune.get_context()
    trial_id = tctx.get_trial_id()
    base_cfg = from_dict(base, "<sweep base config>")
    sampled = {k: (v.item() if hasattr(v, "item") else v) for k, v in sorted(config.items())}
    error: ConfigError | None = None
    try:
        cfg = with_values(base_cfg, sampled, f"sweep trial {trial_id} {sampled}")
    except ConfigError as e:
        cfg, error = base_cfg, e
    tracking.configure(cfg)
    existing = _find_child(cfg, parent_run_id, trial_id)
    stopped = False
    tags = {TAG_TRIAL: trial_id, "amnet.kind": "sweep-trial", "amnet.sweep": sweep_name}
    with tracking.start_run(cfg, run_name=tctx.get_trial_name(), parent_run_id=parent_run_id,
                            tags=tags, run_id=existing) as run:
        if existing is None:
            mlflow.log_params({f"trial.{k}": v for k, v in sampled.items()})
        if error is not None:
            mlflow.set_tag("amnet.error", str(error)[:4000])
            raise error
        try:
            if cfg.sweep.workers_per_trial > 1:
                _train_with_trainer(cfg, run.info.run_id, f"{sweep_name}-{trial_id}")
            else:
                _train_in_process(cfg, run.info.run_id)
        except SystemExit:  # Tune stops a trial (ASHA, or max_t) by SystemExit in report()
            stopped = True
    if stopped:
        raise SystemExit(0)


def _train_in_process(cfg: Config, run_id: str) -> None:
    from ray import tune

    from amnet.engine import resolve_device
    from workflows.ray_train import LoopContext, train_loop

    ckpt = tune.get_checkpoint()
    opened = ckpt.as_directory() if ckpt is not None else contextlib.nullcontext(None)
    with opened as resume:
        ctx = LoopContext(rank=0, world_size=1, device=resolve_device(cfg.train.device),
                          report=_tune_report, resume_dir=Path(resume) if resume else None,
                          mlflow_run_id=run_id)
        train_loop(cfg, ctx)


def _train_with_trainer(cfg: Config, run_id: str, name: str) -> None:
    """Pattern B: a TorchTrainer inside the trial; rank-0 metrics reach Tune by callback.

    The inner run's name is fixed per trial, so a restored sweep resumes it from its own
    checkpoint (Train V2 resumes by name).
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from workflows.ray_train import train_worker

    bundle = ray_utils.worker_resources(cfg)
    TorchTrainer(
        train_worker,
        train_loop_config={"cfg": cfg.to_dict(), "mlflow_run_id": run_id},
        scaling_config=ScalingConfig(num_workers=cfg.ray.num_workers, use_gpu=cfg.ray.use_gpu,
                                     resources_per_worker=bundle),
        run_config=RunConfig(
            name=name, storage_path=ray_utils.storage_path(cfg),
            failure_config=FailureConfig(max_failures=cfg.ray.max_failures,
                                         controller_failure_limit=0),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            logging_config=LoggingConfig(log_level="WARNING"),
            callbacks=[TuneReportCallback()])).fit()


# --------------------------------------------------------------------------- driver

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


def optuna_study(rows: list[dict[str, Any]], dims: Sequence[Dim]) -> Any:
    """An Optuna study rebuilt from the trial table (for Optuna's plots).

    OptunaSearch keeps its study in a private attribute and a restored sweep has none, so the
    study is rebuilt with ``create_study`` + ``add_trial`` in trial order.
    """
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    dists = {d.key: (IntDistribution(int(d.low), int(d.high)) if d.integer
                     else FloatDistribution(d.low, d.high, log=d.log))
             for d in dims if d.low < d.high}
    study = optuna.create_study(direction="maximize", study_name="amnet-sweep")
    for row in rows:
        params = {k: row[k] for k in dists if row.get(k) is not None}
        value = row[METRIC]
        ok = row["status"] != "failed" and value == value  # not NaN
        study.add_trial(create_trial(
            params=params, distributions={k: dists[k] for k in params},
            value=float(value) if ok else None,
            state=TrialState.COMPLETE if ok else TrialState.FAIL,
            user_attrs={"trial": row["trial"], "status": row["status"]}))
    return study


def _plots(study: Any, out: Path) -> list[Path]:
    """Optuna's optimisation-history and parameter-importance plots (matplotlib backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    paths = []
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning on the matplotlib API
        plots = [("optimization_history.png", ovm.plot_optimization_history)]
        if len(done) >= 2:
            plots.append(("param_importances.png", ovm.plot_param_importances))
        for name, fn in plots:
            try:
                ax = fn(study)
            except (ValueError, RuntimeError) as e:  # e.g. importances of constant params
                logger.warning("Optuna %s plot skipped: %s", name, e)
                continue
            fig = ax.figure if hasattr(ax, "figure") else ax
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            fig.savefig(out / name, dpi=100)
            plt.close(fig)
            paths.append(out / name)
    return paths


def write_best_params(path: Path, best: dict[str, Any], *, params_path: str | None,
                      comment: str) -> Path:
    """A params file ``amnet train -p`` accepts: ``base:`` the sweep's params file (so its
    data / ray / train settings carry over; its ``sweep:`` keys are unused by training) plus
    the chosen keys. Without a params file, the chosen keys on the built-in defaults."""
    import yaml

    nested: dict[str, Any] = {}
    for key, value in best.items():
        section, leaf = key.split(".", 1)
        nested.setdefault(section, {})[leaf] = value
    doc: dict[str, Any] = {}
    if params_path is not None:
        doc["base"] = os.path.relpath(Path(params_path).resolve(), path.resolve().parent)
    doc.update(nested)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"# {line}\n" for line in comment.splitlines())
    path.write_text(text + yaml.safe_dump(doc, sort_keys=False))
    load_config(path)  # what we wrote must load (fails loudly here, not in the train stage)
    return path


def _close_children(cfg: Config, parent_run_id: str, rows: list[dict[str, Any]]) -> None:
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
def _parent_run(cfg: Config, name: str, state_file: Path, resume: bool) -> Iterator[str]:
    from workflows import tracking

    run_id = json.loads(state_file.read_text())["parent_run_id"] if resume else None
    tags = {"amnet.kind": "sweep", "ray.run_name": name}
    with tracking.start_run(cfg, run_name=name, tags=tags, run_id=run_id) as run:
        yield run.info.run_id


def run_sweep(cfg: Config, *, params_path: str | None = None, resume: str | None = None,
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
                logger.info("resuming sweep %s from %s", name, path)
            else:
                path.mkdir(parents=True, exist_ok=True)
                state_file.write_text(json.dumps({"parent_run_id": parent_id,
                                                  "params_path": params_path}))
                tuner = _new_tuner(cfg, dims, trainable, name, storage, concurrent, callbacks)
                logger.info("sweep %s: %d trials, %d at a time, %s per trial (%s)", name,
                            s.num_samples, concurrent, request.total(),
                            "Ray Train inside each trial" if pattern_b else "in-process")
            results = tuner.fit()
            rows = _trial_rows(results, dims, s.epochs, saved_trial_status(path))
            summary = _summarise(cfg, rows, dims, name, parent_id, params_path, results,
                                 time.perf_counter() - t0)
            mlflow.set_tag("amnet.sweep_path", str(path))
        _close_children(cfg, parent_id, rows)
    finally:
        if owned:
            ray.shutdown()
    return SweepResult(name=name, path=str(path), parent_run_id=parent_id, **summary)


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


def _trial_log_class() -> type:
    from ray.tune import Callback

    class TrialLog(Callback):
        """One log line per finished / failed trial (instead of Tune's result tables)."""

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            r = trial.last_result or {}
            logger.info("%s done after %s epoch(s): %s=%.4f %s", trial.trial_id,
                        r.get("training_iteration"), METRIC, r.get(METRIC, math.nan),
                        {k: v for k, v in trial.config.items()})

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            logger.warning("%s failed: %s (traceback in %s)", trial.trial_id, trial.config,
                           trial.error_file)

    return TrialLog


def _trial_log() -> Any:
    return _trial_log_class()()


def _new_tuner(cfg: Config, dims: Sequence[Dim], trainable: Any, name: str, storage: str,
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


def _summarise(cfg: Config, rows: list[dict[str, Any]], dims: Sequence[Dim], name: str,
               parent_id: str, params_path: str | None, results: Any, wall_s: float
               ) -> dict[str, Any]:
    """Parent-run records + best params file; returns the SweepResult fields."""
    import mlflow
    import pandas as pd

    table = pd.DataFrame(rows)
    n_failed = int((table["status"] == "failed").sum()) if len(table) else 0
    interrupted = len(table) < cfg.sweep.num_samples or (table["status"] == "unfinished").any()
    ok = table[(table["status"] != "failed") & table[METRIC].notna()] if len(table) else table
    mlflow.log_metrics({"sweep/trials": float(len(table)), "sweep/failed": float(n_failed),
                        "sweep/wall_s": wall_s})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        mlflow.log_table(table.astype({c: str for c in ("trial", "status", "error")}),
                         "sweep/trials.json")
        table.to_csv(out / "trials.csv", index=False)
        mlflow.log_artifact(str(out / "trials.csv"), "sweep")
        if len(table):
            for p in _plots(optuna_study(rows, dims), out):
                mlflow.log_artifact(str(p), "sweep")
    if interrupted:
        logger.warning("sweep %s was interrupted (%d of %d trials finished); continue it with "
                       "--resume %s", name, int((table["status"] != "unfinished").sum())
                       if len(table) else 0, cfg.sweep.num_samples, name)
    if ok.empty:
        if interrupted:
            return {"trials": table, "best": None, "best_metric": None,
                    "best_params_path": None, "interrupted": True}
        raise SweepError(f"sweep {name}: all {len(table)} trials failed; first error: "
                         f"{table['error'].iloc[0] if len(table) else 'none'}")
    best_row = ok.loc[ok[METRIC].idxmax()]
    best = {d.key: _plain(best_row[d.key]) for d in dims}
    best_metric = float(best_row[METRIC])
    best_path = None
    if not interrupted:  # params are immutable in MLflow: log the best once, when final
        mlflow.log_params({f"best.{k}": v for k, v in best.items()})
        mlflow.log_metric(f"best/{METRIC}", best_metric)
        mlflow.set_tag("amnet.best_trial", str(best_row["trial"]))
        best_path = Path(cfg.sweep.best_params_out)
        comment = (f"Best of {len(table)} trials of sweep {name} ({n_failed} failed): "
                   f"{METRIC}={best_metric:.4f} after {int(best_row['epochs'])} epochs "
                   f"({best_row['trial']}).\nMLflow parent run {parent_id}. Written by "
                   "`amnet sweep`; train with: amnet train -p " + str(best_path))
        write_best_params(best_path, best, params_path=params_path, comment=comment)
        mlflow.log_artifact(str(best_path), "sweep")
        logger.info("best %s=%.4f with %s -> %s", METRIC, best_metric, best, best_path)
    return {"trials": table, "best": best, "best_metric": best_metric,
            "best_params_path": best_path, "interrupted": bool(interrupted)}


def _plain(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    return float(v) if isinstance(v, float) else v


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from workflows.cli import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--resume", metavar="NAME",
                        help="continue an interrupted sweep (its name under ray.storage_path, "
                             "or its folder)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params, args.overrides)
    res = run_sweep(cfg, params_path=args.params, resume=args.resume)
    cols = ["trial", "status", "epochs", *[d.key for d in search_dims(cfg)], METRIC]
    print(res.trials[cols].to_string(index=False) if len(res.trials) else "(no trials)")
    if res.interrupted:
        print(f"interrupted: continue with  amnet sweep -p {args.params} --resume {res.name}")
        return 1
    print(f"best {METRIC}={res.best_metric:.4f}: {res.best} -> {res.best_params_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m workflows.sweep -p params/sweep.yaml`` (the DVC stage)."""
    from workflows.cli import main as cli_main

    return cli_main(["sweep", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
