"""Feature-extraction throughput with the full I3D at 224×224 (prints figures; not a test).

    python bench/bench_extract.py                    # CPU
    python bench/bench_extract.py --device cuda      # GPU

Three figures, all in snippets (16-frame windows) per second unless noted:
  decode     PyAV decode + resample + resize/crop of a real video (frames/s and snippets/s
             at stride 4, i.e. 4 new frames per snippet)
  encoder    I3D alone on random windows already on the device (batched)
  pipeline   the whole streaming path of ``amnet.extract`` (decode thread → windows → batches
             → I3D) on a real video, as ``amnet extract`` runs it
Weights are random (same compute as rgb_imagenet.pt); no checkpoint is needed.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch

from amnet.device import resolve_device
from amnet.extract import I3D, ResampledVideo, iter_windows
from amnet.extract.extractor import _background, _batches, to_input

VIDEO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real_i3d" / "highjump.mp4"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_decode(video: Path, fps: float, resize: int, crop: int, stride: int) -> None:
    start = time.perf_counter()
    n = sum(1 for _ in ResampledVideo(video, fps, resize, crop))
    dt = time.perf_counter() - start
    print(f"decode   {n} frames in {dt:.2f} s: {n / dt:8.1f} frames/s "
          f"= {n / dt / stride:8.1f} snippets/s at stride {stride}")


def bench_encoder(model: I3D, device: torch.device, batch: int, window: int, crop: int,
                  seconds: float) -> None:
    x = torch.rand(batch, 3, window, crop, crop, device=device) * 2 - 1
    with torch.inference_mode():
        model(x)  # warm-up (cuDNN autotune, allocator)
        sync(device)
        n, start = 0, time.perf_counter()
        while True:
            model(x)
            n += batch
            sync(device)
            dt = time.perf_counter() - start
            if dt >= seconds:
                break
    print(f"encoder  batch {batch}: {n} snippets in {dt:.2f} s: {n / dt:8.2f} snippets/s")


def bench_pipeline(model: I3D, device: torch.device, video: Path, args: argparse.Namespace,
                   max_snippets: int) -> None:
    frames = ResampledVideo(video, args.fps, args.resize, args.crop)
    batches = _background(_batches(iter_windows(frames, args.window, args.stride),
                                   args.batch_size), depth=2)
    n, start = 0, time.perf_counter()
    with torch.inference_mode():
        for batch in itertools.islice(batches, -(-max_snippets // args.batch_size)):
            model(to_input(batch, device)).cpu()
            n += len(batch)
    dt = time.perf_counter() - start
    print(f"pipeline {n} snippets of {video.name} in {dt:.2f} s: {n / dt:8.2f} snippets/s "
          f"(fps {args.fps:g}, window {args.window}, stride {args.stride}, "
          f"batch {args.batch_size})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--video", type=Path, default=VIDEO)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--seconds", type=float, default=10.0, help="time per encoder measurement")
    p.add_argument("--max-snippets", type=int, default=0,
                   help="pipeline snippets (0: 16 on CPU, the whole video on GPU)")
    args = p.parse_args()

    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, full I3D (width 1.0), "
          f"{args.window}x{args.crop}x{args.crop} windows, fp32"
          + (f", TF32 convs {torch.backends.cudnn.allow_tf32}" if device.type == "cuda" else ""))
    model = I3D().eval().to(device)
    bench_decode(args.video, args.fps, args.resize, args.crop, args.stride)
    for batch in sorted({1, args.batch_size}):
        bench_encoder(model, device, batch, args.window, args.crop, args.seconds)
    max_snippets = args.max_snippets or (16 if device.type == "cpu" else 10**9)
    bench_pipeline(model, device, args.video, args, max_snippets)


if __name__ == "__main__":
    main()
