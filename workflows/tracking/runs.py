"""What every run records: params, provenance tags, per-epoch metrics, evaluations, run files.

Every run started through :func:`start_run` carries the flattened config as params, the git
commit, and the DVC hash + manifest hash of the feature set it read; training and evaluation
runs also list the splits they read as dataset inputs (:mod:`~workflows.tracking.datasets`).

Metric names, one scheme everywhere (MLflow, Tune, the DVC metrics files): ``<group>/<name>``
with the group saying what a number is about — ``loss/cls``, ``loss/total`` …, ``lr``,
``time/epoch_s``; scores carry their split: ``val/mAP_0.5``, ``val/average_mAP`` on the
held-out validation split (the only scores a choice may use), ``test/mAP_0.5``,
``test/average_mAP``, ``test/AP_0.5/<class>`` on the test split (reporting only); ``sweep/…``
and ``best/val/average_mAP`` on a sweep's parent run. A DVC metrics file that holds one
split's scores keeps them unprefixed and says which in a ``"split"`` field. ``@`` is rejected
by MLflow and replaced here.

:func:`training_run` wraps one training and leaves a run file
(``mlflow_run.json``) that the evaluate and register stages read with :func:`read_run_id`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from amnet.io import read_json_object, write_json
from workflows.config import WorkflowConfig
from workflows.tracking.datasets import log_dataset_inputs
from workflows.tracking.provenance import feature_set_tags, git_tags
from workflows.tracking.registry import log_trained_model
from workflows.tracking.store import (
    TrackingError,
    configure,
    get_or_create_experiment,
    run_exists,
)

log = logging.getLogger(__name__)

__all__ = ["RUN_FILE", "TAG_CHECKPOINT_SHA256", "TAG_FINGERPRINT", "TAG_RESUME_COMMAND",
           "TAG_RESUME_KEY", "TAG_SOURCE_RUN", "TrackedRun", "epoch_logger", "evaluation_metrics",
           "log_config", "log_evaluation", "logged_steps", "metric_name", "read_run_id",
           "stand_in_runs", "start_run", "training_run"]

TAG_FINGERPRINT = "amnet.test_fingerprint"
# A run that stands in for a recorded run missing from this store (a clone restored with
# `dvc pull` has the run file but not the MLflow store): the recorded id and the checkpoint.
TAG_SOURCE_RUN = "amnet.source_run_id"
TAG_CHECKPOINT_SHA256 = "amnet.checkpoint_sha256"
_RUN_ID = re.compile(r"[0-9A-Za-z_\-]{1,256}")
#: What a training resumes from (a hash of its checkpoint path or Ray run): finds the run to
#: continue when a training is resumed.
TAG_RESUME_KEY = "amnet.resume_key"
#: Set on a training run ended as KILLED by an interrupt: the command that resumes it.
TAG_RESUME_COMMAND = "amnet.resume_command"
RUN_FILE = "mlflow_run.json"
_NAME_BAD = re.compile(r"[^0-9A-Za-z_\-. :/]")


# --------------------------------------------------------------------------- run lifecycle

def _param_value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, list | dict) else str(v)


def log_config(cfg: WorkflowConfig, run_id: str | None = None) -> None:
    """All resolved params, flattened (``model.gam_depth``...)."""
    params = {k: _param_value(v) for k, v in cfg.flat().items()}
    if run_id is None:
        mlflow.log_params(params)
    else:
        MlflowClient().log_batch(run_id, params=[Param(k, v) for k, v in params.items()])


@contextlib.contextmanager
def start_run(cfg: WorkflowConfig, *, run_name: str | None = None,
              tags: Mapping[str, Any] | None = None, parent_run_id: str | None = None,
              nested: bool = False, run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """A tracked run in ``cfg.tracking.experiment`` with params and provenance tags.

    ``run_id`` re-opens an existing run (e.g. evaluate adding test metrics to the train run):
    params are not logged again (MLflow params are immutable), tags are updated.
    ``parent_run_id`` makes a child run across processes (Tune trials, ablation rows).
    """
    configure(cfg)
    all_tags = {**git_tags(), **feature_set_tags(cfg)}
    all_tags.update({k: str(v) for k, v in (tags or {}).items()})
    if os.environ.get("DVC_EXP_NAME"):
        all_tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_STAGE") and run_id is None:  # a re-opened run keeps its stage
        all_tags["dvc.stage"] = os.environ["DVC_STAGE"]
    if run_id is not None:
        try:
            MlflowClient().get_run(run_id)
        except MlflowException:
            raise TrackingError(f"run {run_id} is not in the tracking store "
                                f"{mlflow.get_tracking_uri()} (was the store reset?)") from None
        with mlflow.start_run(run_id=run_id, nested=nested) as run:
            mlflow.set_tags(all_tags)
            yield run
        return
    exp_id = get_or_create_experiment(cfg)
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, nested=nested,
                          parent_run_id=parent_run_id, tags=all_tags) as run:
        log_config(cfg)
        yield run


# --------------------------------------------------------------------------- metrics

def metric_name(name: str) -> str:
    """A metric/param key MLflow accepts (``mAP@0.5`` → ``mAP_0.5``)."""
    return _NAME_BAD.sub("_", name.replace("@", "_"))


def _finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue  # strings, lists...: not a scalar metric
        if math.isfinite(f):
            out[metric_name(k)] = f
    return out


def logged_steps(run_id: str, key: str = "loss/total") -> set[int]:
    """The epochs (steps of ``key``) a run already holds: a resumed or restarted training
    replays some, and must not log them twice."""
    return {m.step for m in MlflowClient().get_metric_history(run_id, key)}


def epoch_logger(run_id: str, prefix: str = "",
                 skip: set[int] | None = None) -> Callable[[int, dict], None]:
    """The engine's ``callback(epoch, metrics)``: logs every scalar with ``step=epoch``.

    Non-numeric and non-finite values are skipped (a NaN loss is logged by the engine's own
    error path, not as a metric). One ``log_batch`` call per epoch; an epoch in ``skip`` (see
    :func:`logged_steps`) is not logged again.
    """
    client = MlflowClient()
    skip = set(skip or ())

    def callback(epoch: int, metrics: dict) -> None:
        if int(epoch) in skip:
            return
        ts = int(time.time() * 1000)
        values = _finite_metrics(metrics)
        if values:
            client.log_batch(run_id, metrics=[Metric(prefix + k, v, ts, int(epoch))
                                              for k, v in values.items()])

    return callback


def _map_json(map_result: Any) -> dict[str, Any]:
    return map_result.to_json() if hasattr(map_result, "to_json") else dict(map_result)


def evaluation_metrics(map_result: Any, prefix: str = "test/") -> dict[str, float]:
    """Flat metrics of an evaluation: mAP at every tIoU, the average, per-class AP."""
    js = _map_json(map_result)
    flat = map_result.metrics() if hasattr(map_result, "metrics") else {
        **{f"mAP_{t}": v for t, v in js.get("mAP", {}).items()},
        "average_mAP": js.get("average_mAP")}
    out = {f"{prefix}{k}": v for k, v in _finite_metrics(flat).items()}
    for tiou, per_class in (js.get("per_class_AP") or {}).items():
        for label, ap in per_class.items():
            if ap is not None and math.isfinite(float(ap)):
                out[f"{prefix}AP_{tiou}/{metric_name(str(label))}"] = float(ap)
    return out


def log_evaluation(map_result: Any, predictions_json: Mapping[str, Any] | str | Path | None,
                   plots: Mapping[str, Path] | None = None, *, prefix: str = "test/",
                   run_id: str | None = None, step: int | None = None,
                   fingerprint: str | None = None) -> dict[str, float]:
    """Log one evaluation into the active run (or ``run_id``).

    ``fingerprint`` (:func:`~workflows.tracking.provenance.test_set_fingerprint`) is stored as
    the ``amnet.test_fingerprint`` tag: promotion compares runs only when it is equal.

    Metrics: ``<prefix>mAP_<t>``, ``<prefix>average_mAP``, ``<prefix>AP_<t>/<class>``.
    Artifacts: ``eval/map_table.json`` + ``eval/per_class_ap.json`` (MLflow tables),
    ``eval/metrics.json``, ``eval/predictions.json``, ``plots/<files>``. Returns the metrics.
    """
    import pandas as pd

    run_id = run_id or mlflow.active_run().info.run_id  # type: ignore[union-attr]
    client = MlflowClient()
    metrics = evaluation_metrics(map_result, prefix)
    ts = int(time.time() * 1000)
    tags = [RunTag(TAG_FINGERPRINT, fingerprint)] if fingerprint else []
    client.log_batch(run_id, metrics=[Metric(k, v, ts, step or 0) for k, v in metrics.items()],
                     tags=tags)
    js = _map_json(map_result)
    rows = [{"tIoU": float(t), "mAP": float(v)} for t, v in js.get("mAP", {}).items()]
    if js.get("average_mAP") is not None:
        rows.append({"tIoU": "average", "mAP": float(js["average_mAP"])})
    mlflow.log_table(pd.DataFrame(rows).astype({"tIoU": str}), "eval/map_table.json",
                     run_id=run_id)
    per_class = [{"tIoU": str(t), "class": str(c), "AP": float(ap)}
                 for t, d in (js.get("per_class_AP") or {}).items() for c, ap in d.items()]
    if per_class:
        mlflow.log_table(pd.DataFrame(per_class), "eval/per_class_ap.json", run_id=run_id)
    client.log_dict(run_id, js, "eval/metrics.json")
    if hasattr(map_result, "table"):
        client.log_text(run_id, str(map_result.table()), "eval/map_table.txt")
    if isinstance(predictions_json, str | Path):
        client.log_artifact(run_id, str(predictions_json), "eval")
    elif predictions_json is not None:
        client.log_dict(run_id, dict(predictions_json), "eval/predictions.json")
    for path in (plots or {}).values():
        path = Path(path)
        if path.is_file():
            client.log_artifact(run_id, str(path), "plots")
        elif path.is_dir():
            client.log_artifacts(run_id, str(path), f"plots/{path.name}")
    return metrics


# --------------------------------------------------------------------------- training runs

@dataclasses.dataclass
class TrackedRun:
    """What a training entry point needs inside :func:`training_run`."""

    run_id: str
    callback: Callable[[int, dict], None]  # the engine's per-epoch callback


def read_run_id(path: str | Path, *, required: bool = False, hint: str = "") -> str | None:
    """The ``run_id`` of a run file written by :func:`training_run` (``mlflow_run.json``).

    A missing file or field gives ``None``, or with ``required`` a :class:`TrackingError`
    (``hint`` is appended to the missing-file message, e.g. another way to name the run).
    """
    path = Path(path)
    if not path.exists():  # (a folder or unreadable file is an error below, not "missing")
        if required:
            raise TrackingError(f"{path}: no run file; train first (`amnet train`){hint}")
        return None
    run_id = (read_json_object(path, missing_ok=False) or {}).get("run_id")
    if run_id is None or run_id == "":
        if required:
            raise TrackingError(f"{path}: no 'run_id' field")
        return None
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        shown = repr(run_id) if len(repr(run_id)) <= 60 else repr(run_id)[:57] + "..."
        raise TrackingError(f"{path}: field 'run_id' must be an MLflow run id (letters, digits, "
                            f"'-' or '_'), got {shown}")
    return run_id


def stand_in_runs(cfg: WorkflowConfig, source_run_id: str, *,
                  checkpoint_sha256: str | None = None) -> list[Any]:
    """Runs of ``cfg.tracking.experiment`` that ``amnet evaluate`` logged for the recorded run
    ``source_run_id`` when that run was not in this store (tag ``amnet.source_run_id``),
    newest first; ``checkpoint_sha256`` keeps those of that checkpoint only."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None or not _RUN_ID.fullmatch(source_run_id):
        return []
    query = f"tags.`{TAG_SOURCE_RUN}` = '{source_run_id}'"
    if checkpoint_sha256 is not None:
        query += f" and tags.`{TAG_CHECKPOINT_SHA256}` = '{checkpoint_sha256}'"
    return list(client.search_runs([exp.experiment_id], query,
                                   order_by=["attributes.start_time DESC"], max_results=50))


def _run_with_resume_key(cfg: WorkflowConfig, key: str) -> str | None:
    """The latest run of the experiment tagged with ``key`` (the training it continues)."""
    exp_id = get_or_create_experiment(cfg)
    runs = MlflowClient().search_runs(
        [exp_id], filter_string=f"tags.`{TAG_RESUME_KEY}` = '{key}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def _end_killed(run_id: str, resume_command: str | Callable[[], str] | None) -> None:
    """End an interrupted training run as KILLED (not FAILED), saying how to resume it."""
    try:
        command = resume_command() if callable(resume_command) else resume_command
        if command:
            mlflow.set_tag(TAG_RESUME_COMMAND, command)
        mlflow.end_run(status="KILLED")
    except Exception as e:  # the store may be what was interrupted: say so, keep the exit clean
        log.warning("could not mark MLflow run %s as KILLED: %s", run_id,
                    " ".join(str(e).split())[:200])


@contextlib.contextmanager
def training_run(cfg: WorkflowConfig, out_dir: str | Path, *, params_file: str | None = None,
                 resume: bool = False, run_name: str | None = None,
                 tags: Mapping[str, Any] | None = None, resume_key: str | None = None,
                 resume_command: str | Callable[[], str] | None = None
                 ) -> Iterator[TrackedRun]:
    """An MLflow run around one training (``amnet train``, in-process or Ray Train).

    Checks the store first (an unreachable server fails before any training), yields the run
    id + per-epoch callback, then logs ``<out_dir>/model.pt`` as the run's model and writes
    ``<out_dir>/mlflow_run.json`` (``run_id``, ``experiment_id``, ``tracking_uri``,
    ``model_uri``) for the evaluate and register stages.

    ``resume_key`` names what the training resumes from (its checkpoint, or its Ray run); the
    run is tagged with it. ``resume=True`` re-opens the latest run with the same key (an
    interrupted run has no ``mlflow_run.json`` yet), else the run of an existing
    ``mlflow_run.json``, so a resumed training keeps one history. Interrupted
    (``KeyboardInterrupt``), the run ends as KILLED with ``resume_command`` (a string, or a
    function giving it at that moment) as its ``amnet.resume_command`` tag, and the interrupt
    propagates; a resumed run that finishes drops that tag.
    """
    configure(cfg)
    out = Path(out_dir)
    run_file = out / RUN_FILE
    run_id = None
    if resume:
        run_id = (_run_with_resume_key(cfg, resume_key) if resume_key else None) \
            or read_run_id(run_file)
    if run_id and not run_exists(run_id):
        log.warning("%s: run %s is not in %s; starting a new run", run_file, run_id,
                    mlflow.get_tracking_uri())
        run_id = None
    all_tags = {"stage": "train", **({"params_file": params_file} if params_file else {}),
                **({TAG_RESUME_KEY: resume_key} if resume_key else {}), **(tags or {})}
    name = run_name or f"train-{cfg.data.name}"
    with start_run(cfg, run_name=name, tags=all_tags, run_id=run_id) as run:
        rid = run.info.run_id
        log_dataset_inputs(cfg, rid, ("train", "val"))  # idempotent on a resumed run
        if run_id is not None:
            log.info("resuming MLflow run %s", rid)
        try:
            # a re-opened run already holds its first epochs: never log a step twice
            yield TrackedRun(rid, epoch_logger(rid, skip=logged_steps(rid) if run_id else None))
        except KeyboardInterrupt:
            _end_killed(rid, resume_command)
            raise
        info = log_trained_model(cfg, out / "model.pt")
        if run_id is not None and TAG_RESUME_COMMAND in MlflowClient().get_run(rid).data.tags:
            MlflowClient().delete_tag(rid, TAG_RESUME_COMMAND)  # finished: nothing to resume
        write_json(run_file, {"run_id": rid, "experiment_id": run.info.experiment_id,
                              "tracking_uri": mlflow.get_tracking_uri(),
                              "model_uri": info.model_uri})
