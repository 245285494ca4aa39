"""Paper-style figures (PNG) and their data (CSV/JSON, shaped for ``dvc plots``).

* :func:`plot_per_class_ap` — per-class AP at each tIoU and on average, runs side by side
  (the paper's Fig. 5).
* :func:`plot_fp_analysis` — DETAD false-positive profile and the average-mAP gain of
  removing each error type (the paper's Fig. 7), from :mod:`amnet.evaluation.analysis`.
* :func:`plot_pr_curves` — precision–recall curves per tIoU (ActivityNet matching).
* :func:`plot_timeline` — ground truth vs top predictions of one video, by class over time.
* :func:`write_all_plots` — all of the above into one folder, for the pipeline and MLflow.

Figures are built on :class:`matplotlib.figure.Figure` directly (Agg canvas, no pyplot state),
so plotting is safe in worker processes and never opens a window. CSV files are "wide" (one
x column, one column per series) so that a DVC plot definition can name ``x`` and a list of
``y`` columns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from amnet.errors import DataError
from amnet.evaluation.analysis import (
    DISPLAY_NAMES,
    ERROR_CODES,
    ERROR_TYPES,
    TRUE_POSITIVE,
    AnalysisSet,
    FPAnalysis,
    analyze_false_positives,
    classify_predictions,
    load_detections,
    match_predictions,
    score_order,
)
from amnet.io import write_csv, write_json

log = logging.getLogger(__name__)

# DETAD's palette: TP then the five error types, in ERROR_TYPES order.
TYPE_COLORS: dict[str, str] = {
    "true_positive": "#33a02c", "double_detection": "#b2df8a", "wrong_label": "#1f78b4",
    "localization": "#fb9a99", "confusion": "#e31a1c", "background": "#a6cee3"}
RECALL_GRID = np.linspace(0.0, 1.0, 101)
DPI = 150


def _style(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=10)
    ax.grid(axis="y", linestyle=":", linewidth=0.8, alpha=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _save(fig: Figure, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
    return out


def _num(x: float) -> str:
    """CSV cell: full precision (``repr``) so the file round-trips the exact value."""
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


# --------------------------------------------------------------------------- per-class AP

def _per_class(result: Any) -> dict[float, dict[str, float]]:
    """``MAPResult.per_class_AP`` or a ``{tiou: {label: AP}}`` mapping → plain dict."""
    pc = getattr(result, "per_class_AP", result)
    if not isinstance(pc, Mapping) or not all(isinstance(v, Mapping) for v in pc.values()):
        raise DataError("per-class AP: expected a MAPResult or a {tiou: {label: AP}} mapping, "
                        f"got {type(result).__name__}")
    return {float(t): {str(k): float(v) for k, v in aps.items()} for t, aps in pc.items()}


def per_class_ap_table(results: Mapping[str, Any]
                       ) -> tuple[list[str], list[float], dict[str, np.ndarray]]:
    """Classes, tIoUs and, per run, an array (C, T + 1) of AP; the last column is AP@Avg.

    A class a run never scored is NaN (shown as a gap), not 0.
    """
    if not results:
        raise DataError("per-class AP: no run given")
    tables = {name: _per_class(r) for name, r in results.items()}
    tious = sorted({t for pc in tables.values() for t in pc})
    classes = sorted({c for pc in tables.values() for aps in pc.values() for c in aps})
    out: dict[str, np.ndarray] = {}
    for name, pc in tables.items():
        ap = np.array([[pc.get(t, {}).get(c, np.nan) for t in tious] for c in classes],
                      dtype=np.float64).reshape(len(classes), len(tious))
        avg = ap.mean(axis=1) if tious else np.full(len(classes), np.nan)
        out[name] = np.concatenate([ap, avg[:, None]], axis=1)
    return classes, tious, out


def plot_per_class_ap(results: Mapping[str, Any], out_png: str | Path, out_csv: str | Path,
                      *, title: str = "Per-class AP") -> tuple[Path, Path]:
    """Grouped bars of each class's AP, one bar per run; top panel AP@Avg, then each tIoU.

    ``results``: run name → ``MAPResult`` (or its ``per_class_AP`` dict). CSV columns:
    ``class``, then ``<run>/AP@avg`` and ``<run>/AP@<tiou>`` for each run (fractions in [0, 1]).
    """
    classes, tious, table = per_class_ap_table(results)
    names = list(table)
    cols = ["avg", *[f"{t:g}" for t in tious]]
    header = ["class"] + [f"{n}/AP@{c}" for n in names for c in cols]
    rows = [[cls] + [_num(table[n][i, j]) for n in names for j in [len(tious), *range(len(tious))]]
            for i, cls in enumerate(classes)]
    csv_path = write_csv(out_csv, header, rows)

    panels = [("avg", len(tious))] + [(f"{t:g}", j) for j, t in enumerate(tious)]
    n_cls = max(len(classes), 1)
    fig = Figure(figsize=(max(8.0, 0.55 * n_cls + 2), 2.8 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    x = np.arange(len(classes))
    width = 0.8 / max(len(names), 1)
    span = f"{tious[0]:g}:{tious[-1]:g}" if tious else "-"
    for ax, (label, j) in zip(axes, panels, strict=True):
        for k, n in enumerate(names):
            vals = table[n][:, j] * 100
            mean = np.nanmean(vals) if np.isfinite(vals).any() else float("nan")
            ax.bar(x + (k - (len(names) - 1) / 2) * width, np.nan_to_num(vals), width,
                   label=f"{n} (mAP {mean:.1f})", color=f"C{k}", edgecolor="black",
                   linewidth=0.4)
        what = f"AP@Avg (tIoU {span})" if label == "avg" else f"AP@tIoU={label}"
        _style(ax, f"{title}: {what}", "", "AP (%)")
        ax.set_ylim(0, 118)  # headroom for the legend above the 100 % line
        ax.set_yticks(np.arange(0, 101, 20))
        ax.set_xticks(x, classes, rotation=45, ha="right", fontsize=8)
        ax.legend(fontsize=8, loc="upper right", ncol=min(len(names), 3), frameon=False)
    fig.tight_layout()
    return _save(fig, out_png), csv_path


# --------------------------------------------------------------------------- FP analysis

def plot_fp_analysis(analysis: FPAnalysis, out_png: str | Path, out_csv: str | Path, *,
                     types_csv: str | Path | None = None,
                     title: str = "False positive profile") -> tuple[Path, Path, Path]:
    """DETAD chart: stacked TP / error shares per top-kG slice, and the gain of removing each type.

    ``out_csv``: one row per slice (``slice``, ``predictions``, then the share of
    ``true_positive`` and each error type, fractions). ``types_csv`` (default
    ``<out_csv stem>_types.csv``): one row per error type with ``count``, ``share_of_fp``
    and ``average_mAP_gain`` (empty when the gain was not computed).
    """
    names = ("true_positive", *ERROR_TYPES)
    prof = analysis.profile
    csv_path = write_csv(out_csv, ["slice", "predictions", *names],
                          [[r["slice"], r["predictions"], *[_num(r[n]) for n in names]]
                           for r in prof])
    types_csv = Path(types_csv) if types_csv else Path(out_csv).with_name(
        Path(out_csv).stem + "_types.csv")
    gain = analysis.average_mAP_gain
    shares = analysis.shares
    types_path = write_csv(types_csv, ["error_type", "count", "share_of_fp", "average_mAP_gain"],
                            [[t, analysis.counts[t], _num(shares[t]),
                              _num(gain[t]) if gain else ""] for t in ERROR_TYPES])

    fig = Figure(figsize=(11, 4.4))
    gs = fig.add_gridspec(1, 5, wspace=1.2)
    ax = fig.add_subplot(gs[0, :3])
    x = np.arange(len(prof))
    bottom = np.zeros(len(prof))
    for n in names:
        vals = np.array([r[n] for r in prof]) * 100
        ax.bar(x, vals, 0.85, bottom=bottom, color=TYPE_COLORS[n], label=DISPLAY_NAMES[n],
               edgecolor="white", linewidth=0.3)
        bottom += vals
    _style(ax, f"{title} (tIoU={analysis.tiou:g}, {analysis.num_false_positives} FP)",
           "Top predictions", "Error breakdown (%)")
    ax.set_xticks(x, [r["slice"] for r in prof])
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.1), frameon=False)

    ax2 = fig.add_subplot(gs[0, 3:])
    if gain:
        vals = np.array([gain[t] for t in ERROR_TYPES]) * 100
        bars = ax2.bar(np.arange(len(ERROR_TYPES)), vals,
                       color=[TYPE_COLORS[t] for t in ERROR_TYPES], edgecolor="black",
                       linewidth=0.4)
        for b, v in zip(bars, vals, strict=True):
            ax2.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{v:.1f}", ha="center",
                     va="bottom", fontsize=8)
        top = float(np.max(vals)) if vals.size else 0.0
        ax2.set_ylim(0, max(1.0, top * 1.2))
        span = ",".join(f"{t:g}" for t in analysis.gain_tiou)
        ylabel = f"Average-mAP improvement (%)\ntIoU {span}"
    else:
        ax2.text(0.5, 0.5, "gain not computed", ha="center", va="center",
                 transform=ax2.transAxes)
        ylabel = "Average-mAP improvement (%)"
    _style(ax2, "Removing error impact", "Error type", ylabel)
    ax2.set_xticks(np.arange(len(ERROR_TYPES)),
                   [DISPLAY_NAMES[t].replace(" Err", "") for t in ERROR_TYPES],
                   rotation=45, ha="right", fontsize=8)
    return _save(fig, out_png), csv_path, types_path


# --------------------------------------------------------------------------- PR curves

def precision_recall(det: AnalysisSet, tiou: Sequence[float]
                     ) -> dict[float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Raw per-class curves: ``{tiou: {label: (recall, precision)}}``, one point per prediction.

    Predictions of a class are taken by decreasing score; a point's precision is
    TP / rank and its recall TP / G (ActivityNet matching, see ``match_predictions``).
    """
    tious = [float(t) for t in tiou]
    matched = match_predictions(det, tious)
    order = score_order(det.pred)
    n_gt = det.gt_per_class
    out: dict[float, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for ti, t in enumerate(tious):
        out[t] = {}
        for c, label in enumerate(det.classes):
            if n_gt[c] == 0:
                continue
            idx = order[det.pred.label[order] == c]
            tp = np.cumsum(matched[ti, idx] >= 0)
            out[t][label] = (tp / n_gt[c], tp / np.arange(1, idx.size + 1))
    return out


def interpolate_pr(recall: np.ndarray, precision: np.ndarray,
                   grid: np.ndarray = RECALL_GRID) -> np.ndarray:
    """Interpolated precision (max precision at recall ≥ r) at each recall of ``grid``; 0 beyond."""
    if recall.size == 0:
        return np.zeros_like(grid)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, grid, side="left")  # recall is non-decreasing
    return np.where(idx < recall.size, envelope[np.minimum(idx, recall.size - 1)], 0.0)


def plot_pr_curves(gt: Mapping[str, Any], preds: Mapping[str, Any], subset: str,
                   tiou: Sequence[float], out_png: str | Path, out_csv: str | Path, *,
                   per_class_csv: str | Path | None = None, result: Any = None,
                   title: str = "Precision-recall") -> tuple[Path, ...]:
    """One panel per tIoU: each class's interpolated PR curve (thin) and their mean (bold).

    ``out_csv``: ``recall`` then ``precision@<tiou>`` (class-mean interpolated precision on a
    101-point recall grid). ``per_class_csv`` (optional): long table ``tiou, class, recall,
    precision``. ``result`` (a ``MAPResult``) only adds each panel's mAP to its title.
    """
    det = load_detections(gt, preds, subset=subset)
    curves = precision_recall(det, tiou)
    tious = list(curves)
    mean = {t: (np.mean([interpolate_pr(r, p) for r, p in curves[t].values()], axis=0)
                if curves[t] else np.zeros_like(RECALL_GRID)) for t in tious}
    paths = [write_csv(out_csv, ["recall", *[f"precision@{t:g}" for t in tious]],
                        [[_num(r), *[_num(mean[t][i]) for t in tious]]
                         for i, r in enumerate(RECALL_GRID)])]
    if per_class_csv:
        rows = [[f"{t:g}", label, _num(r), _num(p)]
                for t in tious for label, (rec, prec) in curves[t].items()
                for r, p in zip(RECALL_GRID, interpolate_pr(rec, prec), strict=True)]
        paths.append(write_csv(per_class_csv, ["tiou", "class", "recall", "precision"], rows))

    maps = getattr(result, "mAP", None) or {}
    ncol = min(len(tious), 5)
    nrow = math.ceil(len(tious) / ncol)
    fig = Figure(figsize=(3.2 * ncol, 3.2 * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax, t in zip(axes, tious, strict=False):
        for rec, prec in curves[t].values():
            ax.plot(RECALL_GRID, interpolate_pr(rec, prec) * 100, color="0.6", lw=0.6, alpha=0.6)
        ax.plot(RECALL_GRID, mean[t] * 100, color="C3", lw=2.0, label="class mean")
        m = next((v for k, v in maps.items() if math.isclose(float(k), t)), None)
        _style(ax, f"tIoU={t:g}" + (f" (mAP {100 * m:.1f})" if m is not None else ""),
               "Recall (%)", "Precision (%)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 102)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25", "50", "75", "100"])
    for ax in axes[len(tious):]:
        ax.set_visible(False)
    if tious:
        axes[0].legend(fontsize=8, frameon=False, loc="lower left")
    fig.suptitle(f"{title} ({subset}, {len(det.classes)} classes)", fontsize=12)
    fig.tight_layout()
    return (_save(fig, out_png), *paths)


# --------------------------------------------------------------------------- timeline

def plot_timeline(gt: Mapping[str, Any], preds: Mapping[str, Any], video_id: str,
                  out_png: str | Path, *, top_k: int = 20, tiou: float = 0.5,
                  out_csv: str | Path | None = None) -> tuple[Path, ...]:
    """Ground truth vs the ``top_k`` best-scored predictions of one video, one lane per class.

    Each class lane shows the ground truth (upper half, dark) and the predictions (lower half,
    coloured by DETAD type at ``tiou``, opacity by score). ``out_csv``: one row per drawn
    segment (``kind, label, start, end, score, type``).
    """
    db = gt.get("database") if isinstance(gt, Mapping) else None
    if not isinstance(db, Mapping) or video_id not in db:
        raise DataError(f"timeline: video {video_id!r} is not in the ground truth 'database'")
    subset = db[video_id].get("subset")
    det = load_detections(gt, preds, subset=subset, keep_unknown_labels=True)
    v = det.videos.index(video_id)
    codes = classify_predictions(det, tiou)
    order = score_order(det.pred)
    top = order[det.pred.video[order] == v][:top_k]
    g_idx = np.flatnonzero(det.gt.video == v)
    lanes = sorted({int(c) for c in det.gt.label[g_idx]} | {int(c) for c in det.pred.label[top]},
                   key=lambda c: det.classes[c])
    duration = det.durations[v]
    if not math.isfinite(duration):
        ends = np.concatenate([det.gt.segments[g_idx, 1], det.pred.segments[top, 1], [1.0]])
        duration = float(ends.max())
    type_names = {TRUE_POSITIVE: "true_positive", **{c: n for n, c in ERROR_CODES.items()}}

    fig = Figure(figsize=(10, 0.9 * max(len(lanes), 1) + 1.4))
    ax = fig.add_subplot()
    lane_of = {c: i for i, c in enumerate(lanes)}
    for i in g_idx:
        s, e = det.gt.segments[i]
        ax.barh(lane_of[int(det.gt.label[i])] + 0.2, e - s, left=s, height=0.35, color="0.25")
    scores = det.pred.score[top]
    lo, hi = (float(scores.min()), float(scores.max())) if top.size else (0.0, 1.0)
    labelled: dict[int, list[float]] = {}  # lane → x of score texts already drawn
    for i in top:  # best first, so a crowded lane shows the best scores' texts
        s, e = det.pred.segments[i]
        lane = lane_of[int(det.pred.label[i])]
        a = 0.35 + 0.65 * ((det.pred.score[i] - lo) / (hi - lo) if hi > lo else 1.0)
        ax.barh(lane - 0.2, max(e - s, duration * 2e-3), left=s, height=0.35,
                color=TYPE_COLORS[type_names[int(codes[i])]], alpha=a, edgecolor="black",
                linewidth=0.3)
        if all(abs(s - x) > 0.04 * duration for x in labelled.setdefault(lane, [])):
            labelled[lane].append(s)
            ax.text(s, lane - 0.44, f"{det.pred.score[i]:.2f}", fontsize=6, va="top",
                    ha="left")
    _style(ax, f"{video_id}: ground truth vs top-{top.size} predictions",
           f"Time (s)  [upper bars: ground truth; lower bars: predictions, opacity ~ score, "
           f"colour = error type at tIoU={tiou:g}]", "")
    ax.set_yticks(np.arange(len(lanes)), [det.classes[c] for c in lanes], fontsize=8)
    ax.set_ylim(-0.75, max(len(lanes), 1) - 0.4)
    ax.set_xlim(0, duration)
    present = ["true_positive", *ERROR_TYPES]
    used = {type_names[int(codes[i])] for i in top}
    handles = [Patch(color="0.25", label="Ground truth")] + [
        Patch(color=TYPE_COLORS[n], label=DISPLAY_NAMES[n]) for n in present if n in used]
    ax.legend(handles=handles, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.08),
              ncol=4, frameon=False)
    paths = [_save(fig, out_png)]
    if out_csv:
        rows = [["gt", det.classes[det.gt.label[i]], _num(det.gt.segments[i, 0]),
                 _num(det.gt.segments[i, 1]), "", ""] for i in g_idx]
        rows += [["pred", det.classes[det.pred.label[i]], _num(det.pred.segments[i, 0]),
                  _num(det.pred.segments[i, 1]), _num(det.pred.score[i]),
                  type_names[int(codes[i])]] for i in top]
        paths.append(write_csv(out_csv, ["kind", "label", "start", "end", "score", "type"], rows))
    return tuple(paths)


# --------------------------------------------------------------------------- all together

def example_video(gt: Mapping[str, Any], subset: str) -> str:
    """A readable default for the timeline: the subset's annotated video with the most
    distinct classes, then the fewest instances (ties: smallest id)."""
    db = gt.get("database", {}) if isinstance(gt, Mapping) else {}
    cands = []
    for k, v in db.items():
        if isinstance(v, Mapping) and str(v.get("subset", "")).lower() == subset.lower():
            anns = [a for a in v.get("annotations", []) if isinstance(a, Mapping)]
            labels = {a.get("label") for a in anns}
            cands.append((not anns, -len(labels), len(anns), str(k)))
    if not cands:
        raise DataError(f"ground truth: no video in subset {subset!r}")
    return min(cands)[3]


def write_all_plots(gt: Mapping[str, Any], preds: Mapping[str, Any], out_dir: str | Path, *,
                    subset: str = "Test", tiou: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7),
                    compare: Mapping[str, Mapping[str, Any]] | None = None, name: str = "run",
                    video: str | None = None, analysis_tiou: float = 0.5,
                    top_k: int = 20) -> dict[str, Path]:
    """Every figure and its data for one predictions file, into ``out_dir``.

    ``compare``: other runs' predictions by name, drawn beside ``name`` in the per-class AP
    chart. The DETAD analysis counts errors at ``analysis_tiou`` and averages the mAP gain
    over ``tiou``. ``video`` (default: :func:`example_video`) is drawn as a timeline.
    Returns ``{key: path}``; the keys are stable for DVC/MLflow wiring.
    """
    from amnet.evaluation.map import evaluate_detections

    out = Path(out_dir)
    tious = [float(t) for t in tiou]
    runs = {name: evaluate_detections(gt, preds, subset=subset, tiou=tious)}
    for other, p in (compare or {}).items():
        if other in runs:
            raise DataError(f"plots: run name {other!r} is used twice")
        runs[other] = evaluate_detections(gt, p, subset=subset, tiou=tious)
    # all scoring first, so that bad input fails before any file is written
    analysis = analyze_false_positives(gt, preds, subset=subset, tiou=analysis_tiou,
                                       gain_tiou=tious)
    vid = video if video is not None else example_video(gt, subset)
    if vid not in gt["database"]:
        raise DataError(f"timeline: video {vid!r} is not in the ground truth 'database'")
    paths: dict[str, Path] = {}
    paths["per_class_ap"], paths["per_class_ap_csv"] = plot_per_class_ap(
        runs, out / "per_class_ap.png", out / "per_class_ap.csv",
        title=f"Per-class AP ({subset})")

    paths["fp_analysis"], paths["fp_profile_csv"], paths["fp_error_types_csv"] = \
        plot_fp_analysis(analysis, out / "fp_analysis.png", out / "fp_profile.csv",
                         types_csv=out / "fp_error_types.csv")
    paths["fp_analysis_json"] = out / "fp_analysis.json"
    write_json(paths["fp_analysis_json"], analysis.to_dict(), sort_keys=False)

    (paths["pr_curves"], paths["pr_curves_csv"], paths["pr_curves_per_class_csv"]) = \
        plot_pr_curves(gt, preds, subset, tious, out / "pr_curves.png", out / "pr_curves.csv",
                       per_class_csv=out / "pr_curves_per_class.csv", result=runs[name],
                       title=f"Precision-recall: {name}")

    paths["timeline"], paths["timeline_csv"] = plot_timeline(
        gt, preds, vid, out / "timeline.png", top_k=top_k, tiou=analysis_tiou,
        out_csv=out / "timeline.csv")
    log.info("wrote %d plot files to %s", len(paths), out)
    return paths
