"""Temporal IoU between segments (numpy, float64), shared by the evaluator and error analysis."""

from __future__ import annotations

import numpy as np


def pairwise_tiou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """tIoU of every segment in ``a`` (N, 2) with every segment in ``b`` (M, 2) → (N, M).

    Union is ``(a_e - a_s) + (b_e - b_s) - intersection`` as the ActivityNet evaluator computes
    it; a zero union (two zero-length segments) gives 0, never NaN.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    inter = np.clip(np.minimum(a[:, None, 1], b[None, :, 1]) - left, 0.0, None)
    union = (a[:, None, 1] - a[:, None, 0]) + (b[None, :, 1] - b[None, :, 0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def one_vs_many_tiou(target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """tIoU of one segment ``target`` (2,) with each of ``candidates`` (M, 2) → (M,)."""
    return pairwise_tiou(np.asarray(target).reshape(1, 2), candidates)[0]
