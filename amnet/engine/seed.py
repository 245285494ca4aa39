"""Seeding and RNG capture: the same seed gives the same run; a checkpoint resumes exactly."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

__all__ = ["restore_rng", "rng_state", "seed_everything"]


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


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy_key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
        "numpy_pos": int(np_state["state"]["pos"]),
        "numpy_gauss": (int(np_state["has_gauss"]), float(np_state["gauss"])),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": rng["numpy_key"].numpy().astype(np.uint32),
                                   "pos": rng["numpy_pos"]},
                         "has_gauss": rng["numpy_gauss"][0], "gauss": rng["numpy_gauss"][1]})
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def restore_rng(info: dict[str, Any]) -> None:
    """Put back the RNG states a checkpoint was written with (exact resume)."""
    set_rng_state(info["rng"])
