"""Streaming video decoding (PyAV): frames resampled to a target fps, resized, centre-cropped,
then grouped into sliding windows — never the whole video in memory.

**Frame resampling (exact, by timestamp).** Times are measured from the first decoded frame.
Output frame ``k`` stands for the interval ``[k/fps, (k+1)/fps)`` and shows the source frame
that is on screen at its midpoint ``(k + ½)/fps``: source frame ``i`` is on screen during
``[pts_i, pts_{i+1})``, the last one for its own duration (or the previous frame gap). So a
video of duration D gives ``round(D · fps)`` output frames (halves round down); at the source
rate the mapping is the identity even when container timestamps are rounded (tolerance: half a
frame); downsampling 30 → 10 fps takes source frames 1, 4, 7, …; variable frame rate is
handled the same way. Arithmetic is in exact fractions of the stream time base.

**Snippets.** Snippet ``i`` covers output frames ``[i·stride, i·stride + window)``, so its centre
is at ``(i·stride + window/2) / fps`` seconds (the data layer's ``snippet_to_seconds``) and a
video of N frames gives ``(N - window) // stride + 1`` snippets. The last ``< stride`` frames
that do not fill another window are not covered (as in the public feature releases). A video
shorter than one window gives one snippet, padded by repeating its last frame
(``padded=True`` in the manifest).

**Bad files.** A file that cannot be opened, has no video stream, fails mid-stream, or decodes
to clearly less than its container's declared duration (truncated: short by more than
max(0.5 s, 2 %)) raises :class:`VideoDecodeError` naming the file.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from amnet.data.timing import snippet_to_seconds
from amnet.errors import DataError

__all__ = [
    "ResampledVideo",
    "VideoDecodeError",
    "VideoInfo",
    "count_output_frames",
    "count_snippets",
    "iter_windows",
    "probe_video",
    "snippet_centers",
]

log = logging.getLogger(__name__)


class VideoDecodeError(DataError):
    """A video file that cannot be opened or decoded (names the file)."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says before decoding (estimates: used for progress bars)."""

    path: str
    width: int
    height: int
    fps: float           # the stream's guessed/average frame rate
    duration: float      # seconds, 0.0 when unknown
    codec: str


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise VideoDecodeError(f"video {path}: file not found")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoDecodeError(f"video {path}: cannot open ({e})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"video {path}: no video stream")
    return container


def probe_video(path: str | Path) -> VideoInfo:
    """Container metadata of the first video stream (no frames decoded)."""
    path = Path(path)
    with _open(path) as container:
        s = container.streams.video[0]
        rate = s.guessed_rate or s.average_rate
        if s.duration is not None and s.time_base is not None:
            duration = float(s.duration * s.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        return VideoInfo(str(path), s.codec_context.width, s.codec_context.height,
                         float(rate) if rate else 0.0, duration, s.codec_context.name)


def count_output_frames(duration: float, fps: float) -> int:
    """Frames the resampler yields for a video of ``duration`` seconds: ``round(D·fps)``,
    halves down (frame k exists iff its midpoint (k+½)/fps < D)."""
    return max(0, math.ceil(duration * fps - 0.5))


def count_snippets(n_frames: int, window: int, stride: int) -> int:
    """Snippets from ``n_frames`` frames (a non-empty video shorter than a window gives 1)."""
    if n_frames <= 0:
        return 0
    return 1 if n_frames < window else (n_frames - window) // stride + 1


def snippet_centers(n_snippets: int, fps: float, stride: int, window: int) -> np.ndarray:
    """Centre time (seconds) of each snippet: ``(i·stride + window/2) / fps``."""
    return snippet_to_seconds(np.arange(n_snippets), fps, stride, window)


class ResampledVideo:
    """Iterate ``(crop, crop, 3)`` uint8 RGB frames of one video at ``fps`` (see module doc).

    The short side is resized to ``resize`` (bilinear, libswscale), then the centre
    ``crop × crop`` is kept. Only one decoded source frame (plus its converted copy) is held at
    a time. After iteration, ``n_frames`` (output frames), ``duration`` (seconds, from the
    timestamps) and ``source_frames`` are set. Decoding errors raise :class:`VideoDecodeError`.
    """

    def __init__(self, path: str | Path, fps: float, resize: int, crop: int) -> None:
        if crop > resize:
            raise ValueError(f"crop ({crop}) must be <= resize ({resize})")
        self.path = Path(path)
        self.fps = Fraction(str(fps))  # exact for decimal params like 29.97
        self.resize, self.crop = resize, crop
        self.n_frames = 0
        self.source_frames = 0
        self.duration = 0.0

    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        w, h = frame.width, frame.height
        scale = self.resize / min(w, h)
        nw, nh = max(self.crop, round(w * scale)), max(self.crop, round(h * scale))
        rgb = frame.reformat(width=nw, height=nh, format="rgb24",
                             interpolation="BILINEAR").to_ndarray()
        top, left = (nh - self.crop) // 2, (nw - self.crop) // 2
        return np.ascontiguousarray(rgb[top:top + self.crop, left:left + self.crop])

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            yield from self._frames()
        except av.FFmpegError as e:
            raise VideoDecodeError(f"video {self.path}: decoding failed after "
                                   f"{self.source_frames} frames ({e})") from None

    def _frames(self) -> Iterator[np.ndarray]:
        with _open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame + slice threads inside libavcodec
            tb = stream.time_base or Fraction(1, 1)
            rate = stream.guessed_rate or stream.average_rate
            k = 0                       # next output frame index
            t0 = None                   # pts of the first frame (Fraction seconds)
            held = None                 # (time, frame, converted array or None, duration)
            prev_time = None
            for frame in container.decode(stream):
                if frame.pts is not None:
                    t = Fraction(frame.pts) * tb
                elif prev_time is not None and rate:  # no timestamp: assume the nominal rate
                    t = prev_time + 1 / Fraction(rate)
                else:
                    t = Fraction(0)
                if t0 is None:
                    t0 = t
                t -= t0
                if prev_time is not None and t <= prev_time:
                    log.debug("%s: skipping frame with non-increasing pts", self.path)
                    continue
                self.source_frames += 1
                if held is not None:
                    # the held frame is on screen during [held_time, t)
                    while (k + Fraction(1, 2)) / self.fps < t:
                        if held[2] is None:
                            held = (held[0], held[1], self._convert(held[1]), held[3])
                        yield held[2]
                        k += 1
                dur = Fraction(frame.duration) * tb if frame.duration else None
                if dur is None and prev_time is not None:
                    dur = t - prev_time
                held = (t, frame, None, dur)
                prev_time = t
            if held is None:
                raise VideoDecodeError(f"video {self.path}: no decodable frames")
            last_dur = held[3] or (1 / Fraction(rate) if rate else 1 / self.fps)
            end = held[0] + last_dur
            while (k + Fraction(1, 2)) / self.fps < end:
                if held[2] is None:
                    held = (held[0], held[1], self._convert(held[1]), held[3])
                yield held[2]
                k += 1
            self.n_frames = k
            self.duration = float(end)
            declared = float(stream.duration * tb) if stream.duration else 0.0
            if declared - self.duration > max(0.5, 0.02 * declared):
                # e.g. a cut-off download: libavcodec stops quietly at the last whole packet
                raise VideoDecodeError(
                    f"video {self.path}: truncated: decoded {self.duration:.2f} s of the "
                    f"{declared:.2f} s its container declares ({self.source_frames} frames)")
            if k == 0:
                raise VideoDecodeError(f"video {self.path}: shorter than half a frame at "
                                       f"{float(self.fps):g} fps ({float(end):.4f} s)")


def iter_windows(frames: Iterable[np.ndarray], window: int, stride: int) -> Iterator[np.ndarray]:
    """Sliding windows ``(window, H, W, 3)`` over a frame stream, keeping only ``window``
    frames in a ring buffer. Window ``i`` = frames ``[i·stride, i·stride + window)``; a stream
    shorter than one window yields one window padded with its last frame."""
    buf: deque[np.ndarray] = deque(maxlen=window)
    n = 0
    for frame in frames:
        buf.append(frame)
        n += 1
        if n >= window and (n - window) % stride == 0:
            yield np.stack(buf)
    if 0 < n < window:
        yield np.stack([*buf, *([buf[-1]] * (window - n))])
