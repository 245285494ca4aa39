"""``amnet detect``: the command (arguments, the detection loop, the table of best detections)."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from amnet.config import Config
from amnet.device import resolve_device
from amnet.errors import DataError
from amnet.io import atomic_write_text, json_text
from amnet.progress import progress
from workflows.cli import add_config_arguments
from workflows.config import load_config
from workflows.detect.inputs import (
    Sidecar,
    VideoTiming,
    check_header,
    list_inputs,
    read_sidecar,
    video_timing,
)
from workflows.detect.model import load_model, split_overrides

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_PARAMS", "add_arguments", "detect", "format_table", "run"]

DEFAULT_PARAMS = "params/default.yaml"


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
    infer_overrides, tracking_overrides = split_overrides(args.overrides)
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
