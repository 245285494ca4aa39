"""``amnet analyze``: the happy path writes every file and prints the breakdown; bad input is
one clear line naming the file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workflows.cli import main

REPO = Path(__file__).resolve().parents[2]
PARAMS = str(REPO / "params" / "default.yaml")


def _write(tmp_path: Path) -> tuple[Path, Path, Path]:
    gt = {"database": {
        "v1": {"subset": "Test", "duration": 30.0, "annotations": [
            {"label": "A", "segment": [1.0, 5.0]}, {"label": "B", "segment": [10.0, 14.0]}]},
        "v2": {"subset": "Test", "duration": 20.0, "annotations": [
            {"label": "A", "segment": [2.0, 6.0]}]},
        "v3": {"subset": "Validation", "duration": 9.0, "annotations": [
            {"label": "B", "segment": [0.0, 3.0]}]}}}
    a = {"results": {
        "v1": [{"label": "A", "score": 0.9, "segment": [1.0, 5.0]},     # TP
               {"label": "A", "score": 0.8, "segment": [1.2, 5.0]},     # double detection
               {"label": "A", "score": 0.7, "segment": [10.0, 14.0]},   # wrong label
               {"label": "B", "score": 0.6, "segment": [20.0, 25.0]}],  # background
        "v2": [{"label": "A", "score": 0.5, "segment": [2.0, 3.5]}]}}  # localization
    b = {"results": {"v1": [{"label": "A", "score": 0.9, "segment": [1.0, 5.0]}]}}
    paths = tmp_path / "gt.json", tmp_path / "a.json", tmp_path / "b.json"
    for p, d in zip(paths, (gt, a, b), strict=True):
        p.write_text(json.dumps(d))
    return paths


def test_analyze_happy_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, a, b = _write(tmp_path)
    out = tmp_path / "out"
    rc = main(["analyze", str(gt), str(a), "--compare", str(b), "--names", "AMNet", "base",
               "--out", str(out), "--video", "v1", "--tiou", "0.3", "0.5", "-p", PARAMS])
    assert rc == 0
    for name in ("per_class_ap.png", "fp_analysis.png", "pr_curves.png", "timeline.png",
                 "per_class_ap.csv", "fp_profile.csv", "fp_error_types.csv", "pr_curves.csv",
                 "timeline.csv", "fp_analysis.json"):
        assert (out / name).stat().st_size > 0, name
    d = json.loads((out / "fp_analysis.json").read_text())
    assert d["counts"] == {"double_detection": 1, "wrong_label": 1, "localization": 1,
                           "confusion": 0, "background": 1}
    assert d["num_false_positives"] == 4 and d["gain_tiou"] == [0.3, 0.5]
    text = capsys.readouterr().out
    assert "1 TP, 4 FP" in text and "Localization Err" in text
    header = (out / "per_class_ap.csv").read_text().splitlines()[0]
    assert "AMNet/AP@avg" in header and "base/AP@0.5" in header
    timeline = (out / "timeline.csv").read_text().splitlines()
    assert "gt,A,1.0,5.0,," in timeline and "gt,B,10.0,14.0,," in timeline
    assert sum(line.startswith("pred,") for line in timeline) == 4  # v1's four predictions


def test_default_names_are_file_stems(tmp_path: Path) -> None:
    gt, a, b = _write(tmp_path)
    out = tmp_path / "out"
    assert main(["analyze", str(gt), str(a), "--compare", str(b), "--out", str(out),
                 "-p", PARAMS, "-s", "eval.tiou=[0.5]"]) == 0
    header = (out / "per_class_ap.csv").read_text().splitlines()[0].split(",")
    assert header == ["class", "a/AP@avg", "a/AP@0.5", "b/AP@avg", "b/AP@0.5"]


@pytest.mark.parametrize(("mutate", "args", "expect"), [
    (None, ["missing.json"], "predictions file not found"),
    ("notjson", [], "not valid JSON"),
    ("reversed", [], r"a.json: .*'v1', row 0.*end < start"),
    ("unknown_label", [], r"a.json: .*label 'Swim'"),
    (None, ["--names", "x", "y"], r"--names: expected 1 name\(s\) .* got 2"),
    (None, ["--video", "nope"], "'nope' is not a video"),
    (None, ["--subset", "Train"], r"gt.json: .*no video in subset 'Train'"),
    (None, ["--tiou", "1.5"], "thresholds must be in"),
    (None, ["--analysis-tiou", "0.05"], "min_tiou <= tiou"),
])
def test_bad_input_is_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                               mutate: str | None, args: list[str], expect: str) -> None:
    gt, a, _ = _write(tmp_path)
    args = list(args)
    if mutate == "notjson":
        a.write_text("{results: ")
    elif mutate == "reversed":
        a.write_text(json.dumps({"results": {"v1": [
            {"label": "A", "score": 0.5, "segment": [5.0, 1.0]}]}}))
    elif mutate == "unknown_label":
        a.write_text(json.dumps({"results": {"v1": [
            {"label": "Swim", "score": 0.5, "segment": [1.0, 2.0]}]}}))
    pred = str(tmp_path / args.pop(0)) if args and args[0].endswith(".json") else str(a)
    rc = main(["analyze", str(gt), pred, "--out", str(tmp_path / "o"), "-p", PARAMS, *args])
    assert rc == 2
    msgs = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(msgs) == 1 and "\n" not in msgs[0]
    assert re.search(expect, msgs[0]), msgs[0]
    assert not (tmp_path / "o" / "fp_analysis.png").exists()
