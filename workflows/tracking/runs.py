"""MLflow helpers: one place that knows where runs go and what every run records.

Embedded default: a SQLite store at ``<project>/.mlflow/mlflow.db`` and artifacts under
``<project>/.mlflow/artifacts`` (both absolute, so stages running in ``dvc exp`` temp dirs
still write to the project's store). ``cfg.tracking.tracking_uri`` or ``MLFLOW_TRACKING_URI``
points everything at a server instead; an unreachable server fails before training starts.

Every run started through :func:`start_run` carries the flattened config as params, the git
commit, and the DVC hash + manifest hash of the feature set it read. Metric names follow the
project convention (``loss/cls``, ``lr``, ``mAP_0.5``, ``average_mAP``; ``@`` is rejected by
MLflow and replaced here).

Public API (used by train / evaluate / ablations / register / ray_train / sweep)::

    resolve_tracking_uri(cfg) -> str
    check_tracking_server(uri, timeout_s=5) -> None
    configure(cfg) -> str
    get_or_create_experiment(cfg, name=None) -> str
    start_run(cfg, *, run_name, tags=None, parent_run_id=None, nested=False, run_id=None)
    epoch_logger(run_id) -> Callable[[int, dict], None]
    log_evaluation(map_result, predictions_json, plots, *, prefix="test/", run_id=None)
    log_model(model, example_feats, example_mask, class_names, cfg, *, checkpoint=None)
    load_registered_model(model_uri) -> (model, cfg, class_names)
    training_run(cfg, out_dir, params_file=None, resume=False) -> TrackedRun  (context manager)
    feature_set_tags(cfg) / test_set_fingerprint(cfg)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Quiet, non-interactive defaults (stack.md): set before mlflow is imported anywhere.
for _k, _v in {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GIT_PYTHON_REFRESH": "quiet",
}.items():
    os.environ.setdefault(_k, _v)

import mlflow  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from mlflow.entities import Metric, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from amnet.config import Config, from_dict  # noqa: E402
from amnet.errors import AmnetError, ModelLoadError  # noqa: E402

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

log = logging.getLogger(__name__)
logging.getLogger("alembic").setLevel(logging.WARNING)  # "Creating initial MLflow database tables"

__all__ = [
    "MODEL_INFO_FILE",
    "PackedOutput",
    "TrackingError",
    "check_tracking_server",
    "configure",
    "epoch_logger",
    "feature_set_tags",
    "get_or_create_experiment",
    "load_registered_model",
    "log_evaluation",
    "log_model",
    "metric_name",
    "project_root",
    "resolve_tracking_uri",
    "start_run",
    "test_set_fingerprint",
    "training_run",
]

MODEL_INFO_FILE = "amnet_model.json"  # extra file logged next to every model: cfg + class names
TAG_MODEL_URI = "amnet.model_uri"
TAG_FINGERPRINT = "amnet.test_fingerprint"
_NAME_BAD = re.compile(r"[^0-9A-Za-z_\-. :/]")


class TrackingError(AmnetError):
    """The tracking store or a run in it is unusable (unreachable server, missing run...)."""


# --------------------------------------------------------------------------- locations

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


def resolve_tracking_uri(cfg: Config) -> str:
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


def _artifact_location(cfg: Config, uri: str, experiment: str) -> str | None:
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


def configure(cfg: Config) -> str:
    """Point MLflow (tracking + registry) at the project's store; checked once per process."""
    uri = resolve_tracking_uri(cfg)
    if uri not in _CHECKED:
        check_tracking_server(uri)
        _CHECKED.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def get_or_create_experiment(cfg: Config, name: str | None = None) -> str:
    """Experiment id of ``name`` (default ``cfg.tracking.experiment``), created if missing.

    A fresh experiment gets an explicit, absolute artifact location; otherwise MLflow would
    derive one from the CWD (which is a temp dir under ``dvc exp run --temp``).
    """
    uri = configure(cfg)
    name = name or cfg.tracking.experiment
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise TrackingError(f"experiment {name!r} is deleted in {uri}; restore it "
                                f"(mlflow experiments restore) or set tracking.experiment")
        return exp.experiment_id
    loc = _artifact_location(cfg, uri, name)
    try:
        return client.create_experiment(name, artifact_location=loc)
    except MlflowException:  # another process created it between get and create
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


# --------------------------------------------------------------------------- provenance

def _git(*args: str, cwd: Path) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def git_tags(cwd: Path | None = None) -> dict[str, str]:
    """Commit of the code that ran (the CWD's repo: an exp temp dir has its own checkout)."""
    cwd = cwd or Path.cwd()
    commit = _git("rev-parse", "HEAD", cwd=cwd)
    if not commit:
        return {}
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", cwd=cwd))
    return {"mlflow.source.git.commit": commit, "git.commit": commit,
            "git.dirty": str(dirty).lower()}


def _dvc_lock_hash(root: Path, out_path: str) -> str:
    """The md5 DVC recorded in ``dvc.lock`` for the stage output at ``out_path``."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return ""
    try:
        data = yaml.safe_load(lock.read_text()) or {}
    except yaml.YAMLError:
        return ""
    want = os.path.normpath(out_path)
    for stage in (data.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if os.path.normpath(str(out.get("path", ""))) == want:
                return str(out.get("md5") or out.get("hash") or "")
    return ""


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _data_root(cfg: Config) -> Path:
    root = Path(cfg.data.root)
    return root if root.is_absolute() else Path.cwd() / root


def feature_set_tags(cfg: Config) -> dict[str, str]:
    """Identify the feature set a run read: DVC's directory hash (from ``dvc.lock``) and
    the sha256 of its ``manifest.json`` (which lists every feature file)."""
    tags = {"data.name": cfg.data.name, "data.root": cfg.data.root}
    md5 = _dvc_lock_hash(Path.cwd(), cfg.data.root)
    if md5:
        tags["dvc.features.md5"] = md5
    manifest = _data_root(cfg) / "manifest.json"
    if manifest.is_file():
        tags["features.manifest_sha256"] = _sha256_file(manifest)
    return tags


def test_set_fingerprint(cfg: Config, subset: str | None = None) -> str:
    """A hash that is equal only for the same test set scored the same way.

    Covers the ground truth of every video in the evaluated subset (segments, labels,
    durations), the manifest entries of those videos when the manifest lists them, and the
    tIoU thresholds: an average mAP is comparable across runs only if all three agree.
    """
    subset = subset or cfg.eval.subset
    root = _data_root(cfg)
    ann_path = root / "annotations.json"
    if not ann_path.is_file():
        raise TrackingError(f"{ann_path}: no annotations to fingerprint the {subset!r} split")
    ann = json.loads(ann_path.read_text())
    db = ann.get("database", ann)
    videos = {vid: v for vid, v in db.items()
              if isinstance(v, dict) and str(v.get("subset", "")).lower() == subset.lower()}
    if not videos:
        raise TrackingError(f"{ann_path}: no video in subset {subset!r}")
    manifest_entries: dict[str, Any] = {}
    man_path = root / "manifest.json"
    if man_path.is_file():
        man = json.loads(man_path.read_text())
        per_video = man.get("videos") if isinstance(man, dict) else None
        if isinstance(per_video, dict):
            manifest_entries = {k: per_video[k] for k in sorted(videos) if k in per_video}
        elif isinstance(per_video, list):
            manifest_entries = {str(e.get("video", e.get("id", ""))): e for e in per_video
                                if isinstance(e, dict)
                                and str(e.get("video", e.get("id", ""))) in videos}
    payload = {"subset": subset, "tiou": sorted(cfg.eval.tiou),
               "gt": {k: videos[k] for k in sorted(videos)}, "manifest": manifest_entries}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- runs

def _param_value(v: Any) -> str:
    return json.dumps(v) if isinstance(v, list | dict) else str(v)


def log_config(cfg: Config, run_id: str | None = None) -> None:
    """All resolved params, flattened (``model.gam_depth``...)."""
    params = {k: _param_value(v) for k, v in cfg.flat().items()}
    if run_id is None:
        mlflow.log_params(params)
    else:
        MlflowClient().log_batch(run_id, params=[mlflow.entities.Param(k, v)
                                                 for k, v in params.items()])


@contextlib.contextmanager
def start_run(cfg: Config, *, run_name: str | None = None, tags: Mapping[str, Any] | None = None,
              parent_run_id: str | None = None, nested: bool = False,
              run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """A tracked run in ``cfg.tracking.experiment`` with params and provenance tags.

    ``run_id`` re-opens an existing run (e.g. evaluate adding test metrics to the train run):
    params are not logged again (MLflow params are immutable), tags are updated.
    ``parent_run_id`` makes a child run across processes (Tune trials, ablation rows).
    """
    configure(cfg)
    all_tags = {**git_tags(), **feature_set_tags(cfg)}
    all_tags.update({k: str(v) for k, v in (tags or {}).items()})
    if os.environ.get("DVC_EXP_NAME"):
        all_tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_STAGE") and run_id is None:  # a re-opened run keeps its stage
        all_tags["dvc.stage"] = os.environ["DVC_STAGE"]
    if run_id is not None:
        try:
            MlflowClient().get_run(run_id)
        except MlflowException:
            raise TrackingError(f"run {run_id} is not in the tracking store "
                                f"{mlflow.get_tracking_uri()} (was the store reset?)") from None
        with mlflow.start_run(run_id=run_id, nested=nested) as run:
            mlflow.set_tags(all_tags)
            yield run
        return
    exp_id = get_or_create_experiment(cfg)
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name, nested=nested,
                          parent_run_id=parent_run_id, tags=all_tags) as run:
        log_config(cfg)
        yield run


def metric_name(name: str) -> str:
    """A metric/param key MLflow accepts (``mAP@0.5`` → ``mAP_0.5``)."""
    return _NAME_BAD.sub("_", name.replace("@", "_"))


def _finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue  # strings, lists...: not a scalar metric
        if math.isfinite(f):
            out[metric_name(k)] = f
    return out


def epoch_logger(run_id: str, prefix: str = "") -> Callable[[int, dict], None]:
    """The engine's ``callback(epoch, metrics)``: logs every scalar with ``step=epoch``.

    Non-numeric and non-finite values are skipped (a NaN loss is logged by the engine's own
    error path, not as a metric). One ``log_batch`` call per epoch.
    """
    client = MlflowClient()

    def callback(epoch: int, metrics: dict) -> None:
        ts = int(time.time() * 1000)
        values = _finite_metrics(metrics)
        if values:
            client.log_batch(run_id, metrics=[Metric(prefix + k, v, ts, int(epoch))
                                              for k, v in values.items()])

    return callback


def _map_json(map_result: Any) -> dict[str, Any]:
    return map_result.to_json() if hasattr(map_result, "to_json") else dict(map_result)


def evaluation_metrics(map_result: Any, prefix: str = "test/") -> dict[str, float]:
    """Flat metrics of an evaluation: mAP at every tIoU, the average, per-class AP."""
    js = _map_json(map_result)
    flat = map_result.metrics() if hasattr(map_result, "metrics") else {
        **{f"mAP_{t}": v for t, v in js.get("mAP", {}).items()},
        "average_mAP": js.get("average_mAP")}
    out = {f"{prefix}{k}": v for k, v in _finite_metrics(flat).items()}
    for tiou, per_class in (js.get("per_class_AP") or {}).items():
        for label, ap in per_class.items():
            if ap is not None and math.isfinite(float(ap)):
                out[f"{prefix}AP_{tiou}/{metric_name(str(label))}"] = float(ap)
    return out


def log_evaluation(map_result: Any, predictions_json: Mapping[str, Any] | str | Path | None,
                   plots: Mapping[str, Path] | None = None, *, prefix: str = "test/",
                   run_id: str | None = None, step: int | None = None,
                   fingerprint: str | None = None) -> dict[str, float]:
    """Log one evaluation into the active run (or ``run_id``).

    ``fingerprint`` (:func:`test_set_fingerprint`) is stored as the ``amnet.test_fingerprint``
    tag: promotion compares runs only when it is equal.

    Metrics: ``<prefix>mAP_<t>``, ``<prefix>average_mAP``, ``<prefix>AP_<t>/<class>``.
    Artifacts: ``eval/map_table.json`` + ``eval/per_class_ap.json`` (MLflow tables),
    ``eval/metrics.json``, ``eval/predictions.json``, ``plots/<files>``. Returns the metrics.
    """
    import pandas as pd

    run_id = run_id or mlflow.active_run().info.run_id  # type: ignore[union-attr]
    client = MlflowClient()
    metrics = evaluation_metrics(map_result, prefix)
    ts = int(time.time() * 1000)
    tags = [RunTag(TAG_FINGERPRINT, fingerprint)] if fingerprint else []
    client.log_batch(run_id, metrics=[Metric(k, v, ts, step or 0) for k, v in metrics.items()],
                     tags=tags)
    js = _map_json(map_result)
    rows = [{"tIoU": float(t), "mAP": float(v)} for t, v in js.get("mAP", {}).items()]
    if js.get("average_mAP") is not None:
        rows.append({"tIoU": "average", "mAP": float(js["average_mAP"])})
    mlflow.log_table(pd.DataFrame(rows).astype({"tIoU": str}), "eval/map_table.json",
                     run_id=run_id)
    per_class = [{"tIoU": str(t), "class": str(c), "AP": float(ap)}
                 for t, d in (js.get("per_class_AP") or {}).items() for c, ap in d.items()]
    if per_class:
        mlflow.log_table(pd.DataFrame(per_class), "eval/per_class_ap.json", run_id=run_id)
    client.log_dict(run_id, js, "eval/metrics.json")
    if hasattr(map_result, "table"):
        client.log_text(run_id, str(map_result.table()), "eval/map_table.txt")
    if isinstance(predictions_json, str | Path):
        client.log_artifact(run_id, str(predictions_json), "eval")
    elif predictions_json is not None:
        client.log_dict(run_id, dict(predictions_json), "eval/predictions.json")
    for path in (plots or {}).values():
        path = Path(path)
        if path.is_file():
            client.log_artifact(run_id, str(path), "plots")
        elif path.is_dir():
            client.log_artifacts(run_id, str(path), f"plots/{path.name}")
    return metrics


# --------------------------------------------------------------------------- models

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
              example_mask: torch.Tensor | None, class_names: list[str], cfg: Config, *,
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
    with tempfile.TemporaryDirectory() as tmp:
        info_path = Path(tmp) / MODEL_INFO_FILE
        info_path.write_text(json.dumps(info, indent=1))
        extra = [str(info_path)]
        if checkpoint is not None:
            extra.append(str(checkpoint))
            info["checkpoint"] = Path(checkpoint).name
            info_path.write_text(json.dumps(info, indent=1))
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


def load_registered_model(model_uri: str) -> tuple[torch.nn.Module, Config, list[str]]:
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
    info = json.loads(info_path.read_text())
    cfg = from_dict(info["config"], f"{model_uri}/{MODEL_INFO_FILE}")
    ckpt_name = info.get("checkpoint")
    if ckpt_name and (local / "extra_files" / ckpt_name).is_file():
        with contextlib.suppress(ImportError, AttributeError):
            from amnet.engine import load_model_for_inference

            model, ck_cfg, names = load_model_for_inference(local / "extra_files" / ckpt_name)
            return model.eval(), ck_cfg, list(names)
    wrapper = mlflow.pytorch.load_model(str(local))
    model = getattr(wrapper, "model", wrapper)
    return model.eval(), cfg, list(info["class_names"])


# --------------------------------------------------------------------------- training runs

RUN_FILE = "mlflow_run.json"


@dataclasses.dataclass
class TrackedRun:
    """What a training entry point needs inside :func:`training_run`."""

    run_id: str
    callback: Callable[[int, dict], None]  # the engine's per-epoch callback


def _example_feats(cfg: Config, max_len: int = 128) -> torch.Tensor:
    """A real input example (first test video's first snippets) for the model signature."""
    import numpy as np

    root = _data_root(cfg)
    ann = json.loads((root / "annotations.json").read_text())
    db = ann.get("database", ann)
    vids = sorted(v for v, e in db.items() if (root / f"{v}.npy").is_file()
                  and str(e.get("subset", "")).lower() == cfg.data.test_subset.lower())
    vids = vids or sorted(p.stem for p in root.glob("*.npy"))
    arr = np.load(root / f"{vids[0]}.npy", mmap_mode="r")[:max_len]
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).T[None]


def log_trained_model(cfg: Config, model_path: str | Path) -> ModelInfo:
    """Log the checkpoint ``model_path`` (the deployable weights, EMA if kept) as the active
    run's model, with a real input example and the checkpoint riding along."""
    from amnet.engine import load_model_for_inference

    model, ck_cfg, classes = load_model_for_inference(model_path)
    return log_model(model, _example_feats(cfg), None, classes, ck_cfg, checkpoint=model_path)


@contextlib.contextmanager
def training_run(cfg: Config, out_dir: str | Path, *, params_file: str | None = None,
                 resume: bool = False, run_name: str | None = None,
                 tags: Mapping[str, Any] | None = None) -> Iterator[TrackedRun]:
    """An MLflow run around one training (``amnet train``, in-process or Ray Train).

    Checks the store first (an unreachable server fails before any training), yields the run
    id + per-epoch callback, then logs ``<out_dir>/model.pt`` as the run's model and writes
    ``<out_dir>/mlflow_run.json`` (``run_id``, ``experiment_id``, ``tracking_uri``,
    ``model_uri``) for the evaluate and register stages. ``resume=True`` re-opens the run of
    an existing ``mlflow_run.json`` so an interrupted training keeps one history.
    """
    configure(cfg)
    out = Path(out_dir)
    run_file = out / RUN_FILE
    run_id = None
    if resume and run_file.is_file():
        run_id = json.loads(run_file.read_text()).get("run_id")
        if run_id and not _run_exists(run_id):
            log.warning("%s: run %s is not in %s; starting a new run", run_file, run_id,
                        mlflow.get_tracking_uri())
            run_id = None
    all_tags = {"stage": "train", **({"params_file": params_file} if params_file else {}),
                **(tags or {})}
    name = run_name or f"train-{cfg.data.name}"
    with start_run(cfg, run_name=name, tags=all_tags, run_id=run_id) as run:
        rid = run.info.run_id
        yield TrackedRun(rid, epoch_logger(rid))
        info = log_trained_model(cfg, out / "model.pt")
        out.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps({
            "run_id": rid, "experiment_id": run.info.experiment_id,
            "tracking_uri": mlflow.get_tracking_uri(), "model_uri": info.model_uri},
            indent=2) + "\n")


def _run_exists(run_id: str) -> bool:
    try:
        MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True
