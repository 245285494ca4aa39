"""The `amnet` entry point: help lists every command, errors are one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workflows.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_console_script_runs() -> None:
    exe = Path(sys.executable).with_name("amnet")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0
    assert "detect" in proc.stdout and "train" in proc.stdout


def test_every_command_module_has_help() -> None:
    missing = []
    for name in COMMANDS:
        proc = subprocess.run([sys.executable, "-m", "workflows.cli", name, "--help"],
                              capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            missing.append((name, proc.stderr.strip().splitlines()[-1:]))
    assert not missing, missing


def test_config_error_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: -3\n")
    proc = subprocess.run([sys.executable, "-m", "workflows.cli", "config", "-p", str(bad)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "train.epochs" in proc.stderr and str(bad) in proc.stderr


def test_verbosity_after_the_command_and_quiet_progress_bars() -> None:
    """-v/-q work before or after the command; --quiet or $CI switch tqdm bars off."""
    from workflows.cli import build_parser

    for argv, want in ((["-q", "config"], (False, True)), (["config", "-q"], (False, True)),
                       (["-v", "config"], (True, False)), (["config"], (False, False))):
        args = build_parser("config").parse_args(argv)
        assert (args.verbose, args.quiet) == want, argv
    probe = ("import sys; from workflows.cli import main; "
             "from amnet.progress import bars_disabled; "
             "main(sys.argv[1:]); print(bars_disabled())")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    outs = [subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True,
                           text=True, cwd=REPO, env={**env, **extra}).stdout.split()[-1]
            for argv, extra in ((["config"], {}), (["config", "-q"], {}),
                                (["config"], {"CI": "true"}))]
    assert outs == ["None", "True", "True"]  # None: tqdm shows bars on a terminal only
