"""One ablation row (``ablation@<row>`` stage): train + evaluate in-process with overrides.

The rows live in ``params/ablations.yaml`` (Table 2: baseline, +MS, +AME+MS, +GAM+MS, full;
Table 4: the confidence-score variants). A row's config is the pipeline's params file, then
the file's ``common`` overrides, then the row's overrides, then any ``-s`` given here.

Each row is one MLflow run in the experiment ``<tracking.experiment>-ablations``, tagged
``ablation=<row>`` (plus ``ablation.tables`` and ``ablation.label``), with per-epoch losses,
the test metrics (``test/*``), tables, predictions and the model — so the MLflow UI compares
the rows side by side. Files (``--out outputs/ablations``, ``--metrics metrics/ablations``):

* ``metrics/ablations/<row>.json`` (DVC metrics): the test scores ``{"mAP_0.3": …,
  "average_mAP": …, "split": "test"}`` plus the last epoch's validation scores
  ``{"val/mAP_0.3": …, "val/average_mAP": …}`` (``data.val_fraction`` > 0)
* ``outputs/ablations/<row>/``: ``model.pt``, ``predictions.json``, ``per_class_ap.json``,
  ``mlflow_run.json``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from amnet.errors import ConfigError
from amnet.io import staged_outputs
from workflows.cli import add_config_arguments
from workflows.config import WorkflowConfig, load_config

log = logging.getLogger(__name__)

DEFAULT_ROWS = "params/ablations.yaml"


@dataclass
class Row:
    name: str
    label: str
    tables: list[int]
    overrides: list[str]


def load_rows(path: str | Path = DEFAULT_ROWS) -> tuple[list[str], dict[str, Row]]:
    """``(common overrides, {row name: Row})`` from an ablations file, checked."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ablations file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    common = raw.get("common") or []
    rows_raw = raw.get("rows")
    if not isinstance(common, list) or not all(isinstance(o, str) for o in common):
        raise ConfigError(f"{path}: 'common' must be a list of key=value strings")
    if not isinstance(rows_raw, dict) or not rows_raw:
        raise ConfigError(f"{path}: 'rows' must be a non-empty mapping row name -> "
                          "{label, tables, overrides}")
    rows = {}
    for name, r in rows_raw.items():
        where = f"{path}: row {name!r}"
        if not isinstance(r, dict):
            raise ConfigError(f"{where}: expected a mapping with 'overrides'")
        ovs = r.get("overrides") or []
        if not isinstance(ovs, list) or not all(isinstance(o, str) and "=" in o for o in ovs):
            raise ConfigError(f"{where}: 'overrides' must be a list of key=value strings")
        tables = r.get("tables") or []
        if not isinstance(tables, list) or not all(t in (2, 3, 4, 5) for t in tables):
            raise ConfigError(f"{where}: 'tables' must list paper table numbers, got {tables!r}")
        rows[str(name)] = Row(str(name), str(r.get("label", name)), list(tables), list(ovs))
    return list(common), rows


def row_config(params: str | Path, row: Row, common: list[str],
               overrides: list[str] | tuple[str, ...] = ()) -> WorkflowConfig:
    """The row's resolved config (params file → common → row → command-line overrides)."""
    try:
        cfg = load_config(params, [*common, *row.overrides, *overrides])
    except ConfigError as e:
        raise ConfigError(f"ablation row {row.name!r}: {e}") from None
    return cfg.replace(f"tracking.experiment={cfg.tracking.experiment}-ablations")


ROW_SUFFIXES = frozenset({".pt", ".json"})  # what a row folder holds (ckpt/last.pt included)


def run_row(cfg: WorkflowConfig, row: Row, *, out_dir: str | Path, metrics_dir: str | Path,
            track: bool = True, log_model: bool = True) -> dict[str, Any]:
    """Train ``cfg`` in-process on the training part, score the validation part after the
    last epoch and the test split for reporting, write the row's files; return
    ``{"row", "metrics", "run_id", "seconds"}``. The row's folder and metrics file are
    replaced together, only once the row succeeded (:func:`amnet.io.staged_outputs`)."""
    with staged_outputs() as staged:
        out = staged.folder(Path(out_dir) / row.name, allowed_suffixes=ROW_SUFFIXES)
        metrics_path = staged.file(Path(metrics_dir) / f"{row.name}.json")
        return _run_row(cfg, row, out, metrics_path, track=track, log_model=log_model)


def _run_row(cfg: WorkflowConfig, row: Row, out: Path, metrics_path: Path, *, track: bool,
             log_model: bool) -> dict[str, Any]:
    from amnet import engine
    from amnet.data.dataset import train_val_datasets
    from amnet.io import read_json_object
    from workflows.evaluate import score_model, write_json

    t0 = time.perf_counter()
    tracking = None
    if track:
        from workflows import tracking

        tracking.configure(cfg)  # fail fast before any training
    # the same training part as `amnet train` (the validation part held out) and, after the
    # last epoch, the validation mAP (val/*) that choices between rows may use
    train_ds, val_ds = train_val_datasets(cfg.data, seed=cfg.train.seed)
    tags = {"ablation": row.name, "ablation.label": row.label,
            "ablation.tables": ",".join(map(str, row.tables))}
    run_id = None

    def train_and_score(callback: Any = None) -> tuple[Any, dict[str, Path], Any, Any]:
        res = engine.fit(cfg, train_ds, val_ds, callback=callback, checkpoint_dir=out / "ckpt")
        ckpt = out / "model.pt"
        Path(res["checkpoint"]).replace(ckpt)
        (out / "ckpt").rmdir()
        model = res["state"].eval_model
        result, _ = score_model(cfg, model, res["classes"], metrics_path=metrics_path,
                                predictions_path=out / "predictions.json",
                                per_class_path=out / "per_class_ap.json", name=row.name)
        val = {k: v for k, v in res["metrics"].items() if k.startswith(engine.VAL_PREFIX)}
        if val:  # beside the test numbers, prefixed: "split" names the unprefixed ones
            write_json(metrics_path, {**read_json_object(metrics_path, missing_ok=False), **val})
        return res, ckpt, model, result

    if tracking is None:
        _, _, _, result = train_and_score()
    else:
        with tracking.start_run(cfg, run_name=f"ablation-{row.name}", tags=tags) as run:
            run_id = run.info.run_id
            tracking.log_dataset_inputs(cfg, run_id, ("train", "val", "test"))
            res, ckpt, model, result = train_and_score(tracking.epoch_logger(run_id))
            tracking.log_evaluation(result, out / "predictions.json", {},
                                    fingerprint=tracking.test_set_fingerprint(cfg),
                                    step=cfg.train.epochs)
            if log_model:
                item = train_ds[0]
                feats = item["feats"][None, :, : min(int(item["feats"].shape[-1]), 128)]
                tracking.log_model(model, feats, None, res["classes"], cfg, checkpoint=ckpt)
    seconds = time.perf_counter() - t0
    write_json(out / "mlflow_run.json", {"run_id": run_id, "row": row.name})
    log.info("ablation %s (%s): average mAP %.4f in %.0f s", row.name, row.label,
             result.average_mAP, seconds)
    return {"row": row.name, "metrics": result.metrics(), "run_id": run_id, "seconds": seconds}


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--row", required=True, help="row name in the ablations file")
    parser.add_argument("--ablations", default=DEFAULT_ROWS, help="rows file (%(default)s)")
    parser.add_argument("--out", default="outputs/ablations", help="per-row output folder root")
    parser.add_argument("--metrics", default="metrics/ablations", help="per-row metrics folder")
    parser.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    parser.add_argument("--no-model", action="store_true", help="do not log the model")


def run(args: argparse.Namespace) -> int:
    common, rows = load_rows(args.ablations)
    if args.row not in rows:
        raise ConfigError(f"{args.ablations}: no row {args.row!r} (rows: {', '.join(rows)})")
    row = rows[args.row]
    cfg = row_config(args.params, row, common, args.overrides)
    result = run_row(cfg, row, out_dir=args.out, metrics_dir=args.metrics,
                     track=not args.no_track, log_model=not args.no_model)
    print(json.dumps(result["metrics"], indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workflows.ablations",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m workflows.ablations`` (the DVC stage) == ``amnet ablation``."""
    from workflows.cli import main as cli_main

    return cli_main(["ablation", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
