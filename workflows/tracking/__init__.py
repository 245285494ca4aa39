"""MLflow for AMNet: one place that knows where runs go and what every run records.

One module per job:

* :mod:`~workflows.tracking.store`: tracking URI (embedded SQLite under ``<project>/.mlflow``
  by default), fail-fast health check, experiment get-or-create;
* :mod:`~workflows.tracking.provenance`: git commit, DVC hash of the feature set, test-set
  fingerprint;
* :mod:`~workflows.tracking.datasets`: the feature set's splits as MLflow dataset inputs;
* :mod:`~workflows.tracking.runs`: run lifecycle, params, per-epoch metrics, evaluations, the
  ``mlflow_run.json`` run file;
* :mod:`~workflows.tracking.registry`: logging a deployable model and loading it back.

Public API (used by train / evaluate / matrix / register / ray_train / sweep / detect)::

    resolve_tracking_uri(cfg) -> str
    check_tracking_server(uri, timeout_s=5) -> None
    configure(cfg) -> str
    get_or_create_experiment(cfg, name=None) -> str
    start_run(cfg, *, run_name, tags=None, parent_run_id=None, nested=False, run_id=None)
    epoch_logger(run_id, skip=None) -> Callable[[int, dict], None]
    logged_steps(run_id) -> set[int]
    log_evaluation(map_result, predictions_json, plots, *, prefix="test/", run_id=None)
    log_model(model, example_feats, example_mask, class_names, cfg, *, checkpoint=None)
    load_registered_model(model_uri) -> (model, cfg, class_names)
    training_run(cfg, out_dir, params_file=None, resume=False, resume_key=None,
                 resume_command=None) -> TrackedRun  (context manager)
    read_run_id(run_file, required=False) -> str | None
    stand_in_runs(cfg, source_run_id, checkpoint_sha256=None) -> [Run]  (newest first)
    feature_set_tags(cfg) / test_set_fingerprint(cfg) / validation_set_fingerprint(cfg)
    log_dataset_inputs(cfg, run_id, splits) -> [dataset names]   (splits of SPLITS)
"""

import os

# Quiet, non-interactive defaults: set before any submodule imports mlflow.
for _k, _v in {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GIT_PYTHON_REFRESH": "quiet",
}.items():
    os.environ.setdefault(_k, _v)

from workflows.tracking.datasets import (  # noqa: E402
    SPLITS,
    feature_set_digest,
    log_dataset_inputs,
)
from workflows.tracking.provenance import (  # noqa: E402
    feature_set_tags,
    git_tags,
    test_set_fingerprint,
    validation_set_fingerprint,
)
from workflows.tracking.registry import (  # noqa: E402
    MODEL_INFO_FILE,
    TAG_MODEL_URI,
    PackedOutput,
    load_registered_model,
    log_model,
    log_trained_model,
)
from workflows.tracking.runs import (  # noqa: E402
    RUN_FILE,
    TAG_CHECKPOINT_SHA256,
    TAG_FINGERPRINT,
    TAG_RESUME_COMMAND,
    TAG_RESUME_KEY,
    TAG_SOURCE_RUN,
    TrackedRun,
    epoch_logger,
    evaluation_metrics,
    log_config,
    log_evaluation,
    logged_steps,
    metric_name,
    read_run_id,
    stand_in_runs,
    start_run,
    training_run,
)
from workflows.tracking.store import (  # noqa: E402
    EXPERIMENT_KIND,
    TrackingError,
    check_tracking_server,
    configure,
    get_or_create_experiment,
    project_root,
    resolve_tracking_uri,
    run_exists,
)

__all__ = [
    "EXPERIMENT_KIND",
    "MODEL_INFO_FILE",
    "RUN_FILE",
    "SPLITS",
    "TAG_CHECKPOINT_SHA256",
    "TAG_FINGERPRINT",
    "TAG_MODEL_URI",
    "TAG_RESUME_COMMAND",
    "TAG_RESUME_KEY",
    "TAG_SOURCE_RUN",
    "PackedOutput",
    "TrackedRun",
    "TrackingError",
    "check_tracking_server",
    "configure",
    "epoch_logger",
    "evaluation_metrics",
    "feature_set_digest",
    "feature_set_tags",
    "get_or_create_experiment",
    "git_tags",
    "load_registered_model",
    "log_config",
    "log_dataset_inputs",
    "log_evaluation",
    "log_model",
    "log_trained_model",
    "logged_steps",
    "metric_name",
    "project_root",
    "read_run_id",
    "resolve_tracking_uri",
    "run_exists",
    "stand_in_runs",
    "start_run",
    "test_set_fingerprint",
    "training_run",
    "validation_set_fingerprint",
]
