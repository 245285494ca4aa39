"""The contract between the model and everything after it (inference, losses, export).

Every pyramid level's points are concatenated along one axis ``N`` (level 0 first). Positions
and distances are in *snippet units* of the input feature grid, so decoding to seconds needs
only the video's fps, stride and window (``amnet.inference``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ModelOutput:
    """AMNet's per-point predictions for a batch.

    Attributes:
        cls_logits: ``(B, N, num_classes)`` raw class logits ŷ (Eq. 10).
        offsets: ``(B, N, 2)`` non-negative distances (d_s, d_e) to start and end, already
            multiplied by the level's stride, in snippets (Eq. 10, 13).
        match_logits: ``(B, N)`` raw matching score m̂ (Eq. 10), or ``None`` when the matching
            head is switched off.
        points: ``(N,)`` float centre of each point in snippets (index i of Eq. 13).
        strides: ``(N,)`` float stride (in snippets) of each point's level.
        level_ids: ``(N,)`` long pyramid level of each point.
        mask: ``(B, N)`` bool, True where the point lies inside the (unpadded) video.
        level_lengths: length of each level, summing to N.
    """

    cls_logits: torch.Tensor
    offsets: torch.Tensor
    match_logits: torch.Tensor | None
    points: torch.Tensor
    strides: torch.Tensor
    level_ids: torch.Tensor
    mask: torch.Tensor
    level_lengths: list[int]
