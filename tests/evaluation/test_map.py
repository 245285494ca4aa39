"""The mAP evaluator: hand-built cases with known answers, and a plain loop reference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from amnet.errors import ConfigError, DataError, PredictionError
from amnet.evaluation.map import (
    ANET_TIOU,
    THUMOS_TIOU,
    default_tiou,
    evaluate_detections,
    evaluate_files,
    is_thumos_style,
)

THUMOS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "thumos14.json"


def gt_of(videos: dict[str, list[tuple[str, float, float]]], subset: str = "Test",
          extra: dict | None = None) -> dict:
    db = {v: {"subset": subset, "duration": 100.0,
              "annotations": [{"label": lab, "segment": [s, e]} for lab, s, e in anns]}
          for v, anns in videos.items()}
    db.update(extra or {})
    return {"version": "test", "database": db}


def preds_of(videos: dict[str, list[tuple[str, float, float, float]]]) -> dict:
    return {"results": {v: [{"label": lab, "score": sc, "segment": [s, e]}
                            for lab, sc, s, e in rows] for v, rows in videos.items()}}


# --------------------------------------------------------------------------- reference

def reference_map(gt: dict, pred: dict, subset: str, tious: list[float]) -> dict:
    """A deliberately plain re-statement of the protocol: one prediction at a time."""
    classes: list[str] = []
    gts: list[tuple[str, str, float, float]] = []
    for vid, v in gt["database"].items():
        if v["subset"].lower() != subset.lower():
            continue
        for a in v["annotations"]:
            if a["label"] not in classes:
                classes.append(a["label"])
            gts.append((vid, a["label"], float(a["segment"][0]), float(a["segment"][1])))
    rows = [(vid, r["label"], float(r["score"]), float(r["segment"][0]), float(r["segment"][1]))
            for vid, rs in pred["results"].items() for r in rs]

    def tiou(a0: float, a1: float, b0: float, b1: float) -> float:
        inter = max(0.0, min(a1, b1) - max(a0, b0))
        union = (a1 - a0) + (b1 - b0) - inter
        return inter / union if union > 0 else 0.0

    out = {}
    for t in tious:
        aps = {}
        for c in classes:
            cg = [g for g in gts if g[1] == c]
            cp = sorted([r for r in rows if r[1] == c], key=lambda r: -r[2])  # stable
            used = [False] * len(cg)
            flags = []
            for vid, _, _, s, e in cp:
                cands = [(tiou(s, e, g[2], g[3]), j) for j, g in enumerate(cg) if g[0] == vid]
                cands.sort(key=lambda x: (-x[0], x[1]))
                hit = False
                for iou, j in cands:
                    if iou < t:
                        break
                    if not used[j]:
                        used[j] = hit = True
                        break
                flags.append(hit)
            # all-points interpolated AP, written from its definition
            tp = 0
            prec, rec = [], []
            for i, f in enumerate(flags):
                tp += f
                prec.append(tp / (i + 1))
                rec.append(tp / len(cg))
            ap, last_rec = 0.0, 0.0
            for i in range(len(flags)):
                if flags[i]:
                    ap += (rec[i] - last_rec) * max(prec[i:])
                    last_rec = rec[i]
            aps[c] = ap
        out[t] = aps
    return out


def random_case(rng: np.random.Generator, n_videos: int = 6, n_classes: int = 4,
                ties: bool = False) -> tuple[dict, dict]:
    labels = [f"c{i}" for i in range(n_classes)]
    videos: dict[str, list] = {}
    for v in range(n_videos):
        anns = []
        for _ in range(rng.integers(0, 6)):
            s = float(rng.uniform(0, 50))
            anns.append((labels[rng.integers(n_classes)], s, s + float(rng.uniform(0.5, 10))))
        if anns and rng.random() < 0.3:  # exact duplicate GT
            anns.append(anns[0])
        videos[f"v{v}"] = anns
    videos["v0"].append((labels[0], 1.0, 5.0))  # every class present at least once
    for i, lab in enumerate(labels):
        videos["v1"].append((lab, 60.0 + i, 64.0 + i))
    gt = gt_of(videos, extra={"other": {"subset": "Validation", "annotations": [
        {"label": labels[0], "segment": [0.0, 3.0]}]}})
    rows: dict[str, list] = {}
    for v in [*videos, "other", "nowhere"]:
        r = []
        for _ in range(rng.integers(0, 25)):
            score = float(rng.integers(0, 4)) / 4 if ties else float(rng.random())
            if videos.get(v) and rng.random() < 0.6:
                lab, s, e = videos[v][rng.integers(len(videos[v]))]
                jit = rng.normal(0, 0.3, 2) * (e - s)
                s, e = s + jit[0], e + jit[1]
                lab = lab if rng.random() < 0.8 else labels[rng.integers(n_classes)]
            else:
                s = float(rng.uniform(0, 60))
                e = s + float(rng.uniform(0.1, 8))
                lab = labels[rng.integers(n_classes)]
            r.append((lab, score, float(s), float(max(s, e))))
        rows[v] = r
    return gt, preds_of(rows)


# --------------------------------------------------------------------------- hand-built

def test_duplicate_detection_is_false_positive_and_ap_is_interpolated() -> None:
    gt = gt_of({"v": [("A", 0.0, 10.0), ("A", 20.0, 30.0)]})
    pred = preds_of({"v": [("A", 0.9, 0.0, 10.0), ("A", 0.8, 0.0, 10.0), ("A", 0.7, 20.0, 30.0)]})
    r = evaluate_detections(gt, pred, tiou=[0.5])
    # flags TP, FP, TP; precision 1, 1/2, 2/3 → envelope 1, 2/3, 2/3; recall steps 1/2, 1/2
    assert r.mAP[0.5] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-12)


def test_tied_scores_keep_file_order() -> None:
    gt = gt_of({"v": [("A", 0.0, 10.0)]})
    # both tie at 0.5; the first in the file (a miss) is ranked first → precision 1/2 at the TP
    miss_first = preds_of({"v": [("A", 0.5, 50.0, 60.0), ("A", 0.5, 0.0, 10.0)]})
    hit_first = preds_of({"v": [("A", 0.5, 0.0, 10.0), ("A", 0.5, 50.0, 60.0)]})
    assert evaluate_detections(gt, miss_first, tiou=[0.5]).mAP[0.5] == pytest.approx(0.5)
    assert evaluate_detections(gt, hit_first, tiou=[0.5]).mAP[0.5] == pytest.approx(1.0)
    # file order across videos too: the results mapping's order decides
    gt2 = gt_of({"a": [("A", 0.0, 10.0)], "b": []})
    p2 = {"results": {"b": [{"label": "A", "score": 0.5, "segment": [0, 10]}],
                      "a": [{"label": "A", "score": 0.5, "segment": [0, 10]}]}}
    assert evaluate_detections(gt2, p2, tiou=[0.5]).mAP[0.5] == pytest.approx(0.5)


def test_class_without_predictions_scores_zero_and_counts_in_mean() -> None:
    gt = gt_of({"v": [("A", 0.0, 10.0), ("B", 20.0, 30.0)]})
    pred = preds_of({"v": [("A", 0.9, 0.0, 10.0)]})
    r = evaluate_detections(gt, pred, tiou=[0.5, 0.7])
    assert r.per_class_AP[0.5] == {"A": 1.0, "B": 0.0}
    assert r.mAP == {0.5: 0.5, 0.7: 0.5}
    assert r.average_mAP == 0.5


def test_predictions_on_videos_without_gt_are_false_positives() -> None:
    gt = gt_of({"v": [("A", 0.0, 10.0)], "w": [("B", 0.0, 10.0)]},
               extra={"val": {"subset": "Validation", "annotations": [
                   {"label": "A", "segment": [0.0, 10.0]}]}})
    # ranked: w (no A there) 0.9, val (outside the subset) 0.8, absent video 0.7, v hit 0.6
    pred = preds_of({"w": [("A", 0.9, 0.0, 10.0)], "val": [("A", 0.8, 0.0, 10.0)],
                     "ghost": [("A", 0.7, 0.0, 10.0)], "v": [("A", 0.6, 0.0, 10.0)],
                     })
    r = evaluate_detections(gt, pred, tiou=[0.5])
    assert r.per_class_AP[0.5]["A"] == pytest.approx(0.25)
    assert r.per_class_AP[0.5]["B"] == 0.0


def test_fallback_to_next_best_gt_when_best_is_taken() -> None:
    # GT g1 [0,10], g2 [4,14]. p1 [0,10] takes g1. p2 [1,11]: best g1 (9/11) is taken.
    gt = gt_of({"v": [("A", 0.0, 10.0), ("A", 4.0, 14.0)]})
    pred = preds_of({"v": [("A", 0.9, 0.0, 10.0), ("A", 0.8, 1.0, 11.0)]})
    r = evaluate_detections(gt, pred, tiou=[0.5, 0.6])
    # at 0.5: p2's best g1 (9/11) is taken → g2 (7/13 = 0.538 ≥ 0.5) → TP, AP 1
    # at 0.6: g2 (0.538) fails → FP, AP = 0.5
    assert r.mAP[0.5] == pytest.approx(1.0)
    assert r.mAP[0.6] == pytest.approx(0.5)


def test_each_gt_matches_once_per_threshold_and_greedy_order_matters() -> None:
    # p1 (higher score) takes g1 although p2 overlaps g1 better; p2 then takes g2 if ≥ t.
    gt = gt_of({"v": [("A", 0.0, 10.0), ("A", 6.0, 16.0)]})
    pred = preds_of({"v": [("A", 0.9, 2.0, 12.0), ("A", 0.8, 0.0, 10.0)]})
    # p1 tIoU: g1 8/12=.667, g2 6/14=.429 → g1. p2: g1 1.0 (taken), g2 4/16=.25 → FP at 0.3
    r = evaluate_detections(gt, pred, tiou=[0.3, 0.4])
    assert r.mAP[0.3] == pytest.approx(0.5)
    # at 0.4: p1 takes g1 (.667), p2: g1 taken, g2 .25 < .4 → FP; same AP
    assert r.mAP[0.4] == pytest.approx(0.5)


def test_threshold_is_inclusive() -> None:
    gt = gt_of({"v": [("A", 0.0, 2.0)]})
    pred = preds_of({"v": [("A", 0.9, 0.0, 1.0)]})  # tIoU exactly 0.5
    r = evaluate_detections(gt, pred, tiou=[0.5, 0.5000001])
    assert r.mAP[0.5] == 1.0
    assert r.mAP[0.5000001] == 0.0


def test_segments_are_not_clipped_to_duration() -> None:
    gt = gt_of({"v": [("A", 90.0, 100.0)]})  # duration 100
    pred = preds_of({"v": [("A", 0.9, 90.0, 120.0)]})  # tIoU 1/3 unclipped, 1 if clipped
    assert evaluate_detections(gt, pred, tiou=[0.5]).mAP[0.5] == 0.0


def test_unknown_label_raises_naming_video_and_row_and_lenient_skips() -> None:
    gt = gt_of({"v": [("A", 0.0, 10.0)]})
    pred = preds_of({"v": [("A", 0.9, 0.0, 10.0), ("Zebra", 0.8, 0.0, 10.0)]})
    with pytest.raises(PredictionError, match=r"video 'v', row 1: label 'Zebra'"):
        evaluate_detections(gt, pred, tiou=[0.5])
    r = evaluate_detections(gt, pred, tiou=[0.5], lenient=True)
    assert r.n_skipped == 1 and r.mAP[0.5] == 1.0 and r.n_predictions == 1


def test_reversed_segment_raises_and_lenient_scores_it_false_positive() -> None:
    gt = gt_of({"v": [("A", 0.0, 10.0)], "w": [("A", 0.0, 10.0)]})
    # a reversed segment whose |length| equals the GT's would be a TP in the public code (0/0)
    pred = preds_of({"v": [("A", 0.9, 10.0, 0.0), ("A", 0.5, 0.0, 10.0)],
                     "w": [("A", 0.8, 5.0, 5.0)]})
    with pytest.raises(PredictionError, match=r"video 'v', row 0: reversed segment"):
        evaluate_detections(gt, pred, tiou=[0.5])
    r = evaluate_detections(gt, pred, tiou=[0.5], lenient=True)
    # ranked: reversed FP, zero-length FP, hit TP → precision 1/3 at recall 1/2
    assert r.n_forced_fp == 2
    assert r.mAP[0.5] == pytest.approx(0.5 / 3)


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize(("row", "match"), [
    ({"label": "A", "score": float("nan"), "segment": [0, 1]}, "'score' must be a finite"),
    ({"label": "A", "score": 0.5, "segment": [0, float("inf")]}, "'segment' must be finite"),
    ({"label": "A", "score": "0.5", "segment": [0, 1]}, "'score' must be a finite"),
    ({"label": "A", "score": 0.5, "segment": [0, 1, 2]}, "'segment' must be"),
    ({"label": "A", "segment": [0, 1]}, "missing 'score'"),
    ({"label": 3, "score": 0.5, "segment": [0, 1]}, "'label' must be a string"),
])
def test_malformed_rows_raise_even_when_lenient(row: dict, match: str, lenient: bool) -> None:
    gt = gt_of({"v": [("A", 0.0, 10.0)]})
    pred = {"results": {"v": [{"label": "A", "score": 0.9, "segment": [0, 10]}, row]}}
    with pytest.raises(PredictionError, match=rf"video 'v', row 1: .*{match}"):
        evaluate_detections(gt, pred, tiou=[0.5], lenient=lenient)


def test_bad_layouts_raise_clear_errors() -> None:
    gt = gt_of({"v": [("A", 0.0, 10.0)]})
    with pytest.raises(PredictionError, match="'results' mapping"):
        evaluate_detections(gt, {"v": []})
    with pytest.raises(PredictionError, match="video 'v': expected a list"):
        evaluate_detections(gt, {"results": {"v": {"label": "A"}}})
    with pytest.raises(DataError, match="'database'"):
        evaluate_detections({"videos": {}}, {"results": {}})
    with pytest.raises(DataError, match=r"no video in subset 'Training' \(subsets present: Test"):
        evaluate_detections(gt, {"results": {}}, subset="Training")
    bad_gt = gt_of({"v": [("A", 5.0, 1.0)]})
    with pytest.raises(DataError, match="video 'v', annotation 0"):
        evaluate_detections(bad_gt, {"results": {}})
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        evaluate_detections(gt, {"results": {}}, tiou=[0.0])
    with pytest.raises(ConfigError, match="distinct"):
        evaluate_detections(gt, {"results": {}}, tiou=[0.5, 0.5])


def test_subset_is_case_insensitive_and_numpy_scalars_are_accepted() -> None:
    gt = gt_of({"v": [("A", 0.0, 10.0)]}, subset="Test")
    pred = {"results": {"v": [{"label": "A", "score": np.float32(0.9),
                               "segment": [np.float64(0.0), np.int64(10)]}]}}
    assert evaluate_detections(gt, pred, subset="test", tiou=[0.5]).mAP[0.5] == 1.0


def test_label_known_only_outside_subset_is_ignored_not_unknown() -> None:
    gt = gt_of({"v": [("A", 0.0, 10.0)]}, extra={"t": {"subset": "Validation", "annotations": [
        {"label": "B", "segment": [0.0, 1.0]}]}})
    pred = preds_of({"v": [("B", 0.99, 0.0, 10.0), ("A", 0.9, 0.0, 10.0)]})
    r = evaluate_detections(gt, pred, tiou=[0.5])
    assert r.classes == ["A"] and r.mAP[0.5] == 1.0 and r.n_skipped == 0


def test_default_thresholds_rule() -> None:
    thumos = json.loads(THUMOS.read_text())
    assert is_thumos_style(thumos) and default_tiou(thumos) == list(THUMOS_TIOU)
    anet = {"version": "VERSION 1.3", "database": {
        "a": {"subset": "training", "annotations": []},
        "b": {"subset": "validation", "annotations": []}}}
    assert not is_thumos_style(anet) and default_tiou(anet) == list(ANET_TIOU)
    assert default_tiou({"version": "ActivityNet", "database": {}}) == list(ANET_TIOU)
    synthetic = gt_of({"v": []}, subset="Test")
    assert default_tiou(synthetic) == list(THUMOS_TIOU)
    assert tuple(np.linspace(0.5, 0.95, 10)) == ANET_TIOU


def test_result_serialisation() -> None:
    gt = gt_of({"v": [("A", 0.0, 10.0), ("B", 0.0, 10.0)]})
    r = evaluate_detections(gt, preds_of({"v": [("A", 0.9, 0.0, 10.0)]}), tiou=list(ANET_TIOU))
    js = r.to_json()
    assert list(js["mAP"]) == ["0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85",
                               "0.9", "0.95"]
    assert js["per_class_AP"]["0.6"] == {"A": 1.0, "B": 0.0}
    assert js["average_mAP"] == 0.5
    m = r.metrics()
    assert m["mAP_0.75"] == 0.5 and m["average_mAP"] == 0.5 and all("@" not in k for k in m)
    table = r.table()
    assert "0.95" in table and "50.00" in table
    json.dumps(js)  # plain JSON types


def test_evaluate_files_names_the_file(tmp_path: Path) -> None:
    g = tmp_path / "gt.json"
    g.write_text(json.dumps(gt_of({"v": [("A", 0.0, 10.0)]})))
    p = tmp_path / "pred.json"
    p.write_text('{"results": {"v": [')
    with pytest.raises(PredictionError, match=r"pred\.json: not valid JSON .*line 1"):
        evaluate_files(g, p)
    with pytest.raises(PredictionError, match="not found"):
        evaluate_files(g, tmp_path / "missing.json")
    p.write_text(json.dumps(preds_of({"v": [("A", 0.9, 3.0, 1.0)]})))
    with pytest.raises(PredictionError, match=r"pred\.json: predictions: video 'v', row 0"):
        evaluate_files(g, p, tiou=[0.5])


# --------------------------------------------------------------------------- reference

@pytest.mark.parametrize("seed", range(12))
def test_matches_loop_reference_on_random_cases(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt, pred = random_case(rng, ties=seed % 3 == 0)
    tious = [0.1, 0.3, 0.5, 0.7, 0.9]
    r = evaluate_detections(gt, pred, tiou=tious)
    ref = reference_map(gt, pred, "Test", tious)
    for t in tious:
        for c, ap in ref[t].items():
            assert r.per_class_AP[t][c] == pytest.approx(ap, abs=1e-9), (t, c)
        assert r.mAP[t] == pytest.approx(np.mean(list(ref[t].values())), abs=1e-9)
    assert r.average_mAP == pytest.approx(np.mean(list(r.mAP.values())), abs=1e-12)


def test_matches_reference_with_many_gts_per_video() -> None:
    # many overlapping GTs in one (video, class) → many matching rounds and fallbacks
    rng = np.random.default_rng(7)
    anns = [("A", float(s), float(s) + float(rng.uniform(1, 6)))
            for s in rng.uniform(0, 40, 60)]
    gt = gt_of({"v": anns, "w": anns[:5]})
    rows = [("A", float(rng.random()), s + float(rng.normal(0, 1)), e + float(rng.normal(0, 1)))
            for _, s, e in anns for _ in range(4)]
    pred = preds_of({"v": [(a, sc, s, max(s, e)) for a, sc, s, e in rows]})
    tious = list(ANET_TIOU)
    r = evaluate_detections(gt, pred, tiou=tious)
    ref = reference_map(gt, pred, "Test", tious)
    for t in tious:
        assert r.per_class_AP[t]["A"] == pytest.approx(ref[t]["A"], abs=1e-9)
    assert 0 < r.mAP[0.5] < 1


def test_real_thumos_gt_perfect_and_empty_predictions() -> None:
    gt = json.loads(THUMOS.read_text())
    test = {v: d for v, d in gt["database"].items() if d["subset"] == "Test"}
    perfect = {"results": {v: [{"label": a["label"], "score": 1.0, "segment": a["segment"]}
                               for a in d["annotations"]] for v, d in test.items()}}
    r = evaluate_detections(gt, perfect)
    assert r.tiou == list(THUMOS_TIOU) and r.average_mAP == 1.0 and len(r.classes) == 20
    empty = evaluate_detections(gt, {"results": {}})
    assert empty.average_mAP == 0.0 and not math.isnan(empty.average_mAP)


@pytest.mark.parametrize("seed", range(3))
def test_rank_order_is_lexsort_with_ties_in_file_order(seed: int) -> None:
    from amnet.evaluation.map import rank_order

    rng = np.random.default_rng(seed)
    for _ in range(100):
        n = int(rng.integers(0, 2000))
        scores = (rng.integers(0, int(rng.integers(1, 40)), n) / 7.0 if rng.random() < 0.5
                  else rng.random(n))
        scores[rng.random(n) < 0.1] = -0.0  # equal to 0.0: a tie, not an order
        labels = rng.integers(0, int(rng.integers(1, 25)), n)
        assert np.array_equal(rank_order(labels, scores), np.lexsort((-scores, labels)))


def _dense_ap(tp: np.ndarray, npos: int) -> np.ndarray:
    """The reference's AP: precision / recall at every rank, envelope, sum over recall steps."""
    T = tp.shape[0]
    tp_cum = np.cumsum(tp, axis=1, dtype=np.float64)
    rec = tp_cum / npos
    prec = tp_cum / (tp_cum + np.cumsum(~tp, axis=1, dtype=np.float64))
    mprec = np.hstack([np.zeros((T, 1)), prec, np.zeros((T, 1))])
    mrec = np.hstack([np.zeros((T, 1)), rec, np.ones((T, 1))])
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
    out = np.zeros(T)
    for t in range(T):
        idx = np.flatnonzero(mrec[t, 1:] != mrec[t, :-1]) + 1
        out[t] = np.sum((mrec[t, idx] - mrec[t, idx - 1]) * mprec[t, idx])
    return out


def test_ap_from_true_positives_is_the_dense_reference_bit_for_bit() -> None:
    from amnet.evaluation.map import _interpolated_ap

    rng = np.random.default_rng(0)
    for _ in range(500):
        n, T = int(rng.integers(1, 2000)), int(rng.integers(1, 6))
        tp = rng.random((T, n)) < rng.random() * 0.5
        found = int(tp.sum(axis=1).max())
        npos = max(1, found + (int(rng.integers(0, 40)) if rng.random() < 0.8 else 0))
        got, want = _interpolated_ap(tp, npos), _dense_ap(tp, npos)
        assert np.array_equal(got.view(np.uint64), want.view(np.uint64))
