"""``amnet analyze``: DETAD false-positive analysis and the paper-style plots of one run.

    amnet analyze GT.json PRED.json [--subset Test] [--out DIR]
                  [--compare PRED2.json ... --names A B ...] [--video VID]

Writes into DIR the per-class AP chart (Fig. 5), the false-positive chart (Fig. 7), the
precision–recall curves and a video timeline as PNG, each with its data as CSV (and the
analysis as JSON), then prints the error breakdown. Subset and tIoU thresholds default to
the params file's ``eval.subset`` / ``eval.tiou``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from amnet.errors import ConfigError, DataError, PredictionError
from amnet.evaluation.parse import load_json
from amnet.io import read_json, staged_outputs
from workflows.cli import add_config_arguments
from workflows.config import load_config

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gt", metavar="GT.json", help="ActivityNet-style ground-truth file")
    parser.add_argument("pred", metavar="PRED.json", help="results JSON of the run to analyse")
    parser.add_argument("--subset", default=None,
                        help="ground-truth subset (default: eval.subset of the params)")
    parser.add_argument("--out", default="outputs/analysis", metavar="DIR",
                        help="folder for the PNG/CSV/JSON files (default: %(default)s)")
    parser.add_argument("--compare", nargs="+", default=[], metavar="PRED2.json",
                        help="other runs' results, drawn beside PRED in the per-class AP chart")
    parser.add_argument("--names", nargs="+", default=None, metavar="NAME",
                        help="one name for PRED then one per --compare file (default: file "
                             "names)")
    parser.add_argument("--video", default=None, metavar="VID",
                        help="video for the timeline (default: the subset's annotated video "
                             "with most classes, then fewest instances)")
    parser.add_argument("--tiou", nargs="+", type=float, default=None, metavar="T",
                        help="tIoU thresholds of the average mAP (default: eval.tiou)")
    parser.add_argument("--analysis-tiou", type=float, default=0.5, metavar="T",
                        help="tIoU at which false positives are classified (default: "
                             "%(default)s, as the paper's Fig. 7)")
    parser.add_argument("--top-k", type=int, default=20, metavar="K",
                        help="predictions drawn on the timeline (default: %(default)s)")
    add_config_arguments(parser)


def _names(args: argparse.Namespace) -> list[str]:
    files = [args.pred, *args.compare]
    if args.names is None:
        names = [Path(f).stem for f in files]
        return names if len(set(names)) == len(names) else [f"run{i + 1}"
                                                            for i in range(len(files))]
    if len(args.names) != len(files):
        raise ConfigError(f"--names: expected {len(files)} name(s) (PRED and each --compare "
                          f"file), got {len(args.names)}: {args.names}")
    if len(set(args.names)) != len(args.names):
        raise ConfigError(f"--names: names must differ, got {args.names}")
    return list(args.names)


def format_analysis(a: dict[str, Any]) -> str:
    """The error breakdown of ``FPAnalysis.to_dict()`` as a readable table (percent)."""
    from amnet.evaluation.analysis import DISPLAY_NAMES, ERROR_TYPES

    gain = a.get("average_mAP_gain") or {}
    lines = [f"False positives at tIoU {a['tiou']:g} among the top-{a['limit_factor']}G "
             f"predictions ({a['num_predictions']} kept, G = {a['num_gt']}): "
             f"{a['num_true_positives']} TP, {a['num_false_positives']} FP",
             f"{'error type':<22}{'count':>8}{'share (%)':>11}{'avg-mAP gain':>14}"]
    for t in ERROR_TYPES:
        g = f"{100 * gain[t]:+13.2f}" if t in gain else f"{'-':>13}"
        lines.append(f"{DISPLAY_NAMES[t]:<22}{a['counts'][t]:>8}{100 * a['shares'][t]:>11.1f} {g}")
    if a.get("baseline_average_mAP") is not None:
        lines.append(f"average mAP of the kept predictions: {100 * a['baseline_average_mAP']:.2f}"
                     f" (tIoU {', '.join(f'{t:g}' for t in a['gain_tiou'])})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from amnet.evaluation.analysis import load_detections
    from amnet.evaluation.plots import write_all_plots

    cfg = load_config(args.params, args.overrides)
    subset = args.subset or cfg.eval.subset
    tiou = args.tiou or list(cfg.eval.tiou)
    if not all(0 < t <= 1 for t in [*tiou, args.analysis_tiou]):
        raise ConfigError(f"--tiou/--analysis-tiou: thresholds must be in (0, 1], got "
                          f"{[*tiou, args.analysis_tiou]}")
    if args.top_k < 1:
        raise ConfigError(f"--top-k: must be >= 1, got {args.top_k}")
    names = _names(args)
    gt = load_json(args.gt, "ground truth", DataError)
    runs: dict[str, Any] = {}
    for name, path in zip(names, [args.pred, *args.compare], strict=True):
        preds = load_json(path, "predictions", PredictionError)
        try:  # validate here so that an error names the file it comes from
            load_detections(gt, preds, subset=subset)
        except PredictionError as e:
            raise PredictionError(f"{path}: {e}") from None
        except DataError as e:
            raise DataError(f"{args.gt}: {e}") from None
        runs[name] = preds
    main, *others = names
    if args.video is not None and args.video not in gt.get("database", {}):
        raise DataError(f"--video: {args.video!r} is not a video of {args.gt}")
    with staged_outputs() as staged:  # DIR is replaced whole, once every file is written
        paths = write_all_plots(gt, runs[main], staged.folder(args.out), subset=subset,
                                tiou=tiou, compare={n: runs[n] for n in others}, name=main,
                                video=args.video, analysis_tiou=args.analysis_tiou,
                                top_k=args.top_k)
    paths = {k: staged.final(p) for k, p in paths.items()}
    print(format_analysis(read_json(paths["fp_analysis_json"])))
    print(f"\nwrote {len(paths)} files to {args.out}:")
    for key, p in paths.items():
        print(f"  {key:<24} {p}")
    return 0
