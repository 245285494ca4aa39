"""Videos → per-video I3D snippet features, with a per-video cache and a manifest.

Output layout (what ``amnet.data`` reads, like the public feature releases)::

    <out_dir>/<video_id>.npy     (n_snippets, feature_dim) float32, row i = snippet i
    <out_dir>/manifest.json      timing (fps, stride, window), sizes, checksums, sources, errors

Snippet ``i`` of a video covers frames ``[i·stride, i·stride + window)`` at the manifest's
(target) ``fps``; its centre is ``(i·stride + window/2) / fps`` seconds. Each ``.npy`` is
written atomically (temp file + rename) and the manifest is rewritten after every video, so an
interrupted or failing run keeps everything it finished. A video is re-extracted only when its
source (size + mtime, or content hash when only the mtime moved), the settings or the encoder
weights changed.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from amnet.config import ExtractConfig
from amnet.data.feature_set import MANIFEST_FILE
from amnet.data.features import check_plain_name
from amnet.device import resolve_device
from amnet.errors import ConfigError, DataError
from amnet.extract.i3d import I3D, load_i3d
from amnet.extract.video import (
    ResampledVideo,
    VideoDecodeError,
    count_output_frames,
    count_snippets,
    iter_windows,
    probe_video,
)
from amnet.io import atomic_target, dump_json, read_json, safe_child, sha256_file
from amnet.progress import progress

__all__ = ["MANIFEST", "EncoderInfo", "ExtractionReport", "VideoFeatures", "build_encoder",
           "extract_video", "list_videos", "read_manifest", "run_extraction",
           "to_input"]

log = logging.getLogger(__name__)

MANIFEST = MANIFEST_FILE  # the feature set's manifest name (amnet.data.feature_set)
FORMAT = "amnet-extract/1"
T = TypeVar("T")


# --------------------------------------------------------------------------- encoder

@dataclass(frozen=True)
class EncoderInfo:
    """Identity of the weights that produced the features (recorded in the manifest)."""

    checkpoint: str | None      # path as configured; None for a random init
    sha256: str | None          # of the checkpoint file
    random_init: bool
    seed: int | None
    width: float
    feature_dim: int
    arch: str = "i3d-inception-v1"
    stream: str = "rgb"

    @property
    def identity(self) -> str:
        if self.random_init:
            return f"random-init:seed={self.seed}:width={self.width}"
        return f"sha256:{self.sha256}:width={self.width}"


def build_encoder(cfg: ExtractConfig) -> tuple[I3D, EncoderInfo]:
    """The eval-mode encoder the config asks for: a checkpoint, or (only when explicitly
    allowed) a seeded random init. Never downloads anything."""
    if cfg.flow:
        raise ConfigError("'extract.flow': the optical-flow stream is not supported; features "
                          "are RGB-only (1024-d). See the README for two-stream (2048-d) data.")
    if cfg.checkpoint:
        model = load_i3d(cfg.checkpoint, width=cfg.width)
        if model.in_channels != 3:
            raise ConfigError(f"'extract.checkpoint' {cfg.checkpoint} is a {model.in_channels}-"
                              f"channel (flow) I3D; the extractor feeds RGB frames")
        info = EncoderInfo(cfg.checkpoint, sha256_file(cfg.checkpoint), False, None, cfg.width,
                           model.feature_dim)
        return model, info
    if not cfg.allow_random_init:
        raise ConfigError(
            "'extract.checkpoint' is empty: give the path of an I3D RGB state dict in the "
            "pytorch-i3d layout (e.g. rgb_imagenet.pt, see README); weights are never "
            "downloaded. Features from random weights are meaningless; for smoke tests only, "
            "set extract.allow_random_init=true.")
    log.warning("!!! extract.allow_random_init=true and no checkpoint: the I3D encoder has "
                "RANDOM weights (seed %d). These features are meaningless for detection; use "
                "them for smoke tests only. !!!", cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = I3D(num_classes=400, width=cfg.width).eval()
    return model, EncoderInfo(None, None, True, cfg.seed, cfg.width, model.feature_dim)


# --------------------------------------------------------------------------- one video

@dataclass
class VideoFeatures:
    """Features of one video and the timing facts the manifest records."""

    features: np.ndarray    # (n_snippets, feature_dim) float32
    n_frames: int           # frames at the target fps
    duration: float         # seconds, from the stream timestamps
    padded: bool            # shorter than one window: last frame repeated


def _background(items: Iterator[T], depth: int) -> Iterator[T]:
    """Run a producer iterator in a thread (decode while the encoder computes).

    Hand-written because the stdlib has no bounded, exception-forwarding prefetch iterator and
    torch's DataLoader would need the stream split into indexable items.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(msg: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(msg, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as e:  # forwarded to the consumer and re-raised there
            put(("error", e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="amnet-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def _batches(windows: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    batch: list[np.ndarray] = []
    for w in windows:
        batch.append(w)
        if len(batch) == size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def to_input(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(B, T, H, W, 3)`` uint8 RGB → ``(B, 3, T, H, W)`` float32 in [-1, 1] on ``device``
    (the scaling the public I3D ports were trained with: ``x / 127.5 - 1``)."""
    x = torch.from_numpy(batch).to(device)  # uint8 on the wire: 4x less to copy
    return x.permute(0, 4, 1, 2, 3).contiguous().float().div_(127.5).sub_(1.0)


def extract_video(path: str | Path, model: I3D, *, fps: float, stride: int, window: int,
                  resize: int, crop: int, batch_size: int = 8,
                  device: torch.device | str = "cpu", progress: tqdm | None = None,
                  prefetch: bool = True) -> VideoFeatures:
    """Stream one video through the encoder: decode → resample → windows → batches → I3D.

    Memory stays bounded by ``window`` frames in the ring buffer plus a few batches in flight,
    whatever the video length. ``model`` must already be on ``device`` and in eval mode.
    Raises :class:`VideoDecodeError` (names the file) when the video cannot be decoded.
    """
    device = torch.device(device)
    video = ResampledVideo(path, fps, resize, crop)
    batches: Iterator[np.ndarray] = _batches(iter_windows(iter(video), window, stride),
                                             batch_size)
    if prefetch:
        batches = _background(batches, depth=2)
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for batch in batches:
            feats = model(to_input(batch, device))
            out.append(feats.float().cpu().numpy())
            if progress is not None:
                progress.update(len(batch))
    features = np.concatenate(out).astype(np.float32, copy=False)
    n_expected = count_snippets(video.n_frames, window, stride)
    if len(features) != n_expected:  # internal consistency of the timing contract
        raise RuntimeError(f"{path}: {len(features)} snippets for {video.n_frames} frames, "
                           f"expected {n_expected}")
    return VideoFeatures(features, video.n_frames, video.duration, video.n_frames < window)


# --------------------------------------------------------------------------- a folder

@dataclass
class ExtractionReport:
    """What one :func:`run_extraction` call did."""

    out_dir: Path
    extracted: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    snippets: int = 0
    seconds: float = 0.0

    @property
    def manifest(self) -> Path:
        return self.out_dir / MANIFEST


def list_videos(video_dir: str | Path, extensions: list[str]) -> dict[str, Path]:
    """``video_id`` (file stem) → path for each video file in ``video_dir`` (not recursive)."""
    folder = Path(video_dir)
    if not folder.is_dir():
        raise DataError(f"'extract.video_dir': {folder} is not a folder")
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."):
            if p.stem in found:
                raise DataError(f"two videos share the id {p.stem!r}: {found[p.stem]} and {p}; "
                                f"feature files are named by id, rename one")
            found[p.stem] = p
    return found


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """The manifest in ``out_dir`` (an empty one when absent or unreadable: it is a cache)."""
    path = Path(out_dir) / MANIFEST
    empty: dict[str, Any] = {"format": FORMAT, "videos": {}, "skipped": []}
    if not path.is_file():
        return empty
    try:
        data = read_json(path)
    except DataError as e:
        log.warning("%s unreadable (%s): extracting every video again", path, e)
        return empty
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(
            data.get("videos"), dict):
        log.warning("%s is not an %s manifest: extracting every video again", path, FORMAT)
        return empty
    return data


def _npy(out_dir: Path, vid: str) -> Path:
    """``<out_dir>/<vid>.npy``, refusing an id that would name a file elsewhere."""
    return safe_child(out_dir, f"{vid}.npy", what=f"feature file of video {vid!r}",
                      source=out_dir)


def _own_file(out_dir: Path, entry: dict[str, Any], vid: str) -> Path:
    """The feature file a (previous) manifest entry names, which this stage may delete or
    overwrite: only a plain file name inside ``out_dir`` is accepted (a hostile
    ``"file": "../victim.txt"`` or an absolute path is a :class:`DataError` naming the
    manifest and the video, raised before anything is touched)."""
    where = out_dir / MANIFEST
    if not isinstance(entry, dict):
        raise DataError(f"{where}: video {vid!r}: entry must be an object, got "
                        f"{type(entry).__name__}")
    if vid:
        check_plain_name(vid, what="video id", source=where)
    name = entry.get("file", f"{vid}.npy")
    return safe_child(out_dir, name, what=f"video {vid!r}: field 'file'", source=where)


def _write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    dump_json(manifest, out_dir / MANIFEST)  # sorted keys: stable bytes for DVC


def _settings(cfg: ExtractConfig) -> dict[str, Any]:
    return {"fps": cfg.fps, "stride": cfg.stride, "window": cfg.window, "resize": cfg.resize,
            "crop": cfg.crop, "flow": cfg.flow, "normalisation": "x/127.5-1 (RGB in [-1, 1])",
            "resample": "frame k shows the source frame on screen at (k+0.5)/fps"}


def _cache_key(settings: dict[str, Any], encoder: EncoderInfo) -> str:
    return json.dumps({"settings": settings, "encoder": encoder.identity}, sort_keys=True)


def _is_cached(entry: dict[str, Any] | None, path: Path, key: str, out_dir: Path) -> bool:
    """Unchanged source, settings and weights, and the feature file still intact."""
    if not entry or entry.get("cache_key") != key:
        return False
    src = entry.get("source", {})
    st = path.stat()
    if src.get("size") != st.st_size:
        return False
    npy = _own_file(out_dir, entry, "")
    if not npy.is_file() or sha256_file(npy) != entry.get("sha256"):
        return False
    if src.get("mtime_ns") != st.st_mtime_ns:
        # e.g. a fresh clone / dvc checkout: same bytes, new mtime → compare contents
        if sha256_file(path) != src.get("sha256"):
            return False
        src["mtime_ns"] = st.st_mtime_ns
    return True


def _check(cfg: ExtractConfig) -> None:
    if cfg.crop > cfg.resize:
        raise ConfigError(f"'extract.crop' ({cfg.crop}) must be <= 'extract.resize' "
                          f"({cfg.resize}): the crop is taken from the resized frame")
    if not cfg.extensions:
        raise ConfigError("'extract.extensions' is empty: no file would count as a video")


def run_extraction(cfg: ExtractConfig, *, force: bool = False,
                   encoder: tuple[I3D, EncoderInfo] | None = None) -> ExtractionReport:
    """Extract features for every video in ``cfg.video_dir`` into ``cfg.out_dir``.

    Cached videos are skipped (``force`` re-extracts all), features of videos no longer in the
    folder are removed, and an unreadable video is reported by name and skipped
    (``on_error: skip``) or raises :class:`DataError` after the manifest is saved
    (``on_error: fail``). ``encoder`` overrides :func:`build_encoder` (e.g. to reuse one).
    """
    _check(cfg)
    start = time.perf_counter()
    videos = list_videos(cfg.video_dir, cfg.extensions)
    out_dir = Path(cfg.out_dir)
    for vid in videos:
        _npy(out_dir, vid)  # a file name that cannot be an id: refused before any work
    old = read_manifest(out_dir)
    for vid, entry in old["videos"].items():  # what it names is deleted or trusted below
        _own_file(out_dir, entry, vid)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, info = encoder if encoder is not None else build_encoder(cfg)
    device = resolve_device(cfg.device, key="extract.device")
    model = model.to(device).eval()

    settings = _settings(cfg)
    key = _cache_key(settings, info)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "snippet_seconds": "(i * stride + window / 2) / fps",
        "settings": settings,
        "encoder": {**asdict(info), "identity": info.identity},
        "videos": {},
        "skipped": [],
    }
    report = ExtractionReport(out_dir)
    if info.random_init:
        manifest["warning"] = "RANDOM-INIT ENCODER: features are meaningless (smoke tests only)"

    for vid, entry in old["videos"].items():  # drop features of videos that are gone
        if vid not in videos:
            _own_file(out_dir, entry, vid).unlink(missing_ok=True)
            report.removed.append(vid)
            log.info("removed features of %s (no longer in %s)", vid, cfg.video_dir)

    todo: list[tuple[str, Path]] = []
    for vid, path in videos.items():
        entry = old["videos"].get(vid)
        if not force and _is_cached(entry, path, key, out_dir):
            manifest["videos"][vid] = entry
            report.cached.append(vid)
        else:
            # stale features (other settings/weights/bytes) must not outlive their manifest entry
            _npy(out_dir, vid).unlink(missing_ok=True)
            todo.append((vid, path))
    log.info("%d videos in %s: %d cached, %d to extract", len(videos), cfg.video_dir,
             len(report.cached), len(todo))
    if not videos:
        log.warning("no videos (%s) in %s", ", ".join(cfg.extensions), cfg.video_dir)
    _write_manifest(out_dir, manifest)

    failure: str | None = None
    with progress(total=len(todo), desc="extract", unit="video") as overall:
        for vid, path in todo:
            try:
                entry = _extract_one(vid, path, model, cfg, device, key, out_dir)
            except VideoDecodeError as e:
                manifest["skipped"].append({"video": vid, "path": str(path), "error": str(e)})
                report.skipped.append({"video": vid, "path": str(path), "error": str(e)})
                _write_manifest(out_dir, manifest)
                if cfg.on_error == "fail":
                    failure = str(e)
                    break
                log.error("skipping %s: %s", vid, e)
                overall.update(1)
                continue
            manifest["videos"][vid] = entry
            report.extracted.append(vid)
            report.snippets += entry["n_snippets"]
            _write_manifest(out_dir, manifest)
            overall.update(1)

    report.seconds = time.perf_counter() - start
    if failure is not None:
        raise DataError(f"{failure} (extract.on_error=fail; the {len(report.extracted)} videos "
                        f"extracted before it are kept in {out_dir})")
    return report


def _extract_one(vid: str, path: Path, model: I3D, cfg: ExtractConfig, device: torch.device,
                 key: str, out_dir: Path) -> dict[str, Any]:
    info = probe_video(path)
    expected = count_snippets(count_output_frames(info.duration, cfg.fps), cfg.window,
                              cfg.stride)
    with progress(total=expected or None, desc=vid, unit="snippet", leave=False) as bar:
        res = extract_video(path, model, fps=cfg.fps, stride=cfg.stride, window=cfg.window,
                            resize=cfg.resize, crop=cfg.crop, batch_size=cfg.batch_size,
                            device=device, progress=bar)
    if res.padded:
        log.warning("%s: %d frames at %g fps is shorter than one window (%d): one snippet, "
                    "padded with the last frame", vid, res.n_frames, cfg.fps, cfg.window)
    npy = _npy(out_dir, vid)
    with atomic_target(npy) as tmp, tmp.open("wb") as f:
        np.save(f, res.features)
    st = path.stat()
    return {
        "file": npy.name,
        "shape": list(res.features.shape),
        "dtype": str(res.features.dtype),
        "sha256": sha256_file(npy),
        "fps": cfg.fps,
        "stride": cfg.stride,
        "window": cfg.window,
        "n_snippets": int(res.features.shape[0]),
        "n_frames": res.n_frames,
        "duration": round(res.duration, 6),
        "padded": res.padded,
        "source": {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                   "sha256": sha256_file(path), "fps": info.fps, "codec": info.codec,
                   "width": info.width, "height": info.height},
        "cache_key": key,
    }
