"""Evaluator throughput: amnet's vectorised mAP vs. the public pandas/loop algorithm.

Builds THUMOS14-like ground truth from the real THUMOS14 Test subset (212 videos, 3,358
instances, 20 classes) and ~400k synthetic predictions over those videos (jittered copies of
GT instances, random segments, a few on videos outside the subset), then times

* ``amnet.evaluation.map.evaluate_files`` end to end (JSON files in, MAPResult out), and
* ``baseline_evaluate`` below: a re-implementation, written for this benchmark, of the public
  ActivityNet ``eval_detection.py`` algorithm (pandas DataFrames, ``groupby`` per class and
  video, ``iterrows`` over score-sorted predictions, per-threshold walk over GTs by descending
  tIoU, VOC-style interpolation). It runs the classes serially (the public code fans them out
  with joblib) and uses stable sorts where the public code leaves ties to numpy's unstable
  ``argsort`` (the tie rule amnet defines); otherwise it is the same computation. It reads
  the files with ``json.load``, as the public code does.

and checks that both give the same mAP and per-class AP to 1e-6.

    .venv/bin/python bench/bench_eval.py [--n-preds 400000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from amnet.evaluation.map import THUMOS_TIOU, MAPResult, evaluate_files

THUMOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "thumos14.json"


# --------------------------------------------------------------------------- baseline

def _segment_iou(target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    inter = (np.minimum(target[1], candidates[:, 1])
             - np.maximum(target[0], candidates[:, 0])).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    return inter.astype(float) / union


def _voc_ap(prec: np.ndarray, rec: np.ndarray) -> float:
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def _baseline_class_ap(gt: pd.DataFrame, pred: pd.DataFrame, tious: np.ndarray) -> np.ndarray:
    ap = np.zeros(len(tious))
    if pred.empty:
        return ap
    npos = float(len(gt))
    lock = -np.ones((len(tious), len(gt)))
    order = np.argsort(-pred["score"].values, kind="stable")
    pred = pred.loc[order].reset_index(drop=True)
    tp = np.zeros((len(tious), len(pred)))
    fp = np.zeros((len(tious), len(pred)))
    gt_by_video = gt.groupby("video-id")
    for idx, row in pred.iterrows():
        try:
            this_gt = gt_by_video.get_group(row["video-id"]).reset_index()
        except KeyError:
            fp[:, idx] = 1
            continue
        iou = _segment_iou(row[["t-start", "t-end"]].values.astype(float),
                           this_gt[["t-start", "t-end"]].values)
        by_iou = np.argsort(-iou, kind="stable")
        for ti, thr in enumerate(tious):
            for j in by_iou:
                if iou[j] < thr:
                    fp[ti, idx] = 1
                    break
                if lock[ti, this_gt.loc[j]["index"]] >= 0:
                    continue
                tp[ti, idx] = 1
                lock[ti, this_gt.loc[j]["index"]] = idx
                break
            if fp[ti, idx] == 0 and tp[ti, idx] == 0:
                fp[ti, idx] = 1
    tp_c = np.cumsum(tp, axis=1).astype(float)
    fp_c = np.cumsum(fp, axis=1).astype(float)
    rec, prec = tp_c / npos, tp_c / (tp_c + fp_c)
    for ti in range(len(tious)):
        ap[ti] = _voc_ap(prec[ti], rec[ti])
    return ap


def baseline_evaluate(gt: dict, pred: dict, subset: str, tious: np.ndarray
                      ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """mAP per threshold and AP per class, the public pandas/loop way."""
    index: dict[str, int] = {}
    g = {"video-id": [], "t-start": [], "t-end": [], "label": []}
    for vid, v in gt["database"].items():
        if v["subset"] != subset:
            continue
        for a in v["annotations"]:
            index.setdefault(a["label"], len(index))
            g["video-id"].append(vid)
            g["t-start"].append(float(a["segment"][0]))
            g["t-end"].append(float(a["segment"][1]))
            g["label"].append(index[a["label"]])
    p = {"video-id": [], "t-start": [], "t-end": [], "label": [], "score": []}
    for vid, rows in pred["results"].items():
        for r in rows:
            p["video-id"].append(vid)
            p["t-start"].append(float(r["segment"][0]))
            p["t-end"].append(float(r["segment"][1]))
            p["label"].append(index[r["label"]])
            p["score"].append(r["score"])
    gt_df, pred_df = pd.DataFrame(g), pd.DataFrame(p)
    gt_by_label, pred_by_label = gt_df.groupby("label"), pred_df.groupby("label")
    ap = np.zeros((len(tious), len(index)))
    for c in index.values():
        try:
            pc = pred_by_label.get_group(c).reset_index(drop=True)
        except KeyError:
            pc = pd.DataFrame()
        ap[:, c] = _baseline_class_ap(gt_by_label.get_group(c).reset_index(drop=True), pc,
                                      tious)
    return ap.mean(axis=1), {name: ap[:, c] for name, c in index.items()}


# --------------------------------------------------------------------------- data

def make_predictions(gt: dict, n_preds: int, seed: int) -> dict:
    """~n_preds detections over the Test videos (plus ~0.5% on Validation videos)."""
    rng = np.random.default_rng(seed)
    db = gt["database"]
    test = [v for v, d in db.items() if d["subset"] == "Test"]
    other = [v for v, d in db.items() if d["subset"] != "Test"][:10]
    classes = sorted({a["label"] for d in db.values() for a in d["annotations"]})
    per_video = n_preds // (len(test) + len(other))
    results = {}
    for vid in test + other:
        d = db[vid]
        dur = float(d.get("duration", 200.0))
        anns = d["annotations"]
        n_near = min(per_video // 3, 40 * len(anns)) if anns else 0
        rows = []
        if n_near:
            pick = rng.integers(0, len(anns), n_near)
            s = np.array([anns[i]["segment"][0] for i in pick])
            e = np.array([anns[i]["segment"][1] for i in pick])
            length = np.maximum(e - s, 0.1)
            s = s + rng.normal(0, 0.25, n_near) * length
            e = e + rng.normal(0, 0.25, n_near) * length
            e = np.maximum(e, s)
            lab = [anns[i]["label"] if rng.random() < 0.8 else classes[rng.integers(20)]
                   for i in pick]
            rows += [{"label": lab[k], "score": float(rng.random()),
                      "segment": [float(s[k]), float(e[k])]} for k in range(n_near)]
        n_rand = per_video - n_near
        c = rng.uniform(0, dur, n_rand)
        half = rng.exponential(3.0, n_rand)
        lab_idx = rng.integers(0, len(classes), n_rand)
        rows += [{"label": classes[lab_idx[k]], "score": float(rng.random()),
                  "segment": [float(c[k] - half[k]), float(c[k] + half[k])]}
                 for k in range(n_rand)]
        results[vid] = rows
    return {"version": "bench", "results": results, "external_data": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-preds", type=int, default=400_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5, help="amnet timing repeats (median)")
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()

    gt = json.loads(THUMOS.read_text())
    pred = make_predictions(gt, args.n_preds, args.seed)
    n = sum(map(len, pred["results"].values()))
    n_test = sum(d["subset"] == "Test" for d in gt["database"].values())
    tmp = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    gt_path, pred_path = tmp / "gt.json", tmp / "pred.json"
    gt_path.write_text(json.dumps(gt))
    pred_path.write_text(json.dumps(pred))
    print(f"{n} predictions over {len(pred['results'])} videos ({n_test} Test videos with GT), "
          f"thresholds {list(THUMOS_TIOU)}; {pred_path.stat().st_size / 1e6:.1f} MB of JSON, "
          "both sides time file read + scoring")

    def time_ours() -> tuple[list[float], MAPResult]:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = evaluate_files(gt_path, pred_path, subset="Test", tiou=THUMOS_TIOU)
            times.append(time.perf_counter() - t0)
        return times, res

    t1, ours = time_ours()
    print(f"amnet evaluator : {np.median(t1):8.3f} s median of {len(t1)} "
          f"({n / np.median(t1) / 1e6:.2f} M predictions/s)")
    t0 = time.perf_counter()
    json.loads(pred_path.read_text())
    print(f"  (stdlib json.loads of the predictions alone: {time.perf_counter() - t0:.3f} s)")
    print("mAP:", {k: round(v, 4) for k, v in ours.metrics().items()})
    if args.no_baseline:
        return

    t0 = time.perf_counter()
    with gt_path.open() as f:
        gt_b = json.load(f)
    with pred_path.open() as f:
        pred_b = json.load(f)
    base_map, base_ap = baseline_evaluate(gt_b, pred_b, "Test", np.asarray(THUMOS_TIOU))
    t_base = time.perf_counter() - t0
    print(f"pandas baseline : {t_base:8.3f} s  ({n / t_base / 1e3:.1f} k predictions/s)")
    t2, _ = time_ours()  # again, so a change in machine load hits both sides
    t_ours = float(np.median(t1 + t2))
    print(f"amnet, re-timed : {np.median(t2):8.3f} s median; all {len(t1 + t2)} runs: "
          f"{t_ours:.3f} s median")
    print(f"speed-up        : {t_base / t_ours:8.1f}x  (baseline / amnet median, end to end)")
    d_map = max(abs(ours.mAP[t] - base_map[i]) for i, t in enumerate(THUMOS_TIOU))
    d_ap = max(abs(ours.per_class_AP[t][c] - base_ap[c][i])
               for i, t in enumerate(THUMOS_TIOU) for c in base_ap)
    ok = d_map <= 1e-6 and d_ap <= 1e-6
    print(f"max |ΔmAP| = {d_map:.3g}, max |Δ per-class AP| = {d_ap:.3g}  "
          f"→ {'AGREE' if ok else 'DISAGREE'} (tolerance 1e-6)")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
