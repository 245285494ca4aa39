"""``amnet report``: the paper's experiments, side by side with ours, from the matrix.

Reads ``metrics/matrix.json`` (:mod:`workflows.matrix.summary`: per row, per seed, the test
and validation scores of its cells), the paper's numbers (:mod:`workflows.matrix.paper`), the
cells' per-class AP (``outputs/matrix/cells/<key>/per_class_ap.json``) and the main model's
``metrics/evaluate.json``, and writes into ``--out`` (default ``reports/``):

* ``report.md``: one table per experiment (Tables 2–5, Fig. 6, the GAM depth) — the paper's
  average mAP, ours (test split, mean ± std over seeds), the paired difference against the
  row's reference over the same seeds with its t interval (:mod:`amnet.evaluation.stats`),
  the paper's difference and the verdict (*reproduces* / *not significant* / *contradicts*);
  then mAP per tIoU (mean ± std), failed cells with their error, and the main model;
* ``<experiment>.md`` / ``<experiment>.csv`` (``table2`` …): each table alone;
* ``experiments.png``: per experiment, the average mAP (ours mean ± std, the paper's) and the
  difference against the reference (ours with its interval, the paper's) with the verdict;
* ``ablation_summary.csv`` (a DVC plot: mean average mAP per row) and, when baseline,
  +GAM+MS and the full model ran, ``per_class_ap.png`` / ``.csv`` (the paper's Fig. 5, per-class
  AP averaged over seeds).

Numbers are in %; the test split is reported (the paper's numbers are test numbers), never
used to choose anything.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any

from amnet.errors import DataError
from amnet.evaluation.stats import Interval, mean_std, paired_difference, verdict
from amnet.io import read_json, read_json_object, staged_outputs, write_csv
from workflows.matrix.paper import EXPERIMENTS, Experiment

log = logging.getLogger(__name__)

METRIC = "test/average_mAP"
FIG5_ROWS = ("baseline", "gam_ms", "full")
NOT_RUN = "not run"


def read_matrix(path: str | Path) -> dict[str, Any]:
    m = read_json_object(path)
    if m is None:
        raise DataError(f"{path}: not found (run the matrix first: `dvc repro`)")
    if not isinstance(m.get("rows"), dict) or not m["rows"]:
        raise DataError(f"{path}: expected the matrix summary {{'rows': {{row: …}}, …}}")
    return m


def per_seed(entry: dict[str, Any], key: str = METRIC) -> dict[str, float]:
    """``{seed: value}`` of the row's finished cells."""
    return {s: float(v[key]) for s, v in entry.get("seeds", {}).items()
            if v.get("status") == "ok" and key in v}


def compare(rows: dict[str, Any], row: str, ref: str, confidence: float,
            key: str = METRIC) -> Interval | None:
    """Paired difference row − ref over the seeds both finished (None if none)."""
    a, b = per_seed(rows.get(row, {}), key), per_seed(rows.get(ref, {}), key)
    seeds = sorted(set(a) & set(b), key=int)
    if not seeds:
        return None
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds],
                             confidence=confidence)


def _pm(values: dict[str, float]) -> str:
    if not values:
        return NOT_RUN
    ms = mean_std(list(values.values()))
    std = "" if math.isnan(ms.std) else f" ± {100 * ms.std:.1f}"
    return f"{100 * ms.mean:.1f}{std} (n={ms.n})"


def _iv(iv: Interval | None) -> str:
    if iv is None:
        return "–"
    lo = "−∞" if math.isinf(iv.low) else f"{100 * iv.low:+.1f}"
    hi = "+∞" if math.isinf(iv.high) else f"{100 * iv.high:+.1f}"
    return f"{100 * iv.mean:+.1f} [{lo}, {hi}]"


def experiment_rows(exp: Experiment, matrix: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per row of ``exp`` that the row files list (run or not)."""
    rows, conf = matrix["rows"], float(matrix.get("confidence", 0.95))
    names = [r.row for r in exp.rows] or [n for n, e in rows.items() if exp.key in e["tables"]]
    for n, e in rows.items():  # rows the rows file puts in this table beyond the paper's
        if exp.key in e.get("tables", []) and n not in names:
            names.append(n)
    out = []
    for name in names:
        paper = exp.paper(name)
        ref = exp.reference_of(name) if exp.rows else (
            None if name == exp.reference else exp.reference)
        iv = compare(rows, name, ref, conf) if ref else None
        claim = exp.claim(name)
        pref = exp.paper(ref) if ref else None
        paper_delta = (paper.average - pref.average if paper and pref and paper.average
                       is not None and pref.average is not None else None)
        if ref is None:
            v = "reference"
        elif iv is None:
            v = NOT_RUN
        elif claim is None:
            v = "— (no claim)"
        else:
            v = verdict(iv, float(claim))
        out.append({"row": name, "label": rows.get(name, {}).get("label", name),
                    "ran": bool(per_seed(rows.get(name, {}))), "reference": ref,
                    "paper": paper, "paper_delta": paper_delta, "claim": claim,
                    "ours": per_seed(rows.get(name, {})), "interval": iv, "verdict": v})
    return out


def _md_table(exp: Experiment, recs: list[dict[str, Any]], conf: float) -> tuple[str, list]:
    head = ["Row", "Paper (avg)", "Ours: test avg mAP", "vs", f"Δ ours [{100 * conf:g} % CI]",
            "Δ paper", "Verdict"]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    csv = [["row", "label", "paper_average", "ours_mean", "ours_std", "n_seeds", "reference",
            "delta_mean", "delta_low", "delta_high", "paper_delta", "verdict"]]
    for r in recs:
        p = r["paper"]
        paper = "—" if p is None or p.average is None else f"{p.average:.1f}"
        pd = "—" if r["paper_delta"] is None else f"{r['paper_delta']:+.1f}"
        if r["paper_delta"] is None and r["claim"] is not None:
            pd = "below" if r["claim"] < 0 else "above"
        ref_label = r["reference"] or ""
        md.append("| " + " | ".join([r["label"], paper, _pm(r["ours"]), ref_label,
                                     _iv(r["interval"]), pd, r["verdict"]]) + " |")
        ms = mean_std(list(r["ours"].values())) if r["ours"] else None
        iv = r["interval"]
        csv.append([r["row"], r["label"], "" if p is None or p.average is None else p.average,
                    "" if ms is None else f"{100 * ms.mean:.3f}",
                    "" if ms is None or math.isnan(ms.std) else f"{100 * ms.std:.3f}",
                    0 if ms is None else ms.n, r["reference"] or "",
                    *(["", "", ""] if iv is None else
                      [f"{100 * iv.mean:.3f}", f"{100 * iv.low:.3f}", f"{100 * iv.high:.3f}"]),
                    "" if r["paper_delta"] is None else f"{r['paper_delta']:.1f}",
                    r["verdict"]])
    return "\n".join(md), csv


def _tiou_table(matrix: dict[str, Any], tious: list[float]) -> str:
    head = ["Row", *[f"{t:g}" for t in tious], "Avg.", "val Avg."]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in matrix["rows"].values():
        cells = [_pm(per_seed(e, f"test/mAP_{t:g}")).split(" (n=")[0] for t in tious]
        md.append("| " + " | ".join([e["label"], *cells,
                                     _pm(per_seed(e)).split(" (n=")[0],
                                     _pm(per_seed(e, "val/average_mAP")).split(" (n=")[0]])
                  + " |")
    return "\n".join(md)


def _once(label: str, seen: set[str]) -> str | None:
    """A legend label the first time it is drawn in a panel, then None."""
    if label in seen:
        return None
    seen.add(label)
    return label


def _figure(tables: list[tuple[Experiment, list[dict[str, Any]]]], out: Path) -> Path:
    """Per experiment: left, average mAP (ours mean ± std, the paper's); right, the
    difference against the reference (ours with its interval, the paper's), verdict beside."""
    from matplotlib.figure import Figure

    n = len(tables)
    fig = Figure(figsize=(10, 0.45 * sum(len(r) for _, r in tables) + 1.3 * n))
    axes = fig.subplots(n, 2, squeeze=False,
                        gridspec_kw={"height_ratios": [max(1, len(r)) for _, r in tables]})
    for (ax, dax), (exp, recs) in zip(axes, tables, strict=True):
        ys = list(range(len(recs)))
        labelled: set[str] = set()

        for y, r in zip(ys, recs, strict=True):
            if r["ours"]:
                ms = mean_std(list(r["ours"].values()))
                ax.errorbar(100 * ms.mean, y, xerr=0 if math.isnan(ms.std) else 100 * ms.std,
                            fmt="o", color="C0", capsize=3,
                            label=_once("ours (mean ± std)", labelled))
            p = r["paper"]
            if p is not None and p.average is not None:
                ax.plot(p.average, y, "s", color="C3", label=_once("paper", labelled))
            iv = r["interval"]
            if iv is not None and math.isfinite(iv.low):
                dax.errorbar(100 * iv.mean, y, xerr=[[100 * (iv.mean - iv.low)],
                                                     [100 * (iv.high - iv.mean)]],
                             fmt="o", color="C0", capsize=3,
                             label=_once("Δ ours (95 % CI)", labelled))
            elif iv is not None:
                dax.plot(100 * iv.mean, y, "o", color="C0", mfc="none")
            if r["paper_delta"] is not None:
                dax.plot(r["paper_delta"], y, "s", color="C3", label=_once("Δ paper", labelled))
        ax.set_yticks(ys, [r["label"] for r in recs], fontsize=7)
        dax.set_yticks(ys, [r["verdict"] if r["reference"] else "reference" for r in recs],
                       fontsize=7)
        for a in (ax, dax):
            a.set_ylim(len(recs) - 0.5, -0.5)
            a.grid(alpha=0.3, axis="x")
        dax.axvline(0, color="0.4", lw=0.8)
        ax.set_title(exp.title, fontsize=9, loc="left")
        ax.set_xlabel("average mAP (%)", fontsize=8)
        dax.set_xlabel("Δ vs reference (points)", fontsize=8)
        for a in (ax, dax):
            if a.get_legend_handles_labels()[0]:
                a.legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    path = out / "experiments.png"
    fig.savefig(path, dpi=110)
    return path


def _per_class_figure(matrix: dict[str, Any], cells_dir: Path, out: Path) -> bool:
    """The paper's Fig. 5: per-class AP of baseline, +GAM+MS and the full model, averaged
    over each row's finished seeds (False when a row did not run)."""
    from amnet.evaluation.plots import plot_per_class_ap

    results = {}
    for name in FIG5_ROWS:
        e = matrix["rows"].get(name)
        files = [cells_dir / v["cell"] / "per_class_ap.json"
                 for v in (e or {}).get("seeds", {}).values() if v.get("status") == "ok"]
        files = [f for f in files if f.is_file()]
        if not files:
            return False
        per = [read_json(f) for f in files]
        results[e["label"]] = {float(t): {c: sum(p[t][c] or 0.0 for p in per) / len(per)
                                          for c in per[0][t]} for t in per[0]}
    plot_per_class_ap(results, out / "per_class_ap.png", out / "per_class_ap.csv",
                      title="Per-class AP (mean over seeds): baseline, +GAM+MS, AMNet")
    return True


def write_report(matrix_path: str | Path, out_dir: str | Path, *,
                 cells_dir: str | Path = "outputs/matrix/cells",
                 main_metrics: str | Path | None = None) -> dict[str, Path]:
    """Write every report file (module docstring); returns them by name. ``out_dir`` is
    replaced whole once every file is written (:func:`amnet.io.staged_outputs`)."""
    matrix = read_matrix(matrix_path)
    with staged_outputs() as staged:
        out = staged.folder(out_dir)
        files = _write_report(matrix, out, Path(cells_dir), main_metrics)
    return {k: staged.final(p) for k, p in files.items()}


def _write_report(matrix: dict[str, Any], out: Path, cells_dir: Path,
                  main_metrics: str | Path | None) -> dict[str, Path]:
    conf = float(matrix.get("confidence", 0.95))
    files: dict[str, Path] = {}
    parts = [f"# The paper's experiments: preset `{matrix.get('preset')}`, seeds "
             f"{matrix.get('seeds')}, {matrix.get('epochs')} epochs per cell", "",
             "Average mAP (%) on the test split, mean ± std over seeds. Δ ours = the paired "
             f"difference against the row's reference (`vs`) over the same seeds, with its "
             f"{100 * conf:g} % t interval; verdict: *reproduces* (interval on the paper's "
             "side of 0), *contradicts* (on the other side), *not significant* (contains 0).",
             ""]
    shown = []
    for exp in EXPERIMENTS:
        recs = experiment_rows(exp, matrix)
        if not any(r["ran"] for r in recs):
            parts += [f"## {exp.title}", "", "Not in this preset (every experiment: "
                      "`dvc exp run -S 'params/ablations.yaml:matrix.preset=full'`).", ""]
            continue
        md, csv = _md_table(exp, recs, conf)
        files[f"{exp.key}_md"] = out / f"{exp.key}.md"
        files[f"{exp.key}_md"].write_text(md + "\n")
        files[f"{exp.key}_csv"] = write_csv(out / f"{exp.key}.csv", csv[0], csv[1:])
        parts += [f"## {exp.title}", "", md, ""]
        shown.append((exp, recs))
    tious = sorted({float(k[len("test/mAP_"):]) for e in matrix["rows"].values()
                    for v in e.get("seeds", {}).values() for k in v
                    if k.startswith("test/mAP_")})
    parts += ["## mAP per tIoU (test, mean ± std over seeds) and validation average", "",
              _tiou_table(matrix, tious), ""]
    failed = [(n, s, v.get("error", "")) for n, e in matrix["rows"].items()
              for s, v in e.get("seeds", {}).items() if v.get("status") != "ok"]
    if failed:
        parts += ["## Failed cells", "", "| Row | Seed | Error |", "|---|---|---|",
                  *[f"| {n} | {s} | {err} |" for n, s, err in failed], ""]
    main = read_json_object(main_metrics) if main_metrics else None
    if main and "average_mAP" in main:
        ts = sorted(float(k[len("mAP_"):]) for k in main if k.startswith("mAP_"))
        parts += ["## Main model (`train` + `evaluate` stages, test split)", "",
                  "| " + " | ".join(f"{t:g}" for t in ts) + " | Avg. |",
                  "|" + "---|" * (len(ts) + 1),
                  "| " + " | ".join(f"{100 * main[f'mAP_{t:g}']:.1f}" for t in ts)
                  + f" | {100 * main['average_mAP']:.1f} |", ""]
    files["report_md"] = out / "report.md"
    files["report_md"].write_text("\n".join(parts))
    summary = [[n, e["label"], f"{e[METRIC]:.6f}",
                "" if e.get(f"{METRIC}_std") is None else f"{e[f'{METRIC}_std']:.6f}"]
               for n, e in matrix["rows"].items() if METRIC in e]
    files["ablation_summary_csv"] = write_csv(out / "ablation_summary.csv",
                                               ["row", "label", "average_mAP",
                                                "average_mAP_std"], summary)
    if shown:
        files["experiments_png"] = _figure(shown, out)
    if _per_class_figure(matrix, cells_dir, out):
        files["per_class_ap_png"] = out / "per_class_ap.png"
    return files


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matrix", default="metrics/matrix.json",
                        help="the matrix summary (%(default)s)")
    parser.add_argument("--cells", default="outputs/matrix/cells",
                        help="the matrix's cell folders (per-class AP) (%(default)s)")
    parser.add_argument("--main", default="metrics/evaluate.json",
                        help="the main model's metrics (optional)")
    parser.add_argument("--out", default="reports", help="output folder (%(default)s)")


def run(args: argparse.Namespace) -> int:
    files = write_report(args.matrix, args.out, cells_dir=args.cells, main_metrics=args.main)
    print(files["report_md"].read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    from workflows.cli import main as cli_main

    return cli_main(["report", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
