"""The protocol's matching of ranked predictions to ground truth, as compiled loops.

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

__all__ = ["candidate_pairs", "greedy_match"]

_compiled: dict[str, Any] = {}


def _kernel(fn: Any) -> Any:
    """``fn`` compiled on first use (``cache=True``), so ``import amnet`` never loads numba."""
    if fn.__name__ not in _compiled:
        import numba

        _compiled[fn.__name__] = numba.njit(cache=True, nogil=True)(fn)
    return _compiled[fn.__name__]


def _pair_loops(p_idx: np.ndarray, p_lo: np.ndarray, p_hi: np.ndarray, g_idx: np.ndarray,
                g_lo: np.ndarray, g_hi: np.ndarray, p_seg: np.ndarray, g_seg: np.ndarray,
                t_min: float, out_p: np.ndarray, out_g: np.ndarray, out_iou: np.ndarray) -> int:
    """Pairs of each group (predictions ``p_idx[p_lo:p_hi]`` × GTs ``g_idx[g_lo:g_hi]``) with
    tIoU ≥ ``t_min``, written to ``out_*`` (or only counted when they are empty). tIoU exactly
    as :func:`amnet.evaluation.tiou.pairwise_tiou` computes it."""
    n = 0
    fill = out_p.shape[0] > 0
    for k in range(p_lo.shape[0]):
        for a in range(p_lo[k], p_hi[k]):
            i = p_idx[a]
            ps, pe = p_seg[i, 0], p_seg[i, 1]
            for b in range(g_lo[k], g_hi[k]):
                j = g_idx[b]
                gs, ge = g_seg[j, 0], g_seg[j, 1]
                inter = min(pe, ge) - max(ps, gs)
                if inter < 0.0:
                    inter = 0.0
                union = (pe - ps) + (ge - gs) - inter
                iou = inter / union if union > 0.0 else 0.0
                if iou >= t_min:
                    if fill:
                        out_p[n], out_g[n], out_iou[n] = i, j, iou
                    n += 1
    return n


def candidate_pairs(p_idx: np.ndarray, p_lo: np.ndarray, p_hi: np.ndarray, g_idx: np.ndarray,
                    g_lo: np.ndarray, g_hi: np.ndarray, p_seg: np.ndarray, g_seg: np.ndarray,
                    t_min: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction index, GT index, tIoU) of every pair of a group at or above ``t_min``;
    group ``k`` pairs predictions ``p_idx[p_lo[k]:p_hi[k]]`` with GTs ``g_idx[g_lo[k]:g_hi[k]]``.
    Two passes (count, then fill): the pairs kept are few, the pairs tried many."""
    loops = _kernel(_pair_loops)
    args = [np.ascontiguousarray(a, dtype=np.int64) for a in (p_idx, p_lo, p_hi, g_idx, g_lo,
                                                              g_hi)]
    segs = [np.ascontiguousarray(a, dtype=np.float64) for a in (p_seg, g_seg)]
    e_i, e_f = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    n = loops(*args, *segs, float(t_min), e_i, e_i, e_f)
    out = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), np.empty(n)
    loops(*args, *segs, float(t_min), *out)
    return out


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
    tIoU)`` (every same-video, same-class pair at or above the lowest threshold)."""
    r, g, iou = pairs[0], pairs[1], pairs[2]
    tp = np.zeros((len(tious), n_pred), dtype=np.bool_)
    if r.size:
        order = np.lexsort((g, -iou, r))
        _kernel(_greedy_loops)(np.ascontiguousarray(r[order]), np.ascontiguousarray(g[order]),
                  np.ascontiguousarray(iou[order]), np.asarray(tious, dtype=np.float64), tp,
                  n_gt)
    return tp
