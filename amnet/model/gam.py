"""Group Attention Module (GAM, Eq. 5–8): FPN, per-level self-attention, group cross-attention.

Layout: pyramid levels are ``(B, D, T_l)`` with masks ``(B, T_l)`` (True = valid) between
blocks; attention works on ``(B, T, D)`` internally. Level ``l`` has stride ``2**l`` snippets
and ``ceil(T / 2**l)`` steps; step ``j`` sits at input snippet ``j * 2**l``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from amnet.model.ame import ConvNormAct

__all__ = ["GAM", "DropPath", "GroupCrossAttention", "SelfAttentionBlock", "local_attention",
           "masked_attention", "sinusoidal_position"]


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


def local_attention(q: torch.Tensor, q_level: int, keys: list[tuple[torch.Tensor, torch.Tensor,
                                                                   torch.Tensor, int]],
                    heads: int, window: int, dropout: float = 0.0, block: int = 32
                    ) -> torch.Tensor:
    """Eq. 6 / Eq. 8 restricted to a local window, at a cost linear in T (torch's fused SDPA).

    A query at step ``j`` of pyramid level ``a`` sits at snippet ``j·2^a``; on a key level ``b``
    its aligned position is ``x = j·2^(a−b)`` and it attends the keys ``i`` with
    ``|i − x| ≤ window // 2`` — on every key level given, under ONE softmax (for the group
    cross-attention: a local window of each level of the other group). Self-attention is the
    case of one key level ``b = a`` (ActionFormer's local window).

    Implementation: queries are cut into blocks (``block`` steps, or single steps when the keys
    are finer than the queries); each block gathers the contiguous key span its windows cover
    on every key level and runs SDPA on the blocks with a band ∧ valid-key mask. Memory and
    time are O(T · (block + window)), never a T×T matrix.

    Args:
        q: (B, Tq, D) projected queries of level ``q_level``.
        keys: per key level ``(k, v, key_mask, level)``: (B, Tk, D), (B, Tk, D), (B, Tk) bool.
        heads: N_h. window: odd, ≥ 3.

    Returns:
        (B, Tq, D). A query with no valid key in its window (only padded queries) attends its
        whole block span instead, so every value stays finite; callers zero padded steps.
    """
    b, tq, d = q.shape
    r = window // 2
    finer = any(lvl < q_level for _, _, _, lvl in keys)
    qb = 1 if finer else max(1, min(block, tq))
    nb = -(-tq // qb)
    dev = q.device
    n = torch.arange(nb, device=dev)
    j = n[:, None] * qb + torch.arange(qb, device=dev)[None]                       # (nb, qb)
    ks, vs, masks = [], [], []
    for k, v, key_mask, lvl in keys:
        tk = k.shape[1]
        up, down = max(q_level - lvl, 0), max(lvl - q_level, 0)   # x = j · 2^up / 2^down
        start = ((n * qb) << up) // (1 << down) - r
        span = -(-((qb - 1) << up) // (1 << down)) + 2 * r + 1
        idx = start[:, None] + torch.arange(span, device=dev)[None]               # (nb, S)
        inside = (idx >= 0) & (idx < tk)
        idx_c = idx.clamp(0, tk - 1)
        # |i − x| ≤ r in integers: |i·2^down − j·2^up| ≤ r·2^down
        band = ((idx[:, None, :] << down) - (j[:, :, None] << up)).abs() <= (r << down)
        ks.append(k[:, idx_c])                                                     # (B,nb,S,D)
        vs.append(v[:, idx_c])
        masks.append(band[None] & (key_mask[:, idx_c] & inside)[:, :, None, :])    # (B,nb,qb,S)
    k_g, v_g, mask = torch.cat(ks, 2), torch.cat(vs, 2), torch.cat(masks, 3)
    mask = mask | ~mask.any(-1, keepdim=True)
    span = k_g.shape[2]
    dh = d // heads
    qp = F.pad(q, (0, 0, 0, nb * qb - tq)).view(b, nb, qb, heads, dh)
    qp = qp.permute(0, 1, 3, 2, 4).reshape(b * nb, heads, qb, dh)
    k_g = k_g.view(b, nb, span, heads, dh).permute(0, 1, 3, 2, 4).reshape(b * nb, heads, span, dh)
    v_g = v_g.view(b, nb, span, heads, dh).permute(0, 1, 3, 2, 4).reshape(b * nb, heads, span, dh)
    out = F.scaled_dot_product_attention(qp, k_g, v_g,
                                         attn_mask=mask.reshape(b * nb, 1, qb, span),
                                         dropout_p=dropout)
    out = out.view(b, nb, heads, qb, dh).permute(0, 1, 3, 2, 4).reshape(b, nb * qb, d)
    return out[:, :tq]


def sinusoidal_position(steps: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoidal code of snippet positions ``steps`` (T,) → (T, dim)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=steps.device,
                                                       dtype=torch.float32) / max(half, 1))
    ang = steps.to(torch.float32)[:, None] * freq[None]
    pe = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)
    return F.pad(pe, (0, dim - 2 * half))


class DropPath(nn.Module):
    """Stochastic depth: in training, drop a residual branch for a whole video with
    probability ``p`` (survivors scaled by ``1/(1−p)``); identity in eval or with ``p = 0``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        return x * x.new_empty(shape).bernoulli_(keep) / keep


class _MLP(nn.Sequential):
    def __init__(self, dim: int, ratio: float, dropout: float) -> None:
        hidden = max(int(dim * ratio), 1)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, dim), nn.Dropout(dropout))


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer layer on one level: Eq. 5 (own W_q/W_k/W_v) and Eq. 6, then an MLP.

    ``forward(x, mask, level)``: x (B, T, D), mask (B, T) → (B, T, D), padded steps zero.
    ``window`` > 0: local attention (:func:`local_attention`) instead of global;
    ``drop_path``: stochastic depth on both residual branches; ``conv`` > 0: a depthwise
    temporal conv of that kernel and a LayerNorm on each of the query, key and value inputs
    before their projections (ActionFormer's convolutional attention projections): each step's
    q, k, v see their neighbours in order, which the attention itself (no position input)
    does not.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float,
                 window: int = 0, drop_path: float = 0.0, conv: int = 0) -> None:
        super().__init__()
        if conv and (conv < 3 or conv % 2 == 0):
            raise ValueError(f"attention conv kernel must be 0 (none) or odd and >= 3, got {conv}")
        self.heads = heads
        self.dropout = dropout
        self.window = window
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _MLP(dim, mlp_ratio, dropout)
        self.drop_path = DropPath(drop_path)
        self.convs = self.conv_norms = None
        if conv:
            self.convs = nn.ModuleList(nn.Conv1d(dim, dim, conv, padding=conv // 2, groups=dim,
                                                 bias=False) for _ in range(3))
            self.conv_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def _qkv(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.norm1(x)
        if self.convs is None:
            return self.qkv(h).chunk(3, dim=-1)
        # padded steps zeroed first, so a conv sees zeros there as at the video's ends
        h = (h * mask[..., None].to(h.dtype)).transpose(1, 2)                   # (B, D, T)
        return tuple(F.linear(norm(conv(h).transpose(1, 2)), w, b)
                     for conv, norm, w, b in zip(self.convs, self.conv_norms,
                                                 self.qkv.weight.chunk(3),
                                                 self.qkv.bias.chunk(3), strict=True))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, level: int = 0) -> torch.Tensor:
        q, k, v = self._qkv(x, mask)
        drop = self.dropout if self.training else 0.0
        if self.window:
            att = local_attention(q, level, [(k, v, mask, level)], self.heads, self.window, drop)
        else:
            att = masked_attention(q, k, v, mask, self.heads, drop)
        x = x + self.drop_path(self.proj(att))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
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

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float,
                 window: int = 0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.window = window
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)  # W_cq, W_ck, W_cv shared by both groups
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _MLP(dim, mlp_ratio, dropout)
        self.drop_path = DropPath(drop_path)

    def _cross(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m_k: torch.Tensor,
               q_levels: list[tuple[int, int]] | None, k_levels: list[tuple[int, int]] | None,
               drop: float) -> torch.Tensor:
        """One direction of Eq. 8: global MCA, or per query level a local window of every key
        level (``*_levels``: (level, length) of each level concatenated in the group)."""
        if not self.window:
            return masked_attention(q, k, v, m_k, self.heads, drop)
        if q_levels is None or k_levels is None:
            raise ValueError("windowed cross-attention needs the groups' level layout")
        keys, at = [], 0
        for lvl, n in k_levels:
            keys.append((k[:, at:at + n], v[:, at:at + n], m_k[:, at:at + n], lvl))
            at += n
        outs, at = [], 0
        for lvl, n in q_levels:
            outs.append(local_attention(q[:, at:at + n], lvl, keys, self.heads, self.window,
                                        drop))
            at += n
        return torch.cat(outs, dim=1)

    def forward(self, g_short: torch.Tensor, m_short: torch.Tensor, g_long: torch.Tensor,
                m_long: torch.Tensor, short_levels: list[tuple[int, int]] | None = None,
                long_levels: list[tuple[int, int]] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T_S, D), (B, T_S), (B, T_L, D), (B, T_L) → updated (g_short, g_long).

        ``short_levels`` / ``long_levels``: (pyramid level, length) of each level in the
        group, in order — needed only with a window.
        """
        q_s, k_s, v_s = self.qkv(self.norm1(g_short)).chunk(3, dim=-1)
        q_l, k_l, v_l = self.qkv(self.norm1(g_long)).chunk(3, dim=-1)
        drop = self.dropout if self.training else 0.0
        new_long = g_long + self.drop_path(self.proj(
            self._cross(q_l, k_s, v_s, m_short, long_levels, short_levels, drop)))
        new_short = g_short + self.drop_path(self.proj(
            self._cross(q_s, k_l, v_l, m_long, short_levels, long_levels, drop)))
        new_long = new_long + self.drop_path(self.mlp(self.norm2(new_long)))
        new_short = new_short + self.drop_path(self.mlp(self.norm2(new_short)))
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
    per-level self-attention only. ``window`` > 0 makes every attention local
    (:func:`local_attention`: self-attention over ``window`` steps of the level, cross-attention
    over ``window`` steps of each level of the other group at the aligned position), so the
    cost is linear in T; ``position="sinusoidal"`` adds a sinusoidal code of each step's
    snippet index to every level before the attention blocks (none by default: the model's
    only position cue is then the convs' zero padding at the video's ends); ``drop_path`` is
    stochastic depth on every residual branch of the attention blocks; ``attention_conv`` > 0
    gives the per-level self-attention ActionFormer's depthwise-conv q/k/v projections
    (:class:`SelfAttentionBlock`).
    """

    def __init__(self, in_dim: int, dim: int, levels: int, *, heads: int, depth: int,
                 mlp_ratio: float, dropout: float, self_attention: bool, group: bool,
                 short_levels: int = 0, window: int = 0, position: str = "none",
                 drop_path: float = 0.0, attention_conv: int = 0) -> None:
        super().__init__()
        if window and (window < 3 or window % 2 == 0):
            raise ValueError(f"attention window must be 0 (global) or odd and >= 3, got {window}")
        if position not in ("none", "sinusoidal"):
            raise ValueError(f"position must be 'none' or 'sinusoidal', got {position!r}")
        self.dim = dim
        self.position = position
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
                    SelfAttentionBlock(dim, heads, mlp_ratio, dropout, window, drop_path,
                                       attention_conv)
                    for _ in range(levels)))
                if group:
                    self.cross_blocks.append(GroupCrossAttention(dim, heads, mlp_ratio, dropout,
                                                                 window, drop_path))

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
        if self.position == "sinusoidal":
            # step j of level l sits at snippet j * 2**l: one code shared by all levels
            seq = [t + sinusoidal_position(
                       torch.arange(n, device=t.device) * 2 ** lvl, self.dim).to(t.dtype)[None]
                   * m[..., None].to(t.dtype)
                   for lvl, (t, n, m) in enumerate(zip(seq, lengths, masks, strict=True))]
        s = self.short_levels
        m_short, m_long = torch.cat(masks[:s], dim=1), torch.cat(masks[s:], dim=1)
        layout = list(enumerate(lengths))
        for d, blocks in enumerate(self.self_blocks):
            seq = [blk(t, m, lvl) for lvl, (blk, t, m)
                   in enumerate(zip(blocks, seq, masks, strict=True))]
            if self.cross_blocks:
                g_short, g_long = self.cross_blocks[d](torch.cat(seq[:s], dim=1), m_short,
                                                       torch.cat(seq[s:], dim=1), m_long,
                                                       layout[:s], layout[s:])
                seq = [*g_short.split(lengths[:s], dim=1), *g_long.split(lengths[s:], dim=1)]
        return [t.transpose(1, 2) for t in seq], masks
