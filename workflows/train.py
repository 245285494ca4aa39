"""``amnet train``: train AMNet in this process, or under Ray Train (the ``train`` stage).

``ray.num_workers`` = 0 (default): in-process :func:`amnet.engine.fit`; N >= 1: the same run
on N Ray Train workers (:func:`train_on_ray`, ``workflows.ray_train``), same outputs.

Loads the config, builds the training part of ``data.train_subset`` (random crops) and its
held-out validation part (full videos, ``data.val_fraction``, :mod:`amnet.data.split`) for the
validation mAP (``val/*``) every ``train.eval_every`` epochs and after the last, runs
:func:`amnet.engine.fit` with a logging callback, and writes:

* ``<out>/model.pt`` — the final checkpoint (``amnet.engine`` format: weights, EMA, optimiser,
  config, class names; ``amnet detect`` / ``workflows.evaluate`` load it);
* ``--metrics`` (default ``metrics/train.json``) — the last epoch's losses, learning rate and
  validation mAP (``val/*``), plus ``epochs``; no wall times, so a rerun with the same seed on
  the same machine writes the same bytes (times are logged and go to MLflow).

The resumable state goes to ``<out>/checkpoints/last.pt`` after every epoch (atomically);
``--resume`` that file to continue an interrupted run with the same results, in the same MLflow
run. Ctrl-C stops cleanly: the last complete checkpoint stays, one line gives the exact command
that resumes the training, the exit status is 130 and the MLflow run ends as KILLED
(``workflows.resume``).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amnet.device import resolve_device
from amnet.io import atomic_copy, write_json
from workflows.cli import add_config_arguments
from workflows.config import WorkflowConfig, load_config

log = logging.getLogger(__name__)

Callback = Callable[[int, dict[str, float]], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", default="outputs/train",
                        help="folder for model.pt and checkpoints/ (default: %(default)s)")
    parser.add_argument("--metrics", default="metrics/train.json",
                        help="final metrics JSON (default: %(default)s)")
    parser.add_argument("--resume", default=None, metavar="CHECKPOINT",
                        help="continue from a checkpoint, e.g. <out>/checkpoints/last.pt")
    parser.add_argument("--device", default=None,
                        help="override train.device (auto | cpu | cuda | cuda:N)")
    parser.add_argument("--no-val", action="store_true",
                        help="skip the validation mAP (val/*) during training")
    parser.add_argument("--no-track", action="store_true",
                        help="do not log to MLflow (default: log to tracking.* / "
                             "MLFLOW_TRACKING_URI; <out>/mlflow_run.json names the run)")


def build_datasets(cfg: WorkflowConfig, *, validation: bool = True) -> tuple[Any, Any]:
    """(training part with crops, validation part of full videos or None), same class list:
    both from ``data.train_subset`` (:func:`amnet.data.dataset.train_val_datasets`)."""
    from amnet.data.dataset import train_val_datasets

    return train_val_datasets(cfg.data, seed=cfg.train.seed, validation=validation)


def log_epoch(total_epochs: int) -> Callback:
    """A callback that logs one line per epoch (losses, lr, validation mAP when present)."""
    def callback(epoch: int, metrics: dict[str, float]) -> None:
        keys = ["loss/total", "loss/cls", "loss/reg", "loss/mat", "loss/trip", "lr",
                "val/average_mAP", "val/mAP_0.5", "time/epoch_s"]
        shown = " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)
        log.info("epoch %d/%d %s", epoch + 1, total_epochs, shown)
    return callback


def chain(*callbacks: Callback | None) -> Callback:
    """One callback calling each given one in order (e.g. logging, then MLflow)."""
    def callback(epoch: int, metrics: dict[str, float]) -> None:
        for cb in callbacks:
            if cb is not None:
                cb(epoch, dict(metrics))
    return callback


def metrics_file_values(metrics: dict[str, float]) -> dict[str, float]:
    """What the DVC metrics file keeps of an epoch's metrics: the finite values, without wall
    times (``time/*``, ``gpu/*``), so the same seed on the same machine writes the same bytes
    (issue 11, item 6). The times stay in the log and in MLflow."""
    return {k: v for k, v in metrics.items()
            if math.isfinite(v) and not k.startswith(("time/", "gpu/"))}


def train(cfg: WorkflowConfig, out_dir: str | Path = "outputs/train", *,
          metrics_path: str | Path | None = "metrics/train.json",
          callback: Callback | None = None, resume: str | Path | None = None,
          device: str | None = None, validation: bool = True) -> dict[str, Any]:
    """Train in-process and write ``<out_dir>/model.pt`` and the metrics JSON.

    ``callback(epoch, metrics)`` runs after the logging one each epoch; on ``resume`` it first
    gets the epochs the checkpoint recorded (it must ignore those it has seen). Returns
    :func:`amnet.engine.fit`'s dict plus ``model_path``, ``metrics_path`` and ``seconds``.
    """
    from amnet import engine

    out = Path(out_dir)
    t0 = time.perf_counter()
    if cfg.ray.num_workers >= 1:  # the same training under Ray Train with N workers
        return train_on_ray(cfg, out, metrics_path=metrics_path, callback=callback,
                            resume=resume, device=device, validation=validation)
    train_ds, val_ds = build_datasets(cfg, validation=validation)
    log.info("training on %d videos (%s), validating on %s; %d epochs on %s", len(train_ds),
             cfg.data.train_subset,
             f"{len(val_ds)} held-out videos of {cfg.data.train_subset}" if val_ds is not None
             else "none",
             cfg.train.epochs, resolve_device(device or cfg.train.device))
    hooks = None
    if resume is not None and callback is not None:
        def replay(state: Any, info: dict[str, Any]) -> None:
            # the epochs the checkpoint recorded, one of which may have been checkpointed but
            # not reported when the run was stopped (the MLflow callback skips logged ones)
            for epoch, metrics in enumerate(info.get("history", [])):
                callback(epoch, dict(metrics))
        hooks = engine.FitHooks(on_resume=replay)
    res = engine.fit(cfg, train_ds, val_ds, callback=chain(log_epoch(cfg.train.epochs), callback),
                     checkpoint_dir=out / "checkpoints", resume=resume, device=device,
                     hooks=hooks)
    model_path = out / "model.pt"
    if res["checkpoint"] is not None and Path(res["checkpoint"]).is_file():
        atomic_copy(res["checkpoint"], model_path)
    else:  # resumed from a finished run: nothing trained, save the state as it is
        engine.save_checkpoint(model_path, res["state"], cfg, {"classes": res["classes"]})
    seconds = time.perf_counter() - t0
    metrics = metrics_file_values(res["metrics"])
    metrics.update(epochs=res["state"].epoch)
    if not res["history"]:
        log.warning("%s is already at epoch %d of %d: nothing trained; metrics left as they "
                    "were", resume, res["state"].epoch, cfg.train.epochs)
    elif metrics_path is not None:
        write_json(metrics_path, metrics)
    log.info("wrote %s (%d epochs, %.0f s)%s", model_path, res["state"].epoch, seconds,
             f"; validation average mAP {metrics['val/average_mAP']:.4f}"
             if "val/average_mAP" in metrics else "")
    return {**res, "model_path": str(model_path),
            "metrics_path": None if metrics_path is None else str(metrics_path),
            "seconds": seconds}


def train_on_ray(cfg: WorkflowConfig, out: Path, *, metrics_path: str | Path | None,
                 callback: Callback | None, resume: str | Path | None, device: str | None,
                 validation: bool) -> dict[str, Any]:
    """``ray.num_workers >= 1``: :func:`train` under Ray Train (``workflows.ray_train``).

    Same outputs and return value as the in-process path. Rank 0 logs each epoch into the
    active MLflow run (if any) while training; ``callback`` runs here after the run, once per
    epoch, only when no MLflow run is active (Ray workers cannot call into this process, and
    the epochs are already logged otherwise). A Ray run resumes by name
    (``-s ray.run_name=<name>``, printed when one fails), not from ``--resume``.
    """
    from amnet import engine
    from amnet.errors import ConfigError
    from workflows.ray_train import run_ray_training

    if resume is not None:
        raise ConfigError("--resume takes an in-process checkpoint; with ray.num_workers >= 1 a "
                          "run resumes by name: -s ray.run_name=<name of the stopped Ray run>")
    if device is not None:
        log.warning("--device %s ignored under Ray Train: ray.use_gpu picks the device", device)
    t0 = time.perf_counter()
    active = sys.modules["mlflow"].active_run() if "mlflow" in sys.modules else None
    res = run_ray_training(cfg, mlflow_run_id=active.info.run_id if active else None,
                           validate=validation)
    show = log_epoch(cfg.train.epochs)
    for h in res.history:
        show(int(h["epoch"]), h)
        if callback is not None and active is None:
            callback(int(h["epoch"]), dict(h))
    state, info = engine.load_checkpoint(res.checkpoint, cfg, device="cpu")
    model_path = out / "model.pt"
    atomic_copy(res.checkpoint, model_path)
    seconds = time.perf_counter() - t0
    last = res.history[-1] if res.history else {}
    metrics = metrics_file_values({k: v for k, v in last.items()
                                   if k not in ("epoch", "resumed_from")})
    metrics.update(epochs=state.epoch, ray_workers=cfg.ray.num_workers)
    if metrics_path is not None:
        write_json(metrics_path, metrics)
    log.info("wrote %s (Ray run %s, %d worker(s), %d epochs, %.0f s)", model_path, res.run_name,
             cfg.ray.num_workers, state.epoch, seconds)
    return {"state": state, "history": res.history, "metrics": metrics,
            "classes": list(info.get("classes", [])), "checkpoint": str(res.checkpoint),
            "model_path": str(model_path),
            "metrics_path": None if metrics_path is None else str(metrics_path),
            "seconds": seconds, "ray_run_name": res.run_name, "ray_path": res.path}


def run(args: argparse.Namespace) -> int:
    from workflows.resume import EXIT_INTERRUPTED, plan_resume, sigint_once

    cfg, plan = plan_resume(args, load_config(args.params, args.overrides))
    with sigint_once():
        try:
            if args.no_track:
                train(cfg, args.out, metrics_path=args.metrics, resume=args.resume,
                      device=args.device, validation=not args.no_val)
                return 0
            from workflows import tracking  # checks the store before training; logs model.pt

            with tracking.training_run(cfg, args.out, params_file=args.params,
                                       resume=plan.resuming, resume_key=plan.key,
                                       resume_command=plan.command) as tracked:
                train(cfg, args.out, metrics_path=args.metrics, resume=args.resume,
                      device=args.device, validation=not args.no_val, callback=tracked.callback)
        except KeyboardInterrupt:  # Ctrl-C: the last complete checkpoint stays; say how to go on
            print(plan.message(), file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
    return 0


def main(argv: list[str] | None = None) -> int:
    from workflows.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
