"""An ActivityNet results file straight from its bytes to columns, in one compiled pass.

``{"results": {video: [{"label", "score", "segment": [start, end]}, ...]}, ...}`` is what
every TAL codebase writes; at 10^5–10^6 rows, building one Python object per row and field
(what any JSON library does) costs more than scoring them. This scanner (numba: no JSON
library parses into arrays) walks the bytes once and fills the columns, labels interned to
codes, numbers converted exactly (:mod:`amnet.evaluation.decimal_float`).

It accepts only the plain layout and says ``None`` (→ the general path, which accepts and
refuses exactly what it always did) on anything else: a string with an escape or a control
character, a row field other than the three or one given twice, a top-level key given twice,
a top-level value nested deeper than a flat object or array of scalars, a number outside
JSON's grammar, invalid UTF-8, more than :data:`MAX_LABELS` distinct labels. Duplicate video
ids, non-finite values and labels are checked by the caller on the columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from amnet.evaluation.decimal_float import decimal_to_double

__all__ = ["MAX_LABELS", "ScannedResults", "scan_results"]

MAX_LABELS = 4096          # distinct labels the intern table holds
_TABLE = 8192              # its open-addressing slots (a power of two, > 2 · MAX_LABELS)
_MAX_TOP_KEYS = 32

# byte values
_QUOTE, _BSLASH, _COLON, _COMMA = 34, 92, 58, 44
_LBRACE, _RBRACE, _LBRACK, _RBRACK = 123, 125, 91, 93
_MINUS, _PLUS, _DOT, _ZERO, _NINE = 45, 43, 46, 48, 57
_TRUE, _FALSE, _NULL, _RESULTS = (np.frombuffer(w, dtype=np.uint8).copy()
                                  for w in (b"true", b"false", b"null", b"results"))


@dataclass
class ScannedResults:
    """The columns of a results file, rows in file order."""

    video_ids: list[str]   # the results mapping's keys, file order
    counts: np.ndarray     # (V,) rows per video
    label_names: list[str] # distinct labels, first-appearance order
    label_codes: np.ndarray  # (P,) int64 into label_names
    scores: np.ndarray     # (P,) float64
    segments: np.ndarray   # (P, 2) float64


@numba.njit(cache=True, inline="always")
def _ws(b: np.ndarray, i: int) -> int:
    n = b.shape[0]
    while i < n and (b[i] == 32 or b[i] == 10 or b[i] == 13 or b[i] == 9):
        i += 1
    return i


@numba.njit(cache=True, inline="always")
def _string(b: np.ndarray, i: int) -> int:
    """End (index of the closing quote) of the plain string opening at ``i``; -1 if not."""
    n = b.shape[0]
    if i >= n or b[i] != _QUOTE:
        return -1
    i += 1
    while i < n:
        c = b[i]
        if c == _QUOTE:
            return i
        if c == _BSLASH or c < 32:
            return -1
        i += 1
    return -1


@numba.njit(cache=True, inline="always")
def _same(b: np.ndarray, s1: int, n1: int, s2: int, n2: int) -> bool:
    if n1 != n2:
        return False
    for k in range(n1):  # noqa: SIM110 - numba compiles no generator expressions
        if b[s1 + k] != b[s2 + k]:
            return False
    return True


@numba.njit(cache=True, inline="always")
def _number(b: np.ndarray, i: int) -> tuple[int, float, bool]:
    """``(end, value, exact)`` of the JSON number at ``i`` (end -1: not one). ``exact`` False:
    more than 19 significant digits or undecided; parse ``b[i:end]`` with ``float()``."""
    n = b.shape[0]
    start = i
    neg = False
    if i < n and b[i] == _MINUS:
        neg = True
        i += 1
    if i >= n or b[i] < _ZERO or b[i] > _NINE:
        return -1, 0.0, False
    w = np.uint64(0)
    nsig = 0
    q = 0
    if b[i] == _ZERO:
        i += 1
    else:
        while i < n and _ZERO <= b[i] <= _NINE:
            if nsig < 19:
                w = w * np.uint64(10) + np.uint64(b[i] - _ZERO)
                nsig += 1
            else:
                nsig += 1
                q += 1
            i += 1
    integer = True
    if i < n and b[i] == _DOT:
        integer = False
        i += 1
        if i >= n or b[i] < _ZERO or b[i] > _NINE:
            return -1, 0.0, False
        while i < n and _ZERO <= b[i] <= _NINE:
            d = b[i] - _ZERO
            if nsig < 19:
                if nsig > 0 or d != 0:
                    w = w * np.uint64(10) + np.uint64(d)
                    nsig += 1
                q -= 1
            else:
                nsig += 1
            i += 1
    if i < n and (b[i] == 101 or b[i] == 69):  # e E
        integer = False
        i += 1
        eneg = False
        if i < n and (b[i] == _PLUS or b[i] == _MINUS):
            eneg = b[i] == _MINUS
            i += 1
        if i >= n or b[i] < _ZERO or b[i] > _NINE:
            return -1, 0.0, False
        e = 0
        while i < n and _ZERO <= b[i] <= _NINE:
            if e < 100000:
                e = e * 10 + (b[i] - _ZERO)
            i += 1
        q += -e if eneg else e
    if i - start > 64 or nsig > 19:
        return i, 0.0, False
    ok, v = decimal_to_double(w, q)
    if not ok:
        return i, 0.0, False
    if neg and not (integer and w == np.uint64(0)):  # the integer -0 is int 0 → 0.0
        v = -v
    return i, v, True


@numba.njit(cache=True)
def _scalar(b: np.ndarray, i: int) -> int:
    """End of the scalar (string, number, true, false, null) at ``i``; -1 if none."""
    n = b.shape[0]
    if i >= n:
        return -1
    c = b[i]
    if c == _QUOTE:
        j = _string(b, i)
        return -1 if j < 0 else j + 1
    if c == _MINUS or _ZERO <= c <= _NINE:
        j, _, _ = _number(b, i)
        return j
    if c == 116 and _word(b, i, _TRUE):
        return i + 4
    if c == 102 and _word(b, i, _FALSE):
        return i + 5
    if c == 110 and _word(b, i, _NULL):
        return i + 4
    return -1


@numba.njit(cache=True, inline="always")
def _word(b: np.ndarray, i: int, word: np.ndarray) -> bool:
    if i + word.shape[0] > b.shape[0]:
        return False
    for k in range(word.shape[0]):  # noqa: SIM110 - numba compiles no generator expressions
        if b[i + k] != word[k]:
            return False
    return True


@numba.njit(cache=True)
def _flat_value(b: np.ndarray, i: int, ks: np.ndarray, kn: np.ndarray) -> int:
    """End of a scalar, or of a flat object / array of scalars (object keys distinct)."""
    n = b.shape[0]
    if i >= n:
        return -1
    if b[i] == _LBRACK:
        i = _ws(b, i + 1)
        if i < n and b[i] == _RBRACK:
            return i + 1
        while True:
            i = _scalar(b, i)
            if i < 0:
                return -1
            i = _ws(b, i)
            if i < n and b[i] == _COMMA:
                i = _ws(b, i + 1)
            elif i < n and b[i] == _RBRACK:
                return i + 1
            else:
                return -1
    if b[i] == _LBRACE:
        i = _ws(b, i + 1)
        if i < n and b[i] == _RBRACE:
            return i + 1
        nk = 0
        while True:
            j = _string(b, i)
            if j < 0 or nk == ks.shape[0]:
                return -1
            for k in range(nk):
                if _same(b, ks[k], kn[k], i + 1, j - i - 1):
                    return -1
            ks[nk], kn[nk] = i + 1, j - i - 1
            nk += 1
            i = _ws(b, j + 1)
            if i >= n or b[i] != _COLON:
                return -1
            i = _scalar(b, _ws(b, i + 1))
            if i < 0:
                return -1
            i = _ws(b, i)
            if i < n and b[i] == _COMMA:
                i = _ws(b, i + 1)
            elif i < n and b[i] == _RBRACE:
                return i + 1
            else:
                return -1
    return _scalar(b, i)


@numba.njit(cache=True)
def _scan(b: np.ndarray, cap_rows: int, cap_videos: int):
    """The columns of ``b``, or ``ok`` False. Returns ``(ok, n_rows, n_videos, n_labels,
    n_hard, video_span, first, label_span, codes, values, hard)``."""
    n = b.shape[0]
    video_span = np.empty((cap_videos, 2), dtype=np.int64)
    first = np.empty(cap_videos + 1, dtype=np.int64)  # each video's first row
    label_span = np.empty((MAX_LABELS, 2), dtype=np.int64)
    table = np.full(_TABLE, -1, dtype=np.int64)
    codes = np.empty(cap_rows, dtype=np.int64)
    values = np.empty((cap_rows, 3), dtype=np.float64)
    hard = np.empty((cap_rows + 1, 3), dtype=np.int64)  # (flat value index, start, end)
    top_s = np.empty(_MAX_TOP_KEYS, dtype=np.int64)
    top_n = np.empty(_MAX_TOP_KEYS, dtype=np.int64)
    ks = np.empty(_MAX_TOP_KEYS, dtype=np.int64)
    kn = np.empty(_MAX_TOP_KEYS, dtype=np.int64)
    n_rows = n_videos = n_labels = n_hard = 0
    fail = (False, 0, 0, 0, 0, video_span, first, label_span, codes, values, hard)

    i = _ws(b, 0)
    if i >= n or b[i] != _LBRACE:
        return fail
    i = _ws(b, i + 1)
    n_top = 0
    seen_results = False
    while True:
        j = _string(b, i)
        if j < 0 or n_top == _MAX_TOP_KEYS:
            return fail
        ks_, kn_ = i + 1, j - i - 1
        for k in range(n_top):
            if _same(b, top_s[k], top_n[k], ks_, kn_):
                return fail
        top_s[n_top], top_n[n_top] = ks_, kn_
        n_top += 1
        is_results = kn_ == 7 and _word(b, ks_, _RESULTS)
        i = _ws(b, j + 1)
        if i >= n or b[i] != _COLON:
            return fail
        i = _ws(b, i + 1)
        if not is_results:
            i = _flat_value(b, i, ks, kn)
            if i < 0:
                return fail
        else:
            seen_results = True
            if i >= n or b[i] != _LBRACE:
                return fail
            i = _ws(b, i + 1)
            if i < n and b[i] == _RBRACE:
                i += 1
            else:
                while True:  # videos
                    j = _string(b, i)
                    if j < 0 or n_videos == cap_videos:
                        return fail
                    video_span[n_videos, 0], video_span[n_videos, 1] = i + 1, j
                    first[n_videos] = n_rows
                    n_videos += 1
                    i = _ws(b, j + 1)
                    if i >= n or b[i] != _COLON:
                        return fail
                    i = _ws(b, i + 1)
                    if i >= n or b[i] != _LBRACK:
                        return fail
                    i = _ws(b, i + 1)
                    if i < n and b[i] == _RBRACK:
                        i += 1
                    else:
                        while True:  # rows
                            if i >= n or b[i] != _LBRACE or n_rows == cap_rows:
                                return fail
                            i = _ws(b, i + 1)
                            have = 0
                            while True:  # fields
                                j = _string(b, i)
                                if j < 0:
                                    return fail
                                m = j - i - 1
                                field = -1
                                if m == 5 and b[i + 1] == 108 and b[i + 2] == 97 and \
                                        b[i + 3] == 98 and b[i + 4] == 101 and b[i + 5] == 108:
                                    field = 0  # label
                                elif m == 5 and b[i + 1] == 115 and b[i + 2] == 99 and \
                                        b[i + 3] == 111 and b[i + 4] == 114 and b[i + 5] == 101:
                                    field = 1  # score
                                elif m == 7 and b[i + 1] == 115 and b[i + 2] == 101 and \
                                        b[i + 3] == 103 and b[i + 4] == 109 and \
                                        b[i + 5] == 101 and b[i + 6] == 110 and b[i + 7] == 116:
                                    field = 2  # segment
                                if field < 0 or have & (1 << field):
                                    return fail
                                have |= 1 << field
                                i = _ws(b, j + 1)
                                if i >= n or b[i] != _COLON:
                                    return fail
                                i = _ws(b, i + 1)
                                if field == 0:
                                    j = _string(b, i)
                                    if j < 0:
                                        return fail
                                    s0, m = i + 1, j - i - 1
                                    h = np.uint64(14695981039346656037)  # FNV-1a
                                    for k in range(m):
                                        h = (h ^ np.uint64(b[s0 + k])) * \
                                            np.uint64(1099511628211)
                                    slot = np.int64(h & np.uint64(_TABLE - 1))
                                    while True:
                                        code = table[slot]
                                        if code < 0:
                                            if n_labels == MAX_LABELS:
                                                return fail
                                            code = n_labels
                                            table[slot] = code
                                            label_span[code, 0], label_span[code, 1] = s0, j
                                            n_labels += 1
                                            break
                                        ls = label_span[code, 0]
                                        if _same(b, ls, label_span[code, 1] - ls, s0, m):
                                            break
                                        slot = (slot + np.int64(1)) & np.int64(_TABLE - 1)
                                    codes[n_rows] = code
                                    i = j + 1
                                else:
                                    count = 1
                                    col = 0
                                    if field == 2:
                                        if i >= n or b[i] != _LBRACK:
                                            return fail
                                        i = _ws(b, i + 1)
                                        count = 2
                                        col = 1
                                    for k in range(count):
                                        if k == 1:
                                            i = _ws(b, i)
                                            if i >= n or b[i] != _COMMA:
                                                return fail
                                            i = _ws(b, i + 1)
                                        e, x, exact = _number(b, i)
                                        if e < 0:
                                            return fail
                                        if not exact:
                                            if n_hard == hard.shape[0]:
                                                return fail
                                            hard[n_hard, 0] = 3 * n_rows + col + k
                                            hard[n_hard, 1], hard[n_hard, 2] = i, e
                                            n_hard += 1
                                        values[n_rows, col + k] = x
                                        i = e
                                    if field == 2:
                                        i = _ws(b, i)
                                        if i >= n or b[i] != _RBRACK:
                                            return fail
                                        i += 1
                                i = _ws(b, i)
                                if i < n and b[i] == _COMMA:
                                    i = _ws(b, i + 1)
                                elif i < n and b[i] == _RBRACE:
                                    i += 1
                                    break
                                else:
                                    return fail
                            if have != 7:
                                return fail
                            n_rows += 1
                            i = _ws(b, i)
                            if i < n and b[i] == _COMMA:
                                i = _ws(b, i + 1)
                            elif i < n and b[i] == _RBRACK:
                                i += 1
                                break
                            else:
                                return fail
                    i = _ws(b, i)
                    if i < n and b[i] == _COMMA:
                        i = _ws(b, i + 1)
                    elif i < n and b[i] == _RBRACE:
                        i += 1
                        break
                    else:
                        return fail
        i = _ws(b, i)
        if i < n and b[i] == _COMMA:
            i = _ws(b, i + 1)
        elif i < n and b[i] == _RBRACE:
            i += 1
            break
        else:
            return fail
    if not seen_results or _ws(b, i) != n:
        return fail
    first[n_videos] = n_rows
    return (True, n_rows, n_videos, n_labels, n_hard, video_span, first, label_span, codes,
            values, hard)



def scan_results(data: bytes) -> ScannedResults | None:
    """The columns of the results file ``data``; ``None`` where it is not the plain layout
    (module docstring) and the general path must read it."""
    if not data.isascii():  # the general path refuses invalid UTF-8 anywhere in the file
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    buf = np.frombuffer(data, dtype=np.uint8)
    # room for every row and video the bytes can hold (allocated lazily by the OS): a row
    # takes at least len('{"label":"","score":0,"segment":[0,0]}') bytes, a video '"":[]'
    cap_rows = len(data) // 38 + 1
    cap_videos = len(data) // 5 + 1
    (ok, n_rows, n_videos, n_labels, n_hard, video_span, first, label_span, codes, values,
     hard) = _scan(buf, cap_rows, cap_videos)
    if not ok:
        return None
    flat = values[:n_rows].reshape(-1)
    for k, s, e in hard[:n_hard]:
        flat[k] = float(data[s:e])  # > 19 digits or undecided: Python's exact parser
    video_ids = [data[s:e].decode("utf-8") for s, e in video_span[:n_videos]]
    names = [data[s:e].decode("utf-8") for s, e in label_span[:n_labels]]
    vals = values[:n_rows]
    return ScannedResults(video_ids=video_ids, counts=np.diff(first[:n_videos + 1]),
                          label_names=names, label_codes=codes[:n_rows].copy(),
                          scores=vals[:, 0].copy(), segments=vals[:, 1:].copy())
