"""Helpers for the extraction tests: small videos encoded with PyAV (imported by the tests and
by this folder's conftest; a uniquely named module, since bare ``conftest`` is ambiguous)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real_i3d"

# Grey level of source frame j in the encoded test videos: far enough apart (5 levels) that
# lossy coding (±2) cannot confuse neighbours, so each decoded frame tells which source it is.
LEVEL = 5


def write_video(path: Path, frames: np.ndarray, fps: int | Fraction) -> Path:
    """Encode ``frames`` (N, H, W, 3) uint8 as H.264 (near-lossless) at a constant ``fps``."""
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "1", "preset": "ultrafast"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def grey_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame j is uniformly grey at level ``LEVEL * j`` (n <= 51)."""
    assert n * LEVEL <= 255
    levels = (np.arange(n) * LEVEL).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).copy()


def frame_index(frame: np.ndarray) -> int:
    """Which source frame of :func:`grey_frames` a decoded frame shows."""
    return round(float(frame.mean()) / LEVEL)
