"""DETAD false-positive analysis on hand-built cases where every answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from amnet.errors import DataError, PredictionError
from amnet.evaluation.analysis import (
    ERROR_CODES,
    ERROR_TYPES,
    TRUE_POSITIVE,
    analyze_false_positives,
    class_rank,
    classify_predictions,
    limit_predictions,
    load_detections,
    match_predictions,
)
from amnet.evaluation.tiou import one_vs_many_tiou

THUMOS = Path(__file__).parents[2] / ".." / "shared" / "data" / "thumos14.json"


def _gt(videos: dict[str, list[tuple[str, float, float]]], subset: str = "Test") -> dict:
    return {"database": {v: {"subset": subset, "duration": 100.0,
                             "annotations": [{"label": lab, "segment": [s, e]}
                                             for lab, s, e in anns]}
                         for v, anns in videos.items()}}


def _preds(items: list[tuple[str, str, float, float, float]]) -> dict:
    out: dict[str, list] = {}
    for vid, lab, score, s, e in items:
        out.setdefault(vid, []).append({"label": lab, "score": score, "segment": [s, e]})
    return {"results": out}


# Each prediction is built to exercise one rule; the comment says what DETAD calls it.
GT = _gt({
    "v1": [("A", 10, 20), ("A", 30, 40), ("B", 50, 60)],
    "v2": [("B", 0, 10)],
    "v3": [],                                  # in the subset, nothing annotated
    "v4": [("A", 0, 10), ("B", 1, 10)],        # overlapping instances of two labels
})
GT["database"]["other"] = {"subset": "Validation", "duration": 50.0,
                           "annotations": [{"label": "A", "segment": [0, 5]},
                                           {"label": "Z", "segment": [9, 15]}]}
CASES = [  # (video, label, score, start, end, expected)
    ("v1", "A", 0.99, 10, 20, "true_positive"),
    ("v4", "A", 0.97, 0, 10, "true_positive"),
    ("v4", "A", 0.96, 1, 10, "wrong_label"),       # tIoU 1.0 with B beats 0.9 with matched A
    ("v1", "A", 0.95, 10.5, 20, "double_detection"),  # tIoU 0.95 with the matched A
    ("v1", "B", 0.90, 30, 40, "wrong_label"),      # exact A instance, label B
    ("v1", "A", 0.85, 30, 34, "localization"),     # tIoU 0.4 with an unmatched A
    ("v1", "A", 0.80, 50, 53, "confusion"),        # tIoU 0.3 with B
    ("v1", "B", 0.70, 80, 90, "background"),       # overlaps nothing
    ("v2", "B", 0.60, 0, 10, "true_positive"),
    ("v3", "A", 0.50, 0, 5, "background"),         # video without ground truth
    ("v1", "B", 0.40, 50, 51.05, "localization"),  # tIoU 0.105: just above min_tiou
    ("v1", "B", 0.30, 50, 50.95, "background"),    # tIoU 0.095: just below min_tiou
    ("other", "A", 0.45, 0, 5, "background"),      # video outside the subset: no GT to hit
]
IGNORED = [("v1", "Z", 0.98, 9, 15)]  # label with ground truth only outside the subset


def _case_preds() -> dict:
    return _preds([c[:5] for c in CASES] + IGNORED)


def _expected() -> list[str]:
    return [c[5] for c in CASES]


def _code(name: str) -> int:
    return TRUE_POSITIVE if name == "true_positive" else ERROR_CODES[name]


def test_each_prediction_gets_the_detad_type() -> None:
    det = load_detections(GT, _case_preds(), subset="Test")
    assert len(det.pred) == len(CASES)  # the label without GT in the subset is dropped
    codes = classify_predictions(det, 0.5)
    got = {(det.videos[v], float(sc)): int(c)
           for v, sc, c in zip(det.pred.video, det.pred.score, codes, strict=True)}
    assert got == {(c[0], c[2]): _code(c[5]) for c in CASES}


def test_counts_sum_to_false_positives_and_every_type_occurs() -> None:
    a = analyze_false_positives(GT, _case_preds(), subset="Test", compute_gain=False)
    exp = _expected()
    assert a.num_gt == 6
    assert a.num_predictions == len(CASES)
    assert a.num_true_positives == exp.count("true_positive")
    assert sum(a.counts.values()) == a.num_false_positives == len(CASES) - 3 == 10
    assert a.counts == {t: exp.count(t) for t in ERROR_TYPES}
    assert all(a.counts[t] >= 1 for t in ERROR_TYPES)
    assert sum(a.shares.values()) == pytest.approx(1.0)
    assert a.shares["background"] == pytest.approx(4 / 10)
    d = json.loads(json.dumps(a.to_dict()))
    assert d["num_false_positives"] == 10 and d["counts"] == a.counts


def test_lower_tiou_turns_a_localization_error_into_a_true_positive() -> None:
    det = load_detections(GT, _case_preds(), subset="Test")
    codes = classify_predictions(det, 0.35, min_tiou=0.1)
    i = int(np.flatnonzero(det.pred.score == 0.85)[0])  # tIoU 0.4 with the unmatched A
    assert codes[i] == TRUE_POSITIVE
    # and the confusion case (tIoU 0.3) is still a confusion error, wrong label at 0.25
    j = int(np.flatnonzero(det.pred.score == 0.80)[0])
    assert codes[j] == ERROR_CODES["confusion"]
    assert classify_predictions(det, 0.25)[j] == ERROR_CODES["wrong_label"]


def test_zero_false_positives() -> None:
    a = analyze_false_positives(GT, _preds([("v2", "B", 0.9, 0, 10)]), compute_gain=False)
    assert a.num_false_positives == 0 and sum(a.counts.values()) == 0
    assert all(v == 0.0 for v in a.shares.values())


def _reference_match(det, thr: float) -> np.ndarray:
    """The ActivityNet evaluator's loop, literally: per class, by score, GTs by tIoU."""
    out = np.full(len(det.pred), -1)
    for c in range(len(det.classes)):
        p_idx = [i for i in np.argsort(-det.pred.score, kind="stable") if det.pred.label[i] == c]
        locked: set[int] = set()
        for i in p_idx:
            g_idx = [g for g in range(len(det.gt)) if det.gt.label[g] == c
                     and det.gt.video[g] == det.pred.video[i]]
            if not g_idx:
                continue
            ious = one_vs_many_tiou(det.pred.segments[i], det.gt.segments[g_idx])
            for k in np.argsort(-ious, kind="stable"):
                if ious[k] < thr:
                    break
                if g_idx[k] in locked:
                    continue
                locked.add(g_idx[k])
                out[i] = g_idx[k]
                break
    return out


def test_matching_equals_activitynet_loop_on_random_data() -> None:
    rng = np.random.default_rng(0)
    vids = {f"v{i}": [(str(rng.choice(list("ABC"))), s, s + rng.uniform(1, 8))
                      for s in rng.uniform(0, 40, size=rng.integers(0, 5))] for i in range(6)}
    items = []
    for v in vids:
        for _ in range(rng.integers(0, 25)):
            s = rng.uniform(0, 45)
            items.append((v, str(rng.choice(list("ABC"))), float(rng.random()), s,
                          s + rng.uniform(0.5, 8)))
    det = load_detections(_gt(vids), _preds(items))
    thr = [0.3, 0.5, 0.7]
    got = match_predictions(det, thr)
    for ti, t in enumerate(thr):
        np.testing.assert_array_equal(got[ti], _reference_match(det, t))
    assert (got[0] >= 0).sum() >= (got[2] >= 0).sum() > 0  # the data does exercise matching


def _reference_types(det, thr: float, min_tiou: float = 0.1) -> list[int]:
    """DETAD's per-false-positive rule, literally: the highest-tIoU GT of any label decides."""
    matched = _reference_match(det, thr)
    out = []
    for i in range(len(det.pred)):
        if matched[i] >= 0:
            out.append(TRUE_POSITIVE)
            continue
        g_idx = [g for g in range(len(det.gt)) if det.gt.video[g] == det.pred.video[i]]
        if not g_idx:
            out.append(ERROR_CODES["background"])
            continue
        ious = one_vs_many_tiou(det.pred.segments[i], det.gt.segments[g_idx])
        k = int(np.argmax(ious))
        same = det.gt.label[g_idx[k]] == det.pred.label[i]
        if ious[k] >= thr:
            out.append(ERROR_CODES["double_detection" if same else "wrong_label"])
        elif ious[k] >= min_tiou:
            out.append(ERROR_CODES["localization" if same else "confusion"])
        else:
            out.append(ERROR_CODES["background"])
    return out


def test_classification_equals_detad_rule_on_random_data() -> None:
    rng = np.random.default_rng(1)
    vids = {f"v{i}": [(str(rng.choice(list("AB"))), s, s + rng.uniform(2, 6))
                      for s in rng.uniform(0, 20, size=rng.integers(0, 4))] for i in range(8)}
    items = []
    for v, anns in vids.items():
        for _lab, s, e in anns:  # near-misses of every kind around each instance
            for _ in range(4):
                j = rng.normal(0, 1.5, 2)
                items.append((v, str(rng.choice(list("AB"))), float(rng.random()), s + j[0],
                              max(s + j[0] + 0.2, e + j[1])))
        for _ in range(3):
            s = rng.uniform(0, 30)
            items.append((v, str(rng.choice(list("AB"))), float(rng.random()), s, s + 2))
    det = load_detections(_gt(vids), _preds(items))
    for thr in (0.3, 0.5):
        codes = classify_predictions(det, thr)
        assert codes.tolist() == _reference_types(det, thr)
    assert set(classify_predictions(det, 0.5).tolist()) == set(range(6))  # all types occur


def test_top_10g_keeps_the_best_scored_per_class() -> None:
    gt = _gt({"v": [("A", 0, 10), ("B", 20, 30), ("B", 40, 50)]})
    items = [("v", "A", s, 60, 61) for s in np.linspace(0.1, 0.9, 15)]
    items += [("v", "B", s, 60, 61) for s in np.linspace(0.1, 0.9, 25)]
    det = limit_predictions(load_detections(gt, _preds(items)), 10)
    a_scores = det.pred.score[det.pred.label == det.classes.index("A")]
    assert a_scores.size == 10 and a_scores.min() == pytest.approx(np.linspace(0.1, 0.9, 15)[5])
    assert (det.pred.label == det.classes.index("B")).sum() == 20
    a = analyze_false_positives(gt, _preds(items), limit_factor=2, compute_gain=False)
    assert a.num_predictions == 2 + 4 and a.counts["background"] == 6


def test_profile_slices_are_per_class_blocks_of_g() -> None:
    # class A: G=2, predictions ranked TP, BG | BG, LOC | LOC ; class B: G=1, BG | TP (rank 2)
    gt = _gt({"v": [("A", 0, 10), ("A", 20, 30), ("B", 40, 50)]})
    items = [("v", "A", 0.9, 0, 10), ("v", "A", 0.8, 80, 90), ("v", "A", 0.7, 85, 90),
             ("v", "A", 0.6, 20, 23), ("v", "A", 0.5, 20, 22),
             ("v", "B", 0.95, 70, 75), ("v", "B", 0.4, 40, 50)]
    det = load_detections(gt, _preds(items))
    np.testing.assert_array_equal(class_rank(det), [0, 1, 2, 3, 4, 0, 1])
    a = analyze_false_positives(gt, _preds(items), limit_factor=3, compute_gain=False)
    p = {row["slice"]: row for row in a.profile}
    assert [row["slice"] for row in a.profile] == ["1G", "2G", "3G"]
    assert p["1G"]["predictions"] == 3   # A ranks 0-1, B rank 0
    assert p["1G"]["true_positive"] == pytest.approx(1 / 3)
    assert p["1G"]["background"] == pytest.approx(2 / 3)
    assert p["2G"]["predictions"] == 3   # A ranks 2-3, B rank 1
    assert p["2G"]["true_positive"] == pytest.approx(1 / 3)
    assert p["2G"]["localization"] == pytest.approx(1 / 3)
    assert p["3G"]["predictions"] == 1 and p["3G"]["localization"] == 1.0
    for row in a.profile:
        assert sum(v for k, v in row.items() if k not in ("slice", "predictions")) \
            == pytest.approx(1.0)


def test_bad_inputs_name_the_place() -> None:
    with pytest.raises(DataError, match="database"):
        load_detections({"videos": {}}, {"results": {}})
    with pytest.raises(DataError, match=r"subset 'Train'.*Test"):
        load_detections(GT, {"results": {}}, subset="Train")
    bad_gt = _gt({"v": [("A", 10, 5)]})
    with pytest.raises(DataError, match=r"video 'v', annotation 0.*start <= end"):
        load_detections(bad_gt, {"results": {}})
    with pytest.raises(PredictionError, match="results"):
        load_detections(GT, {"v1": []})
    with pytest.raises(PredictionError, match=r"'v1', row 0.*score"):
        load_detections(GT, _preds([("v1", "A", float("nan"), 0, 1)]))
    with pytest.raises(PredictionError, match=r"'v1', row 1.*segment"):
        load_detections(GT, {"results": {"v1": [{"label": "A", "score": 1, "segment": [0, 1]},
                                                {"label": "A", "score": 1, "segment": [3]}]}})
    with pytest.raises(PredictionError, match="list"):
        load_detections(GT, {"results": {"v1": {"label": "A"}}})
    with pytest.raises(PredictionError, match=r"'v1', row 0.*label 'C'.*lenient"):
        load_detections(GT, _preds([("v1", "C", 0.5, 0, 1)]))
    det = load_detections(GT, _preds([("v1", "C", 0.5, 0, 1), ("v1", "A", 0.4, 0, 1)]),
                          lenient=True)
    assert len(det.pred) == 1 and det.classes == ["A", "B"]


def test_removing_an_error_type_gain_by_hand() -> None:
    # One class, G = 1: a background FP (0.9) above the TP (0.8) → AP 0.5; without it AP 1.
    gt = _gt({"v": [("A", 0, 10)]})
    preds = _preds([("v", "A", 0.9, 50, 60), ("v", "A", 0.8, 0, 10)])
    a = analyze_false_positives(gt, preds)
    assert a.baseline_average_mAP == pytest.approx(0.5)
    assert a.average_mAP_gain["background"] == pytest.approx(0.5)
    for t in ERROR_TYPES[:-1]:
        assert a.average_mAP_gain[t] == pytest.approx(0.0)


def test_gain_per_type_on_the_hand_built_case() -> None:
    # By score, A: TP TP WL DD LOC CONF BG BG (G=3) → AP 2/3 whatever follows the two TPs;
    # B: WL BG TP LOC BG (G=3) → AP 1/3 · 1/3. Dropping the WL or the BG above B's TP lifts
    # its precision to 1/2 (AP 1/6); the other types sit below every TP and change nothing.
    a = analyze_false_positives(GT, _case_preds(), gain_tiou=[0.5, 0.7])
    assert a.baseline_average_mAP == pytest.approx((2 / 3 + 1 / 9) / 2)
    assert a.average_mAP_gain == pytest.approx({
        "double_detection": 0.0, "wrong_label": 1 / 36, "localization": 0.0,
        "confusion": 0.0, "background": 1 / 36})


def test_gain_of_double_detection_localization_and_confusion() -> None:
    # A (G=2) by score: TP DD LOC CONF TP → AP 1/2 + 1/2 · 2/5 = 0.7; B (G=1) unpredicted → 0.
    # Dropping any one of DD, LOC, CONF puts the second TP at rank 4 → AP_A 0.75, mAP +0.025.
    gt = _gt({"v": [("A", 0, 10), ("A", 20, 30), ("B", 40, 50)]})
    preds = _preds([("v", "A", 0.9, 0, 10), ("v", "A", 0.8, 0, 9.5), ("v", "A", 0.7, 20, 24),
                    ("v", "A", 0.65, 40, 43), ("v", "A", 0.6, 20, 30)])
    a = analyze_false_positives(gt, preds)
    assert a.counts == {"double_detection": 1, "wrong_label": 0, "localization": 1,
                        "confusion": 1, "background": 0}
    assert a.baseline_average_mAP == pytest.approx(0.35)
    assert a.average_mAP_gain == pytest.approx({
        "double_detection": 0.025, "wrong_label": 0.0, "localization": 0.025,
        "confusion": 0.025, "background": 0.0})


def test_thumos_ground_truth_as_predictions_has_no_false_positive() -> None:
    gt = json.loads(THUMOS.read_text())
    preds = {"results": {v: [{"label": x["label"], "score": 1.0, "segment": x["segment"]}
                             for x in d["annotations"]]
                         for v, d in gt["database"].items() if d["subset"] == "Test"}}
    a = analyze_false_positives(gt, preds, subset="Test")
    assert a.num_true_positives == a.num_gt and a.num_false_positives == 0
    assert a.baseline_average_mAP == pytest.approx(1.0)
