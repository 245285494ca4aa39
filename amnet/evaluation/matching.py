"""The protocol's greedy matching of ranked predictions to ground truth, as one compiled loop.

Rule (the public ActivityNet evaluator's): at each tIoU threshold, predictions are taken by
decreasing score; each matches, among the unmatched ground truths of its video and class, the
one of highest tIoU (ties: file order) if that tIoU reaches the threshold, else it is a false
positive. Vectorised numpy needs rounds of sort-and-filter for this sequential rule; numba
runs it as the plain loop over candidate pairs (~30× fewer passes over memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["greedy_match"]

_compiled: Any = None


def _kernel() -> Any:
    """Compiled on first use (``cache=True``), so that ``import amnet`` never loads numba."""
    global _compiled
    if _compiled is None:
        import numba

        _compiled = numba.njit(cache=True, nogil=True)(_greedy_loops)
    return _compiled


def _greedy_loops(r: np.ndarray, g: np.ndarray, iou: np.ndarray, tious: np.ndarray,
                  tp: np.ndarray, n_gt: int) -> None:
    """Fill ``tp`` ``(T, n_pred)``; pairs sorted by (rank, descending tIoU, GT index)."""
    n_pred = tp.shape[1]
    for t in range(tious.shape[0]):
        thr = tious[t]
        taken = np.zeros(n_gt, dtype=np.bool_)
        done = np.zeros(n_pred, dtype=np.bool_)
        for k in range(r.shape[0]):
            p = r[k]
            if done[p] or iou[k] < thr:  # this prediction's remaining pairs are lower still
                continue
            if not taken[g[k]]:
                taken[g[k]] = True
                done[p] = True
                tp[t, p] = True


def greedy_match(pairs: tuple[np.ndarray, ...], tious: Sequence[float], n_pred: int,
                 n_gt: int) -> np.ndarray:
    """True-positive flags ``(T, n_pred)`` by rank, from candidate ``pairs`` ``(rank, GT index,
    tIoU, group)`` (every same-video, same-class pair at or above the lowest threshold)."""
    r, g, iou = pairs[0], pairs[1], pairs[2]
    tp = np.zeros((len(tious), n_pred), dtype=np.bool_)
    if r.size:
        order = np.lexsort((g, -iou, r))
        _kernel()(np.ascontiguousarray(r[order]), np.ascontiguousarray(g[order]),
                  np.ascontiguousarray(iou[order]), np.asarray(tious, dtype=np.float64), tp,
                  n_gt)
    return tp
