"""Prediction heads (Eq. 9–10): class, boundary and matching score, shared across levels."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from amnet.model.ame import ConvNormAct

__all__ = ["Block", "Heads"]


class Block(nn.Module):
    """Eq. 9: ``Block(x) = {σ(ε(Conv1d(x)))}×K`` with padded steps kept at zero."""

    def __init__(self, dim: int, layers: int, kernel: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ConvNormAct(dim, dim, kernel) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x, _ = layer(x, mask)
        return x


class Heads(nn.Module):
    """Eq. 10, the same weights on every pyramid level.

    * ``ŷ = FC(Block(F̂_i))`` — class logits; the bias starts at ``-log((1-p)/p)`` so every
      class begins at probability ``prior_prob`` (focal-loss practice, keeps early training
      from being swamped by background).
    * ``B̂ = σ(FC(Block(F̂_i)) × ω_B)`` — distances to start and end, σ = ReLU, with one
      learnable scale ω_B per level; the engine multiplies by the level's stride so distances
      come out in snippets.
    * ``m̂ = FC(Block(F̂_i)) × ω_M`` — raw matching score with one learnable scale ω_M.

    FC is a point-wise (kernel 1) Conv1d. ``matching=False`` drops the third head (Table 2).
    """

    def __init__(self, dim: int, num_classes: int, levels: int, *, layers: int, kernel: int,
                 prior_prob: float, matching: bool) -> None:
        super().__init__()
        self.cls_block = Block(dim, layers, kernel)
        self.cls_fc = nn.Conv1d(dim, num_classes, 1)
        nn.init.constant_(self.cls_fc.bias, -math.log((1 - prior_prob) / prior_prob))
        self.reg_block = Block(dim, layers, kernel)
        self.reg_fc = nn.Conv1d(dim, 2, 1)
        self.omega_b = nn.Parameter(torch.ones(levels))
        self.match_block = Block(dim, layers, kernel) if matching else None
        self.match_fc = nn.Conv1d(dim, 1, 1) if matching else None
        self.omega_m = nn.Parameter(torch.ones(())) if matching else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor, level: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One level (B, D, T_l), (B, T_l) → cls (B, T_l, N_C), dist (B, T_l, 2) in level
        strides, match (B, T_l) or None. Values at padded steps are meaningless (masked later).
        """
        cls = self.cls_fc(self.cls_block(x, mask)).transpose(1, 2)
        dist = F.relu(self.reg_fc(self.reg_block(x, mask)) * self.omega_b[level]).transpose(1, 2)
        match = None
        if self.match_block is not None:
            match = (self.match_fc(self.match_block(x, mask))[:, 0] * self.omega_m)
        return cls, dist, match
