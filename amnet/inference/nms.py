"""Class-aware Gaussian Soft-NMS (Bodla et al. 2017): a per-video CPU kernel and a batched
torch kernel for accelerators; :func:`soft_nms` picks one by where the input lives."""

from __future__ import annotations

import math
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


def _soft_nms_numpy(segs: np.ndarray, scores: np.ndarray, labels: np.ndarray, *, sigma: float,
                    iou_thresh: float, min_score: float, max_detections: int,
                    class_aware: bool) -> tuple[np.ndarray, np.ndarray]:
    """The same Soft-NMS for one video on the CPU, touching only the picked class per step.

    Candidates are grouped by class (stable, so score order and ties survive); each step takes
    the best of the per-class maxima, decays only that class's slice (one vectorised update)
    and refreshes that class's maximum: O(max_detections · (K / classes + classes)) work.
    ``segs`` ``(K, 2)``, ``scores``/``labels`` ``(K,)``, scores sorted descending. Returns kept
    indices (into the inputs) in selection order and their decayed scores.
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
        w[hit] *= np.exp(-(iou[hit] ** 2) / sigma)
        w[w < min_score] = -np.inf
        j = int(np.argmax(w))
        cmax[c], carg[c] = w[j], a + j
    return (np.asarray(keep_idx, dtype=np.int64),
            np.asarray(keep_score, dtype=np.float64))


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
    if isinstance(segments, torch.Tensor) and segments.device.type != "cpu":
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
    keep, ks = _soft_nms_numpy(s[order], sc[order], lb[order], **kw)
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

