"""Action Masking Encoder (AME, Eq. 1 and 4) and the masked conv block it shares with the heads.

Layout: tensors are ``(batch, channels, time)``; masks are ``(batch, time)`` booleans, True on
valid (unpadded) steps. Every block keeps padded steps at exactly zero, so a zero-padded conv
sees the same inputs at a valid step whether or not the batch carries extra padding: padded
steps never change valid outputs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AME", "ConvNormAct", "channel_layer_norm", "pack_pos_neg", "pack_steps",
           "pos_neg_order"]


def channel_layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channels of a ``(B, C, T)`` tensor (ε of Eq. 1 and Eq. 9).

    Per-step normalisation, unlike BatchNorm/GroupNorm, never mixes padded steps into the
    statistics of valid ones.
    """
    return norm(x.transpose(1, 2)).transpose(1, 2)


class ConvNormAct(nn.Module):
    """One ``σ(ε(Conv1d(x)))`` block (Eq. 1, Eq. 9); ``stride=2`` halves the length (FPN).

    ``forward(x, mask)``: ``x`` (B, C_in, T) with padded steps zero, ``mask`` (B, T) → the
    output (B, C_out, T') with padded steps zero and its mask (B, T'), ``T' = ceil(T / stride)``;
    output step ``j`` is centred on input step ``j * stride``.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"conv kernel must be odd to keep steps centred, got {kernel}")
        self.stride = stride
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x)
        if self.stride > 1:
            mask = mask[:, :: self.stride]
        x = F.relu(channel_layer_norm(self.norm, x))
        return x * mask[:, None].to(x.dtype), mask


class AME(nn.Module):
    """Action Masking Encoder, Eq. 1: ``AME(x) = Conv1d({σ(ε(Conv1d(x)))}×K)``.

    Maps the video feature ``F`` (B, C, T) to the action-aware mask ``F_mask`` of the same
    shape. ``K`` conv blocks of width ``hidden`` (kernel 3, so the mask sees its neighbours)
    followed by a point-wise Conv1d back to ``C`` channels. The bottleneck width keeps the
    encoder affordable at I3D's C = 2048 (the paper does not give AME's inner width).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, kernel: int = 3) -> None:
        super().__init__()
        self.kernel = kernel
        self.blocks = nn.ModuleList(
            ConvNormAct(in_dim if i == 0 else hidden, hidden, kernel) for i in range(layers))
        self.out = nn.Conv1d(hidden, in_dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``F_mask = AME(F)`` (Eq. 1): (B, C, T) → (B, C, T), padded steps zero."""
        return self.output(self.hidden(x, mask), mask)

    def hidden(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The K conv blocks of Eq. 1 (B, C, T) → (B, hidden, T), padded steps zero."""
        for block in self.blocks:
            x, _ = block(x, mask)
        return x

    def output(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The point-wise output conv of Eq. 1 on :meth:`hidden`'s result, padded steps zero."""
        return self.out(h) * mask[:, None].to(h.dtype)

    def masked_mean(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over the ``mask``ed steps of the AME output, from the hidden layer (B, C):
        the output conv is affine, so ``mean(W h + b) = W mean(h) + b`` without the C-wide
        output of every step; 0 where the mask is empty (as a masked mean of zeros)."""
        w = mask.to(h.dtype)
        count = w.sum(-1, keepdim=True)                                       # (B, 1)
        mean_h = torch.einsum("bht,bt->bh", h, w) / count.clamp(min=1)
        return mean_h @ self.out.weight[:, :, 0].T + self.out.bias * (count > 0).to(h.dtype)

    def hidden_with_packed(self, x: torch.Tensor, mask: torch.Tensor, src: torch.Tensor,
                           src_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`hidden` of ``x`` and of its packed view ``x[:, :, src]`` (masked by
        ``src_mask``, e.g. :func:`pack_pos_neg`'s layout), in one go.

        The first conv is linear, so its per-tap projections ``W_k x_t`` are computed once on
        ``x`` and summed along each sequence's own neighbours: ``x``'s shifted, the packed
        view's gathered through ``src`` (a masked or out-of-range neighbour adds zero, as the
        conv's zero padding does). The packed view never runs the C-wide first conv — the
        costliest layer at I3D's C — only the narrow blocks after it.

        Args:
            x: (B, C, T) features, zero at padded steps; mask (B, T).
            src: (B, L) index into ``x``'s steps of each packed step; src_mask (B, L) which
                packed steps are real (the others, and their ``src``, are ignored).

        Returns:
            ``h_x`` (B, hidden, T) and ``h_packed`` (B, hidden, L), padded steps zero.
        """
        first = self.blocks[0]
        conv = first.conv
        b, c, t = x.shape
        k = conv.kernel_size[0]
        r = k // 2
        hid = conv.out_channels
        taps = conv.weight.permute(2, 0, 1).reshape(k * hid, c)                 # (k·H, C)
        proj = torch.matmul(taps, x).view(b, k, hid, t)                         # W_k x_t
        bias = conv.bias.view(1, hid, 1)
        padded = F.pad(proj, (r, r))
        h_x = bias + sum(padded[:, i, :, i:i + t] for i in range(k))            # (B, H, T)
        # packed: tap i reads the packed neighbour j + i − r, i.e. x's step src[j + i − r]
        zero = F.pad(proj, (0, 1))                                              # step T is 0
        idx = F.pad(torch.where(src_mask, src, torch.full_like(src, t)), (r, r), value=t)
        length = src.shape[1]
        h_p = bias + sum(zero[:, i].gather(2, idx[:, None, i:i + length].expand(-1, hid, -1))
                         for i in range(k))                                    # (B, H, L)
        h_x, h_p = (F.relu(channel_layer_norm(first.norm, h)) * m[:, None].to(h.dtype)
                    for h, m in ((h_x, mask), (h_p, src_mask)))                # σ(ε(·))
        if len(self.blocks) > 1:  # the narrow blocks: one batch of 2B sequences
            gap = max(length - t, 0)
            hs = torch.cat([F.pad(h_x, (0, gap)), F.pad(h_p, (0, max(t - length, 0)))])
            ms = torch.cat([F.pad(mask, (0, gap), value=False),
                            F.pad(src_mask, (0, max(t - length, 0)), value=False)])
            for block in self.blocks[1:]:
                hs, _ = block(hs, ms)
            h_x, h_p = hs[:b, :, :t], hs[b:, :, :length]
        return h_x, h_p

    def refine(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 4: ``F̂ = F + F_mask`` (action-aware attention, residual form)."""
        return x + self(x, mask)


def pack_steps(x: torch.Tensor, select: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather the selected steps of each video to the front, in time order (Eq. 1's F_pos/F_neg).

    Args:
        x: (B, C, T) features.
        select: (B, T) bool, the steps to keep (e.g. inside a ground-truth action).

    Returns:
        ``packed`` (B, C, T_max) with each video's selected steps concatenated along time and
        zero after them, and its mask (B, T_max), T_max = the largest selected count (≥ 1).
    """
    # A stable sort on "not selected" moves the selected steps to the front without
    # reordering them: one vectorised gather instead of a Python loop over videos.
    order = torch.sort((~select).to(torch.uint8), dim=1, stable=True).indices
    count = select.sum(dim=1)
    t_max = max(int(count.max()), 1) if count.numel() else 1
    order = order[:, :t_max]
    packed = x.gather(2, order[:, None, :].expand(-1, x.shape[1], -1))
    mask = torch.arange(t_max, device=x.device)[None, :] < count[:, None]
    return packed * mask[:, None].to(x.dtype), mask


def pack_pos_neg(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, gap: int = 1
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """F_pos and F_neg of Eq. 1 packed into ONE sequence per video: ``[pos | gap | neg | pad]``.

    Each video's selected action steps come first (in time order), then ``gap`` zero steps,
    then its background steps (in time order), then zero padding; the length is fixed at
    ``T + gap`` (``pos`` and ``neg`` are disjoint), so no host sync is needed. Running a masked
    conv stack (:class:`AME`) on it equals running it on F_pos and F_neg separately as long
    as ``gap`` ≥ the conv's half-kernel: every block re-zeroes masked steps, so the gap plays
    the part of the zero padding each separate sequence would see at its ends.

    Args:
        x: (B, C, T) features; pos, neg: (B, T) disjoint bool selections.
        gap: masked zero steps between the two parts (the AME's ``kernel // 2``).

    Returns:
        ``packed`` (B, C, T + gap), ``pos_mask`` and ``neg_mask`` (B, T + gap) marking where
        the packed action and background steps lie.
    """
    order, m_pos, m_neg = pos_neg_order(pos, neg, gap)
    packed = F.pad(x, (0, gap)).gather(2, order[:, None, :].expand(-1, x.shape[1], -1))
    return packed * (m_pos | m_neg)[:, None].to(x.dtype), m_pos, m_neg


def pos_neg_order(pos: torch.Tensor, neg: torch.Tensor, gap: int = 1
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`pack_pos_neg`'s layout without moving features: ``src`` (B, T + gap), the step
    of ``x`` at each packed position (values ≥ T are gap or unused slots), and the packed
    action / background masks (B, T + gap)."""
    b, t = pos.shape
    # sort key: 0 = action, 1 = gap, 2 = background, 3 = neither; the gap slots are extra
    # zero columns appended after T, so one stable sort lays the sequence out.
    key = torch.full((b, t), 3, dtype=torch.uint8, device=pos.device)
    key = key.masked_fill(pos, 0).masked_fill(neg, 2)
    key = torch.cat([key, torch.ones(b, gap, dtype=torch.uint8, device=pos.device)], dim=1)
    order = torch.sort(key, dim=1, stable=True).indices
    sorted_key = key.gather(1, order)
    return order, sorted_key == 0, sorted_key == 2
