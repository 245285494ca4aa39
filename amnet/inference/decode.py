"""Per-point confidence (Eq. 14) and segment boundaries (Eq. 13, snippets → seconds)."""

from __future__ import annotations

import torch

from amnet.data.timing import snippet_to_seconds
from amnet.errors import ConfigError

__all__ = ["confidence", "decode_segments"]


def confidence(cls_logits: torch.Tensor, match_logits: torch.Tensor | None, mode: str
               ) -> torch.Tensor:
    """Per-point, per-class confidence ``(B, N, C)`` (Eq. 14 and the Table 4 variants).

    ``"sigmoid"``: ``sigmoid(ŷ)``; ``"sigmoid*sigmoid"``: ``sigmoid(ŷ)·sigmoid(m̂)``;
    ``"sigmoid*tanh"``: ``sigmoid(ŷ)·tanh(m̂)`` (Eq. 14, AMNet's choice). ``cls_logits`` is
    ``(B, N, C)``, ``match_logits`` ``(B, N)`` (``None`` only allowed with ``"sigmoid"``).
    """
    y = torch.sigmoid(cls_logits)
    if mode == "sigmoid":
        return y
    if mode not in ("sigmoid*sigmoid", "sigmoid*tanh"):
        raise ConfigError(f"infer.confidence must be one of sigmoid, sigmoid*sigmoid, "
                          f"sigmoid*tanh; got {mode!r}")
    if match_logits is None:
        raise ConfigError(f"infer.confidence={mode!r} needs the matching score, but the model "
                          "has no matching head (model.matching_head=false); use 'sigmoid'")
    m = match_logits.to(y.dtype)
    m = torch.sigmoid(m) if mode == "sigmoid*sigmoid" else torch.tanh(m)
    return y * m.unsqueeze(-1)


def decode_segments(points: torch.Tensor, offsets: torch.Tensor, *,
                    fps: float | torch.Tensor, stride: float | torch.Tensor,
                    window: float | torch.Tensor) -> torch.Tensor:
    """Eq. 13 boundaries, converted from snippets to seconds.

    Args:
        points: ``(..., N)`` point positions ``i`` in snippets.
        offsets: ``(..., N, 2)`` distances ``(d_s, d_e)`` in snippets.
        fps, stride, window: frames per second, frames between snippets, frames per snippet;
            numbers or tensors broadcastable to ``points`` (e.g. ``(B, 1)`` per video).

    Returns:
        ``(..., N, 2)`` float64 ``[t_s, t_e]`` in seconds, where a snippet position ``t`` maps
        to the centre of its window, ``(t · stride + window / 2) / fps``.
    """
    p = points.to(torch.float64)
    d = offsets.to(device=p.device, dtype=torch.float64)
    snippets = torch.stack((p - d[..., 0], p + d[..., 1]), dim=-1)  # Eq. 13

    def col(x: float | torch.Tensor) -> float | torch.Tensor:
        return x.to(device=p.device, dtype=torch.float64).unsqueeze(-1) \
            if isinstance(x, torch.Tensor) else float(x)

    return snippet_to_seconds(snippets, col(fps), col(stride), col(window))

