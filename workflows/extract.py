"""``amnet extract`` / DVC stage ``extract``: I3D features from the raw videos of a folder.

    amnet extract -p params/extract.yaml [-s extract.checkpoint=weights/rgb_imagenet.pt]
    python -m workflows.extract -p params/extract.yaml      # what dvc.yaml runs

Writes ``<extract.out_dir>/<video_id>.npy`` + ``manifest.json``; re-running extracts only new or
changed videos (declare the out folder ``persist: true`` in dvc.yaml so DVC keeps it).
"""

from __future__ import annotations

import argparse
import logging
import sys

from amnet.extract import run_extraction
from workflows.cli import add_config_arguments
from workflows.config import load_config

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.set_defaults(params="params/extract.yaml")
    parser.add_argument("--force", action="store_true",
                        help="re-extract every video, ignoring the per-video cache")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.params, args.overrides).extract
    report = run_extraction(cfg, force=args.force)
    rate = report.snippets / report.seconds if report.seconds > 0 else 0.0
    log.info("extract: %d extracted (%d snippets, %.1f snippets/s), %d cached, %d skipped, "
             "%d removed → %s", len(report.extracted), report.snippets, rate,
             len(report.cached), len(report.skipped), len(report.removed), report.manifest)
    if report.skipped:
        log.warning("skipped (see manifest 'skipped'): %s",
                    ", ".join(s["video"] for s in report.skipped))
    return 0


if __name__ == "__main__":
    from workflows.cli import main

    sys.exit(main(["extract", *sys.argv[1:]]))
