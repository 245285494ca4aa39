"""What a run read: the git commit, DVC's hash of the feature set, and the test-set fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import yaml

from amnet.data.feature_set import FeatureSet
from amnet.io import sha256_file
from workflows.config import WorkflowConfig
from workflows.tracking.store import TrackingError

__all__ = ["feature_set_tags", "git_tags", "test_set_fingerprint", "validation_set_fingerprint"]


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


def _find_lock(start: Path) -> Path | None:
    """The ``dvc.lock`` of the DVC project holding ``start``: the nearest ancestor that has
    one, looking no higher than the repository root (``.git`` / ``.dvc``)."""
    for d in (start, *start.parents):
        if (d / "dvc.lock").is_file():
            return d / "dvc.lock"
        if (d / ".git").exists() or (d / ".dvc").is_dir():
            return None
    return None


def dvc_lock_hash(data_root: str | Path, cwd: Path | None = None) -> str:
    """The md5 DVC recorded in ``dvc.lock`` for the stage output that is ``data_root``.

    Both sides are compared as real absolute paths: ``data_root`` relative to the CWD (as every
    stage reads it) or absolute; each ``outs`` path relative to the folder of its ``dvc.lock``.
    The lock is the one of the project holding ``data_root``, else the CWD's project.
    """
    cwd = cwd or Path.cwd()
    want = os.path.realpath(cwd / data_root)  # an absolute data_root stays itself
    found = (_find_lock(Path(want)), _find_lock(cwd.resolve()))
    for lock in dict.fromkeys(p for p in found if p is not None):
        try:
            data = yaml.safe_load(lock.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        stages = data.get("stages") if isinstance(data, dict) else None
        for stage in stages.values() if isinstance(stages, dict) else ():
            outs = stage.get("outs") if isinstance(stage, dict) else None
            for out in outs if isinstance(outs, list) else ():
                if not isinstance(out, dict) or not out.get("path"):
                    continue
                if os.path.realpath(lock.parent / str(out["path"])) == want:
                    return str(out.get("md5") or out.get("hash") or "")
    return ""


def feature_set_tags(cfg: WorkflowConfig) -> dict[str, str]:
    """Identify the feature set a run read: DVC's directory hash (from ``dvc.lock``) and
    the sha256 of its manifest (which lists every feature file)."""
    tags = {"data.name": cfg.data.name, "data.root": cfg.data.root}
    md5 = dvc_lock_hash(cfg.data.root)
    if md5:
        tags["dvc.features.md5"] = md5
    manifest = FeatureSet.at(cfg.data.root).manifest_path
    if manifest.is_file():
        tags["features.manifest_sha256"] = sha256_file(manifest)
    return tags


def test_set_fingerprint(cfg: WorkflowConfig, subset: str | None = None) -> str:
    """A hash that is equal only for the same test set scored the same way.

    Covers the ground truth of every video in the evaluated subset (segments, labels,
    durations), the manifest entries of those videos when the manifest lists them, and the
    tIoU thresholds: an average mAP is comparable across runs only if all three agree.
    """
    subset = subset or cfg.eval.subset
    fs = FeatureSet.at(cfg.data.root)
    if not fs.annotations_path.is_file():
        raise TrackingError(f"{fs.annotations_path}: no annotations to fingerprint the "
                            f"{subset!r} split")
    videos = fs.subset_entries(subset)
    if not videos:
        raise TrackingError(f"{fs.annotations_path}: no video in subset {subset!r}")
    payload = {"subset": subset, "tiou": sorted(cfg.eval.tiou),
               "gt": {k: videos[k] for k in sorted(videos)},
               "manifest": fs.manifest_entries(videos)}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def validation_set_fingerprint(cfg: WorkflowConfig) -> str:
    """A hash that is equal only for the same validation split scored the same way: the
    ground truth and manifest entries of the videos ``data.val_fraction`` / ``data.val_seed``
    hold out of ``data.train_subset``, and the tIoU thresholds (champion evidence is compared
    only when it agrees)."""
    from amnet.data.split import split_videos

    d = cfg.data
    fs = FeatureSet.at(d.root)
    if not fs.annotations_path.is_file():
        raise TrackingError(f"{fs.annotations_path}: no annotations to fingerprint the "
                            "validation split")
    ann = fs.annotations(default_fps=d.default_fps, segment_policy=d.segment_policy)
    # (no validation video: the fingerprint of the empty set; no matrix evidence exists then)
    val = set(split_videos(ann.subset(d.train_subset), d.val_fraction, d.val_seed).val)
    videos = {k: v for k, v in fs.subset_entries(d.train_subset).items() if k in val}
    payload = {"split": "val", "tiou": sorted(cfg.eval.tiou),
               "gt": {k: videos[k] for k in sorted(videos)},
               "manifest": fs.manifest_entries(videos)}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
