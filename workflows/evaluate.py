"""The ``evaluate`` stage / ``amnet evaluate``: score a trained model on the test split.

Loads the checkpoint written by ``amnet train``, predicts every test video (Eq. 13–14 +
Soft-NMS), scores it with the ActivityNet protocol at ``eval.tiou`` and writes

* ``--metrics`` (DVC metrics, fractions in [0, 1]): ``{"mAP_0.3": …, "average_mAP": …,
  "split": "test"}``, the names MLflow holds them under (with the ``test/`` prefix there);
  scored against ``<data.root>/annotations.json`` as given, exactly as ``amnet eval`` does
* ``--per-class``: ``{"<tIoU>": {class: AP}}``
* ``--predictions``: the ActivityNet-style results JSON
* ``--plots``: per-class AP, PR curves, false-positive analysis, timeline (PNG + CSV for DVC)

and logs the same numbers, tables, plots and predictions into the training run's MLflow run
(``--run-file`` from ``amnet train``; a fresh run when there is none), with the test-set
fingerprint that promotion compares (``workflows.register``). A run file naming a run this
store does not hold (a clone restored with ``dvc pull`` has no ``.mlflow``) gets a stand-in
run instead: tagged ``amnet.source_run_id=<recorded id>``, holding the evaluation and the
model logged again from ``--checkpoint``, so that ``amnet promote`` can register it.

All-or-nothing: the files are written beside their targets and moved into place together once
scoring, plotting and tracking all succeeded (:func:`amnet.io.staged_outputs`); a failure
leaves the previous outputs as they were. What can be checked before inference is: the run
file, the checkpoint's classes against the feature set's, its input dimension against the
feature files', and the output paths.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amnet.device import resolve_device
from amnet.errors import ConfigError, DataError, ModelLoadError
from amnet.io import (  # (workflows.ablations imports write_json from here too)
    sha256_file,
    staged_outputs,
    write_json,
)
from workflows.cli import add_config_arguments
from workflows.config import WorkflowConfig, load_config

if TYPE_CHECKING:
    import torch

    from amnet.evaluation.map import MAPResult

log = logging.getLogger(__name__)


def score_model(cfg: WorkflowConfig, model: torch.nn.Module, classes: list[str], *,
                metrics_path: str | Path, predictions_path: str | Path,
                plots_dir: str | Path | None = None, per_class_path: str | Path | None = None,
                name: str = "test") -> tuple[MAPResult, dict[str, Path]]:
    """Predict + score ``cfg.eval.subset`` and write the metrics / predictions / plots files.

    ``classes`` are the model's classes (the test split is read with that list, so label
    indices match training). Returns the MAPResult and the plot files by key.
    """
    from amnet import engine
    from amnet.data.dataset import TALDataset
    from amnet.evaluation.plots import write_all_plots

    test_ds = TALDataset(cfg.data, cfg.eval.subset, training=False, classes=list(classes))
    device = resolve_device(cfg.train.device)
    model.to(device)
    _, preds, result = engine.evaluate(model, test_ds, cfg, device)
    js = result.to_json()
    # flat: one `dvc metrics show` row per file; "split" says which split the numbers score
    write_json(metrics_path, {**result.metrics(), "split": "test"})
    if per_class_path is not None:
        write_json(per_class_path, js["per_class_AP"])
    write_json(predictions_path, preds)
    plots: dict[str, Path] = {}
    if plots_dir is not None:
        plots = write_all_plots(engine.ground_truth(test_ds), preds, plots_dir,
                                subset=cfg.eval.subset, tiou=cfg.eval.tiou, name=name)
    log.info("%s split %r:\n%s", cfg.data.name, cfg.eval.subset, result.table())
    return result, plots


def track_evaluation(cfg: WorkflowConfig, result: MAPResult, predictions_path: str | Path,
                     plots: dict[str, Path], *, run_id: str | None = None,
                     run_name: str = "evaluate", tags: dict[str, str] | None = None,
                     model_checkpoint: str | Path | None = None) -> str:
    """Log an evaluation (metrics ``test/*``, tables, plots, predictions, fingerprint) into
    ``run_id`` (re-opened) or a new run; returns the run id. ``model_checkpoint``: also log
    that checkpoint as the run's model (a stand-in run, :class:`RunTarget`)."""
    from workflows import tracking

    fingerprint = tracking.test_set_fingerprint(cfg)
    with tracking.start_run(cfg, run_id=run_id, run_name=run_name, tags=tags) as run:
        tracking.log_dataset_inputs(cfg, run.info.run_id, ("test",))
        if model_checkpoint is not None:
            tracking.log_trained_model(cfg, model_checkpoint)
        tracking.log_evaluation(result, predictions_path, plots, fingerprint=fingerprint,
                                step=cfg.train.epochs)
        return run.info.run_id


# --------------------------------------------------------------------------- before inference

def check_model_fits_data(cfg: WorkflowConfig, checkpoint: str | Path, model: Any,
                          classes: list[str], *, params: str | Path | None = None) -> None:
    """Refuse, before any inference, a model that cannot be scored on ``cfg.data.root``.

    * its classes must be the feature set's: every one in the manifest's class list (else the
      annotation file's labels), and every label of the annotation file one of them;
    * its input dimension must be that of the evaluated subset's feature files (read from
      their ``.npy`` headers only) and ``data.feature_dim``.

    Anything malformed in the files themselves is left to the dataset, which names it.
    """
    from amnet.data.feature_set import FeatureSet
    from amnet.data.features import feature_path, read_header

    fs = FeatureSet.at(cfg.data.root)
    if not fs.root.is_dir() or not fs.annotations_path.is_file():
        return  # the dataset reports the missing folder / file
    db = fs.raw_annotations() or {}
    labels = sorted({a["label"] for v in db.values() if isinstance(v, dict)
                     for a in (v.get("annotations") or []) if isinstance(a, dict)
                     and isinstance(a.get("label"), str)})
    if not classes:
        raise ModelLoadError(f"{checkpoint}: the checkpoint stores no class names, so its "
                             f"outputs cannot be matched to the labels of {fs.annotations_path}")
    manifest = fs.raw_manifest() if fs.manifest_path.is_file() else None
    listed = manifest.get("classes") if isinstance(manifest, dict) else None
    if isinstance(listed, list) and all(isinstance(c, str) for c in listed):
        universe, source = list(listed), fs.manifest_path
    else:
        universe, source = labels, fs.annotations_path
    extra = [c for c in classes if c not in set(universe)]
    if extra:
        raise DataError(f"{checkpoint}: the model has {len(classes)} classes but {source} "
                        f"lists {len(universe)}; {_few(extra)} are not among them (a model "
                        f"trained on another label set?)")
    unknown = [lab for lab in labels if lab not in set(classes)]
    if unknown:
        raise DataError(f"{fs.annotations_path}: label(s) {_few(unknown)} are not classes of "
                        f"the model {checkpoint} ({len(classes)} classes: {_few(classes)})")
    in_dim = int(getattr(model, "in_dim", cfg.data.feature_dim))
    want = cfg.eval.subset.lower()
    for vid in sorted(k for k, v in db.items()
                      if isinstance(v, dict) and str(v.get("subset", "")).lower() == want):
        path = feature_path(fs.root, vid, source=fs.annotations_path)
        if not path.is_file():
            continue  # the dataset names the missing file
        shape, _ = read_header(path, vid)
        if len(shape) == 2 and shape[1] != in_dim:
            raise DataError(f"{checkpoint}: the model takes features of dimension {in_dim} but "
                            f"{path} (video {vid!r}) has feature dimension {shape[1]}; "
                            "evaluate it on the feature set it was trained on")
    if cfg.data.feature_dim != in_dim:
        raise ConfigError(f"{params or 'params'}: 'data.feature_dim' is {cfg.data.feature_dim} "
                          f"but the model {checkpoint} takes features of dimension {in_dim}")


def _few(names: list[str], n: int = 5) -> str:
    return repr(names[:n])[:-1] + (", ...]" if len(names) > n else "]")


@dataclass
class RunTarget:
    """Where an evaluation is logged: ``run_id`` (re-opened) or a new run with ``tags``; a
    stand-in run also gets the model (``model_checkpoint``)."""

    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    model_checkpoint: str | None = None


def run_target(cfg: WorkflowConfig, recorded: str | None, *, run_file: str | Path,
               checkpoint: str | Path) -> RunTarget:
    """The run to log into: the recorded one when this store holds it; else a stand-in for
    it (the newest earlier stand-in of the same checkpoint, or a new one), said in one
    warning line."""
    import mlflow

    from workflows import tracking

    if recorded is None or tracking.run_exists(recorded):
        return RunTarget(run_id=recorded)
    sha = sha256_file(checkpoint)
    earlier = tracking.stand_in_runs(cfg, recorded, checkpoint_sha256=sha)
    reuse = earlier[0].info.run_id if earlier else None
    log.warning("%s: run %s is not in the tracking store %s (a clone restored with `dvc pull` "
                "has no MLflow store); logging this evaluation and the model from %s to %s, "
                "tagged %s=%s", run_file, recorded, mlflow.get_tracking_uri(), checkpoint,
                f"run {reuse}" if reuse else "a new run", tracking.TAG_SOURCE_RUN, recorded)
    if reuse is not None:
        return RunTarget(run_id=reuse)
    note = (f"Stand-in for run {recorded} (named by {run_file}), which this tracking store "
            f"does not hold: `amnet evaluate` logged the test evaluation and the model of "
            f"{checkpoint} here. `amnet promote` uses this run for {recorded}.")
    return RunTarget(tags={tracking.TAG_SOURCE_RUN: recorded,
                           tracking.TAG_CHECKPOINT_SHA256: sha, "stage": "evaluate",
                           "mlflow.note.content": note},
                     model_checkpoint=str(checkpoint))


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--checkpoint", default="outputs/train/model.pt",
                        help="checkpoint from `amnet train` (default: %(default)s)")
    parser.add_argument("--run-file", default="outputs/train/mlflow_run.json",
                        help="the training run to add the test metrics to; missing = new run")
    parser.add_argument("--metrics", default="metrics/evaluate.json", help="mAP table JSON")
    parser.add_argument("--per-class", default="metrics/per_class_ap.json",
                        help="per-class AP JSON")
    parser.add_argument("--predictions", default="outputs/evaluate/predictions.json")
    parser.add_argument("--plots", default="plots/evaluate", help="folder for figures + CSV")
    parser.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    parser.add_argument("--device", default=None,
                        help="override train.device (auto | cpu | cuda | cuda:N), as in train")


def run(args: argparse.Namespace) -> int:
    from amnet.engine import load_model_for_inference

    cfg = load_config(args.params, args.overrides)
    if args.device:
        cfg = cfg.replace(f"train.device={args.device}")
    track = not args.no_track
    with staged_outputs() as out:  # every output path is checked here, before any work
        paths = {"metrics": out.file(args.metrics), "per_class": out.file(args.per_class),
                 "predictions": out.file(args.predictions), "plots": out.folder(args.plots)}
        recorded = None
        if track:
            from workflows import tracking

            recorded = tracking.read_run_id(args.run_file)
        model, _, classes = load_model_for_inference(args.checkpoint)
        check_model_fits_data(cfg, args.checkpoint, model, classes, params=args.params)
        target = RunTarget()
        if track:
            tracking.configure(cfg)  # an unreachable server fails here, before inference
            target = run_target(cfg, recorded, run_file=args.run_file,
                                checkpoint=args.checkpoint)
        result, plots = score_model(cfg, model, classes, metrics_path=paths["metrics"],
                                    predictions_path=paths["predictions"],
                                    plots_dir=paths["plots"], per_class_path=paths["per_class"])
        if track:  # before the files move into place: a failed log leaves them as they were
            rid = track_evaluation(cfg, result, paths["predictions"], plots,
                                   run_id=target.run_id, tags=target.tags or None,
                                   model_checkpoint=target.model_checkpoint)
            log.info("logged the evaluation to MLflow run %s", rid)
    print(result.table())
    return 0


def main(argv: list[str] | None = None) -> int:
    from workflows.cli import main as cli_main

    return cli_main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
