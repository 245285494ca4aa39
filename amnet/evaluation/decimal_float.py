"""Decimal → IEEE double, correctly rounded, inside compiled loops (Eisel–Lemire).

The results scanner (:mod:`amnet.evaluation.results_scan`) reads a million numbers per
second of evaluation; calling Python's ``float()`` on each would cost more than all the
scoring. numba has no decimal parser, so this one is written here: Clinger's exact fast path
(``w ≤ 2^53``, ``|q| ≤ 22``), else Lemire's algorithm (D. Lemire, "Number Parsing at a
Gigabyte per Second", SPE 2021) on a 128-bit truncated table of powers of five. It gives the
double nearest ``w · 10^q`` (ties to even), bit for bit what ``float()`` gives; where the
128-bit product cannot decide, it says so and the caller parses that number with ``float()``.
The tests compare it against ``float()`` on millions of numbers of every magnitude.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["MAX_Q", "MIN_Q", "POW10", "decimal_to_double", "pow5_table"]

MIN_Q, MAX_Q = -342, 308  # decimal exponents the table covers (beyond: 0 / inf territory)
_U64 = (1 << 64) - 1


def pow5_table() -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` uint64 words of 5^q for q in [MIN_Q, MAX_Q], normalised to [2^127, 2^128):
    truncated for q ≥ 0, rounded up (one more than the floor of 2^b / 5^-q) for q < 0."""
    hi, lo = [], []
    for q in range(MIN_Q, MAX_Q + 1):
        if q >= 0:
            p = 5 ** q
            while p < 1 << 127:
                p <<= 1
        else:
            p5 = 5 ** -q
            z = p5.bit_length()  # 2^(z-1) < 5^-q < 2^z
            b = z + 127 if q >= -27 else 2 * z + 128
            p = (1 << b) // p5 + 1
        while p >= 1 << 128:
            p >>= 1
        hi.append(p >> 64)
        lo.append(p & _U64)
    return np.array(hi, dtype=np.uint64), np.array(lo, dtype=np.uint64)


@numba.njit(cache=True, inline="always")
def _mul128(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
    """(high, low) 64-bit words of the 128-bit product a·b (32-bit halves: numba has no u128)."""
    m32 = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    a0, a1 = a & m32, a >> s32
    b0, b1 = b & m32, b >> s32
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> s32) + (p01 & m32) + (p10 & m32)
    low = (mid << s32) | (p00 & m32)
    high = p11 + (p01 >> s32) + (p10 >> s32) + (mid >> s32)
    return high, low


POW10 = np.array([10.0 ** k for k in range(23)], dtype=np.float64)  # exact doubles


_HI, _LO = pow5_table()  # compile-time constants of the kernels below


@numba.njit(cache=True, inline="always")
def decimal_to_double(w: np.uint64, q: int) -> tuple[bool, float]:
    """``(ok, x)``: the double nearest ``w · 10^q`` (non-negative); ``ok`` is False where
    this cannot decide (the caller then uses ``float()``).

    ``w`` is the decimal significand (at most 19 digits, so it fits in 64 bits), ``q`` the
    decimal exponent.
    """
    if -22 <= q <= 22 and w <= np.uint64(1 << 53):  # Clinger: one exact IEEE operation
        v = np.float64(w)
        return True, v * POW10[q] if q >= 0 else v / POW10[-q]
    ok, mant, power2 = _lemire(w, q)
    if not ok:
        return False, 0.0
    if power2 == 0x7FF:
        return True, np.inf
    if power2 == 0:  # subnormal (or zero): mant · 2^-1074, exact
        return True, math.ldexp(np.float64(mant), -1074)
    return True, math.ldexp(np.float64(mant | (np.uint64(1) << np.uint64(52))), power2 - 1075)


@numba.njit(cache=True, inline="always")
def _lemire(w: np.uint64, q: int) -> tuple[bool, np.uint64, int]:
    """``(ok, 52-bit mantissa field, biased exponent)`` of the double nearest ``w · 10^q``."""
    zero = np.uint64(0)
    one = np.uint64(1)
    if w == zero:
        return True, zero, 0
    if q < MIN_Q or q > MAX_Q:
        return False, zero, 0
    # normalise w (leading zeros)
    lz = 0
    for step in (32, 16, 8, 4, 2, 1):
        if w < (one << np.uint64(64 - step)):
            w = w << np.uint64(step)
            lz += step
    k = q - MIN_Q
    high, low = _mul128(w, _HI[k])
    mask = np.uint64(0x1FF)  # 64 - (52 + 3) bits below the 55 we need
    if (high & mask) == mask:
        high2, _ = _mul128(w, _LO[k])
        low = low + high2
        if high2 > low:
            high = high + one
        if low == np.uint64(_U64) and (q < -27 or q > 55):
            return False, zero, 0
    upper = int(high >> np.uint64(63))
    shift = np.uint64(upper + 9)
    mant = high >> shift
    power2 = (((152170 + 65536) * q) >> 16) + 63 + upper - lz + 1023
    if power2 <= 0:  # subnormal
        if -power2 + 1 >= 64:
            return True, zero, 0
        mant = mant >> np.uint64(-power2 + 1)
        mant = mant + (mant & one)
        mant = mant >> one
        if mant < (one << np.uint64(52)):
            return True, mant, 0
        return True, mant & ~(one << np.uint64(52)), 1
    if (low <= one and -4 <= q <= 23 and (mant & np.uint64(3)) == one
            and (mant << shift) == high):  # exactly halfway: round to even, i.e. down here
        mant = mant & ~one
    mant = mant + (mant & one)
    mant = mant >> one
    if mant >= (np.uint64(2) << np.uint64(52)):
        mant = one << np.uint64(52)
        power2 += 1
    mant = mant & ~(one << np.uint64(52))
    if power2 >= 0x7FF:
        return True, zero, 0x7FF  # inf
    return True, mant, power2
