"""A tiny git + DVC copy of this project for end-to-end tests (real dvc, real git).

Shared by ``test_pipeline.py`` (``dvc repro`` end to end) and ``test_remote.py`` (push, clone,
pull). A plain module, not a conftest: test modules import it by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GIT = ("git", "-c", "user.name=t", "-c", "user.email=t@t")

# A config small enough for seconds per stage on 2 cores, big enough to score above zero
# (12 training videos: data.val_fraction holds one per class out, 8 are trained on).
TINY = {
    "data": {"feature_dim": 16, "num_classes": 4, "max_seq_len": 128,
             "synthetic": {"n_train": 12, "n_test": 4, "num_classes": 4, "feature_dim": 16,
                           "duration_scale": 0.1}},
    "model": {"embed_dim": 16, "n_heads": 2, "fpn_levels": 3,
              "regression_ranges": [[0, 4], [4, 16], [16, 10000]]},
    "train": {"epochs": 2, "lr": 1.0e-3, "warmup_epochs": 0, "eval_every": 0},
    "ray": {"num_workers": 0},
}
ROWS = ("baseline", "full")
SEEDS = (0, 1)   # the tiny matrix: 2 rows x 2 seeds


def _merge(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def git(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*GIT, *args], cwd=project, check=True, text=True,
                          capture_output=True)


def make_project(dest: Path, rows: Iterable[str] = ROWS) -> Path:
    """A fresh git + DVC repo holding the project's pipeline code and a tiny params file,
    with the ablation rows ``rows`` only (the default preset, :data:`SEEDS`); everything
    committed."""
    rows = tuple(rows)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("amnet", "workflows"):
        shutil.copytree(REPO / d, dest / d, ignore=ignore)
    for f in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(REPO / f, dest / f)
    (dest / "params").mkdir()
    default = yaml.safe_load((REPO / "params" / "default.yaml").read_text())
    (dest / "params" / "default.yaml").write_text(yaml.safe_dump(_merge(default, TINY)))
    abl = yaml.safe_load((REPO / "params" / "ablations.yaml").read_text())
    abl["rows"] = {k: v for k, v in abl["rows"].items() if k in rows}
    abl["presets"] = {"default": list(rows)}
    abl["matrix"].update(preset="default", seeds=list(SEEDS))
    abl["common"] = [o for o in abl["common"] if not o.startswith("train.epochs=")]
    (dest / "params" / "ablations.yaml").write_text(yaml.safe_dump(abl, allow_unicode=True))
    git(dest, "init", "-q")
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=dest, check=True)
    subprocess.run([str(BIN / "dvc"), "config", "core.analytics", "false"], cwd=dest, check=True)
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "tiny project")
    return dest


def dvc(project: Path, *args: str, timeout: float = 600,
        env: Mapping[str, str | None] | None = None) -> subprocess.CompletedProcess:
    """Run ``dvc`` in ``project`` without the caller's MLFLOW_*/DVC_* variables; ``env``
    adds variables (a ``None`` value removes one)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    full["PATH"] = f"{BIN}{os.pathsep}{full.get('PATH', '')}"  # stages call `python`
    full["OMP_NUM_THREADS"] = "1"
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    return subprocess.run([str(BIN / "dvc"), *args], cwd=project, env=full, text=True,
                          capture_output=True, timeout=timeout)
