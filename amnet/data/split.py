"""The validation split: a seeded, class-stratified part of the training subset held out.

THUMOS14 has two annotated subsets, ``Validation`` (trained on, by convention) and ``Test``
(reported). Every *choice* (a sweep's best config, ASHA's early stopping, a best epoch, the
champion gate) must be made on data that neither trained the model nor is reported, or the
reported number is optimistic. So ``data.val_fraction`` of the training subset's videos is
carved out as the validation part (``part="val"``); training reads the rest (``part="train"``)
and never sees it; Test is scored only for reporting.

Stratification: each video's *stratum* is its majority label (ties → the label of its first
action; a video without actions is its own ``""`` stratum). In every stratum of ``n`` videos,
``max(1, round(val_fraction · n))`` videos go to validation, but never all of them: a stratum
of one video stays in training, so every class with at least two videos is in both parts. Which
videos are picked depends only on ``(data.val_seed, stratum, the stratum's video ids)``: the same
seed gives the same split on any machine, and adding a video of one class leaves the other
classes' picks unchanged.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from amnet.data.annotations import VideoAnnotation
from amnet.errors import ConfigError

__all__ = ["PARTS", "Split", "split_videos", "stratum"]

#: ``all``: every video of the subset; ``train``: without the validation part; ``val``: it.
PARTS = ("all", "train", "val")


@dataclass(frozen=True)
class Split:
    """Video ids of the two parts of one subset (each sorted; disjoint; together the subset)."""

    train: list[str]
    val: list[str]


def stratum(video: VideoAnnotation) -> str:
    """The class a video is stratified by: its most frequent label, ties broken by the label
    of its earliest action (``segments`` are sorted by start); ``""`` without actions."""
    if not video.labels:
        return ""
    counts = Counter(video.labels)
    top = max(counts.values())
    return next(lab for lab in video.labels if counts[lab] == top)


def split_videos(videos: Sequence[VideoAnnotation], fraction: float, seed: int) -> Split:
    """Split ``videos`` (one subset) into training and validation ids (module docstring)."""
    if not 0 <= fraction < 1 or not math.isfinite(fraction):
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {fraction!r}")
    if seed < 0:
        raise ConfigError(f"data.val_seed must be >= 0, got {seed!r}")
    groups: dict[str, list[str]] = defaultdict(list)
    for v in videos:
        groups[stratum(v)].append(v.video_id)
    train: list[str] = []
    val: list[str] = []
    for name in sorted(groups):
        ids = sorted(groups[name])
        n = len(ids)
        k = 0
        if fraction > 0 and n >= 2:
            k = min(max(1, math.floor(fraction * n + 0.5)), n - 1)
        # one generator per stratum, keyed by its name: stable across machines and classes
        rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
        picked = set(rng.permutation(n)[:k].tolist())
        for i, vid in enumerate(ids):
            (val if i in picked else train).append(vid)
    return Split(train=sorted(train), val=sorted(val))
