"""Every mAP the workflow reports is scored against the annotation file as given.

The data layer clips (or drops) segments reaching past a video's end to build training
targets; the protocol scores every annotated instance. So the ``evaluate`` stage must give
exactly what ``amnet eval <root>/annotations.json predictions.json`` gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amnet import engine
from amnet.data.annotations import scoring_ground_truth
from amnet.data.dataset import TALDataset
from amnet.data.manifest import write_manifest
from amnet.data.synthetic import class_names, generate_synthetic
from amnet.evaluation.map import evaluate_detections
from workflows.cli import main
from workflows.config import load_config

PARAMS = str(Path(__file__).resolve().parents[2] / "params" / "default.yaml")

TINY = ["data.synthetic.n_train=4", "data.synthetic.n_test=3", "data.synthetic.feature_dim=16",
        "data.feature_dim=16", "data.synthetic.num_classes=3", "data.num_classes=3",
        "data.synthetic.duration_scale=0.05", "data.max_seq_len=64", "model.fpn_levels=3",
        "model.regression_ranges=[[0,4],[4,8],[8,10000]]", "model.embed_dim=16",
        "model.n_heads=2", "model.gam_depth=1", "model.head_layers=1", "train.batch_size=2",
        "train.epochs=1", "train.device=cpu", "infer.pre_nms_thresh=0.0",
        "infer.min_score=0.0"]


def _evaluate_stage(root: Path, ckpt: Path, out: Path) -> tuple[dict, Path]:
    sets = [a for o in [*TINY, f"data.root={root}"] for a in ("-s", o)]
    metrics, preds = out / "evaluate.json", out / "predictions.json"
    assert main(["-q", "evaluate", "-p", PARAMS, *sets, "--checkpoint", str(ckpt),
                 "--metrics", str(metrics), "--per-class", str(out / "per_class.json"),
                 "--predictions", str(preds), "--plots", str(out / "plots"),
                 "--no-track"]) == 0
    return json.loads(metrics.read_text()), preds


def test_evaluate_stage_scores_the_file_as_given(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, f"data.root={tmp_path / 'features'}"])
    root = generate_synthetic(cfg.data.synthetic, tmp_path / "features",
                              stride=cfg.data.stride, window=cfg.data.window)
    # an untrained but real AMNet checkpoint, as `amnet train` writes it
    train_ds = TALDataset(cfg.data, cfg.data.train_subset, training=True, seed=0)
    engine.seed_everything(0)
    model = engine.build_model(cfg, cfg.data.feature_dim, len(train_ds.classes))
    state = engine.build_train_state(cfg, model, 2)
    ckpt = tmp_path / "model.pt"
    engine.save_checkpoint(ckpt, state, cfg, {"classes": train_ds.classes})
    _, preds_path = _evaluate_stage(root, ckpt, tmp_path / "first")

    # Give the top-scoring detection's class, on its test video, three more instances:
    # one equal to the detection (a sure true positive, so the class's AP is > 0), one
    # reaching past the video's end (clipped for training) and one entirely past it (dropped
    # for training). The protocol counts all three.
    preds = json.loads(preds_path.read_text())["results"]
    vid, top = max(((v, d) for v, rows in preds.items() for d in rows),
                   key=lambda vd: vd[1]["score"])
    ann_path = root / "annotations.json"
    raw = json.loads(ann_path.read_text())
    dur = float(raw["database"][vid]["duration"])
    raw["database"][vid]["annotations"] += [
        {"label": top["label"], "segment": top["segment"]},
        {"label": top["label"], "segment": [0.5 * dur, dur + 5.0]},
        {"label": top["label"], "segment": [dur + 1.0, dur + 3.0]}]
    ann_path.write_text(json.dumps(raw))
    write_manifest(root, stride=cfg.data.stride, window=cfg.data.window,
                   classes=class_names(3))

    stage, preds_path = _evaluate_stage(root, ckpt, tmp_path / "second")
    assert stage.pop("split") == "test"
    out = tmp_path / "eval.json"
    assert main(["-q", "eval", str(ann_path), str(preds_path), "-p", PARAMS, "--json",
                 str(out)]) == 0
    cli = json.loads(out.read_text())
    assert stage == {**{f"mAP_{t}": v for t, v in cli["mAP"].items()},
                     "average_mAP": cli["average_mAP"]}  # bit-identical, not approx

    # ...and the clipped ground truth (what the stage scored before) gives another number
    test_ds = TALDataset(cfg.data, "Test", training=False, classes=train_ds.classes)
    clipped = {"database": {
        v.video_id: {"subset": v.subset, "annotations": [
            {"label": lab, "segment": [float(s), float(e)]}
            for lab, (s, e) in zip(v.labels, v.segments, strict=True)]}
        for v in test_ds.annotations.videos.values()}}
    old = evaluate_detections(clipped, json.loads(preds_path.read_text()), subset="Test",
                              tiou=cfg.eval.tiou)
    assert old.average_mAP != pytest.approx(cli["average_mAP"], abs=1e-9)
    assert old.n_ground_truth == cli_gt_count(ann_path) - 1  # the dropped instance


def cli_gt_count(path: Path) -> int:
    db = json.loads(path.read_text())["database"]
    return sum(len(v["annotations"]) for v in db.values() if v["subset"].lower() == "test")


def test_scoring_ground_truth_keeps_everything_and_restricts_a_part(tmp_path: Path) -> None:
    db = {"a": {"subset": "Validation", "duration": 10, "fps": 10,
                "annotations": [{"label": "X", "segment": [9, 14]},
                                {"label": "X", "segment": [2, 3]}]},
          "b": {"subset": "Validation", "duration": 10, "fps": 10, "annotations": []},
          "c": {"subset": "Test", "duration": 10, "fps": 10,
                "annotations": [{"label": "Y", "segment": [11, 12]}]}}
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"database": db}))
    assert scoring_ground_truth(path) == {"database": db}  # order and bounds as given
    part = scoring_ground_truth(path, "validation", ["a"])["database"]
    assert list(part) == ["a", "c"] and part["a"] == db["a"]
