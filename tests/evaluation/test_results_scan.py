"""The compiled results scanner gives json.loads's values exactly, or hands the file back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amnet.evaluation.results_scan import scan_results


def _doc(rng: np.random.Generator, n_videos: int = 6, n_rows: int = 40) -> dict:
    labels = ["Ball", "CliffDiving", "Ünïcode ✓", "a:b", "", "x" * 300]
    results = {}
    for v in range(n_videos):
        rows = []
        for _ in range(int(rng.integers(0, n_rows))):
            s = float(rng.normal(0, 10.0 ** int(rng.integers(-5, 6))))
            kind = int(rng.integers(0, 4))
            score = [float(rng.random()), int(rng.integers(0, 3)), round(float(rng.random()), 3),
                     float(rng.random()) * 1e-30][kind]
            rows.append({"label": labels[int(rng.integers(len(labels)))], "score": score,
                         "segment": [s, s + float(rng.exponential(3.0))]})
        results[f"video_{v}" if v % 3 else f"vidéo {v}"] = rows
    return {"version": "1.3", "results": results,
            "external_data": {"used": True, "details": "none", "n": 3}}


def _same(data: bytes) -> None:
    got = scan_results(data)
    assert got is not None
    want = json.loads(data)["results"]
    rows = [r for v in want.values() for r in v]
    assert got.video_ids == list(want)
    assert got.counts.tolist() == [len(v) for v in want.values()]
    assert [got.label_names[c] for c in got.label_codes] == [r["label"] for r in rows]
    scores = np.array([r["score"] for r in rows], dtype=np.float64).reshape(-1)
    segs = np.array([r["segment"] for r in rows], dtype=np.float64).reshape(-1, 2)
    assert np.array_equal(got.scores.view(np.uint64), scores.view(np.uint64))
    assert np.array_equal(got.segments.view(np.uint64), segs.view(np.uint64))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("indent", [None, 2])
def test_equals_json_loads(seed: int, indent: int | None) -> None:
    text = json.dumps(_doc(np.random.default_rng(seed)), indent=indent, ensure_ascii=False)
    _same(text.encode())


def _one(row: str) -> str:
    return '{"results": {"a": [' + row + ']}}'


@pytest.mark.parametrize("text", [
    '{"results": {}}',
    ' \n{"results": {"a": [], "b": []}} \t',
    '{"results": {"a": [{"segment": [1, 2e1], "score": -0, "label": "x"}]}, "version": null}',
    _one('{"label": "x", "score": -0.0, "segment": [-1E-2, 12345678901234567890123]}'),
    _one('{"label": "x", "score": 1e-400, "segment": [0.1, 1.0000000000000000000000001]}'),
    '{"version": [1, "two", false], "results": {"a": []}}',
])
def test_corner_layouts(text: str) -> None:
    _same(text.encode())


@pytest.mark.parametrize("text", [
    '{"results": {"a": [{"label": "x\\u0041", "score": 1, "segment": [0, 1]}]}}',  # escape
    '{"results": {"a\\"": []}}',
    '{"results": {"a": [{"label": "x", "score": 1, "segment": [0, 1], "extra": 1}]}}',
    '{"results": {"a": [{"label": "x", "score": 1, "score": 2, "segment": [0, 1]}]}}',
    '{"results": {"a": [{"label": "x", "segment": [0, 1]}]}}',  # missing score
    '{"results": {"a": [{"label": "x", "score": NaN, "segment": [0, 1]}]}}',
    '{"results": {"a": [{"label": "x", "score": 01, "segment": [0, 1]}]}}',
    '{"results": {"a": [{"label": "x", "score": 1., "segment": [0, 1]}]}}',
    '{"results": {"a": [{"label": "x", "score": "1", "segment": [0, 1]}]}}',
    '{"results": {"a": [{"label": 3, "score": 1, "segment": [0, 1]}]}}',
    '{"results": {"a": [{"label": "x", "score": 1, "segment": [0, 1, 2]}]}}',
    '{"results": {"a": {}}}',
    '{"results": {}, "results": {}}',
    '{"results": {}, "version": {"a": 1, "a": 2}}',  # duplicate inside a skipped value
    '{"results": {}, "version": {"a": {"b": 1}}}',  # nested deeper than the scanner goes
    '{"results": {}, "version": "x\\u0000"}',
    '{"results": {}} trailing',
    '{"results": {}',
    '{"version": "1"}',
    '[]',
    '\ufeff{"results": {}}',
])
def test_hands_anything_else_to_the_general_path(text: str) -> None:
    assert scan_results(text.encode()) is None


def test_invalid_utf8_anywhere_is_handed_back() -> None:
    ok = '{"results": {}, "version": "caf\u00e9"}'.encode()
    assert scan_results(ok) is not None
    assert scan_results(ok.replace("\u00e9".encode(), b"\xe9")) is None


def test_many_distinct_labels_still_scan() -> None:
    rows = [{"label": f"c{i}", "score": 0.5, "segment": [0, 1]} for i in range(3000)]
    _same(json.dumps({"results": {"v": rows + rows[::-1]}}).encode())
