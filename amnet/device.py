"""The one place a device string (auto, cpu, cuda, cuda:N) becomes a torch device."""

from __future__ import annotations

import torch

from amnet.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(spec: str | torch.device | None, key: str = "train.device") -> torch.device:
    """``auto`` (or empty) → CUDA when available else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given.

    Raises :class:`ConfigError` naming ``key`` (the config key or flag the value came from) for
    an unknown device or a CUDA device this machine does not have.
    """
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"{key}: unknown device {spec!r} (expected auto, cpu, cuda or "
                          "cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={spec!r} but CUDA is not available here (use auto or cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{key}={spec!r} but only {torch.cuda.device_count()} CUDA "
                              "device(s) exist")
    elif dev.type != "cpu":
        raise ConfigError(f"{key}: unsupported device {spec!r} (expected auto, cpu, cuda or "
                          "cuda:N)")
    return dev
