"""The ``amnet`` command line: one entry point, one option style.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; they are imported only when chosen, so ``amnet --help`` stays fast and
``amnet eval`` never pays for importing Ray or MLflow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from amnet.progress import set_quiet

# name → (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "features": ("workflows.features", "build or import a feature set (synthetic or a release)"),
    "extract": ("workflows.extract", "extract I3D features from raw videos"),
    "train": ("workflows.train", "train AMNet (in-process, or on Ray Train with N workers)"),
    "evaluate": ("workflows.evaluate", "run inference on a split and score it (pipeline stage)"),
    "eval": ("workflows.eval_cmd", "score a predictions JSON against ground truth (mAP)"),
    "detect": ("workflows.detect", "detect actions in feature files with a trained model"),
    "matrix": ("workflows.matrix.cli", "the ablation matrix: rows x seeds on Ray (Tables 2-5)"),
    "sweep": ("workflows.sweep", "Ray Tune + Optuna search over lambda1, lambda2, GAM depth"),
    "report": ("workflows.report", "paper-style tables and plots from the metrics"),
    "promote": ("workflows.register", "register a model and move the champion alias if it wins"),
    "analyze": ("workflows.analyze", "DETAD-style false-positive analysis and plots"),
    "ui": ("workflows.ui", "open the MLflow UI on this project's tracking store"),
    "config": ("workflows.config_cmd", "print the resolved configuration or the schema"),
}


def add_config_arguments(parser: argparse.ArgumentParser,
                         default: str | None = "params/default.yaml") -> None:
    """The shared params/override options every config-driven command takes.

    ``default=None``: no params file unless one is given (the built-in defaults).
    """
    parser.add_argument("-p", "--params", default=default,
                        help="params YAML (default: %(default)s)" if default is not None
                        else "params YAML (default: none, the built-in defaults)")
    parser.add_argument("-s", "--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="dotted override, e.g. -s loss.lambda1=2 (repeatable)")


def _add_verbosity(parser: argparse.ArgumentParser, default: object = False) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="warnings and errors only, no progress bars")


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amnet", description=__doc__.splitlines()[0])
    _add_verbosity(parser)
    # -v/-q also after the command (`amnet train -q`); SUPPRESS keeps a value given before it
    common = argparse.ArgumentParser(add_help=False)
    _add_verbosity(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_, parents=[common])
        if name == load:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(chosen)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.quiet:
        set_quiet()  # CI is handled by amnet.progress itself
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    from amnet.errors import AmnetError

    try:
        return int(module.run(args) or 0)
    except AmnetError as e:  # expected, user-facing failures: one clear line, no traceback
        _report(e, args.verbose)
        return 2
    except OSError as e:  # a file that cannot be read or written: its name is in the message
        _report(e, args.verbose)
        return 2


def _report(e: BaseException, verbose: bool) -> None:
    """Log ``e`` as one line (messages quoting YAML or JSON may span several); ``-v`` adds the
    traceback."""
    text = " ".join(str(e).split()) or type(e).__name__
    logging.getLogger("amnet").error("%s", text, exc_info=e if verbose else None)


if __name__ == "__main__":
    sys.exit(main())
