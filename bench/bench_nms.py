"""Soft-NMS throughput (candidates/s): amnet's compiled kernel vs references, one run.

The issue's shape by default: 212 videos × 2,000 candidates, 20 classes, class-aware Gaussian
Soft-NMS (sigma 0.5, tIoU threshold 0.1, min score 1e-3, 200 kept). Candidates are THUMOS-like:
dense clusters around "actions" plus background, scores in (0, 1). Timed, interleaved, median
of ``--repeat`` passes over all videos, single thread:

* ``soft_nms`` on numpy input: the public entry (sort + the compiled numba kernel);
* ``_soft_nms_reference``: today's numpy kernel that the compiled one reproduces (same sort);
* ``nms_1d_cpu.softnms``: the C++ op ActionFormer / OpenTAD build, per class, if importable;
* on CUDA (when present): the batched torch kernel ``postprocess`` uses there, ``--batch``
  videos per call, vs the CPU kernel.

Prints each rate and its ratio to ours, and checks that ours keeps the reference's set.

    .venv/bin/python bench/bench_nms.py [--videos 212] [--candidates 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from amnet.config import InferConfig
from amnet.inference import soft_nms
from amnet.inference.nms import _soft_nms_batched, _soft_nms_reference


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


def reference_nms(segs: np.ndarray, scores: np.ndarray, labels: np.ndarray, **kw: object
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``soft_nms``'s CPU path with the numpy reference kernel in place of the compiled one."""
    order = np.argsort(-scores, kind="stable")
    keep, ks = _soft_nms_reference(segs[order], scores[order], labels[order], **kw)
    idx = order[keep]
    return segs[idx], ks, labels[idx]


def cpp_op() -> Callable | None:
    """Per-class Soft-NMS with ActionFormer's ``nms_1d_cpu`` (method 2 = Gaussian), top-k merged;
    ``None`` when the extension is not installed."""
    try:
        import nms_1d_cpu  # type: ignore[import-not-found]
    except ImportError:
        return None

    def run(segs: np.ndarray, scores: np.ndarray, labels: np.ndarray, *, sigma: float,
            iou_thresh: float, min_score: float, max_detections: int, class_aware: bool
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s_t, sc_t = torch.from_numpy(segs).float(), torch.from_numpy(scores).float()
        out_s, out_sc, out_l = [], [], []
        for c in np.unique(labels):
            m = torch.from_numpy(labels == c)
            cs, csc = s_t[m].contiguous(), sc_t[m].contiguous()
            dets = cs.new_empty(len(csc), 3)
            keep = nms_1d_cpu.softnms(cs, csc, dets, float(iou_thresh), float(sigma),
                                      float(min_score), 2)
            out_s.append(dets[:len(keep), :2])
            out_sc.append(dets[:len(keep), 2])
            out_l.append(torch.full((len(keep),), int(c)))
        sc = torch.cat(out_sc)
        top = torch.argsort(sc, descending=True)[:max_detections]
        return torch.cat(out_s)[top].numpy(), sc[top].numpy(), torch.cat(out_l)[top].numpy()

    return run


def timed(fn: Callable, videos: list, kw: dict) -> float:
    t0 = time.perf_counter()
    for v in videos:
        fn(*v, **kw)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=212)
    ap.add_argument("--candidates", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16, help="videos per batched CUDA call")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = InferConfig()
    kw = dict(sigma=cfg.nms_sigma, iou_thresh=cfg.nms_iou_thresh, min_score=cfg.min_score,
              max_detections=cfg.max_detections, class_aware=cfg.class_aware)
    rng = np.random.default_rng(args.seed)
    videos = [make_video(rng, args.candidates, args.classes) for _ in range(args.videos)]
    n = args.videos * args.candidates
    print(f"{args.videos} videos × {args.candidates} candidates ({n} in all), {args.classes} "
          f"classes; sigma={cfg.nms_sigma}, iou_thresh={cfg.nms_iou_thresh}, min_score="
          f"{cfg.min_score}, max_detections={cfg.max_detections}; 1 thread, median of "
          f"{args.repeat}")
    t0 = time.perf_counter()
    soft_nms(*videos[0], **kw)
    print(f"first call (compile or load numba's cache): {time.perf_counter() - t0:.2f} s")
    same = all(np.array_equal(soft_nms(*v, **kw)[2], reference_nms(*v, **kw)[2])
               and np.allclose(soft_nms(*v, **kw)[1], reference_nms(*v, **kw)[1],
                               rtol=1e-14, atol=0) for v in videos)
    print(f"kept set equal to the reference on all {args.videos} videos: {same}")
    sides: dict[str, Callable] = {"amnet (numba)": soft_nms, "numpy reference": reference_nms}
    cpp = cpp_op()
    if cpp is not None:
        sides["nms_1d_cpu (C++)"] = cpp
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(args.repeat):  # interleaved, so load changes hit every side
        for k, fn in sides.items():
            times[k].append(timed(fn, videos, kw))
    ours = statistics.median(times["amnet (numba)"])
    for k, ts in times.items():
        t = statistics.median(ts)
        print(f"{k:<18} {n / t / 1e6:8.3f} M candidates/s  ({1e3 * t / args.videos:6.3f} "
              f"ms/video)  ours ÷ it: {t / ours:6.2f}x")
    if cpp is None:
        print("nms_1d_cpu not importable: C++ op not timed")
    if torch.cuda.is_available():
        print(f"CUDA: {torch.cuda.get_device_name()}, batched torch kernel, {args.batch} "
              "videos per call")
        dev = [tuple(torch.as_tensor(x, device="cuda") for x in v) for v in videos]
        segs = torch.stack([t[0] for t in dev])
        scores = torch.stack([t[1] for t in dev])
        labels = torch.stack([t[2] for t in dev])
        valid = torch.ones_like(scores, dtype=torch.bool)

        def batched() -> float:
            sync("cuda")
            t0 = time.perf_counter()
            for i in range(0, len(videos), args.batch):
                _soft_nms_batched(segs[i:i + args.batch], scores[i:i + args.batch],
                                  labels[i:i + args.batch], valid[i:i + args.batch], **kw)
            sync("cuda")
            return time.perf_counter() - t0

        batched()
        t = statistics.median(batched() for _ in range(args.repeat))
        print(f"{'cuda batched torch':<18} {n / t / 1e6:8.3f} M candidates/s  "
              f"({1e3 * t / args.videos:6.3f} ms/video)  ours(CPU) ÷ it: {t / ours:6.2f}x")


if __name__ == "__main__":
    main()
