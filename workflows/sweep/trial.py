"""One Tune trial: its config, its MLflow child run, and its training (in-process or Ray Train).

* ``sweep.workers_per_trial == 1`` (Pattern A): the trial trains one model in its own process,
  holding ``sweep.cpus_per_trial`` / ``sweep.gpus_per_trial``. Cheap: no Train start-up.
* ``> 1`` (Pattern B): the trial is a light driver running a ``TorchTrainer`` with that many
  workers (:func:`_train_with_trainer`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from amnet.errors import ConfigError
from workflows.config import WorkflowConfig, from_dict
from workflows.sweep.space import with_values

__all__ = ["TAG_TRIAL", "run_trial"]

TAG_TRIAL = "amnet.sweep_trial_id"


def _tune_report(metrics: dict[str, float], ckpt_dir: Path | None, epoch: int) -> None:
    from ray import tune

    ckpt = tune.Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None
    tune.report(metrics, checkpoint=ckpt)


def _find_child(cfg: WorkflowConfig, parent_run_id: str, trial_id: str) -> str | None:
    """The child run a restored trial already has (so it continues it, not a new one)."""
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
            tracking.log_dataset_inputs(cfg, run.info.run_id, ("train", "val"))
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


def _train_in_process(cfg: WorkflowConfig, run_id: str) -> None:
    """Pattern A: the Ray Train worker loop, run in the trial's own process (rank 0 of 1)."""
    from ray import tune

    from amnet.device import resolve_device
    from workflows.ray_train import LoopContext, train_loop

    ckpt = tune.get_checkpoint()
    opened = ckpt.as_directory() if ckpt is not None else contextlib.nullcontext(None)
    with opened as resume:
        ctx = LoopContext(rank=0, world_size=1, device=resolve_device(cfg.train.device),
                          report=_tune_report, resume_dir=Path(resume) if resume else None,
                          mlflow_run_id=run_id)
        train_loop(cfg, ctx)


def _train_with_trainer(cfg: WorkflowConfig, run_id: str, name: str) -> None:
    """Pattern B: a TorchTrainer inside the trial; rank-0 metrics reach Tune by callback.

    The inner run's name is fixed per trial, so a restored sweep resumes it from its own
    checkpoint (Train V2 resumes by name).
    """
    from ray.tune.integration.ray_train import TuneReportCallback

    from workflows.ray_train import torch_trainer

    torch_trainer(cfg, name, mlflow_run_id=run_id, callbacks=[TuneReportCallback()]).fit()
