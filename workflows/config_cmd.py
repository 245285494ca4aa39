"""``amnet config``: print the resolved configuration (YAML) or every key with its help."""

from __future__ import annotations

import argparse

import yaml

from amnet.config import schema_help
from workflows.cli import add_config_arguments
from workflows.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--schema", action="store_true", help="list every key with its meaning")


def run(args: argparse.Namespace) -> int:
    if args.schema:
        print(schema_help())
        return 0
    cfg = load_config(args.params, args.overrides)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0
