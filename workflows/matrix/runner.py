"""Running the matrix on Ray: scheduling, resume, crash recording, the MLflow parent run.

Every (row × seed) cell of a :class:`~workflows.matrix.spec.Spec` is one Ray task — or, for
cells that differ only in their ``infer`` / ``eval`` settings (one
:func:`~workflows.matrix.spec.training_key`), one task that trains once and scores each
(:func:`~workflows.matrix.cell.run_cells`):

* **in-process cells** (``matrix.workers_per_cell: 0``): the task holds
  ``matrix.cpus_per_cell`` CPUs and trains with that many torch threads, so a local cluster of
  2 CPUs runs two 1-thread cells at once (two 2-thread trainings on 2 cores are several times
  slower than one after the other);
* **TorchTrainer cells** (``workers_per_cell: N``, meant for a cluster, ``RAY_ADDRESS``): the
  task is a light driver holding no CPU, and its N Train workers hold
  ``ray.cpus_per_worker`` each; no more cells are in flight than the cluster can hold worker
  groups for (:func:`workflows.ray_utils.max_concurrent`), so a driver never waits for CPUs
  that other drivers hold (no deadlock).

**Resume.** The driver writes each finished cell's folder ``<out>/cells/<key>/`` (result,
per-class AP, predictions; with ``matrix.keep_models`` the trained model as ``model.pt``, an
inference-only checkpoint) atomically as soon as it returns; the key is a hash of the cell's
resolved config and seed (:func:`~workflows.matrix.spec.cell_key`). A rerun skips every cell
whose folder holds a result with ``status: ok`` and reruns the others (missing, failed). A
cell to run whose training key has a kept ``model.pt`` (a scoring-only row added later)
scores that model instead of training again.

**Crashes.** A cell that raises, or whose worker dies, is recorded (``status: failed`` and a
one-line ``error`` in its result, the metrics file and the report); the other cells finish.

**MLflow.** One parent run in ``<tracking.experiment>-ablations`` (recorded in
``<out>/mlflow_parent.json`` and re-opened by a rerun), one child run per cell, created by the
cell itself with the tracking URI resolved here (a Ray worker's working directory and
environment are not the driver's).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amnet.io import read_json_object, staged_outputs, write_json
from workflows import ray_utils
from workflows.config import WorkflowConfig
from workflows.matrix.cell import STATUS_FAILED, STATUS_OK, cell_task, run_cells
from workflows.matrix.spec import Cell, Spec, training_key

__all__ = ["CELLS_DIR", "MODEL_FILE", "RESULT_FILE", "MatrixRun", "cell_dir", "finished_result",
           "run_matrix"]

log = logging.getLogger(__name__)

CELLS_DIR = "cells"
RESULT_FILE = "result.json"
MODEL_FILE = "model.pt"
PARENT_FILE = "mlflow_parent.json"


@dataclass
class MatrixRun:
    results: dict[str, dict[str, Any]]    # cell key -> result (as in its result.json)
    ran: list[str]                        # keys computed by this call
    skipped: list[str]                    # keys already finished before it
    failed: list[str]                     # keys whose result is failed
    parent_run_id: str | None
    seconds: float


def cell_dir(out_dir: str | Path, key: str) -> Path:
    return Path(out_dir) / CELLS_DIR / key


def finished_result(out_dir: str | Path, key: str) -> dict[str, Any] | None:
    """The stored result of cell ``key`` when it finished successfully, else None."""
    res = read_json_object(cell_dir(out_dir, key) / RESULT_FILE)
    if res is None or res.get("key") != key or res.get("status") != STATUS_OK:
        return None
    return res


def _write_cell(out_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Replace the cell's folder by its result and files, all at once."""
    files = result.pop("files", {}) or {}
    model = result.pop("model_bytes", None)
    with staged_outputs() as staged:
        d = staged.folder(cell_dir(out_dir, result["key"]), allowed_suffixes={".json", ".pt"})
        for name, obj in files.items():
            write_json(d / name, obj)
        if model is not None:
            (d / MODEL_FILE).write_bytes(model)
        write_json(d / RESULT_FILE, result)
    return result


def _kept_models(spec: Spec, out_dir: Path, results: dict[str, dict[str, Any]]
                 ) -> dict[str, str]:
    """Training key → a finished cell of that key whose folder keeps its model."""
    kept: dict[str, str] = {}
    for cell in spec.cells:
        if cell.key in results and (cell_dir(out_dir, cell.key) / MODEL_FILE).is_file():
            kept.setdefault(training_key(cell.cfg), cell.key)
    return kept


def _task_options(spec: Spec) -> tuple[dict[str, Any], ray_utils.Request]:
    """Ray options of one cell task and what one cell holds on the cluster."""
    s = spec.file.settings
    base = spec.cells[0].cfg
    if s.workers_per_cell >= 1:
        bundle = ray_utils.worker_resources(base)
        return {"num_cpus": 0}, ray_utils.Request("a matrix cell (Ray Train)", bundle,
                                                 s.workers_per_cell)
    res: dict[str, float] = {"CPU": s.cpus_per_cell}
    return {"num_cpus": s.cpus_per_cell}, ray_utils.Request("a matrix cell", res, 1)


def _code_env(cfg: WorkflowConfig) -> dict[str, Any]:
    """On a local cluster, workers import this checkout's code (the one the driver runs),
    not whatever copy the interpreter's site-packages points at."""
    if not ray_utils.is_local_cluster(cfg):
        return {}
    import workflows

    root = str(Path(workflows.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {"runtime_env": {"env_vars": {"PYTHONPATH": path}}}


def _remote_cell(tasks: list[dict[str, Any]], threads: int) -> list[dict[str, Any]]:
    """The body of a task: torch threads = the task's CPU share, then :func:`run_cells` (one
    training, one scoring per cell)."""
    import torch

    torch.set_num_threads(max(1, threads))
    cpu0 = time.process_time()
    results = run_cells(tasks)
    for result in results:
        result["torch_threads"] = torch.get_num_threads()
    # load-independent cost, the training's on the cell that trained
    results[0]["cpu_seconds"] = round(time.process_time() - cpu0, 3)
    return results


def _groups(cells: list[Cell]) -> list[list[Cell]]:
    """Cells by training key, in first-seen order (one task each)."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(training_key(cell.cfg), []).append(cell)
    return list(groups.values())


@contextlib.contextmanager
def _parent_run(cfg: WorkflowConfig, spec: Spec, out_dir: Path, track: bool
                ) -> Iterator[str | None]:
    if not track:
        yield None
        return
    from workflows import tracking

    recorded = (read_json_object(out_dir / PARENT_FILE) or {}).get("run_id")
    tracking.configure(cfg)
    run_id = recorded if recorded and tracking.run_exists(recorded) else None
    tags = {"amnet.kind": "matrix", "matrix.preset": spec.preset,
            "matrix.seeds": ",".join(map(str, spec.seeds))}
    with tracking.start_run(cfg, run_name=f"matrix-{spec.preset}", tags=tags,
                            run_id=run_id) as run:
        if run_id is None:
            # the experiment's dataset records exist before cells log them concurrently
            # (two first inserts of one dataset race in MLflow's SQL store)
            tracking.log_dataset_inputs(cfg, run.info.run_id, ("train", "val", "test"))
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / PARENT_FILE, {"run_id": run.info.run_id})
        yield run.info.run_id


def run_matrix(spec: Spec, out_dir: str | Path, *, track: bool = True) -> MatrixRun:
    """Run every unfinished cell of ``spec`` on Ray; returns every cell's result."""
    import ray

    from workflows.ray_train import portable_config

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    results: dict[str, dict[str, Any]] = {}
    todo: list[Cell] = []
    for cell in spec.cells:
        done = finished_result(out_dir, cell.key)
        if done is not None:
            results[cell.key] = done
        else:
            todo.append(cell)
    skipped = list(results)
    log.info("matrix %s: %d cells (%d rows x %d seeds), %d finished before, %d to run",
             spec.preset, len(spec.cells), len(spec.rows), len(spec.seeds), len(skipped),
             len(todo))
    base = portable_config(spec.cells[0].cfg)
    with _parent_run(base, spec, out_dir, track) as parent_id:
        if todo:
            owned = ray_utils.init_ray(base)
            try:
                _run_cells(spec, todo, base, parent_id, out_dir, results)
            finally:
                if owned:
                    ray.shutdown()
        failed = [k for k, r in results.items() if r.get("status") != STATUS_OK]
        if parent_id is not None:
            import mlflow

            mlflow.set_tags({"matrix.cells": str(len(spec.cells)),
                             "matrix.failed_cells": ",".join(failed) or "none"})
    return MatrixRun(results, [c.key for c in todo], skipped, failed, parent_id,
                     time.perf_counter() - t0)


def _run_cells(spec: Spec, todo: list[Cell], base: WorkflowConfig, parent_id: str | None,
               out_dir: Path, results: dict[str, dict[str, Any]]) -> None:
    import ray

    from workflows.ray_train import portable_config

    s = spec.file.settings
    options, request = _task_options(spec)
    ray_utils.check_fits(base, request)
    limit = ray_utils.max_concurrent(base, request.total(), len(todo)) \
        if s.workers_per_cell >= 1 else len(todo)
    remote = ray.remote(max_retries=0, **options, **_code_env(base))(_remote_cell)
    threads = max(1, int(s.cpus_per_cell))
    rows = spec.file.rows
    pending = _groups(todo)
    kept = _kept_models(spec, out_dir, results)
    inflight: dict[Any, list[Cell]] = {}
    while pending or inflight:
        while pending and len(inflight) < limit:
            group = pending.pop(0)
            source = kept.get(training_key(group[0].cfg))
            model = ((cell_dir(out_dir, source) / MODEL_FILE).read_bytes()
                     if source is not None else None)
            tasks = [cell_task(portable_config(cell.cfg), key=cell.key, rows=cell.rows,
                               seed=cell.seed, labels=[rows[r].label for r in cell.rows],
                               tables=sorted({t for r in cell.rows for t in rows[r].tables}),
                               parent_run_id=parent_id, log_model=s.log_models,
                               workers=s.workers_per_cell, keep_model=s.keep_models,
                               model=model if i == 0 else None, model_from=source)
                     for i, cell in enumerate(group)]
            inflight[remote.remote(tasks, threads)] = group
        ready, _ = ray.wait(list(inflight), num_returns=1)
        for ref in ready:
            group = inflight.pop(ref)
            try:
                got = ray.get(ref)
            except Exception as e:  # the worker died (OOM, signal): Ray's error, one line
                err = ray_utils.error_summary(e, 300)
                got = [{"key": c.key, "rows": c.rows, "seed": c.seed, "status": STATUS_FAILED,
                        "error": err, "metrics": {}, "run_id": None, "seconds": None}
                       for c in group]
            for cell, result in zip(group, got, strict=True):
                results[cell.key] = _write_cell(out_dir, result)
                log.info("cell %s (row %s, seed %d): %s%s in %s s [%d/%d]", cell.key,
                         cell.row, cell.seed, result["status"],
                         f" ({result['error']})" if result["error"] else "",
                         result.get("seconds"), len(results), len(spec.cells))
