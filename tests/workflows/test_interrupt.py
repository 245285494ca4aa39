"""Ctrl-C during `amnet train` (a real subprocess, a real SQLite MLflow store).

SIGINT once the first epoch's checkpoint exists: exit 130, one line with the exact resume
command, no traceback, the checkpoint loads, the MLflow run is KILLED with that command as a
tag. Running the printed command continues the same MLflow run to the end: one metric history,
each epoch once.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from amnet.data.synthetic import generate_synthetic
from amnet.engine import load_checkpoint
from workflows.config import load_config
from workflows.resume import EXIT_INTERRUPTED, plan_resume

REPO = Path(__file__).resolve().parents[2]
PARAMS = str(REPO / "params" / "default.yaml")
EPOCHS = 10
TINY = ["data.synthetic.n_train=8", "data.synthetic.n_test=2", "data.synthetic.feature_dim=16",
        "data.feature_dim=16", "data.synthetic.num_classes=3", "data.num_classes=3",
        "data.synthetic.duration_scale=0.05", "data.max_seq_len=64", "model.fpn_levels=3",
        "model.regression_ranges=[[0,4],[4,8],[8,10000]]", "model.embed_dim=16",
        "model.n_heads=2", "model.gam_depth=1", "model.head_layers=1", "train.batch_size=2",
        f"train.epochs={EPOCHS}", "train.device=cpu", "train.eval_every=5"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # the printed command starts with `amnet`: the console script next to this interpreter
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CI="true",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


def _interrupt_after_first_checkpoint(cmd: list[str], ready: Callable[[], bool], cwd: Path
                                      ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"training ended before it was interrupted: {proc.stderr.read()}"
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_ctrl_c_stops_cleanly_and_the_printed_command_resumes_the_same_run(
        tmp_path: Path, sqlite_overrides: list[str]) -> None:
    from mlflow.tracking import MlflowClient

    from workflows.tracking import TAG_RESUME_COMMAND

    root = tmp_path / "features"
    cfg = load_config(None, [*TINY, *sqlite_overrides])
    generate_synthetic(cfg.data.synthetic, root, stride=cfg.data.stride, window=cfg.data.window)
    out, metrics = tmp_path / "out", tmp_path / "metrics" / "train.json"
    sets = [a for o in [*TINY, f"data.root={root}", *sqlite_overrides] for a in ("-s", o)]
    ckpt = out / "checkpoints" / "last.pt"
    first = _interrupt_after_first_checkpoint(
        [sys.executable, "-m", "workflows.cli", "-q", "train", "-p", PARAMS, *sets,
         "--out", str(out), "--metrics", str(metrics)], ckpt.exists, tmp_path)

    assert first.returncode == EXIT_INTERRUPTED, first.stderr
    assert "Traceback" not in first.stderr and "KeyboardInterrupt" not in first.stderr
    lines = [ln for ln in first.stderr.splitlines() if "interrupted" in ln]
    assert len(lines) == 1 and lines[0].startswith("amnet train: interrupted after epoch "), \
        first.stderr
    command = lines[0].split("resume with: ", 1)[1]
    assert shlex.split(command)[:2] == ["amnet", "train"]
    assert f"--resume {ckpt}" in command
    # the last complete checkpoint is kept and loads; nothing half-written beside it
    state, _ = load_checkpoint(ckpt, device="cpu")
    assert 1 <= state.epoch < EPOCHS
    assert f"after epoch {state.epoch} of {EPOCHS};" in lines[0]
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["last.pt"]
    assert not (out / "model.pt").exists() and not metrics.exists()

    client = MlflowClient(cfg.tracking.tracking_uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    [killed] = client.search_runs([exp.experiment_id])
    assert killed.info.status == "KILLED"
    assert killed.data.tags[TAG_RESUME_COMMAND] == command
    logged = [m.step for m in client.get_metric_history(killed.info.run_id, "loss/total")]
    # the epoch whose checkpoint was written may not have been reported yet
    assert sorted(logged) == list(range(len(logged))) and len(logged) in (state.epoch - 1,
                                                                            state.epoch)

    resumed = subprocess.run(shlex.split(command), cwd=tmp_path, env=_env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at epoch {state.epoch + 1}" in resumed.stderr  # continued, not restarted
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    assert run_id == killed.info.run_id, "the resumed training continues the same MLflow run"
    [run] = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and TAG_RESUME_COMMAND not in run.data.tags
    for key in ("loss/total", "lr"):
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(EPOCHS)), key  # every epoch once, none twice
    assert json.loads(metrics.read_text())["epochs"] == EPOCHS


@pytest.mark.slow
def test_ctrl_c_under_ray_train_resumes_the_ray_run_and_the_same_mlflow_run(
        tmp_path: Path, sqlite_overrides: list[str]) -> None:
    """The same under Ray Train (1 worker): the Ray run is aborted, resumed by name."""
    from mlflow.tracking import MlflowClient

    from workflows.ray_train import registered_epoch

    root, storage = tmp_path / "features", tmp_path / "ray"
    over = [*TINY, f"data.root={root}", *sqlite_overrides, "ray.num_workers=1",
            f"ray.storage_path={storage}", "ray.local_cpus=2"]
    cfg = load_config(None, over)
    generate_synthetic(cfg.data.synthetic, root, stride=cfg.data.stride, window=cfg.data.window)
    out = tmp_path / "out"

    def registered() -> bool:
        return any(registered_epoch(d) is not None for d in storage.glob("*"))

    first = _interrupt_after_first_checkpoint(
        [sys.executable, "-m", "workflows.cli", "-q", "train", "-p", PARAMS,
         *[a for o in over for a in ("-s", o)], "--out", str(out),
         "--metrics", str(tmp_path / "train.json")], registered, tmp_path)
    assert first.returncode == EXIT_INTERRUPTED, first.stderr[-3000:]
    # (lines from Ray's own actors carry a "(Actor pid=N)" prefix: not this process's output)
    assert not any(ln.startswith("Traceback") for ln in first.stderr.splitlines()), \
        first.stderr[-3000:]
    [line] = [ln for ln in first.stderr.splitlines() if "interrupted" in ln]
    command = line.split("resume with: ", 1)[1]
    [run_dir] = list(storage.glob("train-*"))
    assert f"-s ray.run_name={run_dir.name}" in command and "--resume" not in command
    assert f"its checkpoint of epoch {registered_epoch(run_dir) + 1} of {EPOCHS}" in line
    client = MlflowClient(cfg.tracking.tracking_uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    [killed] = client.search_runs([exp.experiment_id])
    assert killed.info.status == "KILLED"

    resumed = subprocess.run(shlex.split(command), cwd=tmp_path, env=_env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "mlflow_run.json").read_text())["run_id"] == killed.info.run_id
    [run] = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss/total")]
    assert sorted(steps) == list(range(EPOCHS))  # the replayed epochs are not logged twice


def _args(**over: object) -> argparse.Namespace:
    base = dict(params="params/default.yaml", overrides=[], out="outputs/train",
                metrics="metrics/train.json", resume=None, device=None, no_val=False,
                no_track=False)
    return argparse.Namespace(**{**base, **over})


def test_a_ray_training_is_named_before_it_starts_so_an_interrupt_can_resume_it(
        tmp_path: Path) -> None:
    over = ["ray.num_workers=2", f"ray.storage_path={tmp_path / 'ray'}"]
    cfg, plan = plan_resume(_args(overrides=over), load_config(None, over))
    assert cfg.ray.run_name.startswith("train-") and not plan.resuming
    command = plan.command()
    assert f"-s ray.run_name={cfg.ray.run_name}" in command and "--resume" not in command
    assert plan.message().endswith(f"resume with: {command}")
    assert "no checkpoint was registered yet" in plan.message()
    # the printed command resumes: the same run name, the same resume key (the same MLflow run)
    named = [*over, f"ray.run_name={cfg.ray.run_name}"]
    again_cfg, again = plan_resume(_args(overrides=named), load_config(None, named))
    assert again.resuming and again.key == plan.key and again_cfg.ray.run_name == cfg.ray.run_name
    assert again.command() == command
    # another name is another training
    _, other = plan_resume(_args(overrides=over), load_config(None, over))
    assert other.key != plan.key


@pytest.mark.parametrize("resume", [None, "elsewhere/last.pt"])
def test_in_process_resume_key_follows_the_checkpoint(tmp_path: Path, resume: str | None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [])
    _, fresh = plan_resume(_args(), cfg)
    _, resumed = plan_resume(_args(resume=resume or "outputs/train/checkpoints/last.pt"), cfg)
    assert not fresh.resuming and resumed.resuming
    assert (resumed.key == fresh.key) == (resume is None)
    assert "start again with: amnet train" in fresh.message()  # nothing to resume yet
