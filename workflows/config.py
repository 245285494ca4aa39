"""The whole params file: the method's sections plus the workflow's, assembled in one place.

:class:`WorkflowConfig` is :class:`amnet.config.Config` (data, model, loss, train, infer, eval)
with the sections only the wiring reads: ``ray`` (Ray Train scaling, ``workflows.ray_utils`` /
``workflows.ray_train``), ``sweep`` (Tune + Optuna, ``workflows.sweep``), ``tracking``
(MLflow, ``workflows.tracking``) and ``extract`` (``amnet extract``, defined in
``amnet.config.extract``). Every command loads its config here, so a params file is checked
against all of it, and ``amnet config --schema`` lists every key.

The sections are defined here, not in the packages that read them, so that loading a params
file imports neither Ray, MLflow nor the sweep or extraction code: a stage depends only on the
modules it runs (``tests/workflows/test_dvc_deps.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amnet import config as method
from amnet.config import Config, ConfigError, ExtractConfig
from amnet.config import setting as _f  # short: every field below uses it

__all__ = ["RayConfig", "SweepConfig", "TrackingConfig", "WorkflowConfig", "from_dict",
           "load_config", "schema_help"]


@dataclass
class RayConfig:
    """Ray Train scaling and fault tolerance."""

    address: str = _f("", help="existing cluster; empty = RAY_ADDRESS or a local cluster")
    num_workers: int = _f(0, ge=0, help="0 = plain in-process engine, no Ray; N >= 1 = Ray "
                                      "Train with N workers (train.batch_size is global)")
    use_gpu: bool = False
    cpus_per_worker: float = _f(1.0, gt=0)
    gpus_per_worker: float = _f(0.0, ge=0)
    local_cpus: int = _f(0, ge=0, help="CPUs for a local cluster; 0 = os.cpu_count()")
    max_failures: int = _f(1, ge=-1)
    storage_path: str = "outputs/ray_results"
    run_name: str = _f("", help="reuse only to resume a crashed run; empty = fresh name")
    startup_timeout_s: float = _f(60.0, gt=0)


@dataclass
class SweepConfig:
    """Ray Tune + Optuna search (Table 5 and GAM depth)."""

    num_samples: int = _f(4, ge=1)
    max_concurrent: int = _f(2, ge=1)
    epochs: int = _f(4, ge=1)
    grace_period: int = _f(1, ge=1)
    reduction_factor: int = _f(2, ge=2)
    seed: int = 0
    lambda1: list[float] = _f(factory=lambda: [0.5, 2.0])
    lambda2: list[float] = _f(factory=lambda: [0.5, 2.0])
    gam_depth: list[int] = _f(factory=lambda: [1, 3])
    lr: list[float] = _f(factory=list, help="[low, high] log-uniform; empty = fixed")
    weight_decay: list[float] = _f(factory=list, help="[low, high] log-uniform; empty = fixed")
    workers_per_trial: int = _f(1, ge=1, help=">1 runs a TorchTrainer inside each trial")
    cpus_per_trial: float = _f(1.0, gt=0)
    gpus_per_trial: float = _f(0.0, ge=0)
    best_params_out: str = "params/best.yaml"


@dataclass
class TrackingConfig:
    """MLflow."""

    tracking_uri: str = _f("", help="empty = MLFLOW_TRACKING_URI or sqlite:///<repo>/.mlflow/mlflow.db")
    artifact_root: str = _f(".mlflow/artifacts")
    experiment: str = "amnet"
    registered_model: str = "amnet-tal"
    champion_alias: str = "champion"


@dataclass
class WorkflowConfig(Config):
    """The method's config plus the workflow's sections; what every command is given."""

    ray: RayConfig = _f(factory=RayConfig)
    sweep: SweepConfig = _f(factory=SweepConfig)
    tracking: TrackingConfig = _f(factory=TrackingConfig)
    extract: ExtractConfig = _f(factory=ExtractConfig)

    def check(self, source: str) -> None:
        super().check(source)
        s = self.sweep
        for key in ("lambda1", "lambda2", "gam_depth", "lr", "weight_decay"):
            bounds = getattr(s, key)
            if bounds and (len(bounds) != 2 or bounds[0] > bounds[1]):
                raise ConfigError(f"{source}: 'sweep.{key}' must be [low, high] with low <= high "
                                  f"(or empty), got {bounds!r}")


def load_config(path: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = ()) -> WorkflowConfig:
    """The config of a params file (``None`` = built-in defaults) plus dotted overrides."""
    return method.load_config(path, overrides, schema=WorkflowConfig)


def from_dict(data: dict[str, Any], source: str = "<dict>") -> WorkflowConfig:
    """A :class:`WorkflowConfig` from nested plain data (a stored or shipped config)."""
    return method.from_dict(data, source, schema=WorkflowConfig)


def schema_help() -> str:
    """Every key of the params file, its type and its meaning (``amnet config --schema``)."""
    return method.schema_help(WorkflowConfig)
