"""The shared evaluation parser and the fast JSON path it reads large files with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from amnet.errors import DataError, PredictionError
from amnet.evaluation.parse import (
    _scanned_predictions,
    load_json,
    parse_ground_truth,
    parse_predictions,
    read_predictions,
)
from amnet.io import FAST_JSON_BYTES, parse_json


def _big_results(n: int = 3000, label: str = "A:b") -> dict:
    rows = [{"label": label, "score": i / n, "segment": [i * 0.5, i * 0.5 + 2.0]}
            for i in range(n)]
    return {"results": {"v:1": rows[: n // 2], "v2": rows[n // 2:]}, "version": "x"}


def test_fast_path_equals_the_stdlib() -> None:
    text = json.dumps(_big_results())
    assert len(text) > FAST_JSON_BYTES
    assert parse_json(text, "f", fast=True) == json.loads(text)
    assert parse_json(text.encode(), "f", fast=True) == json.loads(text)


@pytest.mark.parametrize("where", ["top", "video", "row"])
def test_fast_path_refuses_duplicate_keys(where: str) -> None:
    text = json.dumps(_big_results())
    dup = {"top": ('{"results"', '{"version": "y", "results"'),
           "video": ('"v2": [', '"v:1": [], "v2": ['),
           "row": ('{"label": "A:b", "score": 0.0,', '{"label": "A:b", "score": 0.0, "score": 1,')
           }[where]
    assert dup[0] in text
    bad = text.replace(dup[0], dup[1], 1)
    with pytest.raises(DataError, match=r"big\.json: duplicate key"):
        parse_json(bad, "big.json", fast=True)
    assert parse_json(bad, "big.json", allow_duplicates=True, fast=True) == json.loads(bad)


def test_fast_path_escaped_colon_cannot_hide_a_duplicate() -> None:
    text = json.dumps(_big_results())
    # a duplicate (one ':' lost) balanced by an escaped colon (one ':' gained)
    bad = text.replace('"v2": [', '"v2": [], "v2": [', 1).replace('"A:b"', '"A\\u003ab"', 1)
    with pytest.raises(DataError, match="duplicate key 'v2'"):
        parse_json(bad, "f", fast=True)
    ok = text.replace('"A:b"', '"A\\u003Ab"', 1)
    assert parse_json(ok, "f", fast=True) == json.loads(ok)


def test_fast_path_errors_and_extensions_stay_the_stdlib_s() -> None:
    text = json.dumps(_big_results())
    with pytest.raises(DataError, match=r"f: not valid JSON \(.*line 1"):
        parse_json(text[:-2], "f", fast=True)
    nan = text.replace("0.0,", "NaN,", 1)  # the stdlib accepts NaN; orjson does not
    assert parse_json(nan, "f", fast=True) == json.loads(nan)
    big_int = text.replace("0.0,", str(10 ** 30) + ",", 1)  # orjson: a float, same value
    assert parse_json(big_int, "f", fast=True)["results"]["v:1"][0]["score"] == 1e30
    assert parse_json(big_int, "f")["results"]["v:1"][0]["score"] == 10 ** 30


def test_load_json_names_the_file_and_the_kind(tmp_path: Path) -> None:
    p = tmp_path / "pred.json"
    p.write_text(json.dumps(_big_results()).replace('"v2": [', '"v:1": [], "v2": [', 1))
    with pytest.raises(PredictionError, match=r"pred\.json: duplicate key 'v:1'"):
        load_json(p, "predictions", PredictionError)
    with pytest.raises(DataError, match="ground truth file not found"):
        load_json(tmp_path / "nope.json", "ground truth", DataError)


def test_parsers_flatten_in_file_order() -> None:
    gt = parse_ground_truth({"database": {
        "a": {"subset": "test", "duration": 9, "annotations": [
            {"label": "B", "segment": [1, 2]}, {"label": "A", "segment": [3, 4]}]},
        "b": {"subset": "Train", "annotations": [{"label": "C", "segment": [0, 1]}]}}},
        "Test")
    assert gt.classes == ["B", "A"] and gt.label_index == {"B": 0, "A": 1, "C": 2}
    assert gt.durations["a"] == 9 and gt.durations["b"] != gt.durations["b"]  # NaN
    p = parse_predictions(_big_results(10), known=None, allow_reversed=False)
    assert p.video_ids == ["v:1", "v2"] and p.video.tolist() == [0] * 5 + [1] * 5
    assert p.scores.tolist() == [i / 10 for i in range(10)]
    with pytest.raises(PredictionError, match=r"video 'v:1', row 0: label 'A:b' is not"):
        parse_predictions(_big_results(10), known={"A"}, allow_reversed=False)


# ----------------------------------------------------------------- scanned results path

def _general(path: Path, known: set[str] | None, allow_reversed: bool):
    """What the general path (stdlib JSON + parse_predictions) makes of ``path``."""
    try:
        return parse_predictions(json.loads(path.read_text()), known=known,
                                 allow_reversed=allow_reversed)
    except PredictionError as e:
        return e


_EDITS = {
    "as is": ("", ""),
    "int score": ('"score": 0.0,', '"score": 0,'),
    "no version": (', "version": "x"', ""),
    "extra top key": ('"version": "x"', '"version": "x", "external_data": {"used": true}'),
    "unknown top key": ('"version": "x"', '"version": "x", "other": 1'),
    "extra row field": ('{"label": "A:b", "score": 0.0,',
                        '{"label": "A:b", "extra": 1, "score": 0.0,'),
    "duplicate video": ('"v2": [', '"v:1": [], "v2": ['),
    "duplicate field": ('{"label": "A:b", "score": 0.0,',
                        '{"label": "A:b", "score": 0.0, "score": 1,'),
    "escaped colon + dup": ('"v2": [', '"v\\u003a3": [], "v:1": [], "v2": ['),
    "NaN score": ('"score": 0.0,', '"score": NaN,'),
    "bool score": ('"score": 0.0,', '"score": true,'),
    "string score": ('"score": 0.0,', '"score": "0",'),
    "3-point segment": ('"segment": [0.0, 2.0]', '"segment": [0.0, 2.0, 3.0]'),
    "reversed": ('"segment": [0.0, 2.0]', '"segment": [2.0, 0.0]'),
    "unknown label": ('{"label": "A:b", "score": 0.0,', '{"label": "Z", "score": 0.0,'),
    "rows not a list": ('"v2": [', '"v3": {}, "v2": ['),
}


@pytest.mark.parametrize("allow_reversed", [False, True])
@pytest.mark.parametrize("edit", list(_EDITS))
def test_scanned_results_path_equals_the_general_path(tmp_path: Path, edit: str,
                                                     allow_reversed: bool) -> None:
    old, new = _EDITS[edit]
    text = json.dumps(_big_results())
    assert old in text
    path = tmp_path / "pred.json"
    path.write_text(text.replace(old, new, 1))
    assert path.stat().st_size > FAST_JSON_BYTES  # the typed path is tried
    known = {"A:b"}
    want = _general(path, known, allow_reversed)
    if edit.startswith("duplicate") or edit == "escaped colon + dup":
        with pytest.raises(PredictionError, match=r"pred\.json: duplicate key"):
            read_predictions(path, known=known, allow_reversed=allow_reversed)
        return
    if isinstance(want, PredictionError):
        with pytest.raises(PredictionError) as got:
            read_predictions(path, known=known, allow_reversed=allow_reversed)
        assert str(got.value) == f"{path}: {want}"
        return
    # the clean layouts really take the scanner (the speed of amnet eval rests on it)
    scanned = _scanned_predictions(path.read_bytes(), known, allow_reversed)
    assert (scanned is not None) == (edit in {"as is", "int score", "no version",
                                              "extra top key", "unknown top key", "reversed"})
    got = read_predictions(path, known=known, allow_reversed=allow_reversed)
    assert got.video_ids == want.video_ids and got.labels == want.labels
    assert np.array_equal(got.video, want.video)
    assert np.array_equal(got.scores, want.scores)
    assert np.array_equal(got.segments, want.segments)


def test_read_predictions_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PredictionError, match=r"predictions file not found: .*nope\.json"):
        read_predictions(tmp_path / "nope.json", known=None, allow_reversed=False)
    (tmp_path / "bad.json").write_text("{" * 10)
    with pytest.raises(PredictionError, match=r"bad\.json: not valid JSON"):
        read_predictions(tmp_path / "bad.json", known=None, allow_reversed=False)
