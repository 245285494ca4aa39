"""Ray Train (V2) data-parallel training of AMNet: the launcher and the per-worker loop.

:func:`train_loop` runs :func:`amnet.engine.fit` (the one epoch loop) through its hooks, in every
Ray Train worker (DDP over gloo on CPU, nccl on GPU) and, with one "worker", inside an in-process
Tune trial (``workflows.sweep``); only its ``report`` adapter differs (``ray.train.report`` vs
``ray.tune.report``: inside a Tune trial that is not a Train worker, ``ray.train.report``
raises).

Equivalence of 1 and N workers at the same global batch (``train.batch_size`` is global; each
worker takes ``batch_size / N``): every worker draws the same seeded permutation per epoch and
takes every N-th index (``DistributedSampler``), so the union of the N micro-batches of step k
is the 1-worker batch k; DDP averages gradients and the engine all-reduces the positive count
that normalises the losses, so the averaged gradient equals the 1-worker gradient up to float
summation order. AMNet has no BatchNorm (LayerNorm only), so nothing else couples the samples.

Rank 0 alone writes checkpoints (every epoch, through Ray's checkpoint API, so a restarted worker
group resumes from the last registered one) and MLflow records; every rank calls
``ray.train.report`` because it is a collective.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from amnet.errors import AmnetError, ConfigError
from workflows import ray_utils
from workflows.config import WorkflowConfig, from_dict

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


class RayTrainError(AmnetError):
    """A Ray Train run that failed after its retries (names the run, how to resume it)."""


# --------------------------------------------------------------------------- the loop

@dataclass
class LoopContext:
    """Where :func:`train_loop` runs: rank / world, device, and its reporting adapter.

    ``report(metrics, checkpoint_dir, epoch)`` is called on every rank once per epoch;
    ``checkpoint_dir`` is a folder holding ``checkpoint.pt`` on rank 0 and None elsewhere.
    ``resume_dir`` is the folder of the checkpoint to continue from (None = fresh start).
    ``validate``: the test-split mAP every ``train.eval_every`` epochs and after the last
    (as :func:`amnet.engine.fit`), computed on rank 0 and broadcast.
    """

    rank: int
    world_size: int
    device: torch.device
    report: Callable[[dict[str, float], Path | None, int], None]
    resume_dir: Path | None = None
    mlflow_run_id: str | None = None
    validate: bool = True


def per_worker_batch(cfg: WorkflowConfig, world_size: int) -> int:
    """``train.batch_size`` is the global batch; each of ``world_size`` workers takes a share."""
    if cfg.train.batch_size % world_size:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} (the global batch) must be "
                          f"divisible by the number of workers ({world_size})")
    return cfg.train.batch_size // world_size


def _mean_across_workers(metrics: dict[str, float], world_size: int,
                         device: torch.device) -> dict[str, float]:
    """Average per-worker epoch means over the workers (every rank gets the result)."""
    if world_size == 1 or not dist.is_initialized():
        return dict(metrics)
    keys = sorted(k for k, v in metrics.items() if isinstance(v, int | float))
    t = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.to(device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) / world_size for k, v in zip(keys, t.tolist(), strict=True)}


def _broadcast(obj: Any, world_size: int) -> Any:
    if world_size == 1 or not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def train_loop(cfg: WorkflowConfig, ctx: LoopContext) -> dict[str, Any]:
    """Train ``cfg.train.epochs`` epochs on this worker's shard; report each epoch.

    The epoch loop is :func:`amnet.engine.fit`'s; this worker plugs in its shard
    (``DistributedSampler``, ``batch_size / N``), the DDP wrapper, the mean of the metrics
    over the workers, rank-0 validation (broadcast), and per epoch: MLflow (rank 0, epochs
    not yet logged), the checkpoint (rank 0) and ``ctx.report`` (every rank).

    Returns ``{"history": [per-epoch metrics], "final_epoch": e, "resumed_from": e0}``.
    """
    from torch.utils.data.distributed import DistributedSampler

    from amnet import engine
    from amnet.data.dataset import train_val_datasets

    rank, ws, device = ctx.rank, ctx.world_size, ctx.device
    batch = per_worker_batch(cfg, ws)
    if rank > 0:  # the engine's per-epoch line: once per group (rank 0), not N times
        logging.getLogger("amnet.engine").setLevel(logging.WARNING)
    engine.seed_everything(cfg.train.seed)
    # evaluation runs on rank 0 only (the model is identical on every rank after each step),
    # on the validation part of the training subset (amnet.data.split), never on Test
    train_ds, val_ds = train_val_datasets(cfg.data, seed=cfg.train.seed,
                                          validation=ctx.validate and rank == 0,
                                          warn_untrained=rank == 0)  # one warning, not N
    sampler = DistributedSampler(train_ds, num_replicas=ws, rank=rank, shuffle=True,
                                 seed=cfg.train.seed, drop_last=False)
    classes = list(train_ds.classes)
    history: list[dict[str, float]] = []
    resumed_from = -1

    def on_resume(state: engine.TrainState, info: dict[str, Any]) -> None:
        nonlocal resumed_from
        resumed_from = state.epoch - 1
        history.extend(info.get("history", []))
        log.info("rank %d resumes after epoch %d", rank, resumed_from)

    def wrap(model: torch.nn.Module) -> torch.nn.Module:
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)  # phase "mask" touches the AME only

    def validate(state: engine.TrainState) -> dict[str, float] | None:
        val = None
        if val_ds is not None:  # rank 0
            val, _, _ = engine.evaluate(state.eval_model, val_ds, cfg, device)
        return _broadcast(val, ws)

    log_epoch = None
    if rank == 0 and ctx.mlflow_run_id:
        from workflows import tracking

        tracking.configure(cfg)
        # a restarted run / trial replays the epochs after its last registered checkpoint
        log_epoch = tracking.epoch_logger(ctx.mlflow_run_id,
                                          skip=tracking.logged_steps(ctx.mlflow_run_id))

    def on_epoch_end(epoch: int, metrics: dict[str, float], state: engine.TrainState) -> None:
        metrics.update(epoch=epoch, resumed_from=resumed_from)
        history.append(metrics)
        if log_epoch is not None:
            log_epoch(epoch, {k: v for k, v in metrics.items() if k not in ("epoch",
                                                                             "resumed_from")})
        t2 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            ckpt_dir = None
            if rank == 0:
                ckpt_dir = Path(tmp)
                engine.save_checkpoint(ckpt_dir / CHECKPOINT_FILE, state, cfg,
                                       extra={"classes": classes, "history": history})
            ctx.report(dict(metrics), ckpt_dir, epoch)
        metrics["time/report_s"] = time.perf_counter() - t2  # checkpoint + report (bench)

    hooks = engine.FitHooks(
        sampler=sampler, batch_size=batch, wrap_model=wrap if ws > 1 else None,
        reduce_metrics=lambda m: _mean_across_workers(m, ws, device),
        validate=validate if ctx.validate else None, on_resume=on_resume,
        on_epoch_end=on_epoch_end)
    resume = ctx.resume_dir / CHECKPOINT_FILE if ctx.resume_dir is not None else None
    res = engine.fit(cfg, train_ds, val_ds, resume=resume, device=device, hooks=hooks)
    return {"history": history, "final_epoch": res["state"].epoch - 1,
            "resumed_from": resumed_from}


# --------------------------------------------------------------------------- Ray Train

def _train_report(metrics: dict[str, float], ckpt_dir: Path | None, epoch: int) -> None:
    import ray.train

    ckpt = ray.train.Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None
    ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=f"epoch_{epoch:04d}")


def train_worker(config: dict[str, Any]) -> dict[str, Any]:
    """The per-worker function handed to ``TorchTrainer`` (module level: pickled by name)."""
    import ray.train
    import ray.train.torch

    cfg = from_dict(config["cfg"], "<ray train config>")
    tctx = ray.train.get_context()
    device = ray.train.torch.get_device() if cfg.ray.use_gpu else torch.device("cpu")
    if device.type == "cuda":  # nccl collectives (and broadcast_object_list) use this device
        torch.cuda.set_device(device)
    ckpt = ray.train.get_checkpoint()
    opened = ckpt.as_directory() if ckpt is not None else contextlib.nullcontext(None)
    with opened as resume:
        ctx = LoopContext(rank=tctx.get_world_rank(), world_size=tctx.get_world_size(),
                          device=device, report=_train_report,
                          resume_dir=Path(resume) if resume else None,
                          mlflow_run_id=config.get("mlflow_run_id"),
                          validate=config.get("validate", True))
        return train_loop(cfg, ctx)


def torch_trainer(cfg: WorkflowConfig, name: str, *, mlflow_run_id: str | None = None,
                  validate: bool = True, callbacks: list[Any] | None = None) -> Any:
    """The one ``TorchTrainer`` of this project (``amnet train`` and sweep trials with
    ``sweep.workers_per_trial > 1``): :func:`train_worker` on ``cfg.ray.num_workers`` workers.

    ``name`` is the run name under ``ray.storage_path``: Train V2 resumes a run of the same
    name from its last checkpoint. ``callbacks``: Ray Train callbacks (e.g. Tune's report one).
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    class Trainer(TorchTrainer):
        def _register_sigint_handler(self, controller: Any) -> None:
            # Train V2's own Ctrl-C handler aborts the run and then exits the driver from
            # inside the handler (status 1, no clean-up). Ours aborts it the same way and
            # raises KeyboardInterrupt, so `amnet train` can end its MLflow run as KILLED and
            # print how to resume (the run's checkpoints stay: it resumes by name).
            import signal

            import ray

            def on_sigint(signum: int, frame: Any) -> None:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: no effect
                with contextlib.suppress(ray.exceptions.RayActorError):  # it exits on abort
                    ray.get(controller.abort.remote())
                raise KeyboardInterrupt

            signal.signal(signal.SIGINT, on_sigint)

    bundle = ray_utils.worker_resources(cfg)
    return Trainer(
        train_worker,
        train_loop_config={"cfg": cfg.to_dict(), "mlflow_run_id": mlflow_run_id,
                           "validate": validate},
        scaling_config=ScalingConfig(num_workers=cfg.ray.num_workers, use_gpu=cfg.ray.use_gpu,
                                     resources_per_worker=bundle),
        run_config=RunConfig(
            name=name, storage_path=ray_utils.storage_path(cfg),
            # controller_failure_limit=0: a worker group that cannot start (resources) raises
            # after ray.startup_timeout_s instead of retrying forever.
            failure_config=FailureConfig(max_failures=cfg.ray.max_failures,
                                         controller_failure_limit=0),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            logging_config=LoggingConfig(log_level="WARNING"),
            callbacks=list(callbacks or [])))


@dataclass
class RayTrainResult:
    run_name: str
    path: str                      # storage_path/run_name (Ray's run folder)
    checkpoint: Path               # the last epoch's checkpoint.pt (local file)
    metrics: dict[str, float]      # rank 0's last reported metrics
    history: list[dict[str, float]]
    resumed_from: int              # -1 unless this execution continued a checkpoint


def portable_config(cfg: WorkflowConfig) -> WorkflowConfig:
    """Paths made absolute for processes whose CWD is not ours (workers, trials).

    Only relative paths that exist here are rewritten; on a multi-node cluster they must be
    on shared storage (or already absolute/remote) anyway.
    """
    from workflows import tracking

    over = []
    root = Path(cfg.data.root)
    if not root.is_absolute() and root.exists():
        over.append(f"data.root={root.resolve()}")
    over.append(f"tracking.tracking_uri={tracking.resolve_tracking_uri(cfg)}")
    art = cfg.tracking.artifact_root
    if "://" not in art and not Path(art).is_absolute():
        over.append(f"tracking.artifact_root={(tracking.project_root() / art).resolve()}")
    over.append(f"ray.storage_path={ray_utils.storage_path(cfg)}")
    return cfg.replace(*over)


def check_train_request(cfg: WorkflowConfig) -> None:
    """Config-level checks that need no cluster (clear message instead of a worker crash)."""
    if cfg.ray.num_workers < 1:
        raise ConfigError("ray.num_workers must be >= 1 for Ray Train (0 = in-process engine)")
    per_worker_batch(cfg, cfg.ray.num_workers)
    if cfg.train.amp == "fp16" and not cfg.ray.use_gpu:
        raise ConfigError("train.amp=fp16 needs GPUs (ray.use_gpu=true); use bf16 or off on CPU")


def registered_epoch(run_dir: Path) -> int | None:
    """Last epoch registered in an existing V2 run folder (None if none)."""
    snap = run_dir / "checkpoint_manager_snapshot.json"
    if not snap.is_file():
        return None
    try:
        latest = json.loads(snap.read_text()).get("latest_checkpoint_result") or {}
    except (OSError, ValueError):  # Ray rewrites it in place: caught mid-write, or vanished
        return None
    epoch = (latest.get("metrics") or {}).get("epoch")
    return int(epoch) if epoch is not None else None


def run_ray_training(cfg: WorkflowConfig, *, mlflow_run_id: str | None = None,
                     validate: bool = True, prefix: str = "train") -> RayTrainResult:
    """Train under ``TorchTrainer`` with ``cfg.ray.num_workers`` workers; blocks until done.

    Connects to ``ray.address`` / ``RAY_ADDRESS`` or starts a local cluster; checks the request
    fits first (a mis-sized request raises :class:`~workflows.ray_utils.RayResourceError` at
    once). A fresh run name per call unless ``ray.run_name`` is set, which resumes that run
    from its last checkpoint. ``mlflow_run_id``: rank 0 logs each epoch's metrics there.
    ``validate``: test-split mAP as in :func:`amnet.engine.fit` (False: none).
    """
    import ray

    check_train_request(cfg)
    cfg = portable_config(cfg)
    name = ray_utils.fresh_run_name(cfg, prefix)
    storage = ray_utils.storage_path(cfg)
    if cfg.ray.run_name and "://" not in storage:
        done = registered_epoch(Path(storage) / name)
        if done is not None and done >= cfg.train.epochs - 1:
            log.warning("Ray run %s already finished epoch %d of %d: nothing left to train "
                        "(raise train.epochs to extend it, or clear ray.run_name for a "
                        "fresh run)", name, done + 1, cfg.train.epochs)
    owned = ray_utils.init_ray(cfg)
    try:
        bundle = ray_utils.worker_resources(cfg)
        ray_utils.check_fits(cfg, ray_utils.Request("Ray Train", bundle, cfg.ray.num_workers))
        log.info("Ray Train run %s: %d worker(s) x %s, storage %s", name,
                 cfg.ray.num_workers, bundle, storage)
        trainer = torch_trainer(cfg, name, mlflow_run_id=mlflow_run_id, validate=validate)
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as e:
            raise RayTrainError(
                f"Ray Train run {name!r} failed after ray.max_failures={cfg.ray.max_failures} "
                f"restart(s): {ray_utils.error_summary(e)}. Resume it from its last checkpoint "
                f"with -s ray.run_name={name}") from e
    finally:
        if owned:
            ray.shutdown()
    out = result.return_value or {}
    if result.checkpoint is None:
        raise RayTrainError(f"Ray Train run {name!r} finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        ckpt = Path(d) / CHECKPOINT_FILE
        if "://" in storage:  # remote storage: keep a local copy for the caller
            local = Path(cfg.train.checkpoint_dir) / name
            local.mkdir(parents=True, exist_ok=True)
            ckpt = Path(shutil.copyfile(ckpt, local / CHECKPOINT_FILE))
    return RayTrainResult(run_name=name, path=str(result.path), checkpoint=ckpt,
                          metrics=dict(result.metrics or {}),
                          history=list(out.get("history", [])),
                          resumed_from=int(out.get("resumed_from", -1)))
