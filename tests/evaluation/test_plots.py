"""Plots are written, non-empty, and their CSV/JSON data equal the numbers they draw."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from amnet.errors import DataError
from amnet.evaluation.analysis import ERROR_TYPES, analyze_false_positives
from amnet.evaluation.map import evaluate_detections
from amnet.evaluation.plots import (
    RECALL_GRID,
    example_video,
    per_class_ap_table,
    plot_fp_analysis,
    plot_per_class_ap,
    plot_pr_curves,
    plot_timeline,
    precision_recall,
    write_all_plots,
)

TIOU = [0.3, 0.5, 0.7]
CLASSES = ["Jump", "Run", "Throw"]


def _dataset(seed: int = 0) -> tuple[dict, dict, dict]:
    """Small GT (6 test videos + 1 validation) and two noisy prediction sets of it."""
    rng = np.random.default_rng(seed)
    db = {}
    for i in range(7):
        anns = []
        for _ in range(int(rng.integers(1, 5))):
            s = float(rng.uniform(0, 50))
            anns.append({"label": str(rng.choice(CLASSES)), "segment": [s, s + rng.uniform(2, 8)]})
        db[f"vid{i}"] = {"subset": "Validation" if i == 6 else "Test", "duration": 60.0,
                         "annotations": anns}

    def preds(noise: float) -> dict:
        out = {}
        for v, d in db.items():
            rows = []
            for a in d["annotations"]:
                s, e = a["segment"]
                j = rng.normal(0, noise, 2)
                lab = a["label"] if rng.random() < 0.8 else str(rng.choice(CLASSES))
                rows.append({"label": lab, "score": float(rng.uniform(0.3, 1)),
                             "segment": [s + j[0], max(s + j[0] + 0.5, e + j[1])]})
            for _ in range(6):
                s = float(rng.uniform(0, 55))
                rows.append({"label": str(rng.choice(CLASSES)), "score": float(rng.uniform(0, .6)),
                             "segment": [s, s + float(rng.uniform(1, 6))]})
            out[v] = rows
        return {"results": out}

    return {"database": db}, preds(1.0), preds(0.4)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _check_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5000
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    assert img[..., :3].std() > 0.05  # something is drawn, not a blank canvas


def test_per_class_ap_csv_equals_map_result(tmp_path: Path) -> None:
    gt, pa, pb = _dataset()
    ra = evaluate_detections(gt, pa, subset="Test", tiou=TIOU)
    rb = evaluate_detections(gt, pb, subset="Test", tiou=TIOU)
    png, csv_path = plot_per_class_ap({"AMNet": ra, "baseline": rb}, tmp_path / "ap.png",
                                      tmp_path / "ap.csv")
    _check_png(png)
    rows = {r["class"]: r for r in _read_csv(csv_path)}
    assert sorted(rows) == sorted(ra.classes)
    for name, res in (("AMNet", ra), ("baseline", rb)):
        for c in res.classes:
            for t in TIOU:
                assert float(rows[c][f"{name}/AP@{t:g}"]) == res.per_class_AP[t][c]
            avg = np.mean([res.per_class_AP[t][c] for t in TIOU])
            assert float(rows[c][f"{name}/AP@avg"]) == pytest.approx(avg, abs=1e-15)
        # the class mean of the CSV is the run's mAP
        for t in TIOU:
            col = [float(r[f"{name}/AP@{t:g}"]) for r in rows.values()]
            assert np.mean(col) == pytest.approx(res.mAP[t], abs=1e-12)


def test_per_class_ap_accepts_dicts_and_leaves_missing_classes_empty(tmp_path: Path) -> None:
    a = {0.5: {"A": 0.25, "B": 0.5}, 0.7: {"A": 0.75, "B": 0.0}}
    b = {0.5: {"A": 1.0}, 0.7: {"A": 0.5}}
    classes, tious, table = per_class_ap_table({"a": a, "b": b})
    assert classes == ["A", "B"] and tious == [0.5, 0.7]
    np.testing.assert_allclose(table["a"], [[0.25, 0.75, 0.5], [0.5, 0.0, 0.25]])
    assert np.isnan(table["b"][1]).all()
    _, csv_path = plot_per_class_ap({"a": a, "b": b}, tmp_path / "p.png", tmp_path / "p.csv")
    rows = _read_csv(csv_path)
    assert rows[1]["class"] == "B" and rows[1]["b/AP@avg"] == "" and rows[1]["a/AP@avg"] == "0.25"
    with pytest.raises(DataError, match="per-class AP"):
        plot_per_class_ap({"x": [1, 2]}, tmp_path / "x.png", tmp_path / "x.csv")


def _activitynet_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-points interpolated AP from a raw PR curve (independent of map.py's code)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx]))


def test_pr_curves_integrate_to_the_evaluators_ap(tmp_path: Path) -> None:
    gt, pa, _ = _dataset(1)
    res = evaluate_detections(gt, pa, subset="Test", tiou=TIOU)
    from amnet.evaluation.analysis import load_detections

    curves = precision_recall(load_detections(gt, pa, subset="Test"), TIOU)
    for t in TIOU:
        assert set(curves[t]) == set(res.classes)
        for c, (rec, prec) in curves[t].items():
            assert _activitynet_ap(rec, prec) == pytest.approx(res.per_class_AP[t][c], abs=1e-12)
    out = plot_pr_curves(gt, pa, "Test", TIOU, tmp_path / "pr.png", tmp_path / "pr.csv",
                         per_class_csv=tmp_path / "prc.csv", result=res)
    _check_png(out[0])
    rows = _read_csv(out[1])
    assert len(rows) == RECALL_GRID.size and float(rows[-1]["recall"]) == 1.0
    for t in TIOU:
        col = np.array([float(r[f"precision@{t:g}"]) for r in rows])
        assert np.all(np.diff(col) <= 1e-12) and col.max() <= 1.0  # interpolated: non-increasing
    # a stricter threshold never gives a higher mean curve
    p3 = np.array([float(r["precision@0.3"]) for r in rows])
    p7 = np.array([float(r["precision@0.7"]) for r in rows])
    assert np.all(p7 <= p3 + 1e-12) and p3.sum() > p7.sum()
    per_class = _read_csv(out[2])
    assert len(per_class) == len(TIOU) * len(res.classes) * RECALL_GRID.size


def test_fp_chart_data_equal_the_analysis(tmp_path: Path) -> None:
    gt, pa, _ = _dataset(2)
    a = analyze_false_positives(gt, pa, subset="Test", gain_tiou=TIOU)
    png, prof_csv, types_csv = plot_fp_analysis(a, tmp_path / "fp.png", tmp_path / "fp.csv")
    _check_png(png)
    assert types_csv == tmp_path / "fp_types.csv"
    prof = _read_csv(prof_csv)
    assert [r["slice"] for r in prof] == [f"{k}G" for k in range(1, 11)]
    for row, ref in zip(prof, a.profile, strict=True):
        assert int(row["predictions"]) == ref["predictions"]
        for k in ("true_positive", *ERROR_TYPES):
            assert float(row[k]) == ref[k]
    assert sum(int(r["predictions"]) for r in prof) == a.num_predictions
    types = {r["error_type"]: r for r in _read_csv(types_csv)}
    assert sum(int(r["count"]) for r in types.values()) == a.num_false_positives > 0
    for t in ERROR_TYPES:
        assert int(types[t]["count"]) == a.counts[t]
        assert float(types[t]["average_mAP_gain"]) == a.average_mAP_gain[t]


def test_fp_chart_without_gain(tmp_path: Path) -> None:
    gt, pa, _ = _dataset(2)
    a = analyze_false_positives(gt, pa, subset="Test", compute_gain=False)
    png, _, types_csv = plot_fp_analysis(a, tmp_path / "fp.png", tmp_path / "fp.csv",
                                         types_csv=tmp_path / "t.csv")
    _check_png(png)
    assert all(r["average_mAP_gain"] == "" for r in _read_csv(types_csv))


def test_timeline_draws_the_video_gt_and_top_predictions(tmp_path: Path) -> None:
    gt, pa, _ = _dataset(3)
    pa["results"]["vid0"].append({"label": "Swim", "score": 0.99, "segment": [1.0, 2.0]})
    png, csv_path = plot_timeline(gt, pa, "vid0", tmp_path / "t.png", top_k=4,
                                  out_csv=tmp_path / "t.csv")
    _check_png(png)
    rows = _read_csv(csv_path)
    gts = [r for r in rows if r["kind"] == "gt"]
    preds = [r for r in rows if r["kind"] == "pred"]
    assert len(gts) == len(gt["database"]["vid0"]["annotations"])
    assert len(preds) == 4
    scores = [float(r["score"]) for r in preds]
    best = sorted((d["score"] for d in pa["results"]["vid0"]), reverse=True)[:4]
    assert scores == best
    assert preds[0]["label"] == "Swim" and preds[0]["type"] == "background"
    assert {r["type"] for r in preds} <= {"true_positive", *ERROR_TYPES}
    with pytest.raises(DataError, match="'nope'"):
        plot_timeline(gt, pa, "nope", tmp_path / "x.png")


def test_example_video_prefers_several_classes_then_few_instances() -> None:
    gt = {"database": {
        "busy": {"subset": "Test", "annotations": [{"label": "A", "segment": [0, 1]}] * 9},
        "two": {"subset": "Test", "annotations": [{"label": "A", "segment": [0, 1]},
                                                  {"label": "B", "segment": [2, 3]}] * 2},
        "two_small": {"subset": "Test", "annotations": [{"label": "A", "segment": [0, 1]},
                                                        {"label": "B", "segment": [2, 3]}]},
        "val": {"subset": "Validation", "annotations": [
            {"label": c, "segment": [0, 1]} for c in "ABC"]},
        "empty": {"subset": "Test", "annotations": []}}}
    assert example_video(gt, "Test") == "two_small"
    assert example_video(gt, "test") == "two_small"
    with pytest.raises(DataError):
        example_video(gt, "Train")


def test_write_all_plots(tmp_path: Path) -> None:
    gt, pa, pb = _dataset(4)
    paths = write_all_plots(gt, pa, tmp_path / "out", subset="Test", tiou=TIOU,
                            compare={"B": pb}, name="A")
    assert set(paths) == {
        "per_class_ap", "per_class_ap_csv", "fp_analysis", "fp_profile_csv",
        "fp_error_types_csv", "fp_analysis_json", "pr_curves", "pr_curves_csv",
        "pr_curves_per_class_csv", "timeline", "timeline_csv"}
    for key, p in paths.items():
        assert p.parent == tmp_path / "out" and p.stat().st_size > 0, key
        if p.suffix == ".png":
            _check_png(p)
    header = _read_csv(paths["per_class_ap_csv"])[0]
    assert {"A/AP@avg", "B/AP@avg", "A/AP@0.3", "B/AP@0.7"} <= set(header)
    saved = json.loads(paths["fp_analysis_json"].read_text())
    ref = analyze_false_positives(gt, pa, subset="Test", gain_tiou=TIOU).to_dict()
    assert saved == json.loads(json.dumps(ref))
    with pytest.raises(DataError, match="twice"):
        write_all_plots(gt, pa, tmp_path / "o2", subset="Test", tiou=TIOU, compare={"A": pb},
                        name="A")
