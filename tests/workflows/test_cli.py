"""The `amnet` entry point: help lists every command, errors are one clear line."""

from __future__ import annotations

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
