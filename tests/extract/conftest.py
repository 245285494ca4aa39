"""Fixtures for the extraction tests: small videos encoded here with PyAV, real sample videos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from extract_helpers import REAL, grey_frames, write_video


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The test networks are tiny: one intra-op thread avoids OpenMP barrier stalls when the
    2-core machine is busy (measured 10x slower with 2 threads under load). Restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """``make_video(name, n_frames=50, fps=25, height=48, width=64)`` → a grey-level video."""

    def make(name: str, n_frames: int = 50, fps: int = 25, height: int = 48,
             width: int = 64, folder: Path | None = None) -> Path:
        folder = folder or tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        return write_video(folder / name, grey_frames(n_frames, height, width), fps)

    return make


@pytest.fixture(scope="session")
def real_videos() -> dict[str, Path]:
    videos = {name: REAL / f"{name}.mp4" for name in ("tennis26", "highjump")}
    for p in videos.values():
        assert p.is_file(), f"shared sample video missing: {p}"
    return videos
