"""Training for ``cfg.train.epochs`` epochs: the one epoch loop, in-process or driven by hooks
(a DistributedDataParallel worker of a Ray Train group, a Tune trial)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from amnet.config import Config
from amnet.device import resolve_device
from amnet.engine.build import (
    TrainState,
    build_model,
    build_train_state,
    make_loader,
    train_epoch_setup,
)
from amnet.engine.checkpoint import load_checkpoint, save_checkpoint
from amnet.engine.epoch import train_one_epoch
from amnet.engine.evaluate import evaluate
from amnet.engine.seed import restore_rng, seed_everything
from amnet.errors import ModelLoadError

__all__ = ["VAL_PREFIX", "FitHooks", "fit"]

#: the split in a metric's name: ``val/average_mAP`` is scored on the validation split
VAL_PREFIX = "val/"

log = logging.getLogger(__name__)


@dataclass
class FitHooks:
    """How :func:`fit` is driven from outside this process's plain loop (e.g. one
    DistributedDataParallel worker of a Ray Train group, or a Tune trial).

    ``sampler`` / ``batch_size``: this process's share of the training set and its batch
    (default: shuffle everything, ``train.batch_size``). ``wrap_model(model)`` returns the
    module both phases run through (a DDP wrapper; ``state.model`` stays the bare model).
    ``reduce_metrics(metrics)``: one epoch's training metrics of this process → those of the
    group (called on every rank: it may be a collective). ``validate(state)``: the validation
    metrics, called on every rank whenever :func:`fit` validates, replacing the evaluation
    on ``val_ds`` (a rank that only joins a collective returns None). ``on_resume(state,
    info)``: after a checkpoint was loaded (``info`` as :func:`load_checkpoint`).
    ``on_epoch_end(epoch, metrics, state)``: after each epoch, after ``callback`` (it may add
    entries to ``metrics``: that dict is the history's).
    """

    sampler: Any = None
    batch_size: int | None = None
    wrap_model: Callable[[nn.Module], nn.Module] | None = None
    reduce_metrics: Callable[[dict[str, float]], dict[str, float]] | None = None
    validate: Callable[[TrainState], dict[str, float] | None] | None = None
    on_resume: Callable[[TrainState, dict[str, Any]], None] | None = None
    on_epoch_end: Callable[[int, dict[str, float], TrainState], None] | None = None


def fit(cfg: Config, train_ds: Any, val_ds: Any = None, *,
        callback: Callable[[int, dict[str, float]], None] | None = None,
        checkpoint_dir: str | Path | None = None, resume: str | Path | None = None,
        device: str | torch.device | None = None,
        hooks: FitHooks | None = None) -> dict[str, Any]:
    """Train for ``cfg.train.epochs`` epochs: the one epoch loop (in-process and Ray Train).

    ``callback(epoch, metrics)`` runs once per epoch (0-based epoch) with the losses, ``lr``,
    ``time/epoch_s`` (``gpu/max_mem_gib`` on CUDA) and — every ``cfg.train.eval_every`` epochs
    and after the last — the validation ``val/mAP_*`` / ``val/average_mAP`` on ``val_ds`` and
    ``time/eval_s`` (the validation split, never the test split: these numbers may feed
    choices). After each epoch the state goes to ``checkpoint_dir/last.pt`` (written before the
    callback runs), with every epoch's metrics so far (``history``: a run resumed after an
    interrupt can still report an epoch whose callback never ran). ``resume``: a checkpoint
    path; training continues at its next epoch and gives the same results as an uninterrupted
    run. ``hooks``: see :class:`FitHooks` (distributed sampler, DDP wrapper, metric reduction,
    reporting).

    Returns ``{"state": TrainState, "history": [metrics per epoch], "metrics": last epoch's
    metrics, "classes": [...], "checkpoint": path or None}``.
    """
    hooks = hooks if hooks is not None else FitHooks()
    past: list[dict[str, float]] = []  # the epochs a resumed checkpoint recorded
    device = resolve_device(device if device is not None else cfg.train.device)
    seed_everything(cfg.train.seed)
    classes = list(train_ds.classes)
    lcfg = cfg if hooks.batch_size is None else cfg.replace(f"train.batch_size={hooks.batch_size}")
    loader = make_loader(train_ds, lcfg, training=True, sampler=hooks.sampler)
    if resume is not None:
        state, info = load_checkpoint(resume, cfg, device)
        if info["classes"] and info["classes"] != classes:
            raise ModelLoadError(f"{resume}: trained on classes {info['classes'][:5]}… but the "
                                 f"dataset has {classes[:5]}…")
        if state.steps_per_epoch != len(loader):
            raise ModelLoadError(f"{resume}: written with {state.steps_per_epoch} batches per "
                                 f"epoch, the loader now has {len(loader)} (different data or "
                                 "train.batch_size)")
        restore_rng(info)
        past = list(info.get("history", []))
        log.info("resuming from %s at epoch %d", resume, state.epoch + 1)
        if hooks.on_resume is not None:
            hooks.on_resume(state, info)
    else:
        model = build_model(cfg, cfg.data.feature_dim, len(classes)).to(device)
        state = build_train_state(cfg, model, len(loader))
    net = hooks.wrap_model(state.model) if hooks.wrap_model is not None else None
    validate = hooks.validate
    if validate is None and val_ds is not None:
        def validate(st: TrainState) -> dict[str, float]:
            return evaluate(st.eval_model, val_ds, cfg, device)[0]
    ckpt = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    history: list[dict[str, float]] = []
    every = cfg.train.eval_every
    for epoch in range(state.epoch, cfg.train.epochs):
        train_epoch_setup(loader, train_ds, cfg, epoch)  # crops + sampler order of this epoch
        t0 = time.perf_counter()
        metrics = train_one_epoch(state, loader, cfg, device, ddp_model=net, amp=cfg.train.amp)
        metrics["time/epoch_s"] = time.perf_counter() - t0
        if device.type == "cuda":
            metrics["gpu/max_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        if hooks.reduce_metrics is not None:
            metrics = hooks.reduce_metrics(metrics)
        state.epoch = epoch + 1
        last = state.epoch == cfg.train.epochs
        if validate is not None and (last or (every and state.epoch % every == 0)):
            t1 = time.perf_counter()
            metrics.update({f"{VAL_PREFIX}{k}": v for k, v in (validate(state) or {}).items()})
            metrics["time/eval_s"] = time.perf_counter() - t1
        log.info("epoch %d/%d %s", state.epoch, cfg.train.epochs,
                 " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if math.isfinite(v)))
        history.append(metrics)
        if ckpt is not None:  # before the callback, so a callback can ship the checkpoint
            save_checkpoint(ckpt, state, cfg, {"classes": classes, "history": [*past, *history]})
        if callback is not None:
            callback(epoch, dict(metrics))
        if hooks.on_epoch_end is not None:
            hooks.on_epoch_end(epoch, metrics, state)
    return {"state": state, "history": history, "metrics": history[-1] if history else {},
            "classes": classes, "checkpoint": str(ckpt) if ckpt is not None else None}
