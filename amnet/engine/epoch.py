"""One epoch: per batch the mask phase, the detector phase, a scheduler step and the EMA update."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from amnet.config import Config
from amnet.engine.build import TrainState
from amnet.engine.phases import batch_to, detect_phase, mask_phase
from amnet.errors import DataError
from amnet.progress import progress

__all__ = ["LOSS_KEYS", "train_one_epoch"]

LOSS_KEYS = ("loss/total", "loss/cls", "loss/reg", "loss/mat", "loss/trip")


def train_one_epoch(state: TrainState, loader: DataLoader, cfg: Config, device: torch.device,
                    *, ddp_model: nn.Module | None = None, amp: str = "off",
                    on_step: Callable[[int, dict[str, float]], None] | None = None
                    ) -> dict[str, float]:
    """One pass over ``loader``: per batch :func:`mask_phase` then :func:`detect_phase`, one
    scheduler step and the EMA update.

    ``ddp_model``: a DistributedDataParallel wrapper of ``state.model`` to run both forwards
    through. ``on_step(step, losses)`` is called after every iteration. Returns the epoch means
    of ``loss/total`` (Eq. 12), ``loss/cls``, ``loss/reg``, ``loss/mat``, ``loss/trip`` and the
    learning rate at the epoch's end (``lr``). Does not advance ``state.epoch`` (``fit`` does).
    """
    model = state.model
    net = ddp_model if ddp_model is not None else model
    model.train()
    if amp == "fp16" and state.scaler is None:
        state.scaler = torch.amp.GradScaler(device.type)
    lc = cfg.loss
    sums = dict.fromkeys(LOSS_KEYS, 0.0)
    n = 0
    bar = progress(loader, desc=f"epoch {state.epoch + 1}/{cfg.train.epochs}", unit="batch",
                   leave=False)
    for batch in bar:
        feats, mask, segments, labels = batch_to(batch, device)
        trip = mask_phase(state, net, feats, mask, segments, cfg, device, amp)
        det = detect_phase(state, net, feats, mask, segments, labels, cfg, device, amp)
        state.scheduler.step()
        state.step += 1
        if state.ema is not None:
            state.ema.update_parameters(model)
        # one host sync per step for all five numbers
        total, cls, reg, mat, trip_v = torch.stack([
            det.total(lc.lambda1).detach().float(), det.cls.detach().float(),
            det.reg.detach().float(), det.mat.detach().float(),
            trip.detach().float().to(det.cls.device)]).tolist()
        step_losses = {"loss/total": total + lc.lambda2 * trip_v, "loss/cls": cls,
                       "loss/reg": reg, "loss/mat": mat, "loss/trip": trip_v}
        for k, v in step_losses.items():
            sums[k] += v
        n += 1
        bar.set_postfix(loss=f"{step_losses['loss/total']:.3f}")
        if on_step is not None:
            on_step(state.step, step_losses)
    if n == 0:
        raise DataError("the training loader yielded no batch")
    out_metrics = {k: v / n for k, v in sums.items()}
    out_metrics["lr"] = float(state.optimizer.param_groups[0]["lr"])
    return out_metrics
