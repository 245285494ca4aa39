"""Ray plumbing shared by Ray Train runs and Tune sweeps: environment, cluster, names, resources.

Importing this module sets the environment defaults below (:data:`ENV_DEFAULTS`) with
``os.environ.setdefault`` (a value the user exported wins). Ray itself is imported lazily, inside
the functions, so the variables are in place before any ``ray`` module reads them; Ray Train
forwards its ``RAY_TRAIN_*`` variables from the driver to the controller and the workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amnet.errors import AmnetError

if TYPE_CHECKING:
    from workflows.config import WorkflowConfig

log = logging.getLogger(__name__)

#: Defaults chosen on a 2-core machine: Train V2, no usage prompt or preemption watcher,
#: trials keep the driver CWD, a 30 s worker-group start timeout.
ENV_DEFAULTS: dict[str, str] = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",               # no usage-stats prompt or upload
    "RAY_TRAIN_V2_ENABLED": "1",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",               # trials keep the driver CWD: relative paths work
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "30",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
_USER_SET = frozenset(k for k in ENV_DEFAULTS if k in os.environ)
for _k, _v in ENV_DEFAULTS.items():
    os.environ.setdefault(_k, _v)

# Variables the workers of a *remote* cluster need too (a local cluster inherits the driver's).
_FORWARDED = (*ENV_DEFAULTS, "MLFLOW_TRACKING_URI")


class RayResourceError(AmnetError):
    """A Ray Train or Tune request that the cluster cannot hold (named, with the fix)."""


def configure_env(cfg: WorkflowConfig) -> None:
    """Apply config-driven variables unless the user exported them (env wins over params)."""
    if "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S" not in _USER_SET:
        os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = f"{cfg.ray.startup_timeout_s:g}"


def quiet_ray_logs() -> None:
    """Worker setup hook: silence per-report INFO lines and the PG cleaner's shutdown noise."""
    logging.getLogger(
        "ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)
    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "Checkpoint successfully created"
    spec = find_spec("ray.train.v2._internal.execution.context")
    if spec is not None and spec.origin:  # that module logs through getLogger(__file__)
        logging.getLogger(spec.origin).setLevel(logging.WARNING)


def cluster_address(cfg: WorkflowConfig) -> str:
    """``ray.address`` from params, else ``RAY_ADDRESS``, else empty (= start a local cluster)."""
    return cfg.ray.address or os.environ.get("RAY_ADDRESS", "")


def is_local_cluster(cfg: WorkflowConfig) -> bool:
    return cluster_address(cfg) in ("", "local")


def local_cpus(cfg: WorkflowConfig) -> int:
    return cfg.ray.local_cpus or os.cpu_count() or 1


def init_ray(cfg: WorkflowConfig, *, dashboard: bool = False) -> bool:
    """Connect to ``ray.address`` / ``RAY_ADDRESS`` or start a local cluster of ``local_cpus``.

    Returns True when this call started or connected Ray (the caller then owns
    ``ray.shutdown()``, which for a remote cluster only disconnects). An already initialised
    Ray (a test fixture, a Tune trial) is reused as is. ``dashboard=True`` is needed
    for Train-inside-Tune: its State API lets Ray remove the placement groups of trials that ASHA
    stops (Train inside Tune); without it they leak and the sweep deadlocks.
    """
    import ray

    configure_env(cfg)
    if ray.is_initialized():
        return False
    env_vars = {k: os.environ[k] for k in _FORWARDED if k in os.environ}
    runtime_env = {"worker_process_setup_hook": quiet_ray_logs, "env_vars": env_vars}
    address = cluster_address(cfg)
    t0 = time.perf_counter()
    if address and address != "local":
        ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING)
        log.info("connected to Ray cluster %s (%.1f s): %s", address,
                 time.perf_counter() - t0, _fmt(ray.cluster_resources()))
    else:
        # an explicit local cluster: keep an inherited RAY_ADDRESS from redirecting ray.init
        os.environ.pop("RAY_ADDRESS", None)
        ray.init(num_cpus=local_cpus(cfg), include_dashboard=dashboard, runtime_env=runtime_env,
                 logging_level=logging.WARNING)
        log.info("started a local Ray cluster (%.1f s): %s", time.perf_counter() - t0,
                 _fmt(ray.cluster_resources()))
    return True


def worker_resources(cfg: WorkflowConfig) -> dict[str, float]:
    """One Train worker's bundle, from ``ray.cpus_per_worker`` / ``ray.gpus_per_worker``."""
    res = {"CPU": float(cfg.ray.cpus_per_worker)}
    if cfg.ray.use_gpu:
        res["GPU"] = float(cfg.ray.gpus_per_worker or 1.0)
    return res


@dataclass(frozen=True)
class Request:
    """A group of identical bundles that must all be placed at once."""

    what: str
    bundle: dict[str, float]
    count: int

    def total(self) -> dict[str, float]:
        return {k: v * self.count for k, v in self.bundle.items() if v}


def check_fits(cfg: WorkflowConfig, request: Request) -> None:
    """Fail fast when the cluster can never hold ``request`` (instead of Ray retrying forever).

    Checks the totals and that one bundle fits on a single node. On a remote cluster that may
    autoscale, a shortfall is only logged; Ray Train's start-up timeout
    (``ray.startup_timeout_s``) plus ``controller_failure_limit=0`` then bounds the wait.
    """
    import ray

    have = {k: float(v) for k, v in ray.cluster_resources().items()}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    problems = []
    for key, need in request.total().items():
        if need > have.get(key, 0.0) + 1e-9:
            problems.append(f"{need:g} {key} in total but the cluster has {have.get(key, 0.0):g}")
    if nodes and not any(all(n.get(k, 0.0) + 1e-9 >= v for k, v in request.bundle.items() if v)
                         for n in nodes):
        problems.append(f"one bundle {_fmt(request.bundle)} fits on no single node")
    if not problems:
        return
    msg = (f"{request.what} asks for {request.count} x {_fmt(request.bundle)}: "
           + "; ".join(problems) + ". " + _advice(cfg, request))
    if is_local_cluster(cfg):
        raise RayResourceError(msg)
    log.warning("%s Waiting up to ray.startup_timeout_s=%gs for the cluster to scale up.",
                msg, cfg.ray.startup_timeout_s)


def _advice(cfg: WorkflowConfig, request: Request) -> str:
    if request.bundle.get("GPU"):
        hint = "set ray.use_gpu=false, or lower ray.num_workers / ray.gpus_per_worker"
    else:
        hint = "lower ray.num_workers / ray.cpus_per_worker (or sweep.workers_per_trial)"
    if is_local_cluster(cfg):
        hint += f", or size the local cluster with ray.local_cpus (now {local_cpus(cfg)})"
    else:
        hint += f", or add nodes to the cluster at {cluster_address(cfg)}"
    return "Fix: " + hint + "."


def max_concurrent(cfg: WorkflowConfig, per_trial: dict[str, float], wanted: int) -> int:
    """Cap concurrent trials so every running trial's bundles fit on the local cluster.

    With Train-inside-Tune the trial itself holds no CPU, so Tune would start more trials than
    the cluster can hold and their worker groups would time out waiting for CPUs.
    A remote cluster may autoscale, so there the params value is taken as given.
    """
    if not is_local_cluster(cfg):
        return wanted
    import ray

    have = ray.cluster_resources()
    fits = min((math.floor(have.get(k, 0.0) / v + 1e-9) for k, v in per_trial.items() if v),
               default=wanted)
    if fits < wanted:
        log.info("sweep.max_concurrent=%d lowered to %d: each trial needs %s of %s",
                 wanted, fits, _fmt(per_trial), _fmt(have))
    return max(1, min(wanted, fits))


def fresh_run_name(cfg: WorkflowConfig, prefix: str) -> str:
    """``cfg.ray.run_name`` when set (resume), else a name never used before.

    Train V2 resumes automatically by run name, and a *finished* run of the same name silently
    trains nothing (it resumes at its end), so every execution gets
    ``<prefix>-<params hash>-<timestamp>-<random>``; ``DVC_EXP_NAME`` is added when DVC sets it.
    """
    if cfg.ray.run_name:
        return cfg.ray.run_name
    digest = hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode())
    parts = [prefix, digest.hexdigest()[:8], time.strftime("%Y%m%d-%H%M%S"), secrets.token_hex(2)]
    if exp := os.environ.get("DVC_EXP_NAME"):
        parts.insert(1, exp)
    return "-".join(parts)


def storage_path(cfg: WorkflowConfig) -> str:
    """``ray.storage_path`` made absolute (Ray requires it); URIs (``s3://``...) pass through."""
    path = cfg.ray.storage_path
    if "://" in path:
        return path
    return str(Path(path).expanduser().resolve())


def error_summary(e: BaseException, limit: int = 500) -> str:
    """The line that names the root error in Ray's wrapped exceptions (their last ``...Error``
    line; Ray prepends actor and traceback text), else the last line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln:
            return ln[:limit]
    return (lines[-1] if lines else type(e).__name__)[:limit]


def _fmt(res: dict[str, Any]) -> str:
    keep = {k: v for k, v in res.items() if k in ("CPU", "GPU", "memory") or k.startswith("TPU")}
    return ", ".join(f"{k}={v:g}" if k != "memory" else f"memory={v / 2**30:.1f}GiB"
                     for k, v in sorted(keep.items()))
