"""``amnet report``: the paper's ablation tables from the pipeline's metrics files.

Reads ``metrics/ablations/<row>.json`` (``mAP_<tIoU>`` + ``average_mAP``; one per row of
``params/ablations.yaml``) and the main model's ``metrics/evaluate.json``, and writes into
``--out`` (default ``reports/``):

* ``table2.md`` / ``table2.csv``: Table 2 layout — AME / GAM / MS check marks, mAP at every
  tIoU and the average, in percent, with the change of the average vs the baseline row;
* ``table4.md`` / ``table4.csv``: Table 4 layout — confidence score, mAP per tIoU and average,
  each with its delta vs the first row (``sigmoid(ŷ)``);
* ``report.md``: both tables plus the main model's mAP table;
* ``ablation_summary.csv`` (a DVC plot: average mAP per row) / ``ablation_map.png`` (mAP vs
  tIoU, one line per row);
* ``per_class_ap.png`` / ``per_class_ap.csv``: per-class AP of baseline, +GAM+MS and the full
  model side by side (the paper's Fig. 5), when those rows ran.

A row without a metrics file is shown as "–" (e.g. a reduced rows file in a quick run).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any

from amnet.errors import DataError
from amnet.evaluation.map import tiou_key
from amnet.io import read_json, staged_outputs, write_csv
from workflows.ablations import DEFAULT_ROWS, Row, load_rows
from workflows.cli import add_config_arguments
from workflows.config import load_config

log = logging.getLogger(__name__)

CONFIDENCE_LABEL = {"sigmoid": "sigmoid(ŷ)", "sigmoid*sigmoid": "sigmoid(ŷ)·sigmoid(m̂)",
                    "sigmoid*tanh": "sigmoid(ŷ)·tanh(m̂)"}
FIG5_ROWS = ("baseline", "gam_ms", "full")


def read_metrics(path: Path) -> dict[str, Any] | None:
    """A metrics file (``{"mAP_0.3": v, …, "average_mAP": v}``) as
    ``{"mAP": {tiou: v}, "average_mAP": v}``, or None when the file does not exist."""
    if not path.is_file():
        return None
    m = read_json(path)
    if not isinstance(m, dict) or "average_mAP" not in m:
        raise DataError(f"{path}: expected {{'mAP_<tIoU>': value, ..., 'average_mAP': value}}")
    maps = {float(k[len("mAP_"):]): float(v) for k, v in m.items() if k.startswith("mAP_")}
    return {"mAP": maps, "average_mAP": float(m["average_mAP"])}


def _pct(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{100 * v:.1f}"


def _delta(v: float | None, ref: float | None) -> str:
    if v is None or ref is None:
        return ""
    return f" ({100 * (v - ref):+.1f})"


def _flags(cfg: Any) -> dict[str, bool]:
    m = cfg.model
    return {"AME": m.ame, "GAM": m.gam and m.self_attention, "MS": m.matching_head}


def build_tables(params: str | Path, rows_file: str | Path, metrics_dir: str | Path
                 ) -> dict[str, list[dict[str, Any]]]:
    """Rows of Table 2 and Table 4: label, switches, per-tIoU mAP and average (fractions)."""
    from workflows.ablations import row_config

    common, rows = load_rows(rows_file)
    tables: dict[str, list[dict[str, Any]]] = {"2": [], "4": []}
    for name, row in rows.items():
        cfg = row_config(params, row, common)
        m = read_metrics(Path(metrics_dir) / f"{name}.json")
        entry = {"row": name, "label": row.label, **_flags(cfg),
                 "confidence": cfg.infer.confidence,
                 "mAP": {float(t): float(v) for t, v in (m or {}).get("mAP", {}).items()},
                 "average_mAP": None if m is None else float(m["average_mAP"])}
        for t in row.tables:
            if str(t) in tables:
                tables[str(t)].append(entry)
    if tables["4"]:  # Table 4 is ordered as in the paper: sigmoid, sigmoid·sigmoid, tanh
        order = list(CONFIDENCE_LABEL)
        tables["4"].sort(key=lambda e: order.index(e["confidence"]))
    return tables


def _tious(entries: list[dict[str, Any]], fallback: list[float]) -> list[float]:
    ts = sorted({t for e in entries for t in e["mAP"]})
    return ts or list(fallback)


def table2(entries: list[dict[str, Any]], tious: list[float]) -> tuple[str, list[list[str]]]:
    """Markdown + CSV rows in the layout of the paper's Table 2 (delta vs the first row)."""
    head = ["Row", "AME", "GAM", "MS", *[f"{t:g}" for t in tious], "Avg.", "Δ Avg."]
    ref = entries[0]["average_mAP"] if entries else None
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    csv_rows = [["row", "label", "AME", "GAM", "MS", *[f"mAP_{tiou_key(t)}" for t in tious],
                 "average_mAP", "delta_average_vs_baseline"]]
    for e in entries:
        marks = ["✓" if e[k] else "" for k in ("AME", "GAM", "MS")]
        vals = [_pct(e["mAP"].get(t)) for t in tious]
        avg = e["average_mAP"]
        d = "" if avg is None or ref is None else f"{100 * (avg - ref):+.1f}"
        md.append("| " + " | ".join([e["label"], *marks, *vals, _pct(avg), d]) + " |")
        csv_rows.append([e["row"], e["label"], *[str(int(e[k])) for k in ("AME", "GAM", "MS")],
                         *[f"{100 * e['mAP'][t]:.2f}" if t in e["mAP"] else "" for t in tious],
                         "" if avg is None else f"{100 * avg:.2f}", d])
    return "\n".join(md), csv_rows


def table4(entries: list[dict[str, Any]], tious: list[float]) -> tuple[str, list[list[str]]]:
    """Markdown + CSV rows in the layout of the paper's Table 4 (each value with its delta
    vs the first row, sigmoid(ŷ))."""
    head = ["Confidence score", *[f"{t:g}" for t in tious], "Avg."]
    ref = entries[0] if entries else None
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    csv_rows = [["row", "confidence", *[f"mAP_{tiou_key(t)}" for t in tious], "average_mAP",
                 *[f"delta@{t:g}" for t in tious], "delta_average"]]
    for i, e in enumerate(entries):
        cells = []
        for t in tious:
            v = e["mAP"].get(t)
            r = ref["mAP"].get(t) if ref and i else None
            cells.append(_pct(v) + (_delta(v, r) if i else ""))
        avg = e["average_mAP"]
        ref_avg = ref["average_mAP"] if ref and i else None
        cells.append(_pct(avg) + (_delta(avg, ref_avg) if i else ""))
        md.append("| " + " | ".join([CONFIDENCE_LABEL.get(e["confidence"], e["label"]),
                                     *cells]) + " |")
        deltas = [f"{100 * (e['mAP'][t] - ref['mAP'][t]):+.2f}"
                  if ref and t in e["mAP"] and t in ref["mAP"] else "" for t in tious]
        csv_rows.append([e["row"], e["confidence"],
                         *[f"{100 * e['mAP'][t]:.2f}" if t in e["mAP"] else "" for t in tious],
                         "" if avg is None else f"{100 * avg:.2f}", *deltas,
                         "" if avg is None or not ref or ref["average_mAP"] is None
                         else f"{100 * (avg - ref['average_mAP']):+.2f}"])
    return "\n".join(md), csv_rows


def _map_plot(tables: dict[str, list[dict[str, Any]]], tious: list[float], out: Path) -> None:
    """mAP vs tIoU, one line per row (wide CSV for `dvc plots`, PNG for people)."""
    from matplotlib.figure import Figure

    entries = {e["row"]: e for es in tables.values() for e in es if e["average_mAP"] is not None}
    names = list(entries)
    # one line per row: `dvc plots` draws average_mAP per row whatever the rows and tIoUs are
    write_csv(out / "ablation_summary.csv",
              ["row", "label", *[f"mAP_{tiou_key(t)}" for t in tious], "average_mAP"],
              [[n, entries[n]["label"],
                  *[f"{entries[n]['mAP'].get(t, float('nan')):.6f}" for t in tious],
                  f"{entries[n]['average_mAP']:.6f}"] for n in names])
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for k, n in enumerate(names):
        ax.plot(tious, [100 * entries[n]["mAP"].get(t, float("nan")) for t in tious],
                marker="o", color=f"C{k}", label=f"{entries[n]['label']} "
                f"({100 * entries[n]['average_mAP']:.1f})")
    ax.set_xlabel("tIoU")
    ax.set_ylabel("mAP (%)")
    ax.set_title("Ablations: mAP per tIoU (average in legend)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(out / "ablation_map.png", dpi=120)


def _per_class_figure(rows_dir: Path, rows: dict[str, Row], out: Path) -> bool:
    """The paper's Fig. 5 from the rows' per-class AP files (False when a row is missing)."""
    from amnet.evaluation.plots import plot_per_class_ap

    results = {}
    for name in FIG5_ROWS:
        path = rows_dir / name / "per_class_ap.json"
        if name not in rows or not path.is_file():
            return False
        results[rows[name].label] = {float(t): aps for t, aps in
                                     read_json(path).items()}
    plot_per_class_ap(results, out / "per_class_ap.png", out / "per_class_ap.csv",
                      title="Per-class AP: baseline, +GAM+MS, AMNet")
    return True


def write_report(params: str | Path, rows_file: str | Path, metrics_dir: str | Path,
                 main_metrics: str | Path | None, out_dir: str | Path,
                 rows_dir: str | Path = "outputs/ablations") -> dict[str, Path]:
    """Write every report file (module docstring); returns them by name. ``out_dir`` is
    replaced whole once every file is written (:func:`amnet.io.staged_outputs`)."""
    with staged_outputs() as staged:
        out = staged.folder(out_dir)
        files = _write_report(params, rows_file, metrics_dir, main_metrics, out, rows_dir)
    return {k: staged.final(p) for k, p in files.items()}


def _write_report(params: str | Path, rows_file: str | Path, metrics_dir: str | Path,
                  main_metrics: str | Path | None, out: Path,
                  rows_dir: str | Path) -> dict[str, Path]:
    cfg = load_config(params)
    tables = build_tables(params, rows_file, metrics_dir)
    if not any(e["average_mAP"] is not None for es in tables.values() for e in es):
        raise DataError(f"{metrics_dir}: no ablation metrics found (run the ablation stages "
                        "first: `dvc repro`)")
    tious = _tious([e for es in tables.values() for e in es], cfg.eval.tiou)
    md2, csv2 = table2(tables["2"], tious)
    md4, csv4 = table4(tables["4"], tious)
    files = {"table2_md": out / "table2.md", "table4_md": out / "table4.md",
             "table2_csv": write_csv(out / "table2.csv", csv2[0], csv2[1:]),
             "table4_csv": write_csv(out / "table4.csv", csv4[0], csv4[1:])}
    files["table2_md"].write_text(md2 + "\n")
    files["table4_md"].write_text(md4 + "\n")
    parts = [f"# Ablations on `{cfg.data.name}` ({cfg.eval.subset} split)", "",
             "mAP (%) at each tIoU; Δ = change of the average vs the first row.", "",
             "## Table 2: modules (AME, GAM, matching-score head MS)", "", md2, "",
             "## Table 4: confidence score", "", md4, ""]
    main = read_metrics(Path(main_metrics)) if main_metrics else None
    if main is not None:
        ts = sorted(float(t) for t in main["mAP"])
        vals = {float(t): v for t, v in main["mAP"].items()}
        parts += ["## Main model (`train` + `evaluate` stages)", "",
                  "| " + " | ".join(f"{t:g}" for t in ts) + " | Avg. |",
                  "|" + "---|" * (len(ts) + 1),
                  "| " + " | ".join(_pct(vals[t]) for t in ts) + f" | "
                  f"{_pct(main['average_mAP'])} |", ""]
    files["report_md"] = out / "report.md"
    files["report_md"].write_text("\n".join(parts))
    _map_plot(tables, tious, out)
    files["ablation_summary_csv"] = out / "ablation_summary.csv"
    files["ablation_map_png"] = out / "ablation_map.png"
    if _per_class_figure(Path(rows_dir), load_rows(rows_file)[1], out):
        files["per_class_ap_png"] = out / "per_class_ap.png"
    return files


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--ablations", default=DEFAULT_ROWS, help="rows file (%(default)s)")
    parser.add_argument("--metrics", default="metrics/ablations", help="per-row metrics folder")
    parser.add_argument("--rows-dir", default="outputs/ablations",
                        help="per-row outputs (per-class AP for the Fig. 5 chart)")
    parser.add_argument("--main", default="metrics/evaluate.json",
                        help="the main model's metrics (optional)")
    parser.add_argument("--out", default="reports", help="output folder (%(default)s)")


def run(args: argparse.Namespace) -> int:
    files = write_report(args.params, args.ablations, args.metrics, args.main, args.out,
                         args.rows_dir)
    print(files["report_md"].read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    from workflows.cli import main as cli_main

    return cli_main(["report", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
