"""Training for ``cfg.train.epochs`` epochs in this process: the epoch loop."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from amnet.config import Config
from amnet.device import resolve_device
from amnet.engine.build import build_model, build_train_state, make_loader, train_epoch_setup
from amnet.engine.checkpoint import load_checkpoint, save_checkpoint
from amnet.engine.epoch import train_one_epoch
from amnet.engine.evaluate import evaluate
from amnet.engine.seed import restore_rng, seed_everything
from amnet.errors import ModelLoadError

__all__ = ["fit"]

logger = logging.getLogger(__name__)


def fit(cfg: Config, train_ds: Any, val_ds: Any = None, *,
        callback: Callable[[int, dict[str, float]], None] | None = None,
        checkpoint_dir: str | Path | None = None, resume: str | Path | None = None,
        device: str | torch.device | None = None) -> dict[str, Any]:
    """Train for ``cfg.train.epochs`` epochs in this process.

    ``callback(epoch, metrics)`` runs once per epoch (0-based epoch) with the losses, ``lr``,
    ``time/epoch_s`` and — every ``cfg.train.eval_every`` epochs and after the last — the
    validation ``mAP_*`` / ``average_mAP`` on ``val_ds``. After each epoch the state goes to
    ``checkpoint_dir/last.pt`` (written before the callback runs). ``resume``: a checkpoint
    path; training continues at its next epoch and gives the same results as an uninterrupted
    run.

    Returns ``{"state": TrainState, "history": [metrics per epoch], "metrics": last epoch's
    metrics, "classes": [...], "checkpoint": path or None}``.
    """
    device = resolve_device(device if device is not None else cfg.train.device)
    seed_everything(cfg.train.seed)
    classes = list(train_ds.classes)
    loader = make_loader(train_ds, cfg, training=True)
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
        logger.info("resuming from %s at epoch %d", resume, state.epoch + 1)
    else:
        model = build_model(cfg, cfg.data.feature_dim, len(classes)).to(device)
        state = build_train_state(cfg, model, len(loader))
    ckpt = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    history: list[dict[str, float]] = []
    every = cfg.train.eval_every
    for epoch in range(state.epoch, cfg.train.epochs):
        train_epoch_setup(loader, train_ds, cfg, epoch)
        t0 = time.perf_counter()
        metrics = train_one_epoch(state, loader, cfg, device, amp=cfg.train.amp)
        metrics["time/epoch_s"] = time.perf_counter() - t0
        state.epoch = epoch + 1
        last = state.epoch == cfg.train.epochs
        if val_ds is not None and (last or (every and state.epoch % every == 0)):
            val, _, _ = evaluate(state.eval_model, val_ds, cfg, device)
            metrics.update(val)
        logger.info("epoch %d/%d %s", state.epoch, cfg.train.epochs,
                 " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if math.isfinite(v)))
        history.append(metrics)
        if ckpt is not None:  # before the callback, so a callback can ship the checkpoint
            save_checkpoint(ckpt, state, cfg, {"classes": classes})
        if callback is not None:
            callback(epoch, dict(metrics))
    return {"state": state, "history": history, "metrics": history[-1] if history else {},
            "classes": classes, "checkpoint": str(ckpt) if ckpt is not None else None}
