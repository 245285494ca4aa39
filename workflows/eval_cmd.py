"""``amnet eval GT.json PRED.json``: score a predictions file with the ActivityNet protocol.

Prints the mAP table; ``--json OUT`` writes ``{"mAP": {"0.3": …}, "average_mAP": …,
"per_class_AP": {"0.5": {label: AP}}}`` (fractions in [0, 1]). Thresholds default to the
THUMOS14 set for THUMOS-style annotation files, 0.5:0.05:0.95 otherwise
(:func:`amnet.evaluation.map.default_tiou`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from amnet.errors import DataError
from amnet.evaluation.map import evaluate_files
from amnet.io import write_json
from workflows.cli import add_config_arguments
from workflows.config import load_config

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gt", metavar="GT.json", help="ActivityNet-style ground-truth file")
    parser.add_argument("pred", metavar="PRED.json", help="ActivityNet results file")
    parser.add_argument("--subset", default=None,
                        help="ground-truth subset to score, any case (default: eval.subset, "
                             "Test unless -p/-s say otherwise)")
    parser.add_argument("--tiou", type=float, nargs="+", metavar="T", default=None,
                        help="tIoU thresholds (default: eval.tiou when -p or -s eval.tiou= is "
                             "given, else THUMOS14 0.3..0.7 for THUMOS-style files and "
                             "0.5:0.05:0.95 otherwise)")
    parser.add_argument("--json", metavar="OUT", default=None, help="write the scores as JSON")
    parser.add_argument("--lenient", action="store_true",
                        help="score reversed/zero-length segments as false positives and skip "
                             "unknown labels (counted) instead of failing")
    add_config_arguments(parser, default=None)  # no params file unless given: see --tiou


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params, args.overrides)
    configured = args.params is not None or any(
        o.partition("=")[0].strip() == "eval.tiou" for o in args.overrides)
    tiou = args.tiou or (cfg.eval.tiou if configured else None)
    result = evaluate_files(args.gt, args.pred, subset=args.subset or cfg.eval.subset,
                            tiou=tiou, lenient=args.lenient)
    print(result.table())
    if args.json:
        out = Path(args.json)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json(out, result.to_json(), sort_keys=False)
        except OSError as e:
            raise DataError(f"cannot write --json {out}: {e.strerror}") from None
        log.info("wrote %s", out)
    return 0
