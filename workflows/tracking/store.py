"""Where runs go: tracking URI resolution, a fail-fast health check, experiment get-or-create.

Embedded default: a SQLite store at ``<project>/.mlflow/mlflow.db`` and artifacts under
``<project>/.mlflow/artifacts`` (both absolute, so stages running in ``dvc exp`` temp dirs
still write to the project's store). ``cfg.tracking.tracking_uri`` or ``MLFLOW_TRACKING_URI``
points everything at a server instead; an unreachable server fails before training starts.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from amnet.errors import AmnetError
from workflows.config import WorkflowConfig

log = logging.getLogger(__name__)
logging.getLogger("alembic").setLevel(logging.WARNING)  # "Creating initial MLflow database tables"

__all__ = ["EXPERIMENT_KIND", "TrackingError", "check_tracking_server", "configure",
           "get_or_create_experiment", "project_root", "resolve_tracking_uri"]

#: The experiment tag MLflow 3's UI reads to pick an experiment's layout. Without it a new
#: experiment opens on the GenAI overview (traces, evaluations); "custom_model_development"
#: ("Machine learning" in the UI) opens it on the runs table, where training runs compare.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


class TrackingError(AmnetError):
    """The tracking store or a run in it is unusable (unreachable server, missing run...)."""


def project_root() -> Path:
    """The project the current process works for.

    ``DVC_ROOT`` wins: DVC sets it for every stage, and for ``dvc exp run --temp/--queue`` it
    points at the *parent* repo, not the throw-away executor dir. Otherwise the nearest
    ancestor of the CWD holding ``dvc.yaml`` or ``.git`` (else the CWD itself).
    """
    env = os.environ.get("DVC_ROOT")
    if env:
        return Path(env).resolve()
    cwd = Path.cwd().resolve()
    parts = cwd.parts
    for i in range(len(parts) - 2):  # a stage run by hand inside an exp executor
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    for d in (cwd, *cwd.parents):
        if (d / "dvc.yaml").exists() or (d / ".git").exists():
            return d
    return cwd


def resolve_tracking_uri(cfg: WorkflowConfig) -> str:
    """``cfg.tracking.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the embedded store.

    Relative SQLite paths are made absolute against :func:`project_root`; the file store
    (a bare path or ``file:``) is refused because MLflow 3 no longer accepts it.
    """
    uri = (cfg.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")).strip()
    if not uri:
        return f"sqlite:///{project_root() / '.mlflow' / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if not path.startswith("/"):  # sqlite:///rel.db -> absolute (stages may run elsewhere)
            return f"sqlite:///{(project_root() / path).resolve()}"
        return uri
    if "://" not in uri or uri.startswith("file:"):
        raise TrackingError(
            f"tracking URI {uri!r} is a file store, which MLflow 3 refuses; use "
            f"'sqlite:////abs/path/mlflow.db' or an http(s) server URL "
            f"(cfg.tracking.tracking_uri or MLFLOW_TRACKING_URI)")
    return uri


def _artifact_location(cfg: WorkflowConfig, uri: str, experiment: str) -> str | None:
    """Explicit artifact folder ``<artifact_root>/<experiment>`` for a new experiment
    (None = let a server choose)."""
    root = cfg.tracking.artifact_root
    if "://" in root:
        return f"{root.rstrip('/')}/{experiment}"
    if uri.startswith(("http://", "https://")):
        return None  # the server proxies artifacts (mlflow-artifacts:/)
    path = Path(root)
    if not path.is_absolute():
        path = project_root() / path
    return (path.resolve() / experiment).as_uri()


_CHECKED: set[str] = set()


def check_tracking_server(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, with the URI in the message, when the tracking store is unusable.

    http(s): ``GET <uri>/health`` must answer 200 within ``timeout_s``. SQLite: the folder
    of the database must be creatable and writable.
    """
    if uri.startswith(("http://", "https://")):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                if resp.status != 200:
                    raise TrackingError(f"MLflow tracking server {uri} answered {resp.status} "
                                        f"on /health")
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({reason}); start it, or unset "
                f"MLFLOW_TRACKING_URI / tracking.tracking_uri to use the embedded SQLite "
                f"store") from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"cannot create the MLflow store folder {folder}: {e}") from None
        if not os.access(folder, os.W_OK):
            raise TrackingError(f"MLflow store folder {folder} is not writable")


def configure(cfg: WorkflowConfig) -> str:
    """Point MLflow (tracking + registry) at the project's store; checked once per process."""
    uri = resolve_tracking_uri(cfg)
    if uri not in _CHECKED:
        check_tracking_server(uri)
        _CHECKED.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def get_or_create_experiment(cfg: WorkflowConfig, name: str | None = None) -> str:
    """Experiment id of ``name`` (default ``cfg.tracking.experiment``), created if missing.

    A fresh experiment gets an explicit, absolute artifact location; otherwise MLflow would
    derive one from the CWD (which is a temp dir under ``dvc exp run --temp``). Every
    experiment gets the :data:`EXPERIMENT_KIND` tag (unless it already has a kind), so the UI
    opens it on its training runs.
    """
    uri = configure(cfg)
    name = name or cfg.tracking.experiment
    client = MlflowClient(uri)
    key, kind = EXPERIMENT_KIND
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise TrackingError(f"experiment {name!r} is deleted in {uri}; restore it "
                                f"(mlflow experiments restore) or set tracking.experiment")
        if key not in exp.tags:  # created before the tag, or by hand: say what it holds
            client.set_experiment_tag(exp.experiment_id, key, kind)
        return exp.experiment_id
    loc = _artifact_location(cfg, uri, name)
    try:
        return client.create_experiment(name, artifact_location=loc, tags={key: kind})
    except MlflowException:  # another process created it between get and create
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def run_exists(run_id: str) -> bool:
    """Whether the configured store holds ``run_id``."""
    try:
        MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True
