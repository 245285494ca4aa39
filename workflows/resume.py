"""Interrupted trainings: Ctrl-C stops ``amnet train`` with one line naming the exact command
that resumes it (exit 130, no traceback), and a resumed training finds the MLflow run to continue.

What is resumed from: in-process, ``<out>/checkpoints/last.pt`` (written atomically after every
epoch, so an interrupt keeps the last complete one); under Ray Train (``ray.num_workers >= 1``),
the Ray run by name (``-s ray.run_name=<name>``: Train V2 continues from its last registered
checkpoint), so a fresh Ray training is named before it starts. Either is hashed into a *resume
key* that tags the MLflow run (``workflows.tracking.training_run``), which is how the resumed
training re-opens the same run instead of starting a second one.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import shlex
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from workflows.config import WorkflowConfig

__all__ = ["EXIT_INTERRUPTED", "ResumePlan", "plan_resume", "sigint_once"]

#: The shell's exit status for a process stopped by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


def _key(kind: str, where: str) -> str:
    # hashed: a path may hold quotes or spaces, and the key is matched in an MLflow filter
    return hashlib.sha256(f"{kind}:{where}".encode()).hexdigest()[:32]


@dataclass
class ResumePlan:
    """How this ``amnet train`` invocation is resumed, decided before it trains."""

    base: list[str]                # the command without --resume
    total_epochs: int
    resuming: bool                 # this invocation continues an earlier one
    key: str                       # the resume key (MLflow tag amnet.resume_key)
    checkpoint: Path | None = None  # in-process: where fit writes the resumable state
    given_resume: Path | None = None
    ray_run: str | None = None     # Ray Train: the run name to resume by
    ray_dir: Path | None = None    # its local run folder (None on remote storage)

    def _resume_from(self) -> Path | None:
        if self.checkpoint is not None and self.checkpoint.is_file():
            return self.checkpoint
        if self.given_resume is not None and self.given_resume.is_file():
            return self.given_resume  # interrupted before this run's first checkpoint
        return None

    def command(self) -> str:
        """The exact command that continues this training."""
        ckpt = self._resume_from()
        return shlex.join([*self.base, *(["--resume", str(ckpt)] if ckpt is not None else [])])

    def message(self) -> str:
        """The one line printed when the training is interrupted."""
        if self.ray_run is not None:
            epoch = None
            if self.ray_dir is not None:
                from workflows.ray_train import registered_epoch

                epoch = registered_epoch(self.ray_dir)
            kept = (f"its checkpoint of epoch {epoch + 1} of {self.total_epochs} is kept"
                    if epoch is not None else "no checkpoint was registered yet")
            return (f"amnet train: interrupted; Ray run {self.ray_run}: {kept}; resume with: "
                    f"{self.command()}")
        ckpt = self._resume_from()
        if ckpt is None:
            return ("amnet train: interrupted before the first epoch finished (no checkpoint); "
                    f"start again with: {self.command()}")
        from amnet.engine import checkpoint_epochs
        from amnet.errors import ModelLoadError

        try:  # the checkpoint's own count (an epoch may be saved but not yet reported)
            after = f" after epoch {checkpoint_epochs(ckpt)} of {self.total_epochs}"
        except ModelLoadError:  # never half-written, but it may not be ours (--resume X)
            after = ""
        return (f"amnet train: interrupted{after}; checkpoint {ckpt} kept; resume with: "
                f"{self.command()}")


def plan_resume(args: argparse.Namespace, cfg: WorkflowConfig) -> tuple[WorkflowConfig, ResumePlan]:
    """``(cfg, plan)`` for ``amnet train``'s parsed ``args``; a Ray training without
    ``ray.run_name`` gets its (fresh) name here, in ``cfg``, so an interrupt can name it."""
    overrides = list(args.overrides)
    ray_dir = None
    if cfg.ray.num_workers >= 1:
        from workflows import ray_utils

        resuming = bool(cfg.ray.run_name)  # a named Ray run continues from its checkpoints
        if not resuming:
            cfg = cfg.replace(f"ray.run_name={ray_utils.fresh_run_name(cfg, 'train')}")
            overrides.append(f"ray.run_name={cfg.ray.run_name}")
        storage = ray_utils.storage_path(cfg)
        ray_dir = None if "://" in storage else Path(storage) / cfg.ray.run_name
        key = _key("ray", f"{storage.rstrip('/')}/{cfg.ray.run_name}")
    base = ["amnet", "train", "-p", str(args.params)]
    for item in overrides:
        base += ["-s", item]
    base += ["--out", str(args.out), "--metrics", str(args.metrics)]
    if args.device is not None:
        base += ["--device", str(args.device)]
    base += [*(["--no-val"] if args.no_val else []), *(["--no-track"] if args.no_track else [])]
    if cfg.ray.num_workers >= 1:
        return cfg, ResumePlan(base, cfg.train.epochs, resuming, key, ray_run=cfg.ray.run_name,
                               ray_dir=ray_dir)
    checkpoint = Path(args.out) / "checkpoints" / "last.pt"
    given = Path(args.resume) if args.resume is not None else None
    key_path = (given if given is not None else checkpoint).resolve()
    return cfg, ResumePlan(base, cfg.train.epochs, given is not None,
                           _key("checkpoint", str(key_path)), checkpoint=checkpoint,
                           given_resume=given)


@contextlib.contextmanager
def sigint_once() -> Iterator[None]:
    """The first SIGINT raises KeyboardInterrupt as usual; later ones are ignored, so a second
    Ctrl-C cannot break the clean-up (ending the MLflow run, printing the resume line)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
