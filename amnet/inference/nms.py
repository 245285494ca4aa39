"""Class-aware Gaussian Soft-NMS (Bodla et al. 2017): a compiled per-video CPU kernel (numba),
a batched torch kernel for CUDA tensors, and the numpy reference both are pinned to;
:func:`soft_nms` picks by where the input lives."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

__all__ = ["soft_nms"]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _soft_nms_batched(segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                      valid: torch.Tensor, *, sigma: float, iou_thresh: float,
                      min_score: float, max_detections: int, class_aware: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian Soft-NMS of ``B`` videos at once.

    ``segs`` ``(B, K, 2)``, ``scores``/``labels``/``valid`` ``(B, K)``. Returns the kept
    candidates' indices ``(B, M)`` in selection order and their decayed scores ``(B, M)``
    (``-inf`` where a video ran out), ``M = min(max_detections, K)``.

    Formulation (Bodla et al. 2017, Gaussian): repeatedly take the highest remaining score,
    keep it, and multiply every other remaining candidate (of the same class when
    ``class_aware``) overlapping it by tIoU ≥ ``iou_thresh`` by ``exp(−tIoU² / sigma)``;
    candidates falling below ``min_score`` are dropped. The only loop is over *kept* detections
    (at most ``max_detections``); each step decays all candidates of all videos in one tensor
    operation. Kept scores never increase along the selection (each pick was the maximum and
    scores only decay), so stopping after ``max_detections`` picks equals running Soft-NMS to
    the end and keeping the ``max_detections`` best.
    """
    B, K = scores.shape
    M = min(max_detections, K)
    neg_inf = torch.tensor(-math.inf, dtype=scores.dtype, device=scores.device)
    work = torch.where(valid & (scores >= min_score), scores, neg_inf)
    start, end = segs[..., 0], segs[..., 1]
    length = end - start
    rows = torch.arange(B, device=scores.device)
    keep_idx = torch.zeros((B, M), dtype=torch.long, device=scores.device)
    keep_score = torch.full((B, M), -math.inf, dtype=scores.dtype, device=scores.device)
    for j in range(M):
        best, bi = work.max(dim=1)  # ties → first index (candidates arrive score-sorted)
        if j % 8 == 0 and not bool(torch.isfinite(best).any()):  # sync only every 8 steps
            break
        keep_idx[:, j] = bi
        keep_score[:, j] = best
        work[rows, bi] = neg_inf
        bs, be = start[rows, bi].unsqueeze(1), end[rows, bi].unsqueeze(1)
        inter = (torch.minimum(end, be) - torch.maximum(start, bs)).clamp(min=0)
        union = length + (be - bs) - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
        hit = iou >= iou_thresh
        if class_aware:
            hit &= labels == labels[rows, bi].unsqueeze(1)
        work = torch.where(hit, work * torch.exp(-(iou * iou) / sigma), work)
        work = torch.where(work < min_score, neg_inf, work)
    return keep_idx, keep_score


def _soft_nms_reference(segs: np.ndarray, scores: np.ndarray, labels: np.ndarray, *,
                        sigma: float, iou_thresh: float, min_score: float, max_detections: int,
                        class_aware: bool, exp: Callable[[np.ndarray], np.ndarray] = np.exp
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The same Soft-NMS for one video in numpy, touching only the picked class per step: the
    reference the compiled kernel (:func:`_soft_nms_cpu`) reproduces exactly (tests, bench).

    Candidates are grouped by class (stable, so score order and ties survive); each step takes
    the best of the per-class maxima, decays only that class's slice (one vectorised update)
    and refreshes that class's maximum: O(max_detections · (K / classes + classes)) work.
    ``segs`` ``(K, 2)``, ``scores``/``labels`` ``(K,)``, scores sorted descending. Returns kept
    indices (into the inputs) in selection order and their decayed scores.

    ``exp``: numpy's SIMD ``exp`` by default, whose last bit depends on the CPU's instruction
    set; the compiled kernel calls the C library's, so tests pass ``exp`` = libm's to pin the
    kernel bit for bit (and compare to the default within a few ulps).
    """
    K = len(scores)
    if K == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    group = labels if class_aware else np.zeros(K, dtype=np.int64)
    order = np.argsort(group, kind="stable")
    s, e = segs[order, 0].copy(), segs[order, 1].copy()
    length = e - s
    work = np.where(scores[order] >= min_score, scores[order], -np.inf)
    _, lo = np.unique(group[order], return_index=True)
    hi = np.append(lo[1:], K)
    cmax = np.array([work[a:b].max() for a, b in zip(lo, hi, strict=True)])
    carg = np.array([a + int(np.argmax(work[a:b])) for a, b in zip(lo, hi, strict=True)],
                    dtype=np.int64)
    keep_idx, keep_score = [], []
    for _ in range(min(max_detections, K)):
        c = int(np.argmax(cmax))
        best = cmax[c]
        if not np.isfinite(best):
            break
        tied = np.flatnonzero(cmax == best)
        if len(tied) > 1:  # equal scores in several classes: earliest candidate first
            c = int(tied[np.argmin(order[carg[tied]])])
        m = int(carg[c])
        keep_idx.append(order[m])
        keep_score.append(best)
        a, b = lo[c], hi[c]
        w = work[a:b]  # a view: updated in place
        w[m - a] = -np.inf
        inter = np.clip(np.minimum(e[a:b], e[m]) - np.maximum(s[a:b], s[m]), 0, None)
        union = length[a:b] + length[m] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        hit = iou >= iou_thresh
        w[hit] *= exp(-(iou[hit] ** 2) / sigma)
        w[w < min_score] = -np.inf
        j = int(np.argmax(w))
        cmax[c], carg[c] = w[j], a + j
    return (np.asarray(keep_idx, dtype=np.int64),
            np.asarray(keep_score, dtype=np.float64))


_compiled: Any = None


def _kernel() -> Any:
    """The numba kernel, compiled on first use (``cache=True``: later processes load it from
    numba's on-disk cache), so that ``import amnet`` never pays for the compiler."""
    global _compiled
    if _compiled is None:
        import numba

        _compiled = numba.njit(cache=True, nogil=True)(_soft_nms_loops)
    return _compiled


def _soft_nms_loops(s: np.ndarray, e: np.ndarray, score: np.ndarray, group: np.ndarray,
                    sigma: float, iou_thresh: float, min_score: float, max_det: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_soft_nms_reference` as scalar loops (compiled by :func:`_kernel`).

    Same arithmetic in the same order (``inter``, ``union``, ``iou``, ``exp(-(iou·iou)/sigma)``
    in float64, no fast-math), so the kept indices and scores are bit-identical; per step the
    best of the per-class maxima is picked and only that class's slice is decayed, its new
    maximum found in the same pass.
    """
    K = score.shape[0]
    g_min, g_max = group.min(), group.max()
    if g_min >= 0 and g_max < 4 * K + 64:  # class indices: a stable counting sort, O(K)
        count = np.zeros(g_max + 2, dtype=np.int64)
        for i in range(K):
            count[group[i] + 1] += 1
        for g in range(g_max + 1):
            count[g + 1] += count[g]
        order = np.empty(K, dtype=np.int64)
        for i in range(K):
            order[count[group[i]]] = i
            count[group[i]] += 1
    else:  # stable: score order and ties survive
        order = np.argsort(group, kind="mergesort")
    ss, ee = s[order], e[order]
    length = ee - ss
    work = np.empty(K)
    for i in range(K):
        v = score[order[i]]
        work[i] = v if v >= min_score else -np.inf
    n_groups = 1
    for i in range(1, K):
        if group[order[i]] != group[order[i - 1]]:
            n_groups += 1
    lo = np.empty(n_groups, dtype=np.int64)
    hi = np.empty(n_groups, dtype=np.int64)
    lo[0] = 0
    c = 0
    for i in range(1, K):
        if group[order[i]] != group[order[i - 1]]:
            hi[c] = i
            c += 1
            lo[c] = i
    hi[c] = K
    cmax = np.empty(n_groups)
    carg = np.empty(n_groups, dtype=np.int64)
    for c in range(n_groups):
        best, arg = work[lo[c]], lo[c]
        for i in range(lo[c] + 1, hi[c]):
            if work[i] > best:  # first maximum, as np.argmax
                best, arg = work[i], i
        cmax[c], carg[c] = best, arg
    n_keep = min(max_det, K)
    keep_idx = np.empty(n_keep, dtype=np.int64)
    keep_score = np.empty(n_keep)
    n = 0
    for _ in range(n_keep):
        c = 0
        for g in range(1, n_groups):
            if cmax[g] > cmax[c] or (cmax[g] == cmax[c] and order[carg[g]] < order[carg[c]]):
                c = g  # equal scores in several classes: earliest candidate first
        best = cmax[c]
        if not np.isfinite(best):
            break
        m = carg[c]
        keep_idx[n] = order[m]
        keep_score[n] = best
        n += 1
        a, b = lo[c], hi[c]
        work[m] = -np.inf
        sm, em, lm = ss[m], ee[m], length[m]
        nbest, narg = work[a], a
        for i in range(a, b):
            w = work[i]
            if w != -np.inf:
                inter = min(ee[i], em) - max(ss[i], sm)
                if inter < 0.0:
                    inter = 0.0
                union = length[i] + lm - inter
                iou = inter / union if union > 0 else 0.0
                if iou >= iou_thresh:
                    w *= np.exp(-(iou * iou) / sigma)
                if w < min_score:
                    w = -np.inf
                work[i] = w
            if w > nbest:
                nbest, narg = w, i
        cmax[c], carg[c] = nbest, narg
    return keep_idx[:n], keep_score[:n]


def _soft_nms_cpu(segs: np.ndarray, scores: np.ndarray, labels: np.ndarray, *, sigma: float,
                  iou_thresh: float, min_score: float, max_detections: int,
                  class_aware: bool) -> tuple[np.ndarray, np.ndarray]:
    """One video's Soft-NMS on the CPU with the compiled kernel; the contract of
    :func:`_soft_nms_reference` (inputs sorted by descending score; kept indices, scores)."""
    K = len(scores)
    if K == 0 or max_detections <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    segs = np.ascontiguousarray(segs, dtype=np.float64).reshape(-1, 2)
    group = (np.ascontiguousarray(labels, dtype=np.int64) if class_aware
             else np.zeros(K, dtype=np.int64))
    return _kernel()(np.ascontiguousarray(segs[:, 0]), np.ascontiguousarray(segs[:, 1]),
                     np.ascontiguousarray(scores, dtype=np.float64), group, float(sigma),
                     float(iou_thresh), float(min_score), int(max_detections))


def soft_nms(segments: ArrayT, scores: ArrayT, labels: ArrayT, *, sigma: float,
             iou_thresh: float, min_score: float, max_detections: int,
             class_aware: bool = True) -> tuple[ArrayT, ArrayT, ArrayT]:
    """Gaussian Soft-NMS of one video's candidates (see :func:`_soft_nms_batched`).

    Args:
        segments: ``(K, 2)`` [start, end]; scores ``(K,)``; labels ``(K,)`` class indices
            (numpy arrays or torch tensors; the result has the same kind).
        sigma: Gaussian width (decay ``exp(−tIoU²/sigma)``).
        iou_thresh: overlaps below it are not decayed.
        min_score: candidates whose (decayed) score falls below it are dropped.
        max_detections: at most this many are kept.
        class_aware: only candidates of the same class decay each other.

    Returns:
        ``(segments, scores, labels)`` of the kept detections, by descending decayed score.
    """
    kw = dict(sigma=sigma, iou_thresh=iou_thresh, min_score=min_score,
              max_detections=max_detections, class_aware=class_aware)
    if isinstance(segments, torch.Tensor) and segments.device.type == "cuda":
        s = segments.to(torch.float64).reshape(-1, 2)
        sc = torch.as_tensor(scores, device=s.device).to(torch.float64).reshape(-1)
        lb = torch.as_tensor(labels, device=s.device).reshape(-1).long()
        _check_lengths(len(s), len(sc), len(lb))
        order = torch.argsort(sc, descending=True, stable=True)
        keep, ks = _soft_nms_batched(s[order][None], sc[order][None], lb[order][None],
                                     torch.ones(1, len(sc), dtype=torch.bool, device=s.device),
                                     **kw)
        alive = torch.isfinite(ks[0])
        idx = order[keep[0][alive]]
        return s[idx], ks[0][alive], lb[idx]  # type: ignore[return-value]
    as_torch = isinstance(segments, torch.Tensor)
    s = _np(segments, np.float64).reshape(-1, 2)
    sc = _np(scores, np.float64).reshape(-1)
    lb = _np(labels, np.int64).reshape(-1)
    _check_lengths(len(s), len(sc), len(lb))
    order = np.argsort(-sc, kind="stable")
    keep, ks = _soft_nms_cpu(s[order], sc[order], lb[order], **kw)
    idx = order[keep]
    out = (s[idx], ks, lb[idx])
    if as_torch:
        return tuple(torch.from_numpy(x) for x in out)  # type: ignore[return-value]
    return out  # type: ignore[return-value]


def _np(x: Any, dtype: type) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _check_lengths(n_seg: int, n_score: int, n_label: int) -> None:
    if not n_seg == n_score == n_label:
        raise ValueError(f"soft_nms: {n_seg} segments, {n_score} scores, {n_label} labels")

