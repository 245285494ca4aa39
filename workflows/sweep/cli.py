"""``amnet sweep`` / ``python -m workflows.sweep``: the command line of a sweep."""

from __future__ import annotations

import argparse
import sys

from workflows.config import load_config
from workflows.sweep.driver import run_sweep
from workflows.sweep.space import METRIC, search_dims

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from workflows.cli import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--resume", metavar="NAME",
                        help="continue an interrupted sweep (its name under ray.storage_path, "
                             "or its folder)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params, args.overrides)
    res = run_sweep(cfg, params_path=args.params, resume=args.resume)
    cols = ["trial", "status", "epochs", *[d.key for d in search_dims(cfg)], METRIC]
    print(res.trials[cols].to_string(index=False) if len(res.trials) else "(no trials)")
    if res.interrupted:
        print(f"interrupted: continue with  amnet sweep -p {args.params} --resume {res.name}")
        return 1
    print(f"best {METRIC}={res.best_metric:.4f}: {res.best} -> {res.best_params_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m workflows.sweep -p params/sweep.yaml`` (the DVC stage)."""
    from workflows.cli import main as cli_main

    return cli_main(["sweep", *(sys.argv[1:] if argv is None else argv)])
