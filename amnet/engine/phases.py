"""The two phases of one training step (§3.4), on the same batch.

1. **Mask representation learning** — ``λ2 · L_trip`` (Eq. 2–3) is back-propagated and the
   optimiser steps the AME parameters only (every other gradient is cleared first).
2. **Action detector learning** — ``L_cls + λ1 (L_reg + L_mat)`` (Eq. 11) is back-propagated
   through the whole network (heads, GAM and — through ``F̂ = F + AME(F)``, Eq. 4 — the AME
   too) and the optimiser steps every parameter that received a gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from amnet.config import Config
from amnet.engine.build import TrainState
from amnet.errors import AmnetError, ConfigError
from amnet.losses import DetectionLosses, detection_losses
from amnet.model.assign import assign_targets, inside_segments

__all__ = ["autocast", "batch_to", "detect_phase", "mask_phase"]


def autocast(device: torch.device, amp: str) -> Any:
    if amp == "off":
        return torch.autocast(device.type, enabled=False)
    if amp not in ("bf16", "fp16"):
        raise ConfigError(f"train.amp must be off, bf16 or fp16, got {amp!r}")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _apply(state: TrainState, loss: torch.Tensor, params: list[nn.Parameter],
           others: list[nn.Parameter], clip: float,
           optimizer: torch.optim.Optimizer | None = None) -> None:
    """Backward ``loss``, keep only ``params``' gradients, clip them, one step of ``optimizer``
    (default ``state.optimizer``)."""
    optimizer = optimizer if optimizer is not None else state.optimizer
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
    else:
        loss.backward()
    for p in others:  # e.g. DDP may hand unused parameters zero grads: AdamW would move them
        p.grad = None
    live = [p for p in params if p.grad is not None]
    if state.scaler is not None:
        state.scaler.unscale_(optimizer)
    if clip > 0 and live:
        torch.nn.utils.clip_grad_norm_(live, clip)
    if state.scaler is not None:
        state.scaler.step(optimizer)
        state.scaler.update()
    else:
        optimizer.step()


def batch_to(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, ...]:
    nb = device.type == "cuda"
    return (batch["feats"].to(device, non_blocking=nb), batch["mask"].to(device, non_blocking=nb),
            [s.to(device) for s in batch["segments"]], [lab.to(device) for lab in batch["labels"]])


def mask_phase(state: TrainState, net: nn.Module, feats: torch.Tensor, mask: torch.Tensor,
               segments: list[torch.Tensor], cfg: Config, device: torch.device,
               amp: str = "off") -> torch.Tensor:
    """Phase 1 — mask representation learning (Eq. 1–3, §3.4).

    Back-propagates ``λ2 · L_trip`` and steps the AME parameters only (every other gradient
    is cleared before the optimiser step) — with ``state.optimizer``, or with the AME's own
    AdamW ``state.ame_optimizer`` when ``train.ame_optimizer=separate``. Returns the detached
    L_trip; no-op (0) without AME or with λ2 = 0.
    """
    model = state.model
    ame = model.ame_parameters()
    if not ame or cfg.loss.lambda2 <= 0:
        return torch.zeros((), device=device)
    ame_ids = {id(p) for p in ame}
    rest = [p for p in model.parameters() if id(p) not in ame_ids]
    opt = state.ame_optimizer
    if opt is not None:  # train.ame_optimizer=separate: same lr schedule, own moments
        lr = state.optimizer.param_groups[0]["lr"]
        for group in opt.param_groups:
            group["lr"] = lr
    state.optimizer.zero_grad(set_to_none=True)
    with autocast(device, amp):
        trip = net(feats, mask, phase="mask", pos_mask=inside_segments(segments, mask)).float()
    _check_finite(trip, "triplet", state)
    _apply(state, cfg.loss.lambda2 * trip, ame, rest, cfg.train.clip_grad, opt)
    return trip.detach()


def detect_phase(state: TrainState, net: nn.Module, feats: torch.Tensor, mask: torch.Tensor,
                 segments: list[torch.Tensor], labels: list[torch.Tensor], cfg: Config,
                 device: torch.device, amp: str = "off") -> DetectionLosses:
    """Phase 2 — action detector learning (Eq. 11, §3.4).

    Label assignment, loss-normaliser update (moving average of the positive count,
    ``loss.norm_momentum``), ``L_cls + λ1 (L_reg + L_mat)`` backward through the whole network
    (AME included, via Eq. 4) and one optimiser step of every parameter with a gradient.
    Returns the (attached) losses.
    """
    model = state.model
    lc = cfg.loss
    state.optimizer.zero_grad(set_to_none=True)
    with autocast(device, amp):
        out = net(feats, mask, phase="detect")
    out.cls_logits = out.cls_logits.float()
    out.offsets = out.offsets.float()
    if out.match_logits is not None:
        out.match_logits = out.match_logits.float()
    targets = assign_targets(out.points, out.strides, out.level_ids, out.mask, segments, labels,
                             num_classes=model.num_classes,
                             regression_ranges=cfg.model.regression_ranges,
                             center_radius=cfg.model.center_radius,
                             label_smoothing=lc.label_smoothing)
    num_pos = float((targets.pos & out.mask).sum())
    if net is not model and torch.distributed.is_initialized():
        # DDP averages gradients over the workers: normalise by their MEAN positive count so
        # N workers x B/N videos step exactly like one worker with B videos (kept by
        # tests/workflows/test_ray_train.py, 1 vs 2 workers).
        pos_t = torch.tensor([num_pos], device=device)
        torch.distributed.all_reduce(pos_t)
        num_pos = float(pos_t) / torch.distributed.get_world_size()
    num_pos = max(num_pos, 1.0)
    m = lc.norm_momentum
    state.normalizer = (float(num_pos) if state.normalizer is None
                        else m * state.normalizer + (1 - m) * num_pos)
    det = detection_losses(out, targets, state.normalizer, focal_alpha=lc.focal_alpha,
                           focal_gamma=lc.focal_gamma, matching=lc.matching)
    loss = det.total(lc.lambda1)
    _check_finite(loss, "detector", state)
    params = [p for p in model.parameters() if p.requires_grad]
    _apply(state, loss, params, [], cfg.train.clip_grad)
    return det


def _check_finite(loss: torch.Tensor, what: str, state: TrainState) -> None:
    if not torch.isfinite(loss.detach()).all():
        raise AmnetError(f"{what} loss is {float(loss.detach())} at epoch {state.epoch + 1}, "
                         f"iteration {state.step + 1}: training diverged (lower train.lr, keep "
                         "train.clip_grad > 0, or check the features for huge values)")
