"""Anchor-free label assignment (which pyramid point learns which ground-truth action).

Units: every position, distance and range here is in *snippets of the input feature grid*
(point ``j`` of level ``l`` sits at snippet ``j * 2**l``). ``model.regression_ranges[l] =
[lo, hi]`` bounds, in those snippets, the larger of a point's two distances to the action's
start and end — the convention of ActionFormer/OpenTAD, whose point generators document the
ranges as "on feature grids" (with strides 1, 2, 4, … the default ranges [0, 4], [4, 8], …
give every level targets 2–4 of its own strides away). The centre-sampling radius is in
level strides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

__all__ = ["Targets", "assign_targets", "inside_segments", "point_layout"]


@dataclass
class Targets:
    """Per-point training targets for a batch (points of all levels concatenated, level 0 first).

    Attributes:
        cls: (B, N, num_classes) float class targets: one-hot (several ones when equally short
            actions of different classes tie), label-smoothed if asked.
        dist: (B, N, 2) float distances (start, end) from the point to its action, in snippets;
            zero where not positive.
        pos: (B, N) bool, True for points assigned to an action.
    """

    cls: torch.Tensor
    dist: torch.Tensor
    pos: torch.Tensor


def point_layout(length: int, levels: int, device: torch.device | str = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Points of a ``levels``-level pyramid over ``length`` input snippets.

    Returns ``points`` (N,) float snippet positions, ``strides`` (N,) float, ``level_ids`` (N,)
    long and the per-level lengths ``ceil(length / 2**l)``.
    """
    points, strides, ids, lengths = [], [], [], []
    for lvl in range(levels):
        stride = 2 ** lvl
        n = -(-length // stride)
        points.append(torch.arange(n, device=device, dtype=torch.float32) * stride)
        strides.append(torch.full((n,), float(stride), device=device))
        ids.append(torch.full((n,), lvl, device=device, dtype=torch.long))
        lengths.append(n)
    return torch.cat(points), torch.cat(strides), torch.cat(ids), lengths


@torch.no_grad()
def assign_targets(points: torch.Tensor, strides: torch.Tensor, level_ids: torch.Tensor,
                   valid: torch.Tensor, segments: Sequence[torch.Tensor],
                   labels: Sequence[torch.Tensor], *, num_classes: int,
                   regression_ranges: Sequence[Sequence[float]], center_radius: float,
                   label_smoothing: float = 0.0) -> Targets:
    """Assign each point to at most one action (FCOS/ActionFormer-style, anchor-free).

    A point ``p`` of stride ``s`` is positive for action ``[t_s, t_e]`` (centre ``c``) iff
    1. it lies strictly inside the centre region ``[max(c − r·s, t_s), min(c + r·s, t_e)]``
       with ``r = center_radius`` (``r = 0`` switches centre sampling off: strictly inside
       ``[t_s, t_e]``), and
    2. ``max(p − t_s, t_e − p)`` lies in its level's regression range ``[lo, hi]`` (inclusive).
    When several actions qualify, the shortest wins; actions within 1e-3 snippets of that
    length all add their class to the target (THUMOS14 has co-occurring equal actions), and
    the distances come from the first of them.

    Args:
        points, strides, level_ids: (N,) from :func:`point_layout` (or ``ModelOutput``).
        valid: (B, N) bool, False at points on padding (never positive).
        segments: per video (M, 2) float [start, end] in snippets; labels: per video (M,) long.

    Returns:
        :class:`Targets` on ``points.device``.
    """
    batch, n = valid.shape
    device = points.device
    ranges = torch.as_tensor(regression_ranges, dtype=torch.float32, device=device)[level_ids]
    cls_t = torch.zeros(batch, n, num_classes, device=device)
    dist_t = torch.zeros(batch, n, 2, device=device)
    for b in range(batch):
        seg = torch.as_tensor(segments[b], dtype=torch.float32, device=device).reshape(-1, 2)
        if seg.shape[0] == 0:
            continue
        lab = torch.as_tensor(labels[b], dtype=torch.long, device=device).reshape(-1)
        left = points[:, None] - seg[None, :, 0]                       # (N, M)
        right = seg[None, :, 1] - points[:, None]
        if center_radius > 0:
            centre = 0.5 * (seg[:, 0] + seg[:, 1])
            radius = strides[:, None] * center_radius
            c_left = points[:, None] - torch.maximum(centre[None] - radius, seg[None, :, 0])
            c_right = torch.minimum(centre[None] + radius, seg[None, :, 1]) - points[:, None]
            inside = torch.minimum(c_left, c_right) > 0
        else:
            inside = torch.minimum(left, right) > 0
        far = torch.maximum(left, right)
        in_range = (far >= ranges[:, 0, None]) & (far <= ranges[:, 1, None])
        ok = inside & in_range & valid[b, :, None]
        lens = (seg[:, 1] - seg[:, 0])[None].expand(n, -1).masked_fill(~ok, float("inf"))
        min_len, idx = lens.min(dim=1)
        tied = ok & (lens <= min_len[:, None] + 1e-3)
        cls_t[b] = (tied.float() @ F.one_hot(lab, num_classes).float()).clamp_(max=1.0)
        pos = torch.isfinite(min_len)
        rows = torch.arange(n, device=device)
        dist_t[b] = torch.stack((left[rows, idx], right[rows, idx]), dim=-1) * pos[:, None]
    pos_t = cls_t.sum(-1) > 0
    if label_smoothing > 0:
        cls_t = cls_t * (1 - label_smoothing) + label_smoothing / (num_classes + 1)
    return Targets(cls=cls_t, dist=dist_t, pos=pos_t)


@torch.no_grad()
def inside_segments(segments: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: snippet ``t`` lies inside some action (``t_s ≤ t ≤ t_e``) and is valid.

    The positive/negative split of mask representation learning (§3.2).
    """
    steps = torch.arange(mask.shape[1], device=mask.device, dtype=torch.float32)
    out = torch.zeros_like(mask)
    for b, seg in enumerate(segments):
        seg = torch.as_tensor(seg, dtype=torch.float32, device=mask.device).reshape(-1, 2)
        if seg.shape[0]:
            inside = (steps[:, None] >= seg[None, :, 0]) & (steps[:, None] <= seg[None, :, 1])
            out[b] = inside.any(1)
    return out & mask
