"""Models in MLflow: AMNet packed as one-tensor-out for pyfunc, logging it, loading it back."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import torch
from mlflow.exceptions import MlflowException

from amnet.data.feature_set import FeatureSet
from amnet.errors import ModelLoadError
from amnet.io import read_json_object, write_json
from workflows.config import WorkflowConfig, from_dict

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

log = logging.getLogger(__name__)

__all__ = ["MODEL_INFO_FILE", "TAG_MODEL_URI", "PackedOutput", "load_registered_model",
           "log_model", "log_trained_model"]

MODEL_INFO_FILE = "amnet_model.json"  # extra file logged next to every model: cfg + class names
TAG_MODEL_URI = "amnet.model_uri"


class PackedOutput(torch.nn.Module):
    """AMNet as one-tensor-in, one-tensor-out (what MLflow's pyfunc and signatures need).

    ``feats (B, C, T)`` [+ optional ``mask (B, T)``, default all valid] →
    ``(B, N, num_classes + 3)``: sigmoid class probabilities, ``d_s``, ``d_e`` (snippets,
    Eq. 13) and the raw matching logit (0 when the model has no matching head).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(feats.shape[0], feats.shape[-1], dtype=torch.bool,
                              device=feats.device)
        out = self.model(feats, mask)
        if isinstance(out, torch.Tensor):
            return out
        match = out.match_logits
        if match is None:
            match = out.cls_logits.new_zeros(out.cls_logits.shape[:2])
        return torch.cat([out.cls_logits.sigmoid(), out.offsets, match.unsqueeze(-1)], dim=-1)


def log_model(model: torch.nn.Module, example_feats: torch.Tensor,
              example_mask: torch.Tensor | None, class_names: list[str], cfg: WorkflowConfig, *,
              checkpoint: str | Path | None = None, name: str = "model") -> ModelInfo:
    """Log a deployable model into the active run, loadable without any params file.

    The module is wrapped so its forward returns ONE tensor (MLflow's pyfunc and signature
    need that; AMNet returns a ModelOutput): ``(B, N, num_classes + 3)`` = class
    probabilities, the two boundary distances, the matching logit. Pickle serialisation is
    used rather than pt2: torch.export cannot trace AMNet's length-dependent masking, and
    pickle keeps the real module (``wrapper.model``) for ``amnet detect``. The engine
    checkpoint (if given) and ``amnet_model.json`` (resolved config, class names, snippet
    timing) ride along as extra files; :func:`load_registered_model` reads them back.
    """
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    wrapper = PackedOutput(model).eval()
    feats = example_feats.detach().cpu().float()
    mask = None if example_mask is None else example_mask.detach().cpu()
    with torch.no_grad():
        out = wrapper(feats, mask) if mask is not None else wrapper(feats)
    # batch, length and point count vary per call: only the channel sizes are fixed
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, feats.shape[1], -1))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, out.shape[-1]))]))
    info = {"class_names": list(class_names), "config": cfg.to_dict(),
            "timing": {"stride": cfg.data.stride, "window": cfg.data.window,
                       "default_fps": cfg.data.default_fps},
            "output_layout": "cls_prob[num_classes], d_start, d_end, match_logit"}
    if checkpoint is not None:
        info["checkpoint"] = Path(checkpoint).name
    with tempfile.TemporaryDirectory() as tmp:
        info_path = write_json(Path(tmp) / MODEL_INFO_FILE, info, indent=1)
        extra = [str(info_path)] + ([str(checkpoint)] if checkpoint is not None else [])
        # pickle is chosen on purpose (docstring): silence MLflow's generic pickle warning
        pt_log = logging.getLogger("mlflow.pytorch")
        level = pt_log.level
        pt_log.setLevel(logging.ERROR)
        try:
            model_info = mlflow.pytorch.log_model(
                wrapper, name=name, serialization_format="pickle",
                signature=signature, input_example=feats.numpy(), extra_files=extra,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                                  f"mlflow=={mlflow.__version__}", "numpy"],
                metadata={"amnet_class_names": list(class_names),
                          "amnet_num_classes": len(class_names)})
        finally:
            pt_log.setLevel(level)
    mlflow.set_tag(TAG_MODEL_URI, model_info.model_uri)
    return model_info


def load_registered_model(model_uri: str) -> tuple[torch.nn.Module, WorkflowConfig, list[str]]:
    """Load ``models:/<name>@champion`` (or any model URI) for inference.

    Returns ``(model, cfg, class_names)`` with the real AMNet module in eval mode and the
    config it was trained with, rebuilt from the model's ``amnet_model.json``; no params file
    is read. Prefers the engine checkpoint riding along; falls back to the pickled module.
    """
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    except MlflowException as e:
        raise ModelLoadError(f"cannot fetch model {model_uri!r} from "
                             f"{mlflow.get_tracking_uri()}: {e.message}") from None
    info_path = local / "extra_files" / MODEL_INFO_FILE
    if not info_path.is_file():
        raise ModelLoadError(f"{model_uri}: no {MODEL_INFO_FILE} (not logged by amnet's "
                             f"log_model)")
    info = read_json_object(info_path, missing_ok=False) or {}
    cfg = from_dict(info["config"], f"{model_uri}/{MODEL_INFO_FILE}")
    ckpt_name = info.get("checkpoint")
    if ckpt_name and (local / "extra_files" / ckpt_name).is_file():
        with contextlib.suppress(ImportError, AttributeError):
            from amnet.engine import load_model_for_inference

            model, ck_cfg, names = load_model_for_inference(local / "extra_files" / ckpt_name,
                                                             schema=WorkflowConfig)
            return model.eval(), ck_cfg, list(names)
    wrapper = mlflow.pytorch.load_model(str(local))
    model = getattr(wrapper, "model", wrapper)
    return model.eval(), cfg, list(info["class_names"])


def _example_feats(cfg: WorkflowConfig, max_len: int = 128) -> torch.Tensor:
    """A real input example (first test video's first snippets) for the model signature."""
    import numpy as np

    fs = FeatureSet.at(cfg.data.root)
    vids = sorted(v for v in fs.subset_entries(cfg.data.test_subset)
                  if fs.feature_path(v).is_file())
    vids = vids or fs.video_ids()
    arr = np.load(fs.feature_path(vids[0]), mmap_mode="r")[:max_len]
    return torch.from_numpy(np.array(arr, dtype=np.float32)).T[None]  # a copy: mmap is read-only


def log_trained_model(cfg: WorkflowConfig, model_path: str | Path) -> ModelInfo:
    """Log the checkpoint ``model_path`` (the deployable weights, EMA if kept) as the active
    run's model, with a real input example and the checkpoint riding along."""
    from amnet.engine import load_model_for_inference

    model, ck_cfg, classes = load_model_for_inference(model_path, schema=WorkflowConfig)
    return log_model(model, _example_feats(cfg), None, classes, ck_cfg, checkpoint=model_path)
