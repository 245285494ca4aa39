"""The checkpoint format: everything to resume exactly or to run inference, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from amnet.config import Config, from_dict
from amnet.device import resolve_device
from amnet.engine.build import TrainState, build_model, build_train_state
from amnet.engine.seed import rng_state
from amnet.errors import ConfigError, ModelLoadError
from amnet.io import atomic_target
from amnet.model.amnet import AMNet

__all__ = ["CHECKPOINT_FORMAT", "checkpoint_epochs", "inference_checkpoint", "load_checkpoint",
           "load_model_for_inference", "save_checkpoint"]

CHECKPOINT_FORMAT = "amnet-checkpoint"
CHECKPOINT_VERSION = 1


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
        "ame_optimizer": (state.ame_optimizer.state_dict()
                          if state.ame_optimizer is not None else None),
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
        "rng": rng_state(),
        "extra": dict(extra or {}),
    }
    with atomic_target(path) as tmp:  # an interrupt mid-write keeps the previous checkpoint
        torch.save(payload, tmp)


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


def inference_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Write ``dst``: the weights :func:`load_model_for_inference` uses (the EMA average when
    kept), the config, shapes and class names of checkpoint ``src`` — no optimiser, scheduler
    or RNG state (a third to a quarter of the size; it cannot resume training)."""
    payload = _read_checkpoint(src)
    weights = payload["model"]
    if payload.get("ema") is not None:
        weights = {k[len("module."):]: v for k, v in payload["ema"].items()
                   if k.startswith("module.")}
    slim = {k: payload[k] for k in ("format", "version", "config", "in_dim", "num_classes",
                                     "epoch", "step")}
    slim.update(model=weights, ema=None, extra=payload.get("extra") or {}, inference_only=True)
    with atomic_target(Path(dst)) as tmp:
        torch.save(slim, tmp)


def checkpoint_epochs(path: str | Path) -> int:
    """How many epochs a checkpoint has completed (raises :class:`ModelLoadError` for a file
    that is not a readable amnet checkpoint)."""
    return int(_read_checkpoint(path)["epoch"])


def _stored_config(payload: dict[str, Any], path: str | Path,
                   schema: type[Config] = Config) -> Config:
    """The config a checkpoint was trained with, as ``schema`` (sections it lacks are dropped:
    the workflow stores its own sections beside the method's)."""
    try:
        return from_dict(payload["config"], f"{path} (stored config)", schema=schema,
                         only_known_sections=True)
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
    if payload.get("inference_only"):
        raise ModelLoadError(f"{path}: an inference-only checkpoint (weights, no optimiser "
                             "state) cannot resume training; resume from <out>/checkpoints/"
                             "last.pt of the run")
    cfg = cfg if cfg is not None else _stored_config(payload, path)
    device = resolve_device(device)
    model = build_model(cfg, int(payload["in_dim"]), int(payload["num_classes"]))
    _load_weights(model, payload["model"], path, "model weights")
    model.to(device)
    state = build_train_state(cfg, model, int(payload["steps_per_epoch"]))
    try:
        state.optimizer.load_state_dict(payload["optimizer"])
        state.scheduler.load_state_dict(payload["scheduler"])
        if state.ame_optimizer is not None and payload.get("ame_optimizer") is not None:
            state.ame_optimizer.load_state_dict(payload["ame_optimizer"])
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


def load_model_for_inference(path: str | Path, device: str | torch.device = "cpu", *,
                             schema: type[Config] = Config) -> tuple[AMNet, Config, list[str]]:
    """(model in eval mode — the EMA weights when the run kept them —, config, class names).

    The config is rebuilt as ``schema`` (the workflow passes its ``WorkflowConfig`` to keep
    its own sections).

    Raises :class:`ModelLoadError` for a missing file, a file that is not an amnet
    checkpoint, or weights that do not fit the stored config.
    """
    payload = _read_checkpoint(path)
    cfg = _stored_config(payload, path, schema)
    model = build_model(cfg, int(payload["in_dim"]), int(payload["num_classes"]))
    weights = payload["model"]
    if payload.get("ema") is not None:
        weights = {k[len("module."):]: v for k, v in payload["ema"].items()
                   if k.startswith("module.")}
    _load_weights(model, weights, path, "model weights")
    model.to(resolve_device(device)).eval()
    return model, cfg, list((payload.get("extra") or {}).get("classes", []))
