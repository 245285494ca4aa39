"""The ``extract`` section: I3D feature extraction from raw videos (read by ``amnet.extract``).

Kept here rather than in ``amnet/extract/`` so that loading a params file never imports the
extractor (PyAV, the I3D network): the training stages must not depend on that code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from amnet.config.validate import setting as _f  # short: every field below uses it

__all__ = ["ExtractConfig"]


@dataclass
class ExtractConfig:
    """I3D feature extraction from raw videos (``amnet extract``, see ``amnet.extract``)."""

    video_dir: str = _f("data/videos", help="folder of source videos (not recursive)")
    out_dir: str = _f("data/extracted", help="<video_id>.npy (T x C float32) + manifest.json")
    extensions: list[str] = _f(factory=lambda: [".mp4", ".avi", ".mkv", ".mov", ".webm"],
                               help="video file suffixes picked up in video_dir")
    fps: float = _f(30.0, gt=0, help="target fps: frames are resampled to it by timestamp")
    stride: int = _f(4, ge=1, help="frames (at the target fps) between snippets")
    window: int = _f(16, ge=1, help="frames per snippet")
    checkpoint: str = _f("", help="I3D RGB state dict (pytorch-i3d layout, e.g. rgb_imagenet.pt)")
    allow_random_init: bool = _f(False, help="tests/smoke only: random weights when no checkpoint")
    seed: int = _f(0, help="seed of the random init (allow_random_init only)")
    resize: int = _f(256, ge=8, help="short side after resizing, pixels")
    crop: int = _f(224, ge=8, help="centre crop side, pixels (<= resize); 224 for I3D")
    width: float = _f(1.0, gt=0, le=1, help="encoder channel multiplier; <1 only for tests")
    batch_size: int = _f(8, ge=1, help="windows per encoder batch")
    device: str = _f("auto", help="auto | cpu | cuda | cuda:N")
    on_error: Literal["skip", "fail"] = _f("skip", help="unreadable video: skip it or fail")
    flow: bool = _f(False, help="optical-flow stream; only off/false is supported (RGB only)")

