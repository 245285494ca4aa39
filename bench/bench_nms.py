"""Soft-NMS throughput (candidates/s) at 2,000 candidates per video.

Times the two Soft-NMS kernels ``postprocess`` uses: on CPU the per-video numpy kernel (via
``amnet.inference.soft_nms``, which picks it for CPU input), on accelerators the batched torch
kernel (all videos of a batch in one tensor per step; also timed on CPU for comparison), with
the default inference settings
(Gaussian, sigma 0.5, tIoU threshold 0.1, min score 1e-3, 200 detections, class-aware, 20
classes), on CPU and, when present, CUDA. Candidates are THUMOS-like: a few dense clusters
around "actions" plus background, scores in (0, 1).

    .venv/bin/python bench/bench_nms.py [--videos 64] [--candidates 2000] [--batch 16]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from amnet.config import InferConfig
from amnet.inference import soft_nms
from amnet.inference.nms import _soft_nms_batched


def make_video(rng: np.random.Generator, n: int, n_classes: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dur = rng.uniform(60, 600)
    centres = rng.uniform(0, dur, rng.integers(5, 30))
    pick = rng.integers(0, len(centres), n)
    c = centres[pick] + rng.normal(0, 2.0, n)
    half = rng.exponential(3.0, n) + 0.2
    segs = np.stack([c - half, c + half], 1)
    labels = np.where(rng.random(n) < 0.7, pick % n_classes, rng.integers(0, n_classes, n))
    scores = rng.beta(0.5, 3.0, n)
    order = np.argsort(-scores, kind="stable")  # postprocess hands over top-k sorted candidates
    return segs[order], scores[order], labels[order].astype(np.int64)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_device(videos: list, device: str, batch: int, cfg: InferConfig) -> None:
    kw = dict(sigma=cfg.nms_sigma, iou_thresh=cfg.nms_iou_thresh, min_score=cfg.min_score,
              max_detections=cfg.max_detections, class_aware=cfg.class_aware)
    n_cand = sum(len(v[1]) for v in videos)
    tensors = [tuple(torch.as_tensor(x, device=device) for x in v) for v in videos]
    for s, sc, lb in tensors[:2]:  # warm-up
        soft_nms(s, sc, lb, **kw)
    sync(device)
    t0 = time.perf_counter()
    kept = 0
    for s, sc, lb in tensors:
        kept += len(soft_nms(s, sc, lb, **kw)[1])
    sync(device)
    dt = time.perf_counter() - t0
    kernel = "numpy" if device == "cpu" else "torch"
    print(f"{device:>5} per video ({kernel}): {n_cand / dt / 1e6:7.3f} M candidates/s "
          f"({1e3 * dt / len(videos):6.2f} ms/video, {kept / len(videos):.0f} kept/video)")

    segs = torch.stack([t[0] for t in tensors])
    scores = torch.stack([t[1] for t in tensors])
    labels = torch.stack([t[2] for t in tensors])
    valid = torch.ones_like(scores, dtype=torch.bool)
    _soft_nms_batched(segs[:batch], scores[:batch], labels[:batch], valid[:batch], **kw)
    sync(device)
    t0 = time.perf_counter()
    for i in range(0, len(videos), batch):
        _soft_nms_batched(segs[i:i + batch], scores[i:i + batch], labels[i:i + batch],
                          valid[i:i + batch], **kw)
    sync(device)
    dt = time.perf_counter() - t0
    print(f"{device:>5} batched torch, {batch:3d}/step: {n_cand / dt / 1e6:7.3f} M candidates/s "
          f"({1e3 * dt / len(videos):6.2f} ms/video)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=64)
    ap.add_argument("--candidates", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0 = torch's default); 1 avoids OpenMP spin on a "
                         "busy machine")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = InferConfig()
    rng = np.random.default_rng(args.seed)
    videos = [make_video(rng, args.candidates, args.classes) for _ in range(args.videos)]
    print(f"{args.videos} videos × {args.candidates} candidates, {args.classes} classes; "
          f"sigma={cfg.nms_sigma}, iou_thresh={cfg.nms_iou_thresh}, "
          f"max_detections={cfg.max_detections}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    bench_device(videos, "cpu", args.batch, cfg)
    if torch.cuda.is_available():
        print(f"CUDA: {torch.cuda.get_device_name()}")
        bench_device(videos, "cuda", args.batch, cfg)


if __name__ == "__main__":
    main()
