"""`amnet report` from a matrix summary written by hand: the paper's numbers, ours (mean ±
std), paired intervals and verdicts as computed by hand (t_{0.975, 2} = 4.303)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from workflows.report import write_report


def _row(label: str, tables: list[str], values: list[float | None],
         errors: dict[int, str] | None = None) -> dict:
    seeds = {}
    for s, v in enumerate(values):
        if v is None:
            seeds[str(s)] = {"cell": f"c{s}", "status": "failed", "error": errors[s]}
        else:
            seeds[str(s)] = {"cell": f"c{s}", "status": "ok", "error": "",
                             "test/average_mAP": v, "test/mAP_0.5": v + 0.1,
                             "val/average_mAP": v + 0.05}
    ok = [v for v in values if v is not None]
    return {"label": label, "tables": tables, "test/average_mAP": sum(ok) / len(ok),
            "n_seeds": len(ok), "seeds": seeds}


@pytest.fixture
def matrix(tmp_path: Path) -> Path:
    rows = {
        "baseline": _row("Baseline", ["table2"], [0.20, 0.22, 0.21]),
        "ms": _row("+MS", ["table2", "table3"], [0.19, 0.25, 0.20]),
        "ame_ms": _row("+AME +MS", ["table2", "table3"], [0.30, 0.31, None],
                       {2: "RuntimeError: boom"}),
        "full": _row("AMNet", ["table2", "table4"], [0.30, 0.33, 0.31]),
        "conf_sigmoid": _row("sigmoid(ŷ)", ["table4"], [0.40, 0.41, 0.42]),
    }
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps({"preset": "default", "seeds": [0, 1, 2], "epochs": 20,
                                "confidence": 0.95, "rows": rows}))
    return path


def _csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as f:
        return {r["row"]: r for r in csv.DictReader(f)}


def test_report_puts_paper_ours_interval_and_verdict_side_by_side(matrix: Path,
                                                                   tmp_path: Path) -> None:
    files = write_report(matrix, tmp_path / "reports", cells_dir=tmp_path / "none")
    t2 = _csv(files["table2_csv"])
    # full − baseline = (0.10, 0.11, 0.10): mean 10.33, s_d 0.577, half 4.303·0.577/√3 = 1.434
    full = t2["full"]
    assert full["reference"] == "baseline" and full["paper_average"] == "63.3"
    assert float(full["delta_mean"]) == pytest.approx(10.333, abs=1e-3)
    assert float(full["delta_low"]) == pytest.approx(10.333 - 1.434, abs=2e-3)
    assert float(full["delta_high"]) == pytest.approx(10.333 + 1.434, abs=2e-3)
    assert full["paper_delta"] == "8.9" and full["verdict"] == "reproduces"
    assert float(full["ours_mean"]) == pytest.approx(31.333, abs=1e-3)
    assert float(full["ours_std"]) == pytest.approx(100 * 0.015275, abs=1e-3)
    # ms − baseline = (−0.01, +0.03, −0.01): contains 0
    assert t2["ms"]["verdict"] == "not significant"
    # ame_ms − ms over the seeds both finished (0, 1): (0.11, 0.06)
    assert t2["ame_ms"]["reference"] == "ms" and t2["ame_ms"]["n_seeds"] == "2"
    assert float(t2["ame_ms"]["delta_mean"]) == pytest.approx(8.5, abs=1e-6)
    assert t2["baseline"]["verdict"] == "reference"
    # Table 4: full − sigmoid = (−0.10, −0.08, −0.11), the paper says +3.5
    t4 = _csv(files["table4_csv"])
    assert t4["full"]["verdict"] == "contradicts"
    assert t4["conf_sigmoid_sigmoid"]["verdict"] == "not run"
    report = files["report_md"].read_text()
    assert "| ame_ms | 2 | RuntimeError: boom |" in report  # the failed cell, with its error
    assert "Table 5" in report and "Not in this preset" in report
    assert "31.3 ± 1.5 (n=3)" in report
    assert files["experiments_png"].stat().st_size > 0
    summary = _csv(files["ablation_summary_csv"])
    assert float(summary["full"]["average_mAP"]) == pytest.approx(0.313333, abs=1e-6)
