"""Reproducible by construction (issue 11, item 6): the same seed on the same machine gives
bit-identical outputs of ``amnet train`` and ``amnet evaluate``, also with loader workers.

Two runs in separate folders are compared byte for byte (metrics, per-class AP, predictions)
and tensor for tensor (model weights, EMA and optimiser state). The whole-pipeline repeat
(`dvc repro` twice in two fresh copies) is in test_pipeline.py, which already runs one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from amnet.data.synthetic import generate_synthetic
from workflows.cli import main
from workflows.config import load_config

PARAMS = str(Path(__file__).resolve().parents[2] / "params" / "default.yaml")

TINY = ["data.synthetic.n_train=10", "data.synthetic.n_test=3", "data.synthetic.feature_dim=16",
        "data.feature_dim=16", "data.synthetic.num_classes=3", "data.num_classes=3",
        "data.synthetic.duration_scale=0.05", "data.max_seq_len=64", "model.fpn_levels=3",
        "model.regression_ranges=[[0,4],[4,8],[8,10000]]", "model.embed_dim=16",
        "model.n_heads=2", "model.gam_depth=1", "model.head_layers=1", "train.batch_size=2",
        "train.epochs=2", "train.device=cpu", "train.eval_every=1", "train.ema=true"]


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repro") / "features"
    cfg = load_config(None, TINY)
    generate_synthetic(cfg.data.synthetic, root, stride=cfg.data.stride, window=cfg.data.window)
    return root


def _run(features: Path, out: Path, *extra: str) -> dict[str, bytes]:
    """`amnet train` then `amnet evaluate` into ``out``; the bytes of every file they wrote
    that DVC tracks as metrics or outputs (the model is compared as tensors)."""
    sets = [a for o in [*TINY, f"data.root={features}", *extra] for a in ("-s", o)]
    assert main(["-q", "train", "-p", PARAMS, *sets, "--out", str(out / "train"),
                 "--metrics", str(out / "train.json"), "--no-track"]) == 0
    assert main(["-q", "evaluate", "-p", PARAMS, *sets,
                 "--checkpoint", str(out / "train" / "model.pt"),
                 "--metrics", str(out / "evaluate.json"),
                 "--per-class", str(out / "per_class_ap.json"),
                 "--predictions", str(out / "predictions.json"),
                 "--plots", str(out / "plots"), "--no-track"]) == 0
    files = ["train.json", "evaluate.json", "per_class_ap.json", "predictions.json"]
    files += [str(p.relative_to(out)) for p in sorted((out / "plots").glob("*.csv"))]
    files += [str(p.relative_to(out)) for p in sorted((out / "plots").glob("*.json"))]
    return {f: (out / f).read_bytes() for f in files}


def _tensors(obj: object, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_tensors(v, f"{prefix}/{k}"))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            out.update(_tensors(v, f"{prefix}/{i}"))
    return out


def _weights(out: Path) -> dict[str, torch.Tensor]:
    ck = torch.load(out / "train" / "model.pt", map_location="cpu", weights_only=True)
    return _tensors({k: ck[k] for k in ("model", "ema", "optimizer")})


def test_train_and_evaluate_are_bit_identical(features: Path, tmp_path: Path) -> None:
    a = _run(features, tmp_path / "a")
    b = _run(features, tmp_path / "b")
    assert a.keys() == b.keys() and len(a) >= 6
    for name in a:
        assert a[name] == b[name], f"{name} differs between two runs with the same seed"
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and len(wa) > 10
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert b"val/average_mAP" in a["train.json"] and b"time/" not in a["train.json"]

    # the loader's worker processes change nothing (crops and order depend on seed + epoch)
    w = _run(features, tmp_path / "workers", "train.loader_workers=2")
    for name in a:
        assert w[name] == a[name], f"{name} differs with train.loader_workers=2"

    # ...while another seed does give another model (the comparison can fail)
    other = _run(features, tmp_path / "seed1", "train.seed=1")
    assert other["train.json"] != a["train.json"]
