"""``amnet detect``: run a trained model on feature files, write ActivityNet results JSON.

Input: one ``<video_id>.npy`` (T × C, float32/float64) or a folder of them. Output: the
ActivityNet results layout ``{"version", "results": {video: [{"label", "score",
"segment": [start, end]}]}, "external_data"}`` (``--json OUT``, ``-`` = stdout) and a
readable table of each video's best detections on stdout.

Timing of each video (snippet ``i`` is centred at ``(i·stride + window/2)/fps`` seconds),
first source that has the value wins:

1. ``--fps`` / ``--stride`` / ``--window`` given on the command line;
2. ``manifest.json`` beside the features (written by ``amnet features`` / ``amnet extract``:
   per-video ``fps``/``stride``/``window``/``duration`` entries, else its top-level or
   ``settings`` values);
3. ``annotations.json`` beside the features (ActivityNet layout: per-video ``fps``,
   ``duration``);
4. what the model was trained with (``data.default_fps``, ``data.stride``, ``data.window`` of
   its stored config).

Duration (detections are clipped to ``[0, duration]``): the manifest's or the annotation
file's ``duration`` when known, else the end of the last snippet's frames,
``((T − 1)·stride + window) / fps``.

The model is a checkpoint written by the engine (``amnet train``) or a registered MLflow
model ``models:/<name>@<alias>`` / ``models:/<name>/<version>`` (loaded with
:func:`workflows.tracking.load_registered_model`, no params file needed). ``-p`` supplies the
``tracking.*`` settings (where the registry is); ``-s`` overrides ``tracking.*`` and the
model's ``infer.*`` decoding settings (Soft-NMS, thresholds); everything else comes from the
model.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amnet.config import Config
from amnet.data.feature_set import FEATURE_SUFFIX, MANIFEST_FILE, FeatureSet
from amnet.data.timing import snippet_to_seconds
from amnet.device import resolve_device
from amnet.errors import ConfigError, DataError, ModelLoadError
from amnet.io import atomic_write_text, json_text
from amnet.progress import progress
from workflows.cli import add_config_arguments
from workflows.config import WorkflowConfig, load_config

log = logging.getLogger(__name__)

DEFAULT_PARAMS = "params/default.yaml"


# --------------------------------------------------------------------------- arguments

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("features", metavar="FEATURES",
                        help="a <video_id>.npy feature file (T x C) or a folder of them")
    parser.add_argument("-m", "--model", required=True, metavar="MODEL",
                        help="models:/<name>@<alias> (e.g. models:/amnet-tal@champion), "
                             "models:/<name>/<version>, or an engine checkpoint .pt")
    add_config_arguments(parser)
    parser.epilog = ("Here -p supplies only tracking.* (where models:/ URIs are looked up) and "
                     "-s may set infer.* (decoding, e.g. -s infer.nms_sigma=0.7) or tracking.*; "
                     "everything else comes from the model. Timing precedence: flags > "
                     "manifest.json > annotations.json beside the features > the model's.")
    parser.add_argument("--fps", type=_positive(float), default=None,
                        help="frames per second of the features (default: manifest / "
                             "annotations beside the features, else the model's data.default_fps)")
    parser.add_argument("--stride", type=_positive(int), default=None,
                        help="frames between snippets (default: manifest, else the model's)")
    parser.add_argument("--window", type=_positive(int), default=None,
                        help="frames per snippet (default: manifest, else the model's)")
    parser.add_argument("--threshold", type=_unit_float, default=0.0,
                        help="keep detections scoring at least this (0-1; default: keep all "
                             "that survive infer.min_score)")
    parser.add_argument("--json", dest="json_out", metavar="OUT", default=None,
                        help="write the ActivityNet results JSON here ('-' = stdout, then no "
                             "table)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N "
                        "(default: %(default)s)")
    parser.add_argument("--top", type=_positive(int), default=5,
                        help="detections per video in the table (default: %(default)s)")


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text!r}")
    return value


# --------------------------------------------------------------------------- inputs

def list_inputs(path: str | Path) -> tuple[list[tuple[str, Path]], Path]:
    """``[(video_id, file)]`` sorted by id, and the folder whose sidecar files apply."""
    path = Path(path)
    if path.is_dir():
        files = FeatureSet(path).feature_files()
        if not files:
            raise DataError(f"{path}: empty folder: no <video_id>.npy feature files in it")
        return [(p.stem, p) for p in files], path
    if not path.exists():
        raise DataError(f"features not found: {path} (expected a <video_id>.npy file or a "
                        "folder of them)")
    if path.suffix != FEATURE_SUFFIX:
        raise DataError(f"{path}: not a .npy feature file (expected <video_id>.npy, T x C)")
    return [(path.stem, path)], path.parent


def _number(value: Any, where: str, field: str, kind: type) -> float | int | None:
    """A timing field: absent → None, else a finite positive number (whole for frames)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(f"{where}: field {field!r} must be a finite number, got {value!r}")
    if kind is int and float(value) != int(value):
        raise DataError(f"{where}: field {field!r} must be a whole number of frames, "
                        f"got {value!r}")
    if value <= 0:
        raise DataError(f"{where}: field {field!r} must be > 0, got {value!r}")
    return kind(value)


@dataclass
class Sidecar:
    """Timing facts beside the features: ``{video_id: {fps, stride, window, duration}}`` per
    source (``None`` = no such file), plus the manifest's folder-wide values."""

    manifest: dict[str, dict[str, Any]] | None
    manifest_defaults: dict[str, Any]
    annotations: dict[str, dict[str, Any]] | None
    folder: Path


def read_sidecar(folder: Path) -> Sidecar:
    """Parse ``manifest.json`` (both the ``amnet-features/1`` and ``amnet-extract/1`` layouts)
    and ``annotations.json`` beside the features, keeping only the timing fields."""
    fs = FeatureSet(folder)
    man_path, ann_path = fs.manifest_path, fs.annotations_path
    keys = {"fps": float, "stride": int, "window": int, "duration": float}
    manifest = defaults = None
    m = fs.raw_manifest()
    if m is not None:
        videos = m.get("videos")
        if not isinstance(videos, dict):
            raise DataError(f"{man_path}: field 'videos' must be an object video_id -> entry")
        defaults = {}
        settings = m.get("settings") if isinstance(m.get("settings"), dict) else {}
        for k, kind in keys.items():
            if k == "duration":
                continue
            v = m.get(k, settings.get(k))
            defaults[k] = _number(v, str(man_path), k, kind)
        manifest = {}
        for vid, e in videos.items():
            if not isinstance(e, dict):
                raise DataError(f"{man_path}: video {vid!r}: entry must be an object")
            manifest[vid] = {k: _number(e.get(k), f"{man_path}: video {vid!r}", k, kind)
                             for k, kind in keys.items()}
    annotations = None
    db = fs.raw_annotations()
    if db is not None:
        annotations = {}
        for vid, e in db.items():
            if isinstance(e, dict):
                where = f"{ann_path}: video {vid!r}"
                annotations[vid] = {"fps": _number(e.get("fps"), where, "fps", float),
                                    "duration": _number(e.get("duration"), where, "duration",
                                                        float)}
    return Sidecar(manifest, defaults or {}, annotations, folder)


@dataclass
class VideoTiming:
    """How one video's snippets map to seconds, and where each value came from."""

    fps: float
    stride: int
    window: int
    duration: float
    duration_source: str  # "manifest" | "annotations" | "features"

    def meta(self, video_id: str) -> dict[str, Any]:
        """The ``metas[i]`` that :func:`amnet.inference.postprocess` expects."""
        return {"video_id": video_id, "fps": self.fps, "stride": self.stride,
                "window": self.window, "duration": self.duration, "offset": 0}


def video_timing(video_id: str, num_snippets: int, sidecar: Sidecar, cfg: Config,
                 flags: dict[str, Any]) -> VideoTiming:
    """Resolve fps / stride / window / duration for one video (module docstring: precedence)."""
    man = (sidecar.manifest or {}).get(video_id, {})
    ann = (sidecar.annotations or {}).get(video_id, {})
    if sidecar.manifest is not None and video_id not in sidecar.manifest:
        log.warning("%s: video %r is not listed in %s; using the other timing sources",
                    sidecar.folder / MANIFEST_FILE, video_id, MANIFEST_FILE)
    trained = {"fps": cfg.data.default_fps, "stride": cfg.data.stride, "window": cfg.data.window}
    value: dict[str, Any] = {}
    for k in ("fps", "stride", "window"):
        candidates = [flags.get(k), man.get(k), sidecar.manifest_defaults.get(k)]
        if k == "fps":
            candidates.append(ann.get("fps"))
        value[k] = next((v for v in candidates if v is not None), trained[k])
    fps, stride, window = float(value["fps"]), int(value["stride"]), int(value["window"])
    covered = ((num_snippets - 1) * stride + window) / fps  # end of the last snippet's frames
    if man.get("duration") is not None:
        duration, source = float(man["duration"]), "manifest"
    elif ann.get("duration") is not None:
        duration, source = float(ann["duration"]), "annotations"
    else:
        duration, source = covered, "features"
    last_centre = snippet_to_seconds(num_snippets - 1, fps, stride, window)
    if source != "features" and last_centre > duration + window / fps:
        log.warning("video %r: its %d snippets reach %.2f s at %g fps / stride %d, past its "
                    "duration %.2f s (%s); detections are clipped to the duration — check the "
                    "fps/stride", video_id, num_snippets, last_centre, fps, stride, duration,
                    source)
    return VideoTiming(fps, stride, window, duration, source)


def check_header(path: Path, video_id: str, in_dim: int) -> int:
    """Cheap pre-flight of one file from its ``.npy`` header (no data read): rank, length,
    dtype and channel count, so that a bad file in a folder fails before any inference.
    Returns T."""
    from amnet.data.features import read_header, validate_features

    shape, dtype = read_header(path, video_id)
    ok = dtype.kind == "f" and len(shape) == 2 and shape[0] > 0 and shape[1] == in_dim
    if not ok:
        # The shared validator's message, on a zero-memory stand-in of the same shape/dtype.
        validate_features(np.broadcast_to(np.zeros((), dtype=dtype), shape), path=path,
                          video_id=video_id, feature_dim=in_dim)
    return int(shape[0])


# --------------------------------------------------------------------------- model

def _split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """``-s`` items → (infer.*, tracking.*); model.*, data.*... are fixed by the model."""
    infer, tracking = [], []
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key.startswith("infer."):
            infer.append(item)
        elif key.startswith("tracking."):
            tracking.append(item)
        else:
            raise ConfigError(f"amnet detect: -s {item!r}: only infer.* and tracking.* can be "
                              "overridden here; the model fixes the rest (timing: --fps, "
                              "--stride, --window)")
    return infer, tracking


def load_model(spec: str, tracking_cfg: WorkflowConfig, device: Any
               ) -> tuple[Any, Config, list[str]]:
    """``(model in eval mode on device, its training config, class names)``."""
    if spec.startswith("models:/"):
        model, cfg, names = _load_registered(spec, tracking_cfg)
        model = model.to(device).eval()
    elif "://" in spec or spec.startswith("runs:/"):
        raise ModelLoadError(f"--model {spec!r}: unsupported URI (expected "
                             "models:/<name>@<alias>, models:/<name>/<version> or a .pt file)")
    else:
        from amnet.engine import load_model_for_inference

        if not Path(spec).exists():
            raise ModelLoadError(f"--model {spec}: checkpoint not found (expected an engine "
                                 "checkpoint .pt or models:/<name>@<alias>)")
        model, cfg, names = load_model_for_inference(spec, device, schema=WorkflowConfig)
    num_classes = int(getattr(model, "num_classes", len(names)))
    if not names:
        log.warning("%s stores no class names; labelling classes class_0..class_%d", spec,
                    num_classes - 1)
        names = [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ModelLoadError(f"{spec}: {len(names)} class names for a {num_classes}-class model")
    return model, cfg, list(names)


def _load_registered(uri: str, tracking_cfg: WorkflowConfig) -> tuple[Any, Config, list[str]]:
    """A registered model from the project's MLflow registry (tracking.* / MLFLOW_TRACKING_URI)."""
    target = uri[len("models:/"):]
    if not target or target.startswith("/") or not ("@" in target or "/" in target
                                                    or target.startswith("m-")):
        raise ModelLoadError(f"--model {uri!r}: expected models:/<name>@<alias> or "
                             "models:/<name>/<version>")
    from workflows import tracking

    store = tracking.resolve_tracking_uri(tracking_cfg)
    if store.startswith("sqlite:///") and not Path(store[len("sqlite:///"):]).is_file():
        raise ModelLoadError(f"--model {uri}: no MLflow store at {store} (nothing registered "
                             "there yet; set MLFLOW_TRACKING_URI or -s tracking.tracking_uri=...)")
    tracking.configure(tracking_cfg)
    return tracking.load_registered_model(uri)


# --------------------------------------------------------------------------- detection

def detect(model: Any, cfg: Config, class_names: list[str], inputs: list[tuple[str, Path]],
           sidecar: Sidecar, *, flags: dict[str, Any] | None = None, device: Any = "cpu",
           threshold: float = 0.0) -> tuple[dict[str, Any], dict[str, VideoTiming]]:
    """Detections of every input video → (results JSON, timing used per video).

    Every file is checked from its header first (dimension = the model's ``in_dim``), then
    read and validated (:func:`amnet.data.features.load_feature_file`) one at a time.
    """
    import torch

    from amnet.data.dataset import collate
    from amnet.data.features import load_feature_file
    from amnet.inference import postprocess, to_results_json

    flags = flags or {}
    in_dim = int(getattr(model, "in_dim", cfg.data.feature_dim))
    lengths = {vid: check_header(path, vid, in_dim) for vid, path in inputs}
    timings = {vid: video_timing(vid, lengths[vid], sidecar, cfg, flags) for vid, _ in inputs}
    for stride, window in sorted({(t.stride, t.window) for t in timings.values()}
                                 - {(cfg.data.stride, cfg.data.window)}):
        log.warning("%d video(s) have snippets of %d frames every %d, but the model was trained "
                    "on %d every %d: timing follows the features, accuracy may suffer",
                    sum((t.stride, t.window) == (stride, window) for t in timings.values()),
                    window, stride, cfg.data.window, cfg.data.stride)
    pad = 2 ** (cfg.model.fpn_levels - 1)  # as the engine's loaders pad
    dets = []
    model.eval()
    with torch.no_grad():
        for vid, path in progress(inputs, desc="detect", unit="video"):
            feats, _ = load_feature_file(path, vid, feature_dim=in_dim)
            item = {"video_id": vid, "feats": torch.from_numpy(np.ascontiguousarray(feats.T)),
                    "segments": torch.zeros(0, 2), "labels": torch.zeros(0, dtype=torch.long)}
            batch = collate([item], pad_multiple=pad)
            out = model(batch["feats"].to(device), batch["mask"].to(device))
            (d,) = postprocess(out, [timings[vid].meta(vid)], cfg.infer, class_names=class_names)
            if threshold > 0:
                keep = d.scores >= threshold
                d.segments, d.scores, d.labels = d.segments[keep], d.scores[keep], d.labels[keep]
            dets.append(d)
    results = to_results_json(dets, class_names)
    return results, timings


def format_table(results: dict[str, Any], timings: dict[str, VideoTiming], top: int) -> str:
    """Each video's ``top`` best detections as aligned text."""
    lines = []
    for vid, dets in results["results"].items():
        t = timings[vid]
        lines.append(f"{vid}: {len(dets)} detections · duration {t.duration:.2f} s "
                     f"({t.duration_source}) · fps {t.fps:g}, stride {t.stride}, "
                     f"window {t.window}")
        shown = dets[:top]
        if not shown:
            lines.append("  (none)")
            continue
        width = max(5, *(len(d["label"]) for d in shown))
        lines.append(f"  {'#':>3}  {'label':<{width}}  {'score':>6}  {'start s':>8}  "
                     f"{'end s':>8}")
        for i, d in enumerate(shown, 1):
            s, e = d["segment"]
            lines.append(f"  {i:>3}  {d['label']:<{width}}  {d['score']:>6.3f}  {s:>8.2f}  "
                         f"{e:>8.2f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    infer_overrides, tracking_overrides = _split_overrides(args.overrides)
    params = args.params
    if params == DEFAULT_PARAMS and not Path(params).is_file():
        params = None  # outside the project: built-in defaults (only tracking.* is read)
    tracking_cfg = load_config(params, tracking_overrides)
    inputs, folder = list_inputs(args.features)
    device = resolve_device(args.device, key="--device")
    model, cfg, class_names = load_model(args.model, tracking_cfg, device)
    if infer_overrides:
        cfg = cfg.replace(*infer_overrides)
    sidecar = read_sidecar(folder)
    flags = {"fps": args.fps, "stride": args.stride, "window": args.window}
    log.info("model %s: %d classes, in_dim %d, on %s; %d video(s) from %s", args.model,
             len(class_names), getattr(model, "in_dim", cfg.data.feature_dim), device,
             len(inputs), args.features)
    results, timings = detect(model, cfg, class_names, inputs, sidecar, flags=flags,
                              device=device, threshold=args.threshold)
    text = json_text(results, 1, sort_keys=False)
    if args.json_out == "-":
        sys.stdout.write(text)
        return 0
    if args.json_out:
        out = Path(args.json_out)
        try:
            atomic_write_text(out, text)
        except OSError as e:
            raise DataError(f"cannot write --json {out}: {e.strerror}") from None
        n = sum(len(v) for v in results["results"].values())
        log.info("wrote %d detections for %d video(s) to %s", n, len(results["results"]), out)
    print(format_table(results, timings, args.top))
    return 0
