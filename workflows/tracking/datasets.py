"""The feature set as MLflow dataset inputs: which data, which split, in the runs table.

Every training / evaluation run logs one dataset input per split it read (``mlflow.data``):

* name ``<data.name>:<split>`` with split ``train`` (the training part of
  ``data.train_subset``), ``val`` (its held-out validation part, ``data.val_fraction``) or
  ``test`` (``eval.subset``): the same split names as the metric prefixes (``val/…``,
  ``test/…``);
* digest: DVC's hash of ``data.root`` as ``dvc.lock`` records it (``<md5>.dir``, 36 characters:
  MLflow's limit), else the first 32 hex digits of the manifest's sha256 (which lists the
  sha256 of every feature file); input tag ``amnet.digest`` says which;
* source: the feature folder; context (input tag ``mlflow.data.context``): the split name;
* input tags ``amnet.subset``, ``amnet.videos`` (how many videos the split holds),
  ``amnet.val_fraction`` / ``amnet.val_seed`` (what carved the parts).

MLflow keeps one input per dataset and run, so the splits are separate datasets (by name) of
one digest: two runs compare on the same data exactly when their digests agree.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterable

from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.tracking import MlflowClient

from amnet.data.feature_set import FeatureSet
from amnet.data.split import split_videos
from amnet.errors import AmnetError
from amnet.io import sha256_file
from workflows.config import WorkflowConfig
from workflows.tracking.provenance import dvc_lock_hash

log = logging.getLogger(__name__)

__all__ = ["SPLITS", "feature_set_digest", "log_dataset_inputs"]

#: split names, as in metric names (``val/average_mAP``) and dataset contexts
SPLITS = ("train", "val", "test")
DIGEST_LIMIT = 36  # MLflow's column width for a dataset digest


def feature_set_digest(cfg: WorkflowConfig) -> tuple[str, str]:
    """``(digest, kind)`` of the feature set: DVC's ``dvc.lock`` hash (kind ``dvc``), else the
    manifest's sha256 (``manifest``), else ``("", "none")``."""
    md5 = dvc_lock_hash(cfg.data.root)
    if md5 and len(md5) <= DIGEST_LIMIT:
        return md5, "dvc"
    manifest = FeatureSet.at(cfg.data.root).manifest_path
    if manifest.is_file():
        return sha256_file(manifest)[:32], "manifest"
    return "", "none"


def _split_sizes(cfg: WorkflowConfig) -> dict[str, tuple[str, int]]:
    """split → (annotation subset, number of videos); splits that cannot be read are left out
    (a dataset record must never stop a run)."""
    d = cfg.data
    out: dict[str, tuple[str, int]] = {}
    try:
        ann = FeatureSet.at(d.root).annotations(default_fps=d.default_fps,
                                               segment_policy=d.segment_policy)
        train = ann.subset(d.train_subset)
        split = split_videos(train, d.val_fraction, d.val_seed)
        out["train"] = (d.train_subset, len(split.train))
        if split.val:
            out["val"] = (d.train_subset, len(split.val))
        out["test"] = (cfg.eval.subset, len(ann.subset(cfg.eval.subset)))
    except AmnetError as e:  # e.g. no annotations yet: the record is partial, the run goes on
        log.warning("dataset inputs: cannot read the splits of %s: %s", d.root, e)
    return out


def log_dataset_inputs(cfg: WorkflowConfig, run_id: str, splits: Iterable[str]) -> list[str]:
    """Log the feature set's ``splits`` (of :data:`SPLITS`) as dataset inputs of ``run_id``;
    returns the dataset names logged (a split the data does not have, e.g. ``val`` with
    ``data.val_fraction=0``, is skipped)."""
    wanted = list(splits)
    bad = [s for s in wanted if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown split(s) {bad}; expected some of {SPLITS}")
    digest, kind = feature_set_digest(cfg)
    sizes = _split_sizes(cfg)
    with warnings.catch_warnings():  # MLflow registers the local-file source twice and says so
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(FeatureSet.at(cfg.data.root).root.resolve()))
    inputs, names = [], []
    for split in wanted:
        if split not in sizes:
            continue
        subset, n = sizes[split]
        name = f"{cfg.data.name}:{split}"
        ds = MetaDataset(source, name=name, digest=digest or None)
        tags = {"mlflow.data.context": split, "amnet.subset": subset, "amnet.videos": str(n),
                "amnet.digest": kind, "amnet.val_fraction": str(cfg.data.val_fraction),
                "amnet.val_seed": str(cfg.data.val_seed)}
        inputs.append(DatasetInput(ds._to_mlflow_entity(),
                                   [InputTag(k, v) for k, v in tags.items()]))
        names.append(name)
    if inputs:
        _log_inputs(run_id, inputs)
    return names


def _log_inputs(run_id: str, inputs: list[DatasetInput], attempts: int = 5) -> None:
    """``log_inputs``, retried when a concurrent run (a sweep trial, a matrix cell) inserted
    the same dataset first: the SQL store looks a dataset up and then inserts it, so two runs
    of one experiment racing on one digest hit its UNIQUE constraint; the retry finds the row."""
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            MlflowClient().log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as e:
            if "unique constraint" not in str(e).lower() or attempt == attempts - 1:
                raise
            log.debug("dataset input raced with another run (%s); retrying", e)
            time.sleep(0.05 * (attempt + 1))
