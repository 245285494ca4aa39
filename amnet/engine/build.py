"""What a training needs before its first step: model, AdamW + schedule (§4.2), loaders."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from amnet.config import Config
from amnet.errors import ConfigError, DataError
from amnet.model.amnet import AMNet

__all__ = ["TrainState", "build_model", "build_train_state", "ema_update_fn", "make_loader",
           "train_epoch_setup"]


def build_model(cfg: Config, in_dim: int, num_classes: int) -> AMNet:
    """AMNet for ``in_dim``-channel features and ``num_classes`` classes, checked against
    the rest of the config (a confidence that needs the matching head, needs that head)."""
    if not cfg.model.matching_head and cfg.infer.confidence != "sigmoid":
        raise ConfigError(f"infer.confidence={cfg.infer.confidence!r} needs the matching head; "
                          "with model.matching_head=false use infer.confidence=sigmoid")
    return AMNet(cfg.model, in_dim, num_classes, triplet_margin=cfg.loss.triplet_margin,
                 triplet_anchors=cfg.loss.triplet_anchors)


@dataclass
class TrainState:
    """Everything that changes during training (and goes into a checkpoint).

    ``epoch`` counts completed epochs (the next epoch to run), ``step`` completed iterations;
    ``normalizer`` is the moving average of the positive-point count that divides the detector
    losses (None until the first batch); ``ema`` the optional weight average used for
    evaluation; ``scaler`` the fp16 gradient scaler; ``ame_optimizer`` the AME's own AdamW for
    phase 1 (``train.ame_optimizer=separate``; None = phase 1 uses ``optimizer``).
    """

    model: AMNet
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    epoch: int = 0
    step: int = 0
    ema: AveragedModel | None = None
    normalizer: float | None = None
    steps_per_epoch: int = 0
    scaler: torch.amp.GradScaler | None = None
    ame_optimizer: torch.optim.Optimizer | None = None

    @property
    def eval_model(self) -> nn.Module:
        """The weights to evaluate: the EMA average when kept, else the live model."""
        return self.ema.module if self.ema is not None else self.model


def ema_update_fn(decay: float, warmup: float):
    """EMA update for torch's ``AveragedModel`` with a warm-up of the decay.

    After ``n`` updates the average takes ``W ← d·W + (1−d)·W_model`` with
    ``d = min(decay, (1 + n) / (warmup + n))`` (``warmup = 0``: ``d = decay`` throughout, as
    torch's ``get_ema_multi_avg_fn``). Why: with a fixed 0.999 the weights of the first steps
    (≈ the random init) still hold 0.999^N of the average after N steps — 37 % after 1,000,
    so a short schedule evaluates a blend of init and trained weights. The warm-up keeps the
    average over roughly the last ``1/warmup`` of training until ``decay`` is reached.
    """
    @torch.no_grad()
    def update(ema: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        if not ema[0].is_floating_point():  # integer buffers (counters): take the model's
            torch._foreach_copy_(ema, current)
            return
        d = torch.full((), decay, dtype=torch.float64, device=n.device)
        if warmup > 0:  # n is a device tensor: no host sync
            d = torch.minimum(d, (1.0 + n.double()) / (warmup + n.double()))
        torch._foreach_lerp_(ema, current, (1.0 - d).to(ema[0].dtype))
    return update


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only; biases, norms and the ω scales are exempt."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_train_state(cfg: Config, model: AMNet, steps_per_epoch: int) -> TrainState:
    """AdamW + per-iteration linear warm-up then cosine annealing (§4.2), optional EMA."""
    if steps_per_epoch < 1:
        raise DataError("the training loader has no batch (empty split, or fewer videos than "
                        "one batch)")
    t = cfg.train
    opt = torch.optim.AdamW(_param_groups(model, t.weight_decay), lr=t.lr)
    total = t.epochs * steps_per_epoch
    warm = min(round(t.warmup_epochs * steps_per_epoch), total - 1)
    cosine = CosineAnnealingLR(opt, T_max=max(total - warm, 1), eta_min=t.eta_min)
    if warm > 0:
        sched: LRScheduler = SequentialLR(
            opt, [LinearLR(opt, start_factor=1e-3, end_factor=1.0, total_iters=warm), cosine],
            milestones=[warm])
    else:
        sched = cosine
    ema = None
    if t.ema:
        # torch's AveragedModel: EMA of parameters and buffers, a state_dict like any module.
        ema = AveragedModel(model, multi_avg_fn=ema_update_fn(t.ema_decay, t.ema_warmup),
                            use_buffers=True)
    ame_opt = None
    if t.ame_optimizer == "separate" and model.ame_parameters():
        # the triplet phase's own moments; its lr follows the main schedule (mask_phase copies
        # it), so one scheduler drives both
        ame_opt = torch.optim.AdamW(_param_groups(model.ame, t.weight_decay), lr=t.lr)
    return TrainState(model=model, optimizer=opt, scheduler=sched, ema=ema,
                      steps_per_epoch=steps_per_epoch, ame_optimizer=ame_opt)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % (1 << 32)
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Any, cfg: Config, *, training: bool, sampler: Any = None) -> DataLoader:
    """Batches of ``amnet.data.collate``, padded to a multiple of ``2**(fpn_levels-1)``.

    Training shuffles with its own generator (re-seeded per epoch by :func:`train_epoch_setup`
    so a resumed run sees the same order) unless a ``sampler`` (e.g. DistributedSampler) is
    given; evaluation keeps the dataset order. Workers: ``cfg.train.loader_workers``.
    """
    from amnet.data.dataset import collate

    gen = torch.Generator()
    gen.manual_seed(cfg.train.seed)
    workers = cfg.train.loader_workers
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        shuffle=training and sampler is None,
        sampler=sampler,
        collate_fn=partial(collate, pad_multiple=2 ** (cfg.model.fpn_levels - 1)),
        num_workers=workers,
        worker_init_fn=_seed_worker if workers else None,
        generator=gen,
        drop_last=False,
        persistent_workers=False,
    )


def train_epoch_setup(loader: DataLoader, dataset: Any, cfg: Config, epoch: int) -> None:
    """Make epoch ``epoch``'s crops and order a function of (seed, epoch) only."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(cfg.train.seed * 100_003 + epoch)
