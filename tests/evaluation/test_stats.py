"""Statistics over seeds against values computed by hand (t table: t_{0.975, 2} = 4.303,
t_{0.975, 4} = 2.776)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from amnet.evaluation.stats import (
    CONTRADICTS,
    NOT_SIGNIFICANT,
    REPRODUCES,
    Interval,
    mean_std,
    paired_bootstrap,
    paired_difference,
    verdict,
)


def test_mean_and_sample_std() -> None:
    # (0.5, 0.6, 0.7): mean 0.6, squared deviations 0.01 + 0 + 0.01 over n-1 = 2 -> std 0.1
    m = mean_std([0.5, 0.6, 0.7])
    assert (m.mean, m.n) == (pytest.approx(0.6), 3)
    assert m.std == pytest.approx(0.1)
    one = mean_std([0.4])
    assert one.mean == 0.4 and math.isnan(one.std)
    with pytest.raises(ValueError, match="non-finite"):
        mean_std([0.1, float("nan")])


def test_paired_t_interval_by_hand() -> None:
    # d = (3-1, 5-2, 7-3) = (2, 3, 4): mean 3, s_d = 1, half = 4.303 * 1 / sqrt(3) = 2.484
    iv = paired_difference([3, 5, 7], [1, 2, 3])
    assert iv.mean == pytest.approx(3.0)
    assert iv.low == pytest.approx(3 - 2.484, abs=1e-3)
    assert iv.high == pytest.approx(3 + 2.484, abs=1e-3)
    assert iv.n == 3 and iv.method == "t over seeds" and not iv.contains_zero()
    # d = (1, -1, 2, 0, 3): mean 1, s_d = sqrt(10/4) = 1.5811, half = 2.776 * 1.5811 / sqrt(5)
    iv = paired_difference([2, 0, 4, 1, 5], [1, 1, 2, 1, 2])
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)
    assert (iv.low, iv.high) == (pytest.approx(1 - half, abs=1e-3),
                                 pytest.approx(1 + half, abs=1e-3))
    assert iv.contains_zero()
    # a 90 % interval is narrower: t_{0.95, 2} = 2.920
    iv90 = paired_difference([3, 5, 7], [1, 2, 3], confidence=0.90)
    assert iv90.high - iv90.mean == pytest.approx(2.920 / math.sqrt(3), abs=1e-3)


def test_paired_difference_needs_pairs() -> None:
    with pytest.raises(ValueError, match="share seeds"):
        paired_difference([1, 2, 3], [1, 2])
    one = paired_difference([0.5], [0.2])
    assert one.mean == pytest.approx(0.3) and one.contains_zero()  # one seed: no evidence


def test_verdicts() -> None:
    above = Interval(0.03, 0.01, 0.05, 3, 0.95, "t over seeds")
    below = Interval(-0.03, -0.05, -0.01, 3, 0.95, "t over seeds")
    zero = Interval(0.01, -0.01, 0.03, 3, 0.95, "t over seeds")
    assert verdict(above, +2.3) == REPRODUCES
    assert verdict(below, +2.3) == CONTRADICTS
    assert verdict(below, -0.9) == REPRODUCES
    assert verdict(above, -0.9) == CONTRADICTS
    assert verdict(zero, +2.3) == NOT_SIGNIFICANT
    with pytest.raises(ValueError, match="non-zero"):
        verdict(above, 0.0)


def test_paired_bootstrap() -> None:
    # per-video scores of two models; the paired statistic: mean difference on the resample
    a = np.array([0.9, 0.8, 0.7, 0.6])
    shift = paired_bootstrap(lambda idx: float(np.mean(a[idx] - (a[idx] - 0.1))), 4,
                             resamples=200)
    assert (shift.mean, shift.low, shift.high) == (pytest.approx(0.1), pytest.approx(0.1),
                                                   pytest.approx(0.1))
    b = np.array([0.5, 0.9, 0.6, 0.8])  # differences (0.4, -0.1, 0.1, -0.2): mean 0.05
    iv = paired_bootstrap(lambda idx: float(np.mean(a[idx] - b[idx])), 4, resamples=2000)
    assert iv.mean == pytest.approx(0.05)
    assert -0.2 <= iv.low < 0.05 < iv.high <= 0.4 and iv.contains_zero()
    again = paired_bootstrap(lambda idx: float(np.mean(a[idx] - b[idx])), 4, resamples=2000)
    assert (again.low, again.high) == (iv.low, iv.high)  # seeded
