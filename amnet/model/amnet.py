"""AMNet: AME refinement → GAM → heads, with both training phases behind ``forward``."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from amnet.config import ModelConfig
from amnet.errors import ConfigError
from amnet.losses import triplet_from_prototypes
from amnet.model.ame import AME, pos_neg_order
from amnet.model.assign import point_layout
from amnet.model.gam import GAM
from amnet.model.heads import Heads
from amnet.model.output import ModelOutput

__all__ = ["AMNet"]


class AMNet(nn.Module):
    """Action-aware Masking Network (§3).

    ``forward(feats, mask, phase="detect")`` runs the detector: F (B, C, T) with mask (B, T)
    (True = valid) → Eq. 4 refinement (if ``cfg.ame``) → GAM (Eq. 5–8) → heads (Eq. 9–10) →
    :class:`ModelOutput`. ``forward(feats, mask, phase="mask", pos_mask=...)`` runs mask
    representation learning and returns the scalar triplet loss (Eq. 1–3). Both phases go
    through ``forward`` so DistributedDataParallel hooks see each (wrap it with
    ``find_unused_parameters=True``: phase "mask" uses AME only).

    Any T is accepted: inputs are zero-padded inside to a multiple of ``2**(levels-1)`` so
    every level halves exactly; the output's ``mask`` marks the real points.
    """

    def __init__(self, cfg: ModelConfig, in_dim: int, num_classes: int, *,
                 triplet_margin: float = 1.0, triplet_anchors: str = "action") -> None:
        super().__init__()
        if cfg.gam and not cfg.self_attention:
            raise ConfigError("model.gam=true needs model.self_attention=true (the group "
                              "attention works on self-attended levels); set both false for "
                              "the attention-free baseline")
        if cfg.attention_window and (cfg.attention_window < 3 or cfg.attention_window % 2 == 0):
            raise ConfigError(f"model.attention_window must be 0 (global) or an odd number >= 3, "
                              f"got {cfg.attention_window}")
        if cfg.attention_conv and (cfg.attention_conv < 3 or cfg.attention_conv % 2 == 0):
            raise ConfigError(f"model.attention_conv must be 0 (none) or an odd number >= 3, "
                              f"got {cfg.attention_conv}")
        if cfg.head_kernel % 2 != 1:
            raise ConfigError(f"model.head_kernel must be odd, got {cfg.head_kernel}")
        self.cfg = cfg
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.levels = cfg.fpn_levels
        self.triplet_margin = triplet_margin
        if triplet_anchors not in ("action", "both"):
            raise ConfigError(f"loss.triplet_anchors must be action or both, got "
                              f"{triplet_anchors!r}")
        self.triplet_anchors = triplet_anchors
        self.ame = AME(in_dim, cfg.embed_dim, cfg.ame_layers) if cfg.ame else None
        if self.ame is not None and cfg.ame_init_scale != 1.0:
            with torch.no_grad():  # Eq. 4 starts near F + 0 for small scales
                self.ame.out.weight.mul_(cfg.ame_init_scale)
                self.ame.out.bias.mul_(cfg.ame_init_scale)
        self.gam = GAM(in_dim, cfg.embed_dim, cfg.fpn_levels, heads=cfg.n_heads,
                       depth=cfg.gam_depth, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout,
                       self_attention=cfg.self_attention, group=cfg.gam,
                       short_levels=cfg.short_levels, window=cfg.attention_window,
                       position=cfg.position, drop_path=cfg.drop_path,
                       attention_conv=cfg.attention_conv)
        self.heads = Heads(cfg.embed_dim, num_classes, cfg.fpn_levels, layers=cfg.head_layers,
                           kernel=cfg.head_kernel, prior_prob=cfg.prior_prob,
                           matching=cfg.matching_head)

    # ------------------------------------------------------------------ parameter groups
    def ame_parameters(self) -> list[nn.Parameter]:
        """The parameters phase one (mask representation learning) updates."""
        return [] if self.ame is None else list(self.ame.parameters())

    # ------------------------------------------------------------------ forward
    def _pad(self, feats: torch.Tensor, mask: torch.Tensor, pos_mask: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if feats.dim() != 3 or feats.shape[1] != self.in_dim:
            raise ValueError(f"feats must be (B, {self.in_dim}, T), got {tuple(feats.shape)}")
        if mask.shape != (feats.shape[0], feats.shape[2]):
            raise ValueError(f"mask must be (B, T) = {(feats.shape[0], feats.shape[2])}, "
                             f"got {tuple(mask.shape)}")
        mult = 2 ** (self.levels - 1)
        extra = -feats.shape[2] % mult
        if extra:
            feats = F.pad(feats, (0, extra))
            mask = F.pad(mask, (0, extra), value=False)
            if pos_mask is not None:
                pos_mask = F.pad(pos_mask, (0, extra), value=False)
        mask = mask.bool()
        return feats * mask[:, None].to(feats.dtype), mask, pos_mask

    def forward(self, feats: torch.Tensor, mask: torch.Tensor, *, phase: str = "detect",
                pos_mask: torch.Tensor | None = None) -> ModelOutput | torch.Tensor:
        feats, mask, pos_mask = self._pad(feats, mask, pos_mask)
        if phase == "mask":
            if pos_mask is None:
                raise ValueError("phase='mask' needs pos_mask (B, T): steps inside actions")
            return self.mask_loss(feats, mask, pos_mask.bool() & mask)
        if phase != "detect":
            raise ValueError(f"phase must be 'detect' or 'mask', got {phase!r}")
        return self.detect(feats, mask)

    def mask_loss(self, feats: torch.Tensor, mask: torch.Tensor, pos_mask: torch.Tensor
                  ) -> torch.Tensor:
        """Eq. 1–3: ``F_mask = AME(F)``, ``F̂_pos = AME(F_pos)``, ``F̂_neg = AME(F_neg)`` → L_trip.

        F_pos / F_neg are each video's action / background snippets concatenated along time,
        laid out as one packed sequence per video (:func:`pos_neg_order`: ``[pos | gap |
        neg]``, length T + gap): the same outputs as three separate AME passes, since every
        AME block re-masks padded steps. Three exact savings (same loss and gradients up to
        float rounding, pinned by the tests against three separate passes): the packed view's
        C-wide first conv reuses the per-tap projections of F
        (:meth:`AME.hidden_with_packed`); the prototypes are means of the hidden layer mapped
        through the affine output conv (:meth:`AME.masked_mean`), so only F's own steps go
        through it; the per-step distances are one dot product each
        (:func:`triplet_from_prototypes`).
        """
        if self.ame is None:
            raise ValueError("phase='mask' needs the AME (model.ame=true)")
        gap = self.ame.kernel // 2
        neg_mask = mask & ~pos_mask
        src, m_pos, m_neg = pos_neg_order(pos_mask, neg_mask, gap)
        h_f, h_packed = self.ame.hidden_with_packed(feats, mask, src, m_pos | m_neg)
        f_mask = self.ame.output(h_f, mask)
        p = F.normalize(self.ame.masked_mean(h_packed, m_pos), dim=1)
        n = F.normalize(self.ame.masked_mean(h_packed, m_neg), dim=1)
        neg_anchors = neg_mask if self.triplet_anchors == "both" else None
        return triplet_from_prototypes(f_mask, pos_mask, p, n, m_pos.any(1) & m_neg.any(1),
                                       self.triplet_margin, neg_anchors)

    def detect(self, feats: torch.Tensor, mask: torch.Tensor) -> ModelOutput:
        """Detector pass (§3.3): padded (B, C, T), (B, T) → :class:`ModelOutput`."""
        x = self.ame.refine(feats, mask) if self.ame is not None else feats
        levels, masks = self.gam(x, mask)
        cls, dist, match = [], [], []
        for lvl, (f, m) in enumerate(zip(levels, masks, strict=True)):
            c, d, s = self.heads(f, m, lvl)
            cls.append(c)
            dist.append(d * float(2 ** lvl))
            match.append(s)
        points, strides, level_ids, lengths = point_layout(feats.shape[2], self.levels,
                                                           feats.device)
        return ModelOutput(
            cls_logits=torch.cat(cls, dim=1),
            offsets=torch.cat(dist, dim=1),
            match_logits=None if self.heads.match_block is None else torch.cat(match, dim=1),
            points=points, strides=strides, level_ids=level_ids,
            mask=torch.cat(masks, dim=1), level_lengths=lengths)
