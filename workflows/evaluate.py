"""The ``evaluate`` stage / ``amnet evaluate``: score a trained model on the test split.

Loads the checkpoint written by ``amnet train``, predicts every test video (Eq. 13–14 +
Soft-NMS), scores it with the ActivityNet protocol at ``eval.tiou`` and writes

* ``--metrics`` (DVC metrics, fractions in [0, 1]): ``{"mAP_0.3": …, "average_mAP": …}``, the
  names MLflow holds them under (with a ``test/`` prefix there)
* ``--per-class``: ``{"<tIoU>": {class: AP}}``
* ``--predictions``: the ActivityNet-style results JSON
* ``--plots``: per-class AP, PR curves, false-positive analysis, timeline (PNG + CSV for DVC)

and logs the same numbers, tables, plots and predictions into the training run's MLflow run
(``--run-file`` from ``amnet train``; a fresh run when there is none), with the test-set
fingerprint that promotion compares (``workflows.register``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from amnet.config import Config, load_config
from amnet.device import resolve_device
from amnet.io import write_json  # (workflows.ablations imports it from here too)
from workflows.cli import add_config_arguments

if TYPE_CHECKING:
    import torch

    from amnet.evaluation.map import MAPResult

log = logging.getLogger(__name__)


def score_model(cfg: Config, model: torch.nn.Module, classes: list[str], *,
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
    write_json(metrics_path, result.metrics())  # flat: one `dvc metrics show` row per file
    if per_class_path is not None:
        write_json(per_class_path, js["per_class_AP"])
    write_json(predictions_path, preds)
    plots: dict[str, Path] = {}
    if plots_dir is not None:
        plots = write_all_plots(engine.ground_truth(test_ds), preds, plots_dir,
                                subset=cfg.eval.subset, tiou=cfg.eval.tiou, name=name)
    log.info("%s split %r:\n%s", cfg.data.name, cfg.eval.subset, result.table())
    return result, plots


def track_evaluation(cfg: Config, result: MAPResult, predictions_path: str | Path,
                     plots: dict[str, Path], *, run_id: str | None = None,
                     run_name: str = "evaluate", tags: dict[str, str] | None = None) -> str:
    """Log an evaluation (metrics ``test/*``, tables, plots, predictions, fingerprint) into
    ``run_id`` (re-opened) or a new run; returns the run id."""
    from workflows import tracking

    fingerprint = tracking.test_set_fingerprint(cfg)
    with tracking.start_run(cfg, run_id=run_id, run_name=run_name, tags=tags) as run:
        tracking.log_evaluation(result, predictions_path, plots, fingerprint=fingerprint,
                                step=cfg.train.epochs)
        return run.info.run_id


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
    run_id = None
    if not args.no_track:
        from workflows import tracking

        tracking.configure(cfg)  # an unreachable server fails here, before inference
        run_id = tracking.read_run_id(args.run_file)
    model, _, classes = load_model_for_inference(args.checkpoint)
    result, plots = score_model(cfg, model, classes, metrics_path=args.metrics,
                                predictions_path=args.predictions, plots_dir=args.plots,
                                per_class_path=args.per_class)
    print(result.table())
    if not args.no_track:
        rid = track_evaluation(cfg, result, args.predictions, plots, run_id=run_id)
        log.info("logged the evaluation to MLflow run %s", rid)
    return 0


def main(argv: list[str] | None = None) -> int:
    from workflows.cli import main as cli_main

    return cli_main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
