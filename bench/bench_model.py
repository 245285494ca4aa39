"""AMNet train-step time, peak memory and inference time at THUMOS14 shape, per ablation.

Shape (defaults): T = 2304 snippets, C = 2048 (I3D RGB+flow), batch 2, width 512, the rest of
``params/thumos14.yaml`` (6 levels, GAM depth 2). Issue 16's CPU recipe (ActionFormer's
THUMOS14 one reduced): ``--length 1152 --channels 1024 --width 256 --batch 2``.

A train step is the engine's real two-phase step (``mask_phase`` + ``detect_phase``: triplet
backward + AdamW step on the AME, detector backward + AdamW step, label assignment included)
on random features with ~15 random actions per video (median of ``--steps``). Inference is
one whole video of each ``--infer-lengths`` (default 2,304 and 9,216 snippets; median of
``--infer-runs``): forward + ``amnet.inference.postprocess`` (decoding, scoring, Soft-NMS);
the last column is the time ratio of the longest to the shortest (4 = linear in T for 4x the
length, 16 = quadratic). Variants: the Table 2 rows, ``full_window19`` (the full model with
``model.attention_window=19``) and ``actionformer_like`` (per-level self-attention only,
window 19: the issue-16 reference; ``actionformer_like_conv`` adds ActionFormer's depthwise-conv
q/k/v projections).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` per variant; on CPU each variant runs
in a fresh subprocess and reports its peak resident set size (weights + optimiser state +
activations + the interpreter's ~0.4 GB, reported as ``base`` so it can be subtracted).

    .venv/bin/python bench/bench_model.py                      # CPU, all variants (slow)
    .venv/bin/python bench/bench_model.py --device cuda --amp bf16
    .venv/bin/python bench/bench_model.py --variants full baseline --steps 2 --length 1152

``--infer-scaling`` instead times inference per video (forward + postprocess, median of
``--infer-runs``) at T = 2,304 and 9,216 snippets, whole-video (``infer.window=0``) and in
windows (``--window``, ``--window-overlap``, ``amnet.inference.windows``), and prints the
9216/2304 time ratio of each (4 = linear in T, 16 = quadratic):

    .venv/bin/python bench/bench_model.py --infer-scaling --width 128 --channels 256
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from amnet import engine  # noqa: E402
from amnet.device import resolve_device  # noqa: E402
from workflows.config import WorkflowConfig, load_config  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no_ame": ["model.ame=false"],                                      # GAM + MS
    "no_gam": ["model.gam=false"],                                      # AME + self-attn + MS
    "no_attention": ["model.gam=false", "model.self_attention=false"],  # AME + MS
    "no_ms": ["model.matching_head=false", "infer.confidence=sigmoid"],
    "baseline": ["model.ame=false", "model.gam=false", "model.self_attention=false",
                 "model.matching_head=false", "infer.confidence=sigmoid"],
    # issue 16 §2-3: local windows (ActionFormer: 19 on every level)
    "full_window19": ["model.attention_window=19"],
    "actionformer_like": ["model.ame=false", "model.gam=false", "model.self_attention=true",
                          "model.attention_window=19"],
    # ... with ActionFormer's depthwise-conv q/k/v projections (matrix row actionformer_like_conv)
    "actionformer_like_conv": ["model.ame=false", "model.gam=false", "model.self_attention=true",
                               "model.attention_window=19", "model.attention_conv=3"],
}


def _config(args: argparse.Namespace, variant: str) -> WorkflowConfig:
    return load_config(REPO / "params" / "thumos14.yaml", [
        f"model.embed_dim={args.width}", f"data.max_seq_len={args.length}",
        f"train.batch_size={args.batch}", *VARIANTS[variant]])


def _batch(args: argparse.Namespace, device: torch.device, gen: torch.Generator):
    feats = torch.rand(args.batch, args.channels, args.length, generator=gen).to(device)
    mask = torch.ones(args.batch, args.length, dtype=torch.bool, device=device)
    segments, labels = [], []
    for _ in range(args.batch):
        start = torch.rand(15, generator=gen) * (args.length - 100)
        length = 2 + torch.rand(15, generator=gen) ** 2 * 90
        segments.append(torch.stack([start, start + length], 1).to(device))
        labels.append(torch.randint(0, 20, (15,), generator=gen).to(device))
    return feats, mask, segments, labels


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace, variant: str) -> dict[str, float | str]:
    """Train-step and inference timings (+ CUDA peak memory) of one variant, in-process."""

    device = resolve_device(args.device)
    cfg = _config(args, variant)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = engine.build_model(cfg, args.channels, 20).to(device)
    state = engine.build_train_state(cfg, model, steps_per_epoch=1000)
    feats, mask, segments, labels = _batch(args, device, gen)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    model.train()
    for i in range(args.warmup + args.steps):
        _sync(device)
        t0 = time.perf_counter()
        engine.mask_phase(state, model, feats, mask, segments, cfg, device, args.amp)
        engine.detect_phase(state, model, feats, mask, segments, labels, cfg, device, args.amp)
        _sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    model.eval()
    row: dict[str, float | str] = {
        "variant": variant,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "train_step_s": statistics.median(times),
    }
    if peak is not None:
        row["peak_mem_GiB"] = peak
    for length in args.infer_lengths:  # one whole video per length (median of runs)
        one, one_mask, meta = _one_video(args.channels, length, device)
        row[f"infer_{length}_s"] = _median_time(
            partial(_detect, model, one, one_mask, meta, cfg.infer), args, device)
    return row


def _one_video(channels: int, length: int, device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, float | str]]]:
    """A seeded random video of ``length`` snippets, its mask and its metadata."""
    g = torch.Generator().manual_seed(length)
    feats = torch.rand(1, channels, length, generator=g).to(device)
    mask = torch.ones(1, length, dtype=torch.bool, device=device)
    meta = [{"video_id": "v", "fps": 30.0, "stride": 4, "window": 16,
             "duration": length * 4 / 30.0, "offset": 0}]
    return feats, mask, meta


def _detect(model: torch.nn.Module, feats: torch.Tensor, mask: torch.Tensor,
            meta: list[dict[str, float | str]], infer_cfg: object) -> object:
    from amnet.inference import postprocess

    return postprocess(model(feats, mask), meta, infer_cfg)


def _median_time(fn: Callable[[], object], args: argparse.Namespace, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``args.infer_runs`` runs after ``args.warmup``."""
    times = []
    with torch.no_grad(), engine.autocast(device, args.amp):
        for i in range(args.warmup + args.infer_runs):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _child(args: argparse.Namespace, variant: str) -> dict[str, float | str]:
    """Run one variant in a fresh process (CPU peak RSS is per process and never goes down)."""
    cmd = [sys.executable, __file__, "--child", variant, "--device", args.device,
           "--amp", args.amp, "--length", str(args.length), "--channels", str(args.channels),
           "--batch", str(args.batch), "--width", str(args.width), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--infer-runs", str(args.infer_runs),
           "--infer-lengths", *map(str, args.infer_lengths)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def infer_scaling(args: argparse.Namespace) -> None:
    """Inference time per video at two lengths, with and without windows (median of runs)."""
    import dataclasses

    from amnet.inference.windows import infer_batch

    device = resolve_device(args.device)
    cfg = _config(args, "full")
    torch.manual_seed(0)
    model = engine.build_model(cfg, args.channels, 20).to(device).eval()
    align = 2 ** (cfg.model.fpn_levels - 1)
    print(f"inference per video, width {args.width}, C {args.channels}, on {device}, "
          f"amp={args.amp}, {torch.get_num_threads()} threads; window {args.window}, "
          f"overlap {args.window_overlap}")
    res: dict[tuple[str, int], float] = {}
    short, long = args.lengths
    for name, window in (("whole video", 0), ("windows", args.window)):
        icfg = dataclasses.replace(cfg.infer, window=window, window_overlap=args.window_overlap)
        for T in (short, long):
            feats, mask, meta = _one_video(args.channels, T, device)
            res[name, T] = _median_time(
                partial(infer_batch, model, feats, mask, meta, icfg, align=align), args, device)
            print(f"  {name:<12} T={T:>5}: {res[name, T]:8.3f} s/video", flush=True)
    for name in ("whole video", "windows"):
        print(f"  {name:<12} {long}/{short} time ratio: "
              f"{res[name, long] / res[name, short]:5.2f}x (length ratio {long / short:g})")
    print(f"  at T={long}, windows are {res['whole video', long] / res['windows', long]:.2f}x "
          "faster than the whole video")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    p.add_argument("--length", type=int, default=2304, help="T (multiple of 32)")
    p.add_argument("--channels", type=int, default=2048, help="C")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--width", type=int, default=512, help="model.embed_dim")
    p.add_argument("--steps", type=int, default=3, help="timed train steps")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--infer-runs", type=int, default=3)
    p.add_argument("--infer-lengths", type=int, nargs="+", default=[2304, 9216],
                   help="whole-video inference lengths of the table (the last/first ratio is "
                        "printed: 4 = linear in T for 2304 → 9216, 16 = quadratic)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--infer-scaling", action="store_true",
                   help="only inference time at T=2304 and 9216, with and without windows")
    p.add_argument("--window", type=int, default=2304, help="infer.window for --infer-scaling")
    p.add_argument("--window-overlap", type=int, default=256)
    p.add_argument("--lengths", type=int, nargs=2, default=[2304, 9216], metavar=("SHORT", "LONG"),
                   help="the two video lengths of --infer-scaling")
    args = p.parse_args()
    device = resolve_device(args.device)
    args.device = str(device)
    if args.infer_scaling:
        infer_scaling(args)
        return
    if args.child:
        row = measure(args, args.child)
        row["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(json.dumps(row))
        return
    print(f"AMNet at T={args.length}, C={args.channels}, batch {args.batch}, width {args.width} "
          f"on {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}"
          f", amp={args.amp}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    base = None
    if device.type == "cpu":
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"base process RSS (interpreter + torch): {base:.2f} GiB")
    mem_key = "peak_mem_GiB" if device.type == "cuda" else "peak_rss_GiB"
    lens = args.infer_lengths
    ratio = f"{lens[-1]}/{lens[0]}"
    print(f"{'variant':<19}{'params (M)':>11}{'train step (s)':>16}{mem_key:>15}"
          + "".join(f"{'infer T=' + str(n) + ' (s)':>19}" for n in lens) + f"{ratio:>12}")
    for v in args.variants:
        row = measure(args, v) if device.type == "cuda" else _child(args, v)
        cells = "".join(f"{row[f'infer_{n}_s']:>19.3f}" for n in lens)
        r = row[f"infer_{lens[-1]}_s"] / row[f"infer_{lens[0]}_s"]
        print(f"{v:<19}{row['params_M']:>11.2f}{row['train_step_s']:>16.3f}"
              f"{row[mem_key]:>15.2f}{cells}{r:>11.2f}x", flush=True)


if __name__ == "__main__":
    main()
