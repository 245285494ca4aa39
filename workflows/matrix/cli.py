"""``amnet matrix`` / ``python -m workflows.matrix``: run the ablation matrix, write its
metrics file; exit status 1 (after every cell ran) when a cell failed, naming it; 130 on
Ctrl-C (finished cells kept: the same command continues)."""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["add_arguments", "main", "run"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from workflows.cli import add_config_arguments
    from workflows.matrix.spec import DEFAULT_ROWS

    add_config_arguments(parser)
    parser.add_argument("--ablations", default=DEFAULT_ROWS, help="rows file (%(default)s)")
    parser.add_argument("--preset", help="rows to run (default: the file's matrix.preset)")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="seeds (default: the file's matrix.seeds)")
    parser.add_argument("--out", default="outputs/matrix",
                        help="cell results (kept between runs: resume) (%(default)s)")
    parser.add_argument("--metrics", default="metrics/matrix.json",
                        help="per-row summary, a DVC metrics file (%(default)s)")
    parser.add_argument("--no-track", action="store_true", help="do not log to MLflow")


def run(args: argparse.Namespace) -> int:
    from amnet.io import write_json
    from workflows.matrix.runner import run_matrix
    from workflows.matrix.spec import build_spec
    from workflows.matrix.summary import summarise

    spec = build_spec(args.params, args.ablations, preset=args.preset, seeds=args.seeds,
                      overrides=args.overrides)
    try:
        res = run_matrix(spec, args.out, track=not args.no_track)
    except KeyboardInterrupt:  # finished cells are on disk; the same command continues
        print(f"interrupted: the finished cells are kept in {args.out}/cells; rerun the same "
              "command (or `dvc repro`) to run only the others", file=sys.stderr)
        return 130
    summary = summarise(spec, res.results)
    write_json(args.metrics, summary)
    for name, row in summary["rows"].items():
        mean, std = row.get("test/average_mAP"), row.get("test/average_mAP_std")
        print(f"{name:24s} test avg mAP "
              + ("–" if mean is None else f"{100 * mean:5.1f}")
              + ("" if std is None else f" ± {100 * std:.1f}")
              + f"  ({row['n_seeds']}/{len(spec.seeds)} seeds)")
    print(f"{len(res.ran)} cell(s) run, {len(res.skipped)} already finished, "
          f"{res.seconds:.0f} s")
    if res.failed:
        for key in res.failed:
            r = res.results[key]
            log.error("cell %s (rows %s, seed %s) failed: %s", key, ",".join(r["rows"]),
                      r["seed"], r["error"])
        print(f"{len(res.failed)} of {len(spec.cells)} cell(s) failed: "
              + "; ".join(f"{res.results[k]['rows'][0]} seed {res.results[k]['seed']}"
                          for k in res.failed)
              + f" (rerun to retry only them; details in {args.out}/cells/<key>/result.json)",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m workflows.matrix`` (the DVC stage) == ``amnet matrix``."""
    from workflows.cli import main as cli_main

    return cli_main(["matrix", *(sys.argv[1:] if argv is None else argv)])
