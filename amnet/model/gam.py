"""Group Attention Module (GAM, Eq. 5–8): FPN, per-level self-attention, group cross-attention.

Layout: pyramid levels are ``(B, D, T_l)`` with masks ``(B, T_l)`` (True = valid) between
blocks; attention works on ``(B, T, D)`` internally. Level ``l`` has stride ``2**l`` snippets
and ``ceil(T / 2**l)`` steps; step ``j`` sits at input snippet ``j * 2**l``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from amnet.model.ame import ConvNormAct

__all__ = ["GAM", "GroupCrossAttention", "SelfAttentionBlock", "masked_attention"]


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor,
                     heads: int, dropout: float = 0.0) -> torch.Tensor:
    """Multi-head ``softmax(QKᵀ/√D)V`` (Eq. 6) over valid keys only, with torch's fused kernel.

    Args:
        q: (B, Tq, D) queries; k, v: (B, Tk, D) keys and values (already projected).
        key_mask: (B, Tk) bool, True on keys that may be attended; every row needs ≥ 1.
        heads: N_h; each head has D / N_h channels.

    Returns:
        (B, Tq, D). Padded queries get finite values (they attend valid keys); callers zero them.
    """
    b, tq, d = q.shape
    tk = k.shape[1]
    q = q.view(b, tq, heads, d // heads).transpose(1, 2)
    k = k.view(b, tk, heads, d // heads).transpose(1, 2)
    v = v.view(b, tk, heads, d // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :],
                                         dropout_p=dropout)
    return out.transpose(1, 2).reshape(b, tq, d)


class _MLP(nn.Sequential):
    def __init__(self, dim: int, ratio: float, dropout: float) -> None:
        hidden = max(int(dim * ratio), 1)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, dim), nn.Dropout(dropout))


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer layer on one level: Eq. 5 (own W_q/W_k/W_v) and Eq. 6, then an MLP.

    ``forward(x, mask)``: x (B, T, D), mask (B, T) → (B, T, D), padded steps zero.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _MLP(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        drop = self.dropout if self.training else 0.0
        x = x + self.proj(masked_attention(q, k, v, mask, self.heads, drop))
        x = x + self.mlp(self.norm2(x))
        return x * mask[..., None].to(x.dtype)


class GroupCrossAttention(nn.Module):
    """Eq. 8: cross-attention both ways between the two groups with SHARED W_cq, W_ck, W_cv.

    ``G_{L→S} = MLP(ε(MCA(K_S, V_S, Q_L)))`` updates the long-span group from the short-span
    one and ``G_{S→L} = MLP(ε(MCA(K_L, V_L, Q_S)))`` the other way; the same projections,
    layer norm and MLP serve both directions, as Eq. 8 writes them. Both directions read the
    groups as they were before this block. Each sub-layer is residual and pre-normed (as the
    self-attention layers) so that stacking ``gam_depth`` blocks keeps the Eq. 7 features
    flowing and trains stably; Eq. 8's ``MLP(ε(·))`` is the second sub-layer.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)  # W_cq, W_ck, W_cv shared by both groups
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _MLP(dim, mlp_ratio, dropout)

    def forward(self, g_short: torch.Tensor, m_short: torch.Tensor, g_long: torch.Tensor,
                m_long: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T_S, D), (B, T_S), (B, T_L, D), (B, T_L) → updated (g_short, g_long)."""
        q_s, k_s, v_s = self.qkv(self.norm1(g_short)).chunk(3, dim=-1)
        q_l, k_l, v_l = self.qkv(self.norm1(g_long)).chunk(3, dim=-1)
        drop = self.dropout if self.training else 0.0
        new_long = g_long + self.proj(masked_attention(q_l, k_s, v_s, m_short, self.heads, drop))
        new_short = g_short + self.proj(masked_attention(q_s, k_l, v_l, m_long, self.heads, drop))
        new_long = new_long + self.mlp(self.norm2(new_long))
        new_short = new_short + self.mlp(self.norm2(new_short))
        return (new_short * m_short[..., None].to(new_short.dtype),
                new_long * m_long[..., None].to(new_long.dtype))


class GAM(nn.Module):
    """The detector's neck (Eq. 5–8): input projection, 1D-conv FPN, attention per level/group.

    1. Projection of the refined feature F̂ (B, C, T) to ``dim`` channels (two conv blocks).
    2. FPN of 1D convs: ``levels`` pyramid levels, each a stride-2 conv block of the previous
       one (half the length).
    3. ``depth`` times: masked multi-head self-attention on every level with its own weights
       (Eq. 5–6, ``g(·)`` of Eq. 7), then — with ``group=True`` — the levels are concatenated
       along time into the short-span group (the first ``short_levels`` levels, longest T) and
       the long-span group (the rest) (Eq. 7), cross-attended both ways (Eq. 8) and split back
       into per-level features.

    Switches (Tables 2–3): ``self_attention=False`` uses no attention at all (the FPN output
    goes straight to the heads: the anchor-free conv-pyramid baseline); ``group=False`` keeps
    per-level self-attention only.
    """

    def __init__(self, in_dim: int, dim: int, levels: int, *, heads: int, depth: int,
                 mlp_ratio: float, dropout: float, self_attention: bool, group: bool,
                 short_levels: int = 0) -> None:
        super().__init__()
        if group and not self_attention:
            raise ValueError("group attention needs self_attention=True")
        self.levels = levels
        self.short_levels = short_levels or levels // 2
        if not 0 < self.short_levels < levels:
            raise ValueError(f"short_levels must be in [1, {levels - 1}], got {self.short_levels}")
        self.embed = nn.ModuleList([ConvNormAct(in_dim, dim, 3), ConvNormAct(dim, dim, 3)])
        self.down = nn.ModuleList(ConvNormAct(dim, dim, 3, stride=2) for _ in range(levels - 1))
        self.self_blocks = nn.ModuleList()
        self.cross_blocks = nn.ModuleList()
        if self_attention:
            for _ in range(depth):
                self.self_blocks.append(nn.ModuleList(
                    SelfAttentionBlock(dim, heads, mlp_ratio, dropout) for _ in range(levels)))
                if group:
                    self.cross_blocks.append(GroupCrossAttention(dim, heads, mlp_ratio, dropout))

    def pyramid(self, x: torch.Tensor, mask: torch.Tensor
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Steps 1–2: (B, C, T), (B, T) → per-level (B, D, T_l) and masks (B, T_l)."""
        for block in self.embed:
            x, mask = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.down:
            x, mask = block(x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks

    def forward(self, x: torch.Tensor, mask: torch.Tensor
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """F̂ (B, C, T), mask (B, T) → per-level features (B, D, T_l) and masks (B, T_l)."""
        feats, masks = self.pyramid(x, mask)
        if not self.self_blocks:
            return feats, masks
        seq = [f.transpose(1, 2) for f in feats]  # (B, T_l, D)
        lengths = [s.shape[1] for s in seq]
        s = self.short_levels
        m_short, m_long = torch.cat(masks[:s], dim=1), torch.cat(masks[s:], dim=1)
        for d, blocks in enumerate(self.self_blocks):
            seq = [blk(t, m) for blk, t, m in zip(blocks, seq, masks, strict=True)]
            if self.cross_blocks:
                g_short, g_long = self.cross_blocks[d](torch.cat(seq[:s], dim=1), m_short,
                                                       torch.cat(seq[s:], dim=1), m_long)
                seq = [*g_short.split(lengths[:s], dim=1), *g_long.split(lengths[s:], dim=1)]
        return [t.transpose(1, 2) for t in seq], masks
