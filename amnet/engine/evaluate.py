"""Full-length prediction on a dataset and its score under the evaluation protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from amnet.config import Config
from amnet.device import resolve_device
from amnet.engine.build import make_loader
from amnet.progress import progress

if TYPE_CHECKING:
    from amnet.evaluation.map import MAPResult

__all__ = ["evaluate", "ground_truth", "predict"]


@torch.no_grad()
def predict(model: nn.Module, dataset: Any, cfg: Config, device: torch.device | str) -> dict:
    """Detections for every (full-length) video of ``dataset`` as an ActivityNet results dict.

    Decoding, scoring and Soft-NMS are ``amnet.inference.postprocess`` (Eq. 13–14).
    """
    from amnet.inference import postprocess, to_results_json

    device = resolve_device(device)
    was_training = model.training
    model.eval()
    loader = make_loader(dataset, cfg, training=False)
    classes = list(dataset.classes)
    dets: list[Any] = []
    for batch in progress(loader, desc="inference", unit="batch", leave=False):
        out = model(batch["feats"].to(device), batch["mask"].to(device))
        dets.extend(postprocess(out, batch["meta"], cfg.infer, class_names=classes))
    model.train(was_training)
    return to_results_json(dets, classes)


def ground_truth(dataset: Any) -> dict[str, Any]:
    """The ActivityNet-style GT dict (seconds) of ``dataset``'s whole annotation file.

    Every subset is included (the evaluator picks the scored one), so a class that only the
    other split uses is known to the evaluator rather than an error.
    """
    db = {}
    for vid, v in dataset.annotations.videos.items():
        db[vid] = {
            "subset": v.subset, "duration": float(v.duration), "fps": float(v.fps),
            "annotations": [{"label": lab, "segment": [float(s), float(e)]}
                            for lab, (s, e) in zip(v.labels, v.segments, strict=True)],
        }
    return {"database": db}


def evaluate(model: nn.Module, dataset: Any, cfg: Config, device: torch.device | str
             ) -> tuple[dict[str, float], dict, MAPResult]:
    """Predict on ``dataset`` and score it (``amnet.evaluation.map``) at ``cfg.eval.tiou``.

    Detections of a class that no video of the annotation file has (possible when the class
    list comes from a manifest) cannot be scored by the protocol and are left out of scoring
    (they stay in the returned predictions).

    Returns ``({"mAP_0.3": …, "average_mAP": …}, predictions JSON, MAPResult)``.
    """
    from amnet.evaluation.map import evaluate_detections

    preds = predict(model, dataset, cfg, device)
    gt = ground_truth(dataset)
    known = {a["label"] for v in gt["database"].values() for a in v["annotations"]}
    scored = {**preds, "results": {vid: [d for d in rows if d["label"] in known]
                                   for vid, rows in preds["results"].items()}}
    subset = getattr(dataset, "subset_name", cfg.eval.subset)
    result = evaluate_detections(gt, scored, subset=subset, tiou=cfg.eval.tiou)
    return result.metrics(), preds, result
