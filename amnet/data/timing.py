"""Snippet index ↔ seconds.

A feature release stores one vector per *snippet*: ``window`` frames taken every ``stride``
frames. Snippet ``i`` covers frames ``[i*stride, i*stride + window)``, so its centre is at

    t(i) = (i * stride + window / 2) / fps        (seconds)

which is the convention of the public THUMOS14 / ActivityNet I3D releases (ActionFormer et al.).
Both functions accept Python floats, numpy arrays or torch tensors and return the same kind.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")

__all__ = ["expected_num_snippets", "seconds_to_snippet", "snippet_to_seconds"]


def snippet_to_seconds(idx: T, fps: float, stride: int, window: int) -> T:
    """Centre time in seconds of snippet ``idx`` (fractional indices allowed)."""
    return (idx * stride + window / 2.0) / fps  # type: ignore[operator,return-value]


def seconds_to_snippet(t: T, fps: float, stride: int, window: int) -> T:
    """Inverse of :func:`snippet_to_seconds`: fractional snippet index whose centre is ``t``."""
    return (t * fps - window / 2.0) / stride  # type: ignore[operator,return-value]


def expected_num_snippets(duration: float, fps: float, stride: int, window: int) -> int:
    """Snippets a sliding window extractor yields for a video of ``duration`` seconds (≥ 1)."""
    frames = round(duration * fps)
    return max((frames - window) // stride + 1, 1)
