"""Boundary voting after Soft-NMS: each kept detection's start and end become the weighted mean
of the pre-NMS candidates (same class) that overlap it by at least ``thresh`` tIoU.

Why: Soft-NMS keeps one candidate of a cluster and only decays the others, but the cluster's
members are independent estimates of the same boundaries (neighbouring points, neighbouring
pyramid levels). Averaging them, weighted by ``score × tIoU``, reduces the boundary error that
decides the high-tIoU thresholds; scores, labels and the kept set are unchanged. ActionFormer
refines its THUMOS14 detections the same way (at tIoU 0.7).
"""

from __future__ import annotations

import numpy as np

__all__ = ["vote_boundaries"]


def vote_boundaries(kept: np.ndarray, kept_labels: np.ndarray, cand: np.ndarray,
                    cand_scores: np.ndarray, cand_labels: np.ndarray, thresh: float, *,
                    class_aware: bool = True) -> np.ndarray:
    """One video's kept segments ``(M, 2)`` with voted boundaries.

    Args:
        kept: ``(M, 2)`` the segments Soft-NMS kept (each is one of the candidates);
            kept_labels ``(M,)``.
        cand: ``(K, 2)`` every pre-NMS candidate, ``cand_scores`` ``(K,)`` their scores before
            any decay (> 0), ``cand_labels`` ``(K,)``.
        thresh: tIoU in (0, 1] a candidate needs with a kept segment to vote on it.
        class_aware: only candidates of the kept segment's class vote (as Soft-NMS decays).

    Returns:
        ``(M, 2)``: per kept segment ``Σ w·cand / Σ w`` with ``w = score · tIoU`` over the
        voters; a segment with no voter of positive weight keeps its boundaries.
    """
    kept = np.asarray(kept, dtype=np.float64).reshape(-1, 2)
    cand = np.asarray(cand, dtype=np.float64).reshape(-1, 2)
    if not len(kept) or not len(cand):
        return kept.copy()
    ks, ke = kept[:, 0:1], kept[:, 1:2]                                       # (M, 1)
    cs, ce = cand[None, :, 0], cand[None, :, 1]                               # (1, K)
    inter = np.clip(np.minimum(ke, ce) - np.maximum(ks, cs), 0.0, None)
    union = (ke - ks) + (ce - cs) - inter
    tiou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    w = np.where(tiou >= thresh, tiou * np.asarray(cand_scores, dtype=np.float64)[None], 0.0)
    if class_aware:
        w *= np.asarray(kept_labels)[:, None] == np.asarray(cand_labels)[None, :]
    total = w.sum(axis=1, keepdims=True)
    voted = np.divide(w @ cand, total, out=kept.copy(), where=total > 0)
    return voted
