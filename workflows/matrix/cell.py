"""One cell of the matrix: train one (row config, seed) on the training part, validate on the
held-out validation part, score the test split for reporting.

Runs wherever Ray puts it (a task on this machine or a cluster node), so it writes nothing
the driver needs: the result, the per-class AP and the predictions come back as values and
the driver writes them (:mod:`workflows.matrix.runner`). Every cell is one MLflow run
(``tracking.tracking_uri`` already resolved by the driver) under the matrix's parent run,
tagged ``row``, ``rows``, ``seed``, ``tables``, ``label`` and ``amnet.cell_key``.

A cell that raises is not an error of the matrix: :func:`run_cell` returns
``status: "failed"`` with a one-line ``error``, its MLflow run ends FAILED with the line as
tag ``amnet.error``, and the other cells go on.

:func:`run_cells` runs cells that share one training (same
:func:`~workflows.matrix.spec.training_key`, different ``infer`` / ``eval``): the first trains
(its MLflow run holds the per-epoch curve), each scores the same weights on the validation and
test splits under its own settings, and the others' results and runs name the training cell
(``trained_in``, tag ``amnet.trained_in``). A failed training fails them all. With
``matrix.keep_models`` the trained weights come back too (an inference-only checkpoint, the
runner keeps it as ``model.pt`` in the cell's folder), and a task given such a model scores it
instead of training.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from workflows.config import WorkflowConfig, from_dict

__all__ = ["STATUS_FAILED", "STATUS_OK", "cell_task", "error_line", "run_cell", "run_cells"]

log = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_FAILED = "failed"


def error_line(e: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` (one line, bounded)."""
    msg = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    return f"{type(e).__name__}: {msg}"[:limit] if msg else type(e).__name__


def cell_task(cfg: WorkflowConfig, *, key: str, rows: list[str], seed: int, labels: list[str],
              tables: list[str], parent_run_id: str | None, log_model: bool,
              workers: int, keep_model: bool = False, model: bytes | None = None,
              model_from: str | None = None) -> dict[str, Any]:
    """The arguments of :func:`run_cell` as one plain mapping (what a Ray task receives).

    ``keep_model``: return the trained weights (``model_bytes`` of the result); ``model``:
    the bytes of a kept model of this cell's training key (cell ``model_from``) to score
    instead of training (only the group's first task's is used)."""
    return {"cfg": cfg.to_dict(), "key": key, "rows": list(rows), "seed": int(seed),
            "labels": list(labels), "tables": list(tables), "parent_run_id": parent_run_id,
            "log_model": bool(log_model), "workers": int(workers),
            "keep_model": bool(keep_model), "model": model, "model_from": model_from}


def run_cell(task: dict[str, Any]) -> dict[str, Any]:
    """Run one cell (``task`` from :func:`cell_task`); never raises for the cell's own errors.

    Returns ``{"key", "rows", "seed", "status", "error", "metrics" (``val/…`` and ``test/…``),
    "seconds", "run_id", "files": {"per_class_ap.json": …, "predictions.json": …}}``.
    """
    return run_cells([task])[0]


def run_cells(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cells with one training key (module docstring): train once, score each; one result per
    task, as :func:`run_cell`'s (``trained_in``: the key of the cell that trained, on the
    others)."""
    shared: dict[str, Any] = {}
    trained_in = tasks[0]["key"]
    if tasks[0].get("model") is not None:
        try:
            cfg0 = from_dict(tasks[0]["cfg"], f"matrix cell {tasks[0]['rows'][0]}")
            shared["model"], shared["classes"] = _load_kept(tasks[0]["model"], cfg0)
            trained_in = tasks[0]["model_from"]
        except Exception as e:  # a damaged or foreign model.pt costs a training, not the cells
            log.warning("matrix cell %s: the kept model of cell %s does not load (%s); "
                        "training instead", tasks[0]["key"], tasks[0]["model_from"],
                        error_line(e))
    results = []
    for i, task in enumerate(tasks):
        t0 = time.perf_counter()
        result: dict[str, Any] = {"key": task["key"], "rows": task["rows"],
                                  "seed": task["seed"], "status": STATUS_FAILED, "error": "",
                                  "metrics": {}, "run_id": None, "files": {}}
        if i or trained_in != task["key"]:
            result["trained_in"] = trained_in
        try:
            if "error" in shared:
                raise RuntimeError(f"its training (cell {tasks[0]['key']}) failed: "
                                   f"{shared['error']}")
            cfg = from_dict(task["cfg"], f"matrix cell {task['rows'][0]} seed {task['seed']}")
            if task["parent_run_id"] is None:
                metrics, files = _train_and_score(cfg, task, None, shared)
            else:
                metrics, files = _tracked(cfg, task, result, shared)
            result.update(status=STATUS_OK, metrics=metrics, files=files)
        except Exception as e:  # the cell's own failure: recorded, the matrix goes on
            result["error"] = error_line(e)
            if not i and "model" not in shared:  # the training failed: so do the others
                shared["error"] = result["error"]
            log.warning("matrix cell %s (row %s, seed %s) failed: %s", task["key"],
                        task["rows"][0], task["seed"], result["error"])
        result["seconds"] = round(time.perf_counter() - t0, 3)
        results.append(result)
    if "model_bytes" in shared:
        results[0]["model_bytes"] = shared["model_bytes"]
    return results


def _tracked(cfg: WorkflowConfig, task: dict[str, Any], result: dict[str, Any],
             shared: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    import mlflow

    from workflows import tracking

    tags = {"row": task["rows"][0], "rows": ",".join(task["rows"]), "seed": task["seed"],
            "tables": ",".join(task["tables"]), "label": " / ".join(task["labels"]),
            "amnet.kind": "matrix-cell", "amnet.cell_key": task["key"]}
    if "trained_in" in result:
        tags["amnet.trained_in"] = result["trained_in"]
    with tracking.start_run(cfg, run_name=f"{task['rows'][0]}-seed{task['seed']}",
                            parent_run_id=task["parent_run_id"], tags=tags) as run:
        result["run_id"] = run.info.run_id
        try:
            tracking.log_dataset_inputs(cfg, run.info.run_id, ("train", "val", "test"))
            metrics, files = _train_and_score(cfg, task, run.info.run_id, shared)
        except Exception as e:
            mlflow.set_tag("amnet.error", error_line(e))
            raise
        mlflow.log_metrics({k: v for k, v in metrics.items() if k.startswith("test/")},
                           step=cfg.train.epochs)
        if "trained_in" in result:  # scored, not trained: no epoch curve, so its val scores
            mlflow.log_metrics({k: v for k, v in metrics.items()
                                if k.startswith("val/")}, step=cfg.train.epochs)
        mlflow.set_tag(tracking.TAG_FINGERPRINT, tracking.test_set_fingerprint(cfg))
    return metrics, files


def _train_and_score(cfg: WorkflowConfig, task: dict[str, Any], run_id: str | None,
                     shared: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """Train (in this process, or a TorchTrainer of ``task['workers']`` workers) unless
    ``shared`` holds the group's trained model, then the validation scores (the last epoch's,
    or this cell's scoring of the shared model) and the test scores; the files' contents."""
    from amnet import engine
    from amnet.device import resolve_device
    from amnet.io import read_json
    from workflows.evaluate import score_model

    with tempfile.TemporaryDirectory(prefix="amnet-cell-") as tmp:
        out = Path(tmp)
        ckpt = None
        if "model" in shared:
            model, classes = shared["model"], shared["classes"]
            val = engine.evaluate(model, _val_split(cfg, shared), cfg,
                                  resolve_device(cfg.train.device))[0]
            last = {f"{engine.VAL_PREFIX}{k}": v for k, v in val.items()}
        else:
            if task["workers"] >= 1:
                model, classes, last, ckpt = _train_ray(cfg, task, run_id)
            else:
                model, classes, last, ckpt, shared["val_ds"] = _train_here(cfg, run_id, out)
            shared.update(model=model, classes=classes)
            if task.get("keep_model"):
                engine.inference_checkpoint(ckpt, out / "kept.pt")
                shared["model_bytes"] = (out / "kept.pt").read_bytes()
        result, _ = score_model(cfg, model, classes, metrics_path=out / "test.json",
                                predictions_path=out / "predictions.json",
                                per_class_path=out / "per_class_ap.json",
                                name=task["rows"][0])
        files = {"per_class_ap.json": read_json(out / "per_class_ap.json"),
                 "predictions.json": read_json(out / "predictions.json")}
        if run_id is not None and task["log_model"] and ckpt is not None:
            from workflows import tracking

            tracking.log_trained_model(cfg, ckpt)
    metrics = {k: float(v) for k, v in last.items() if k.startswith(engine.VAL_PREFIX)}
    metrics.update({f"test/{k}": float(v) for k, v in result.metrics().items()})
    return metrics, files


def _load_kept(data: bytes, cfg: WorkflowConfig) -> tuple[Any, list[str]]:
    """A kept model (inference checkpoint bytes) → (model in eval mode, class names); refused
    unless it was trained with ``cfg``'s training settings (its stored config says)."""
    from amnet.engine import load_model_for_inference
    from workflows.matrix.spec import training_key

    with tempfile.TemporaryDirectory(prefix="amnet-kept-") as tmp:
        path = Path(tmp) / "model.pt"
        path.write_bytes(data)
        model, stored, classes = load_model_for_inference(path, schema=WorkflowConfig)
    if training_key(stored) != training_key(cfg):
        raise ValueError("it was trained with other settings than this cell's")
    return model, list(classes)


def _val_split(cfg: WorkflowConfig, shared: dict[str, Any]) -> Any:
    """The validation split the shared model was validated on (rebuilt after a Ray training)."""
    if shared.get("val_ds") is None:
        from amnet.data.dataset import train_val_datasets

        shared["val_ds"] = train_val_datasets(cfg.data, seed=cfg.train.seed)[1]
    return shared["val_ds"]


def _train_here(cfg: WorkflowConfig, run_id: str | None, out: Path
                ) -> tuple[Any, list[str], dict, Path, Any]:
    from amnet import engine
    from amnet.data.dataset import train_val_datasets

    train_ds, val_ds = train_val_datasets(cfg.data, seed=cfg.train.seed)
    callback = None
    if run_id is not None:
        from workflows import tracking

        callback = tracking.epoch_logger(run_id)
    res = engine.fit(cfg, train_ds, val_ds, callback=callback, checkpoint_dir=out / "ckpt")
    return res["state"].eval_model, list(res["classes"]), dict(res["metrics"]), \
        Path(res["checkpoint"]), val_ds


def _train_ray(cfg: WorkflowConfig, task: dict[str, Any], run_id: str | None
               ) -> tuple[Any, list[str], dict, Path]:
    """The cell as a TorchTrainer (the project's one factory) of ``workers`` workers."""
    from amnet.engine import load_model_for_inference
    from workflows.ray_train import run_ray_training

    cfg = cfg.replace(f"ray.num_workers={task['workers']}", "ray.run_name=")
    res = run_ray_training(cfg, mlflow_run_id=run_id, prefix=f"matrix-{task['key']}")
    model, _, classes = load_model_for_inference(res.checkpoint)
    return model, list(classes), dict(res.metrics), res.checkpoint
