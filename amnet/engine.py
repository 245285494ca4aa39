"""Framework-agnostic training and evaluation of AMNet: loops, schedules, checkpoints.

Nothing here knows Ray, MLflow or DVC: ``fit`` reports each epoch through a callback, and the
pieces it is made of (``build_train_state``, ``make_loader``, ``train_one_epoch``, ``evaluate``,
``save_checkpoint`` / ``load_checkpoint``) are public so that ``workflows/`` can drive them
under DistributedDataParallel.

One training step (§3.4) is two phases on the same batch:

1. **Mask representation learning** — ``λ2 · L_trip`` (Eq. 2–3) is back-propagated and the
   optimiser steps the AME parameters only (every other gradient is cleared first).
2. **Action detector learning** — ``L_cls + λ1 (L_reg + L_mat)`` (Eq. 11) is back-propagated
   through the whole network (heads, GAM and — through ``F̂ = F + AME(F)``, Eq. 4 — the AME
   too) and the optimiser steps every parameter that received a gradient.

Both phases share one AdamW optimiser (so the AME keeps one set of moment estimates) and the
scheduler steps once per iteration, after phase 2. Without AME (``model.ame=false``) or with
``λ2 = 0`` phase 1 is skipped.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from amnet.config import Config, from_dict
from amnet.errors import AmnetError, ConfigError, DataError, ModelLoadError
from amnet.losses import DetectionLosses, detection_losses
from amnet.model.amnet import AMNet
from amnet.model.assign import assign_targets, inside_segments
from amnet.progress import progress

if TYPE_CHECKING:
    from amnet.evaluation.map import MAPResult

__all__ = [
    "CHECKPOINT_FORMAT",
    "TrainState",
    "build_model",
    "build_train_state",
    "detect_phase",
    "evaluate",
    "fit",
    "ground_truth",
    "load_checkpoint",
    "load_model_for_inference",
    "make_loader",
    "mask_phase",
    "predict",
    "resolve_device",
    "restore_rng",
    "save_checkpoint",
    "seed_everything",
    "train_epoch_setup",
    "train_one_epoch",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "amnet-checkpoint"
CHECKPOINT_VERSION = 1
LOSS_KEYS = ("loss/total", "loss/cls", "loss/reg", "loss/mat", "loss/trip")
#: the split in a metric's name: ``val/average_mAP`` is scored on the validation split
VAL_PREFIX = "val/"


# --------------------------------------------------------------------------- set-up

def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, numpy and torch; ask torch for deterministic kernels where it has them.

    On CPU every op AMNet uses is deterministic, so the same seed gives the same loss curve.
    On CUDA a few kernels (e.g. attention backward) have no deterministic variant: torch only
    warns (``warn_only``) instead of failing.
    """
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """``auto`` → CUDA when available else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given.

    Raises :class:`ConfigError` for a CUDA device this machine does not have.
    """
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"train.device: unknown device {spec!r} (expected auto, cpu, cuda or "
                          "cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={spec!r} but CUDA is not available here "
                              "(use auto or cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"train.device={spec!r} but only {torch.cuda.device_count()} "
                              "CUDA device(s) exist")
    elif dev.type != "cpu":
        raise ConfigError(f"train.device: unsupported device {spec!r} (expected auto, cpu, "
                          "cuda or cuda:N)")
    return dev


def build_model(cfg: Config, in_dim: int, num_classes: int) -> AMNet:
    """AMNet for ``in_dim``-channel features and ``num_classes`` classes, checked against
    the rest of the config (a confidence that needs the matching head, needs that head)."""
    if not cfg.model.matching_head and cfg.infer.confidence != "sigmoid":
        raise ConfigError(f"infer.confidence={cfg.infer.confidence!r} needs the matching head; "
                          "with model.matching_head=false use infer.confidence=sigmoid")
    return AMNet(cfg.model, in_dim, num_classes, triplet_margin=cfg.loss.triplet_margin)


@dataclass
class TrainState:
    """Everything that changes during training (and goes into a checkpoint).

    ``epoch`` counts completed epochs (the next epoch to run), ``step`` completed iterations;
    ``normalizer`` is the moving average of the positive-point count that divides the detector
    losses (None until the first batch); ``ema`` the optional weight average used for
    evaluation; ``scaler`` the fp16 gradient scaler.
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

    @property
    def eval_model(self) -> nn.Module:
        """The weights to evaluate: the EMA average when kept, else the live model."""
        return self.ema.module if self.ema is not None else self.model


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
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay),
                            use_buffers=True)
    return TrainState(model=model, optimizer=opt, scheduler=sched, ema=ema,
                      steps_per_epoch=steps_per_epoch)


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


# --------------------------------------------------------------------------- training

def _autocast(device: torch.device, amp: str) -> Any:
    if amp == "off":
        return torch.autocast(device.type, enabled=False)
    if amp not in ("bf16", "fp16"):
        raise ConfigError(f"train.amp must be off, bf16 or fp16, got {amp!r}")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _apply(state: TrainState, loss: torch.Tensor, params: list[nn.Parameter],
           others: list[nn.Parameter], clip: float) -> None:
    """Backward ``loss``, keep only ``params``' gradients, clip them, one optimiser step."""
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
    else:
        loss.backward()
    for p in others:  # e.g. DDP may hand unused parameters zero grads: AdamW would move them
        p.grad = None
    live = [p for p in params if p.grad is not None]
    if state.scaler is not None:
        state.scaler.unscale_(state.optimizer)
    if clip > 0 and live:
        torch.nn.utils.clip_grad_norm_(live, clip)
    if state.scaler is not None:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()


def _to(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, ...]:
    nb = device.type == "cuda"
    return (batch["feats"].to(device, non_blocking=nb), batch["mask"].to(device, non_blocking=nb),
            [s.to(device) for s in batch["segments"]], [lab.to(device) for lab in batch["labels"]])


def mask_phase(state: TrainState, net: nn.Module, feats: torch.Tensor, mask: torch.Tensor,
               segments: list[torch.Tensor], cfg: Config, device: torch.device,
               amp: str = "off") -> torch.Tensor:
    """Phase 1 — mask representation learning (Eq. 1–3, §3.4).

    Back-propagates ``λ2 · L_trip`` and steps the AME parameters only (every other gradient
    is cleared before the optimiser step). Returns the detached L_trip; no-op (0) without AME
    or with λ2 = 0.
    """
    model = state.model
    ame = model.ame_parameters()
    if not ame or cfg.loss.lambda2 <= 0:
        return torch.zeros((), device=device)
    ame_ids = {id(p) for p in ame}
    rest = [p for p in model.parameters() if id(p) not in ame_ids]
    state.optimizer.zero_grad(set_to_none=True)
    with _autocast(device, amp):
        trip = net(feats, mask, phase="mask", pos_mask=inside_segments(segments, mask)).float()
    _check_finite(trip, "triplet", state)
    _apply(state, cfg.loss.lambda2 * trip, ame, rest, cfg.train.clip_grad)
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
    with _autocast(device, amp):
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
        feats, mask, segments, labels = _to(batch, device)
        trip = mask_phase(state, net, feats, mask, segments, cfg, device, amp)
        det = detect_phase(state, net, feats, mask, segments, labels, cfg, device, amp)
        state.scheduler.step()
        state.step += 1
        if state.ema is not None:
            state.ema.update_parameters(model)
        step_losses = {
            "loss/total": float(det.total(lc.lambda1).detach()) + lc.lambda2 * float(trip),
            "loss/cls": float(det.cls.detach()), "loss/reg": float(det.reg.detach()),
            "loss/mat": float(det.mat.detach()), "loss/trip": float(trip),
        }
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


def _check_finite(loss: torch.Tensor, what: str, state: TrainState) -> None:
    if not torch.isfinite(loss.detach()).all():
        raise AmnetError(f"{what} loss is {float(loss.detach())} at epoch {state.epoch + 1}, "
                         f"iteration {state.step + 1}: training diverged (lower train.lr, keep "
                         "train.clip_grad > 0, or check the features for huge values)")


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def predict(model: nn.Module, dataset: Any, cfg: Config, device: torch.device | str) -> dict:
    """Detections for every (full-length) video of ``dataset`` as an ActivityNet results dict.

    Decoding, scoring and Soft-NMS are ``amnet.inference.postprocess`` (Eq. 13–14).
    """
    from amnet.inference import postprocess, to_results_json

    device = resolve_device(device)
    was_training = model.training
    model.eval()
    loader = make_loader(dataset, cfg, training=False)
    classes = list(dataset.classes)
    dets: list[Any] = []
    for batch in progress(loader, desc="inference", unit="batch", leave=False):
        out = model(batch["feats"].to(device), batch["mask"].to(device))
        dets.extend(postprocess(out, batch["meta"], cfg.infer, class_names=classes))
    model.train(was_training)
    return to_results_json(dets, classes)


def ground_truth(dataset: Any) -> dict[str, Any]:
    """The ActivityNet-style GT dict (seconds) that ``dataset``'s split is scored against.

    A :class:`~amnet.data.dataset.TALDataset` gives its annotation file **as given**
    (``dataset.scoring_ground_truth()``): the protocol scores every annotated instance, also
    those past a video's end that the data layer clips or drops for training targets, so the
    mAP equals ``amnet eval`` on the same file. Other datasets: their parsed annotations.
    Every subset is included (the evaluator picks the scored one), so a class that only the
    other split uses is known to the evaluator rather than an error.
    """
    if hasattr(dataset, "scoring_ground_truth"):
        return dataset.scoring_ground_truth()
    db = {}
    for vid, v in dataset.annotations.videos.items():
        db[vid] = {
            "subset": v.subset, "duration": float(v.duration), "fps": float(v.fps),
            "annotations": [{"label": lab, "segment": [float(s), float(e)]}
                            for lab, (s, e) in zip(v.labels, v.segments, strict=True)],
        }
    return {"database": db}


def evaluate(model: nn.Module, dataset: Any, cfg: Config, device: torch.device | str
             ) -> tuple[dict[str, float], dict, MAPResult]:
    """Predict on ``dataset`` and score it (``amnet.evaluation.map``) at ``cfg.eval.tiou``.

    Detections of a class that no video of the annotation file has (possible when the class
    list comes from a manifest) cannot be scored by the protocol and are left out of scoring
    (they stay in the returned predictions).

    Returns ``({"mAP_0.3": …, "average_mAP": …}, predictions JSON, MAPResult)``.
    """
    from amnet.evaluation.map import evaluate_detections

    preds = predict(model, dataset, cfg, device)
    gt = ground_truth(dataset)
    known = {a["label"] for v in gt["database"].values() for a in v["annotations"]}
    scored = {**preds, "results": {vid: [d for d in rows if d["label"] in known]
                                   for vid, rows in preds["results"].items()}}
    subset = getattr(dataset, "subset_name", cfg.eval.subset)
    result = evaluate_detections(gt, scored, subset=subset, tiou=cfg.eval.tiou)
    return result.metrics(), preds, result


# --------------------------------------------------------------------------- checkpoints

def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy_key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
        "numpy_pos": int(np_state["state"]["pos"]),
        "numpy_gauss": (int(np_state["has_gauss"]), float(np_state["gauss"])),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": rng["numpy_key"].numpy().astype(np.uint32),
                                   "pos": rng["numpy_pos"]},
                         "has_gauss": rng["numpy_gauss"][0], "gauss": rng["numpy_gauss"][1]})
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_checkpoint(path: str | Path, state: TrainState, cfg: Config,
                    extra: dict[str, Any] | None = None) -> None:
    """Write everything needed to resume exactly or to run inference, atomically.

    Holds model, optimiser, scheduler, EMA, fp16 scaler, normaliser, epoch, step, the config
    as a dict, ``in_dim`` / ``num_classes``, the Python/numpy/torch RNG states, and ``extra``
    (``fit`` stores the class names there as ``classes``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "ema": state.ema.state_dict() if state.ema is not None else None,
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        "normalizer": state.normalizer,
        "epoch": state.epoch,
        "step": state.step,
        "steps_per_epoch": state.steps_per_epoch,
        "config": cfg.to_dict(),
        "in_dim": state.model.in_dim,
        "num_classes": state.model.num_classes,
        "rng": _rng_state(),
        "extra": dict(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors come in many types; all mean "not ours"
        raise ModelLoadError(f"{path}: not a readable torch checkpoint "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelLoadError(f"{path}: not an amnet checkpoint (no '{CHECKPOINT_FORMAT}' format "
                             "tag; expected a file written by `amnet train`)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ModelLoadError(f"{path}: checkpoint version {payload.get('version')} is not "
                             f"supported (expected {CHECKPOINT_VERSION})")
    return payload


def _stored_config(payload: dict[str, Any], path: str | Path) -> Config:
    try:
        return from_dict(payload["config"], f"{path} (stored config)")
    except ConfigError as e:
        raise ModelLoadError(f"{path}: its stored config no longer validates: {e}") from None


def _load_weights(module: nn.Module, weights: dict[str, Any], path: str | Path, what: str) -> None:
    try:
        module.load_state_dict(weights)
    except RuntimeError as e:
        raise ModelLoadError(f"{path}: {what} does not fit the configured model (different "
                             f"model.* settings?): {str(e).splitlines()[0]}") from None


def load_checkpoint(path: str | Path, cfg: Config | None = None, device: str | torch.device = "cpu"
                    ) -> tuple[TrainState, dict[str, Any]]:
    """Rebuild the training state of a checkpoint (model from the stored config if ``cfg`` is
    None). Returns ``(state, info)``; ``info`` holds ``classes``, ``config`` (the stored dict),
    ``rng`` (apply with :func:`restore_rng`) and the ``extra`` entries."""
    payload = _read_checkpoint(path)
    cfg = cfg if cfg is not None else _stored_config(payload, path)
    device = resolve_device(device)
    model = build_model(cfg, int(payload["in_dim"]), int(payload["num_classes"]))
    _load_weights(model, payload["model"], path, "model weights")
    model.to(device)
    state = build_train_state(cfg, model, int(payload["steps_per_epoch"]))
    try:
        state.optimizer.load_state_dict(payload["optimizer"])
        state.scheduler.load_state_dict(payload["scheduler"])
    except (ValueError, KeyError) as e:
        raise ModelLoadError(f"{path}: optimiser/scheduler state does not fit: {e}") from None
    if state.ema is not None and payload.get("ema") is not None:
        _load_weights(state.ema, payload["ema"], path, "EMA weights")
    if payload.get("scaler") is not None:
        state.scaler = torch.amp.GradScaler(device.type)
        state.scaler.load_state_dict(payload["scaler"])
    state.normalizer = payload["normalizer"]
    state.epoch = int(payload["epoch"])
    state.step = int(payload["step"])
    extra = dict(payload.get("extra") or {})
    info = {**extra, "classes": extra.get("classes", []), "config": payload["config"],
            "rng": payload["rng"]}
    return state, info


def restore_rng(info: dict[str, Any]) -> None:
    """Put back the RNG states a checkpoint was written with (exact resume)."""
    _set_rng_state(info["rng"])


def load_model_for_inference(path: str | Path, device: str | torch.device = "cpu"
                             ) -> tuple[AMNet, Config, list[str]]:
    """(model in eval mode — the EMA weights when the run kept them —, config, class names).

    Raises :class:`ModelLoadError` for a missing file, a file that is not an amnet
    checkpoint, or weights that do not fit the stored config.
    """
    payload = _read_checkpoint(path)
    cfg = _stored_config(payload, path)
    model = build_model(cfg, int(payload["in_dim"]), int(payload["num_classes"]))
    weights = payload["model"]
    if payload.get("ema") is not None:
        weights = {k[len("module."):]: v for k, v in payload["ema"].items()
                   if k.startswith("module.")}
    _load_weights(model, weights, path, "model weights")
    model.to(resolve_device(device)).eval()
    return model, cfg, list((payload.get("extra") or {}).get("classes", []))


# --------------------------------------------------------------------------- fit

def fit(cfg: Config, train_ds: Any, val_ds: Any = None, *,
        callback: Callable[[int, dict[str, float]], None] | None = None,
        checkpoint_dir: str | Path | None = None, resume: str | Path | None = None,
        device: str | torch.device | None = None) -> dict[str, Any]:
    """Train for ``cfg.train.epochs`` epochs in this process.

    ``callback(epoch, metrics)`` runs once per epoch (0-based epoch) with the losses, ``lr``,
    ``time/epoch_s`` and — every ``cfg.train.eval_every`` epochs and after the last — the
    validation ``val/mAP_*`` / ``val/average_mAP`` on ``val_ds`` (the validation split, never
    the test split: these numbers may feed choices). After each epoch the state goes to
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
        log.info("resuming from %s at epoch %d", resume, state.epoch + 1)
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
            metrics.update({f"{VAL_PREFIX}{k}": v for k, v in val.items()})
        log.info("epoch %d/%d %s", state.epoch, cfg.train.epochs,
                 " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if math.isfinite(v)))
        history.append(metrics)
        if ckpt is not None:  # before the callback, so a callback can ship the checkpoint
            save_checkpoint(ckpt, state, cfg, {"classes": classes})
        if callback is not None:
            callback(epoch, dict(metrics))
    return {"state": state, "history": history, "metrics": history[-1] if history else {},
            "classes": classes, "checkpoint": str(ckpt) if ckpt is not None else None}
