"""``amnet eval``: table on stdout, JSON file, one-line errors, --lenient, defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workflows.cli import main

REPO = Path(__file__).resolve().parents[2]
THUMOS = REPO / ".." / "shared" / "data" / "thumos14.json"


def write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    gt = {"database": {
        "v": {"subset": "Test", "annotations": [{"label": "A", "segment": [0.0, 10.0]},
                                                {"label": "B", "segment": [20.0, 30.0]}]},
        "w": {"subset": "Validation", "annotations": [{"label": "A", "segment": [0, 1]}]}}}
    pred = {"results": {"v": [{"label": "A", "score": 0.9, "segment": [0.0, 10.0]},
                              {"label": "B", "score": 0.8, "segment": [20.0, 26.0]}]}}
    return write(tmp_path / "gt.json", gt), write(tmp_path / "pred.json", pred)


def test_eval_prints_table_and_writes_json(files: tuple[Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    gt, pred = files
    out = tmp_path / "metrics" / "map.json"
    assert main(["eval", str(gt), str(pred), "--subset", "test", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    # B's prediction has tIoU 0.6: a hit at 0.3..0.6, a miss at 0.7 → mAP 1, …, 1, 0.5
    assert "0.7     50.00" in table and "0.3    100.00" in table and "avg     90.00" in table
    js = json.loads(out.read_text())
    assert js["mAP"] == {"0.3": 1.0, "0.4": 1.0, "0.5": 1.0, "0.6": 1.0, "0.7": 0.5}
    assert js["average_mAP"] == pytest.approx(0.9)
    assert js["per_class_AP"]["0.7"] == {"A": 1.0, "B": 0.0}


def test_eval_custom_thresholds(files: tuple[Path, Path], tmp_path: Path) -> None:
    gt, pred = files
    out = tmp_path / "m.json"
    assert main(["eval", str(gt), str(pred), "--tiou", "0.5", "0.65", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["mAP"] == {"0.5": 1.0, "0.65": 0.5}


def test_eval_activitynet_default_thresholds(tmp_path: Path) -> None:
    gt = write(tmp_path / "gt.json", {"version": "VERSION 1.3", "database": {
        "v": {"subset": "validation", "annotations": [{"label": "A", "segment": [0, 10]}]},
        "t": {"subset": "training", "annotations": [{"label": "A", "segment": [0, 10]}]}}})
    pred = write(tmp_path / "p.json", {"results": {"v": [
        {"label": "A", "score": 1.0, "segment": [0, 10]}]}})
    out = tmp_path / "m.json"
    assert main(["eval", str(gt), str(pred), "--subset", "Validation", "--json", str(out)]) == 0
    assert len(json.loads(out.read_text())["mAP"]) == 10


def test_eval_takes_params_and_overrides(files: tuple[Path, Path], tmp_path: Path) -> None:
    """-p/-s like every command: eval.subset / eval.tiou; explicit flags still win."""
    gt, pred = files
    out = tmp_path / "m.json"
    assert main(["eval", str(gt), str(pred), "-s", "eval.tiou=[0.5,0.65]", "--json",
                 str(out)]) == 0
    assert json.loads(out.read_text())["mAP"] == {"0.5": 1.0, "0.65": 0.5}
    anet = REPO / "params" / "anet13.yaml"  # eval.subset: validation, tIoU 0.5:0.05:0.95
    assert main(["eval", str(gt), str(pred), "-p", str(anet), "--subset", "Test", "--json",
                 str(out)]) == 0
    assert len(json.loads(out.read_text())["mAP"]) == 10
    assert main(["eval", str(gt), str(pred), "-s", "eval.subset=Validation", "--tiou", "0.5",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["mAP"] == {"0.5": 0.0}  # w's GT has no prediction


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workflows.cli", "eval", *args],
                          capture_output=True, text=True, cwd=REPO)


def test_errors_are_one_line_and_lenient_scores(files: tuple[Path, Path], tmp_path: Path) -> None:
    gt, _ = files
    bad = write(tmp_path / "bad.json", {"results": {"v": [
        {"label": "A", "score": 0.9, "segment": [0.0, 10.0]},
        {"label": "Nope", "score": 0.5, "segment": [0.0, 10.0]},
        {"label": "B", "score": 0.4, "segment": [30.0, 20.0]}]}})
    proc = run_cli(str(gt), str(bad))
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr
    assert "bad.json" in err[0] and "video 'v', row 1" in err[0] and "'Nope'" in err[0]
    proc = run_cli(str(gt), str(bad), "--lenient", "--tiou", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert "1 predictions with unknown labels skipped" in proc.stdout
    assert "1 reversed/zero-length segments scored as false positives" in proc.stdout
    assert "50.00" in proc.stdout  # A: AP 1, B: its only prediction is a forced FP → 0
    proc = run_cli(str(tmp_path / "missing.json"), str(bad))
    assert proc.returncode == 2 and "ground truth file not found" in proc.stderr
    proc = run_cli(str(gt), str(bad), "--subset", "Training")
    assert proc.returncode == 2 and "no video in subset 'Training'" in proc.stderr
    proc = run_cli(str(gt), str(bad), "--tiou", "1.5")
    assert proc.returncode == 2 and "(0, 1]" in proc.stderr


def test_eval_real_thumos_annotations(tmp_path: Path) -> None:
    gt = json.loads(THUMOS.read_text())
    half = {v: [{"label": a["label"], "score": 1.0 - i * 1e-3, "segment": a["segment"]}
                for i, a in enumerate(d["annotations"]) if i % 2 == 0]
            for v, d in gt["database"].items() if d["subset"] == "Test"}
    pred = write(tmp_path / "p.json", {"results": half})
    out = tmp_path / "m.json"
    assert main(["eval", str(THUMOS), str(pred), "--json", str(out)]) == 0
    js = json.loads(out.read_text())
    assert list(js["mAP"]) == ["0.3", "0.4", "0.5", "0.6", "0.7"]  # THUMOS-style default
    assert 0.3 < js["average_mAP"] < 0.7 and len(js["per_class_AP"]["0.5"]) == 20
