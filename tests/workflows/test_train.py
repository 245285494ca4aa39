"""`amnet train` in-process: a real (tiny) synthetic feature set → model.pt + metrics JSON."""

from __future__ import annotations

import json
from pathlib import Path

from amnet.data.synthetic import generate_synthetic
from amnet.engine import load_model_for_inference
from workflows.cli import main
from workflows.config import load_config

PARAMS = str(Path(__file__).resolve().parents[2] / "params" / "default.yaml")

TINY = ["data.synthetic.n_train=4", "data.synthetic.n_test=2", "data.synthetic.feature_dim=16",
        "data.feature_dim=16", "data.synthetic.num_classes=3", "data.num_classes=3",
        "data.synthetic.duration_scale=0.05", "data.max_seq_len=64", "model.fpn_levels=3",
        "model.regression_ranges=[[0,4],[4,8],[8,10000]]", "model.embed_dim=16",
        "model.n_heads=2", "model.gam_depth=1", "model.head_layers=1", "train.batch_size=2",
        "train.epochs=2", "train.device=cpu", "train.eval_every=1"]


def test_train_command_writes_model_and_metrics(tmp_path: Path) -> None:
    root = tmp_path / "features"
    cfg = load_config(None, TINY)
    generate_synthetic(cfg.data.synthetic, root, stride=cfg.data.stride, window=cfg.data.window)
    sets = [a for o in [*TINY, f"data.root={root}"] for a in ("-s", o)]
    out, metrics = tmp_path / "train", tmp_path / "metrics" / "train.json"
    assert main(["-q", "train", "-p", PARAMS, *sets, "--out", str(out),
                 "--metrics", str(metrics), "--no-track"]) == 0
    m = json.loads(metrics.read_text())
    assert m["epochs"] == 2 and m["loss/total"] > 0 and 0 <= m["val/average_mAP"] <= 1
    model, stored, classes = load_model_for_inference(out / "model.pt")
    assert stored.train.epochs == 2 and len(classes) == model.num_classes
    # resuming a finished run trains nothing and keeps the result
    assert main(["-q", "train", "-p", PARAMS, *sets, "--out", str(out),
                 "--metrics", str(metrics), "--resume", str(out / "checkpoints" / "last.pt"),
                 "--no-val", "--no-track"]) == 0
    assert json.loads(metrics.read_text()) == m


def test_train_command_reports_missing_features(tmp_path: Path) -> None:
    code = main(["-q", "train", "-p", PARAMS, "-s",
                 f"data.root={tmp_path / 'nothing'}", "--out", str(tmp_path / "o"),
                 "--no-track"])
    assert code == 2
