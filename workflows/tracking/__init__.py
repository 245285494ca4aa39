"""MLflow helpers (being split into one module per job)."""

from workflows.tracking.runs import *  # noqa: F403
from workflows.tracking.runs import (  # noqa: F401
    RUN_FILE,
    TAG_FINGERPRINT,
    TAG_MODEL_URI,
    _sha256_file,
    git_tags,
    log_config,
    log_trained_model,
)
