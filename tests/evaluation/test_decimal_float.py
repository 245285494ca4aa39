"""The compiled decimal → double conversion is ``float()`` bit for bit, or says it cannot tell."""

from __future__ import annotations

from decimal import Decimal

import numba
import numpy as np

from amnet.evaluation.decimal_float import decimal_to_double, pow5_table


@numba.njit
def _convert(ws, qs, out, ok):  # a compiled test driver
    for i in range(ws.shape[0]):
        ok[i], out[i] = decimal_to_double(ws[i], qs[i])


def _split(text: str) -> tuple[int, int] | None:
    """(significand, decimal exponent) of a plain decimal; None beyond 19 digits."""
    mant, _, exp = text.lower().partition("e")
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0") or "0"
    if len(digits) > 19:
        return None
    return int(digits), (int(exp) if exp else 0) - len(frac)


def _strings(rng: np.random.Generator) -> list[str]:
    out = [repr(float(v)) for v in rng.random(40_000) * 10.0 ** rng.integers(-300, 300, 40_000)]
    bits = rng.integers(1, 0x7FF0000000000000, 40_000, dtype=np.int64)  # every exponent
    out += [repr(float(v)) for v in bits.view(np.float64)]
    out += [f"{v:.{p}g}" for v, p in zip(rng.random(20_000) * 1e4,
                                         rng.integers(1, 20, 20_000), strict=True)]
    for v in rng.random(5_000) * 10.0 ** rng.integers(-30, 30, 5_000):  # exact midpoints
        a = float(v)
        mid = (Decimal(a) + Decimal(float(np.nextafter(a, np.inf)))) / 2
        out += [f"{mid:.18e}", f"{mid:.17e}"]
    out += [str(2 ** 53 + k) for k in range(-40, 40)] + [str(k) for k in range(200)]
    out += ["4.9e-324", "5e-324", "2.4703282292062327e-324", "2.4703282292062328e-324",
            "2.2250738585072011e-308", "2.2250738585072014e-308", "1.7976931348623157e308",
            "1.7976931348623158e308", "1.7976931348623159e308", "1e-400", "1e23", "1e22",
            "1e-22", "9007199254740993", "0.1", "0.3", "7.2057594037927933e16",
            "123456789012345678", "1e308", "1e309", "0e0", "0.000"]
    return out


def test_matches_float_bit_for_bit() -> None:
    pairs = [(s, p) for s in _strings(np.random.default_rng(0)) if (p := _split(s))]
    ws = np.array([p[0] for _, p in pairs], dtype=np.uint64)
    qs = np.array([p[1] for _, p in pairs], dtype=np.int64)
    out, ok = np.empty(len(ws)), np.zeros(len(ws), dtype=np.bool_)
    _convert(ws, qs, out, ok)
    want = np.array([float(s) for s, _ in pairs])
    assert ok.mean() > 0.999  # almost all decided here, the rest go to float()
    wrong = np.flatnonzero(ok & (out.view(np.uint64) != want.view(np.uint64)))
    assert not wrong.size, [(pairs[i][0], out[i], want[i]) for i in wrong[:5]]


def test_table_is_lemire_s() -> None:
    hi, lo = pow5_table()
    assert (int(hi[0]), int(lo[0])) == (0xEEF453D6923BD65A, 0x113FAA2906A13B3F)  # 5^-342
    assert (int(hi[342]), int(lo[342])) == (1 << 63, 0)  # 5^0
    assert (int(hi[343]), int(lo[343])) == (0xA000000000000000, 0)  # 5^1
