"""Realism statistics of a snippet-feature matrix (T, C): what a synthetic I3D set must match.

Used by ``bench/feature_realism.py`` (the table of ``docs/synthetic_features.md``) and by the
tests of :mod:`amnet.data.synthetic_i3d`. Every statistic is computed on one video (or one crop
of it) and averaged over videos by the caller:

* value distribution: share of exact zeros, median, 99th / 99.9th percentile, max;
* ``chan_tstd``: per-channel temporal standard deviation, median over channels;
  ``chan_cv``: the same divided by the channel's mean (median over channels);
* ``lag_k``: centred cosine between snippets ``k`` apart (features minus the video's channel
  means, cosine of snippet ``i`` and ``i + k``, mean over ``i``);
* ``rand_cos``: cosine of two random snippets of the video (raw, not centred: real I3D
  features are non-negative, so any two snippets point roughly the same way);
* ``pca_k``: share of the centred video's variance in its top ``k`` principal components.

Across videos, :func:`profile_correlation` (``xvideo_corr`` in the table): the correlation of
two videos' per-channel means, i.e. how much of a channel profile is global rather than the
video's own scene (real RGB: 0.12, real flow: 0.63 for the two samples).

The centred statistics depend on the number of snippets (centring over a short crop removes
more), so compare matrices of the same length: :func:`crop_stats` takes random crops.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LAGS", "PCA_KS", "STAT_NAMES", "TOLERANCE", "crop_stats", "feature_stats",
           "in_real_range", "mean_stats", "profile_correlation"]

LAGS = (1, 2, 4, 8)
PCA_KS = (1, 10, 50)
STAT_NAMES = ("zeros", "median", "p99", "p99.9", "max", "chan_tstd", "chan_cv",
              *(f"lag_{k}" for k in LAGS), "rand_cos", *(f"pca_{k}" for k in PCA_KS))
# least half-width of the accepted band around the real samples' range (two samples are few)
TOLERANCE = {"zeros": 0.02, "median": 0.03, "p99": 0.1, "p99.9": 0.2, "max": 0.8,
             "chan_tstd": 0.02, "chan_cv": 0.1, "lag_1": 0.05, "lag_2": 0.05, "lag_4": 0.05,
             "lag_8": 0.05, "rand_cos": 0.05, "pca_1": 0.04, "pca_10": 0.05, "pca_50": 0.03,
             "xvideo_corr": 0.15}


def feature_stats(x: np.ndarray, *, pairs: int = 2000, seed: int = 0) -> dict[str, float]:
    """The statistics of the module docstring for one (T, C) matrix (T >= 2)."""
    x = np.asarray(x, dtype=np.float64)
    t = len(x)
    q = np.percentile(x, [50, 99, 99.9])
    out = {"zeros": float((x == 0).mean()), "median": float(q[0]), "p99": float(q[1]),
           "p99.9": float(q[2]), "max": float(x.max())}
    std = x.std(0)
    out["chan_tstd"] = float(np.median(std))
    out["chan_cv"] = float(np.median(std / np.maximum(x.mean(0), 1e-9)))
    xc = x - x.mean(0)
    norm = np.maximum(np.linalg.norm(xc, axis=1), 1e-12)
    for k in LAGS:
        out[f"lag_{k}"] = (float(np.mean((xc[k:] * xc[:-k]).sum(1) / (norm[k:] * norm[:-k])))
                           if t > k else float("nan"))
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, t, pairs), rng.integers(0, t, pairs)
    keep = i != j
    raw = np.maximum(np.linalg.norm(x, axis=1), 1e-12)
    out["rand_cos"] = float(np.mean((x[i[keep]] * x[j[keep]]).sum(1)
                                    / (raw[i[keep]] * raw[j[keep]])))
    ev = np.linalg.svd(xc, compute_uv=False) ** 2
    ev /= max(ev.sum(), 1e-30)
    for k in PCA_KS:
        out[f"pca_{k}"] = float(ev[:k].sum())
    return out


def mean_stats(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-statistic mean of several :func:`feature_stats` results (NaNs ignored)."""
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


def crop_stats(videos: list[np.ndarray], length: int, *, crops_per_video: int = 2,
               seed: int = 0) -> dict[str, float]:
    """:func:`mean_stats` over random crops of ``length`` snippets (videos shorter than that
    are used whole), so that centred statistics compare with a real sample of that length."""
    rng = np.random.default_rng(seed)
    rows = []
    for n, x in enumerate(videos):
        for c in range(crops_per_video if len(x) > length else 1):
            s = int(rng.integers(0, len(x) - length + 1)) if len(x) > length else 0
            rows.append(feature_stats(x[s:s + length], seed=seed + 7 * n + c))
    return mean_stats(rows)


def profile_correlation(videos: list[np.ndarray]) -> float:
    """Mean over video pairs of the correlation of their per-channel means."""
    m = [np.asarray(x, dtype=np.float64).mean(0) for x in videos]
    return float(np.mean([np.corrcoef(m[i], m[j])[0, 1]
                          for i in range(len(m)) for j in range(i + 1, len(m))]))


def in_real_range(stat: str, real: list[float], ours: float) -> bool:
    """``ours`` inside the real values' range, widened by a quarter of its width or at least
    :data:`TOLERANCE` on each side."""
    lo, hi = min(real), max(real)
    pad = max(0.25 * (hi - lo), TOLERANCE[stat])
    return lo - pad <= ours <= hi + pad
