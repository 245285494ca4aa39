"""Statistics over seeds for the ablation matrix: mean ± std, paired differences, verdicts.

Pure numpy / scipy. A row of the matrix runs the same seeds as its reference row, so the
claim "row beats reference" is judged on the *paired* per-seed differences
``d_s = row_s − reference_s``: their mean with a Student-t interval over seeds
(:func:`paired_difference`), or a percentile interval from resampling test videos
(:func:`paired_bootstrap`). :func:`verdict` compares the interval with the side of 0 the paper
reports (``reproduces`` / ``contradicts`` / ``not significant``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

__all__ = ["CONTRADICTS", "NOT_SIGNIFICANT", "REPRODUCES", "Interval", "MeanStd",
           "mean_std", "paired_bootstrap", "paired_difference", "verdict"]

REPRODUCES = "reproduces"
CONTRADICTS = "contradicts"
NOT_SIGNIFICANT = "not significant"


@dataclass(frozen=True)
class MeanStd:
    mean: float
    std: float          # sample standard deviation (ddof=1); nan for fewer than 2 values
    n: int


@dataclass(frozen=True)
class Interval:
    """A mean difference and its two-sided ``confidence`` interval ``[low, high]``."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float
    method: str         # "t over seeds" | "bootstrap over videos"

    def contains_zero(self) -> bool:
        return not (self.low > 0 or self.high < 0)


def _values(values: Sequence[float], what: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{what}: no values")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: non-finite value in {a.tolist()}")
    return a


def mean_std(values: Sequence[float]) -> MeanStd:
    """Mean and sample standard deviation (``ddof=1``) of per-seed values."""
    a = _values(values, "mean_std")
    std = float(np.std(a, ddof=1)) if a.size > 1 else math.nan
    return MeanStd(float(np.mean(a)), std, int(a.size))


def paired_difference(values: Sequence[float], reference: Sequence[float], *,
                      confidence: float = 0.95) -> Interval:
    """Mean of ``values[i] − reference[i]`` (same seed ``i``) with a Student-t interval.

    ``mean ± t_{(1+confidence)/2, n−1} · s_d / √n`` with ``s_d`` the sample standard deviation
    of the differences. One pair gives an unbounded interval (``−inf, inf``: no evidence).
    """
    a, b = _values(values, "paired_difference"), _values(reference, "paired_difference")
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: {a.size} values against {b.size} reference "
                         "values (pairs must share seeds)")
    if not 0 < confidence < 1:
        raise ValueError(f"paired_difference: confidence must be in (0, 1), got {confidence}")
    d = a - b
    n = int(d.size)
    mean = float(np.mean(d))
    if n < 2:
        return Interval(mean, -math.inf, math.inf, n, confidence, "t over seeds")
    half = float(sps.t.ppf((1 + confidence) / 2, df=n - 1) * np.std(d, ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n, confidence, "t over seeds")


def paired_bootstrap(statistic: Callable[[np.ndarray], float], n_videos: int, *,
                     resamples: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> Interval:
    """Percentile interval of a paired statistic over test videos resampled with replacement.

    ``statistic(indices)`` returns the difference (row − reference, e.g. of their average
    mAPs) computed on the videos ``indices`` (both models on the *same* resample: paired).
    The mean reported is the statistic on all videos.
    """
    if n_videos < 1 or resamples < 1:
        raise ValueError("paired_bootstrap: needs at least one video and one resample")
    rng = np.random.default_rng(seed)
    full = float(statistic(np.arange(n_videos)))
    draws = np.array([statistic(rng.integers(0, n_videos, n_videos))
                      for _ in range(resamples)], dtype=np.float64)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return Interval(full, float(low), float(high), n_videos, confidence,
                    "bootstrap over videos")


def verdict(interval: Interval, paper_delta: float) -> str:
    """``reproduces`` when the interval lies entirely on the side of 0 the paper's difference
    ``paper_delta`` is on, ``contradicts`` when entirely on the other side, else
    ``not significant``. A ``paper_delta`` of 0 makes no claim: :class:`ValueError`."""
    if not math.isfinite(paper_delta) or paper_delta == 0:
        raise ValueError(f"verdict: the paper's difference must be non-zero, got {paper_delta}")
    if interval.contains_zero():
        return NOT_SIGNIFICANT
    same_side = (interval.low > 0) == (paper_delta > 0)
    return REPRODUCES if same_side else CONTRADICTS
