"""AMNet's losses: triplet (Eq. 2–3), focal, tIoU and matching (Eq. 11), Eq. 12's detector part.

Conventions: point tensors are ``(B, N, ...)`` with all pyramid levels concatenated; distances
are (start, end) offsets in snippets from the same point; sums over points are divided by the
engine's moving average of the positive count (``normalizer``), so λ1 and λ2 mean the same at
any batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch.nn import functional as F

if TYPE_CHECKING:  # runtime import would be circular (the model imports triplet_loss)
    from amnet.model.assign import Targets
    from amnet.model.output import ModelOutput

__all__ = [
    "DetectionLosses",
    "detection_losses",
    "matching_loss",
    "segment_tiou",
    "sigmoid_focal_loss",
    "triplet_from_prototypes",
    "triplet_loss",
]


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Element-wise sigmoid focal loss FL (Lin et al.), the ``FL(ŷ, y)`` of Eq. 11.

    ``FL = −α_t (1 − p_t)^γ log p_t`` with ``p_t = p·y + (1−p)(1−y)``, ``α_t = α·y + (1−α)(1−y)``;
    ``alpha < 0`` disables the α weighting. Soft (label-smoothed) targets are allowed.
    Hand-written because torchvision (which has one) is not a dependency.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss


def segment_tiou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """tIoU of segments given as (d_s, d_e) distances from the same point: (..., 2) → (...).

    ``inter = min(d̂_s, d_s) + min(d̂_e, d_e)`` (both segments contain the point),
    ``union = (d̂_s + d̂_e) + (d_s + d_e) − inter``.
    """
    inter = (torch.minimum(pred[..., 0], target[..., 0])
             + torch.minimum(pred[..., 1], target[..., 1]))
    union = pred.sum(-1) + target.sum(-1) - inter
    return inter / union.clamp(min=eps)


def matching_loss(match_logits: torch.Tensor, tiou: torch.Tensor,
                  kind: Literal["l2", "l1", "bce"] = "l2") -> torch.Tensor:
    """Element-wise matching loss (Eq. 11, L_mat) against the detached tIoU target.

    ``l2``: ``(tanh(m̂) − tIoU)²`` (the paper's choice); ``l1``: ``|tanh(m̂) − tIoU|``;
    ``bce``: binary cross-entropy of ``sigmoid(m̂)`` against tIoU (§4.5: BCE needs a
    non-negative input, so sigmoid replaces tanh).
    """
    target = tiou.detach()
    if kind == "l2":
        return (torch.tanh(match_logits) - target) ** 2
    if kind == "l1":
        return (torch.tanh(match_logits) - target).abs()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(match_logits, target, reduction="none")
    raise ValueError(f"unknown matching loss {kind!r} (expected l2, l1 or bce)")


def triplet_loss(f_mask: torch.Tensor, pos_mask: torch.Tensor, f_pos: torch.Tensor,
                 f_pos_mask: torch.Tensor, f_neg: torch.Tensor, f_neg_mask: torch.Tensor,
                 margin: float = 1.0, neg_anchor_mask: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Mask representation loss, Eq. 2–3, with F_mask as the anchor.

    Args:
        f_mask: (B, C, T) ``F_mask = AME(F)``; pos_mask: (B, T) the steps inside actions.
        f_pos: (B, C, T_P) ``F̂_pos = AME(F_pos)`` with mask (B, T_P);
        f_neg: (B, C, T_N) ``F̂_neg = AME(F_neg)`` with mask (B, T_N).
        margin: α of Eq. 3.

    How the sets of different lengths are compared: every *action step* ``t`` of ``F_mask``
    is an anchor; the positive and the negative are the video's action and background
    prototypes, the masked means of ``F̂_pos`` and ``F̂_neg`` over time. Anchor and prototypes
    are L2-normalised, as in the triplet loss the paper cites (FaceNet), so
    ``d ∈ [0, 4]`` and α keeps one meaning whatever the feature scale, and AME cannot meet
    the margin by simply inflating its output (which Eq. 4 adds to F). Per step
    ``[d_pos − d_neg + α]+`` is averaged over the video's action steps, then over videos.

    Why this choice: T_P and T_N differ, so Eq. 2's norms need a pooling. Pooling only the
    sets (not the anchor) keeps a loss term per action step, so each step's mask must be
    closer to the action prototype than to the background one — a per-step, action-aware
    mask, which is what Eq. 4 applies — instead of constraining only one video-level mean.

    ``neg_anchor_mask`` (B, T) (``loss.triplet_anchors=both``): the background steps are
    anchors too, with the roles swapped (``[d_neg − d_pos + α]+``: closer to the background
    prototype than to the action one); a video's loss is then the mean of its action-anchor
    mean and its background-anchor mean, so the usually far more numerous background steps do
    not drown the action ones.

    Videos with no action step or no background step have no triplet and are left out; when
    no video in the batch has one, the loss is a zero that still depends on ``f_mask`` (so
    backward and DDP see the AME parameters).
    """
    def proto(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        w = m.to(x.dtype)[:, None]
        return F.normalize((x * w).sum(-1) / w.sum(-1).clamp(min=1), dim=1)   # (B, C)

    ok = f_pos_mask.any(1) & f_neg_mask.any(1)
    return triplet_from_prototypes(f_mask, pos_mask, proto(f_pos, f_pos_mask),
                                   proto(f_neg, f_neg_mask), ok, margin, neg_anchor_mask)


def triplet_from_prototypes(f_mask: torch.Tensor, pos_mask: torch.Tensor, p: torch.Tensor,
                            n: torch.Tensor, ok: torch.Tensor, margin: float = 1.0,
                            neg_anchor_mask: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`triplet_loss` given the L2-normalised prototypes ``p``, ``n`` (B, C) and ``ok``
    (B,), the videos that have both sets (the AME computes the prototypes from its hidden
    layer, :meth:`amnet.model.ame.AME.masked_mean`, without the C-wide output of the sets).

    Per anchor step ``d_pos − d_neg = ‖â − p‖² − ‖â − n‖² = ‖p‖² − ‖n‖² − 2 â·(p − n)``
    (``â`` the normalised anchor): one C-wide dot product per step instead of two squared
    distances.
    """
    norm = f_mask.norm(dim=1).clamp(min=1e-12)                                  # (B, T)
    dot = torch.einsum("bct,bc->bt", f_mask, p - n) / norm                      # â·(p − n)
    diff = ((p * p).sum(1) - (n * n).sum(1))[:, None] - 2 * dot                 # d_pos − d_neg
    per_step = F.relu(diff + margin)
    w = pos_mask.to(per_step.dtype)
    per_video = (per_step * w).sum(1) / w.sum(1).clamp(min=1)
    if neg_anchor_mask is not None:
        wn = neg_anchor_mask.to(per_step.dtype)
        swapped = F.relu(margin - diff)
        per_video = 0.5 * (per_video + (swapped * wn).sum(1) / wn.sum(1).clamp(min=1))
    ok = (ok & pos_mask.any(1)).to(per_video.dtype)
    # mean over the videos that have a triplet, without a host sync; all-zero weights give
    # a zero that still depends on f_mask
    return (per_video * ok).sum() / ok.sum().clamp(min=1)


@dataclass
class DetectionLosses:
    """Detector losses for one batch, each already divided by the normaliser.

    ``num_pos`` is the batch's positive-point count as a 0-dim tensor (``int()`` of it is the
    only host sync, left to whoever asks).
    """

    cls: torch.Tensor
    reg: torch.Tensor
    mat: torch.Tensor
    num_pos: torch.Tensor

    def total(self, lambda1: float) -> torch.Tensor:
        """The detector part of Eq. 12: ``L_cls + λ1 (L_reg + L_mat)``."""
        return self.cls + lambda1 * (self.reg + self.mat)


def detection_losses(out: ModelOutput, targets: Targets, normalizer: float, *,
                     focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                     matching: Literal["l2", "l1", "bce"] = "l2") -> DetectionLosses:
    """Eq. 11 summed over points and divided by ``normalizer``.

    L_cls over every valid point and class; L_reg and L_mat over positive points only (only
    they have a ground-truth boundary to measure tIoU against). ``L_mat`` is 0 without a
    matching head. The sums are masked, not gathered (no boolean indexing, hence no host
    sync); with no positive point L_reg and L_mat are zeros that keep the graph (DDP, AMP).
    """
    valid = out.mask
    pos = targets.pos & valid
    zero = out.cls_logits.new_zeros(())
    focal = sigmoid_focal_loss(out.cls_logits, targets.cls, focal_alpha, focal_gamma)
    cls = torch.where(valid[..., None], focal, zero).sum() / normalizer
    tiou = segment_tiou(out.offsets, targets.dist)
    reg = torch.where(pos, 1.0 - tiou, zero).sum() / normalizer
    mat = zero
    if out.match_logits is not None:
        mat = torch.where(pos, matching_loss(out.match_logits, tiou, matching),
                          zero).sum() / normalizer
    return DetectionLosses(cls=cls, reg=reg, mat=mat, num_pos=pos.sum())
