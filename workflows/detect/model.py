"""``amnet detect``'s model: an engine checkpoint or a registered MLflow model, and the ``-s``
overrides that may apply to it (``infer.*`` decoding, ``tracking.*`` for the registry)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from amnet.config import Config
from amnet.errors import ConfigError, ModelLoadError
from workflows.config import WorkflowConfig

log = logging.getLogger(__name__)

__all__ = ["load_model", "split_overrides"]


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """``-s`` items → (infer.*, tracking.*); model.*, data.*... are fixed by the model."""
    infer, tracking = [], []
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key.startswith("infer."):
            infer.append(item)
        elif key.startswith("tracking."):
            tracking.append(item)
        else:
            raise ConfigError(f"amnet detect: -s {item!r}: only infer.* and tracking.* can be "
                              "overridden here; the model fixes the rest (timing: --fps, "
                              "--stride, --window)")
    return infer, tracking


def load_model(spec: str, tracking_cfg: WorkflowConfig, device: Any
               ) -> tuple[Any, Config, list[str]]:
    """``(model in eval mode on device, its training config, class names)``."""
    if spec.startswith("models:/"):
        model, cfg, names = _load_registered(spec, tracking_cfg)
        model = model.to(device).eval()
    elif "://" in spec or spec.startswith("runs:/"):
        raise ModelLoadError(f"--model {spec!r}: unsupported URI (expected "
                             "models:/<name>@<alias>, models:/<name>/<version> or a .pt file)")
    else:
        from amnet.engine import load_model_for_inference

        if not Path(spec).exists():
            raise ModelLoadError(f"--model {spec}: checkpoint not found (expected an engine "
                                 "checkpoint .pt or models:/<name>@<alias>)")
        model, cfg, names = load_model_for_inference(spec, device, schema=WorkflowConfig)
    num_classes = int(getattr(model, "num_classes", len(names)))
    if not names:
        log.warning("%s stores no class names; labelling classes class_0..class_%d", spec,
                    num_classes - 1)
        names = [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ModelLoadError(f"{spec}: {len(names)} class names for a {num_classes}-class model")
    return model, cfg, list(names)


def _load_registered(uri: str, tracking_cfg: WorkflowConfig) -> tuple[Any, Config, list[str]]:
    """A registered model from the project's MLflow registry (tracking.* / MLFLOW_TRACKING_URI)."""
    target = uri[len("models:/"):]
    if not target or target.startswith("/") or not ("@" in target or "/" in target
                                                    or target.startswith("m-")):
        raise ModelLoadError(f"--model {uri!r}: expected models:/<name>@<alias> or "
                             "models:/<name>/<version>")
    from workflows import tracking

    store = tracking.resolve_tracking_uri(tracking_cfg)
    if store.startswith("sqlite:///") and not Path(store[len("sqlite:///"):]).is_file():
        raise ModelLoadError(f"--model {uri}: no MLflow store at {store} (nothing registered "
                             "there yet; set MLFLOW_TRACKING_URI or -s tracking.tracking_uri=...)")
    tracking.configure(tracking_cfg)
    return tracking.load_registered_model(uri)
