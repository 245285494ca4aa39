"""Ray Train throughput (snippets/s) for 1 and 2 workers and Ray's overhead per epoch, against
the plain single-process engine at the same settings.

All runs train the same config on the same synthetic feature set (made in a temp folder), with
validation off. Snippets = the valid (unpadded) snippets of every training crop of an epoch,
counted from the dataset itself (crops are a function of seed, epoch and index).

* ``plain, 1 thread`` / ``plain, N threads``: ``amnet.engine.train_one_epoch`` in this process
  (a Ray worker gets one thread, so the 1-thread row is the like-for-like baseline);
* ``ray, W workers``: ``workflows.ray_train.run_ray_training`` on a local cluster started once.

Per epoch: ``train`` = the epoch's training loop inside the worker (DDP all-reduces included),
``ckpt+report`` = rank 0 saving the checkpoint + ``ray.train.report`` (all ranks). ``Ray
overhead/epoch`` = Ray's steady-state epoch (train + ckpt+report) minus the plain 1-thread epoch
at the same global batch. ``fit`` = the whole ``TorchTrainer.fit`` call, ``start-up`` = fit minus
the epochs (worker group, process group, dataset load, model build, teardown). The first epoch is
left out of the per-epoch means (warm-up).

    .venv/bin/python bench/bench_ray.py                        # default model, 16 videos
    .venv/bin/python bench/bench_ray.py --n-train 60 --epochs 4 -s model.embed_dim=128
    .venv/bin/python bench/bench_ray.py --gpu --amp bf16 -p params/thumos14.yaml ...  (gpu_check)
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")

from workflows import ray_utils  # noqa: E402  (Ray env defaults before Ray loads)


def snippets_per_epoch(cfg, epochs: int) -> list[int]:
    from amnet.data.dataset import TALDataset

    ds = TALDataset(cfg.data, cfg.data.train_subset, training=True, seed=cfg.train.seed)
    out = []
    for e in range(epochs):
        ds.set_epoch(e)
        out.append(sum(int(ds[i]["length"]) for i in range(len(ds))))
    return out


def plain(cfg, epochs: int, threads: int, device: str = "cpu") -> tuple[list[float], float]:
    """Epoch times of the in-process engine (the loop ``engine.fit`` runs, no validation) and
    the peak GPU memory in GiB (0 on CPU)."""
    import torch

    from amnet import engine
    from amnet.data.dataset import TALDataset

    dev = torch.device(device)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        engine.seed_everything(cfg.train.seed)
        ds = TALDataset(cfg.data, cfg.data.train_subset, training=True, seed=cfg.train.seed)
        loader = engine.make_loader(ds, cfg, training=True)
        model = engine.build_model(cfg, cfg.data.feature_dim, len(ds.classes)).to(dev)
        state = engine.build_train_state(cfg, model, len(loader))
        times = []
        for e in range(epochs):
            engine.train_epoch_setup(loader, ds, cfg, e)
            t0 = time.perf_counter()
            engine.train_one_epoch(state, loader, cfg, dev, amp=cfg.train.amp)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t0)
            state.epoch = e + 1
        peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else 0.0
        return times, peak
    finally:
        torch.set_num_threads(old)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-p", "--params", default=str(REPO / "params" / "default.yaml"))
    ap.add_argument("-s", "--set", dest="overrides", action="append", default=[])
    ap.add_argument("--n-train", type=int, default=16, help="synthetic training videos")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--gpu", action="store_true",
                    help="train on GPUs: the plain engine on cuda:0, each Ray worker on 1 GPU")
    ap.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import ray

    from amnet.data.synthetic import generate_synthetic
    from workflows.config import load_config
    from workflows.ray_train import run_ray_training

    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    cfg = load_config(args.params, [
        f"data.root={tmp / 'features'}", f"data.synthetic.n_train={args.n_train}",
        "data.synthetic.n_test=2", f"train.epochs={args.epochs}", "train.device=cpu",
        "train.eval_every=0", f"ray.storage_path={tmp / 'ray'}",
        *([f"train.amp={args.amp}"] if args.amp != "off" else []),  # YAML reads off as False
        *(["ray.use_gpu=true", "ray.gpus_per_worker=1", "ray.cpus_per_worker=2"]
          if args.gpu else []), *args.overrides])
    generate_synthetic(cfg.data.synthetic, cfg.data.root, stride=cfg.data.stride,
                       window=cfg.data.window)
    snip = snippets_per_epoch(cfg, args.epochs)
    ncpu = os.cpu_count() or 1
    print(f"config: {args.params} {' '.join(args.overrides)}; {args.n_train} videos, "
          f"global batch {cfg.train.batch_size}, max_seq_len {cfg.data.max_seq_len}, "
          f"embed {cfg.model.embed_dim}; {args.epochs} epochs; {ncpu} CPU(s)")
    print(f"snippets per epoch: {snip}")

    rows = []

    def steady(xs: list[float]) -> float:
        return statistics.mean(xs[1:] if len(xs) > 1 else xs)

    for threads in [1] if args.gpu else sorted({1, ncpu}):
        t, peak = plain(cfg, args.epochs, threads, "cuda" if args.gpu else "cpu")
        name = "plain, 1 GPU" if args.gpu else f"plain, {threads} thread(s)"
        rows.append({"name": name, "train": steady(t), "report": 0.0, "mem": peak,
                     "rate": steady([s / x for s, x in zip(snip, t, strict=True)])})
    base = rows[0]["train"]

    t0 = time.perf_counter()
    ray_utils.init_ray(cfg.replace(f"ray.local_cpus={max(ncpu, max(args.workers))}"))
    init_s = time.perf_counter() - t0
    for w in args.workers:
        t0 = time.perf_counter()
        res = run_ray_training(cfg.replace(f"ray.num_workers={w}"), validate=False)
        fit = time.perf_counter() - t0
        train = [h["time/epoch_s"] for h in res.history]
        report = [h.get("time/report_s", 0.0) for h in res.history]
        rows.append({"name": f"ray, {w} worker(s)", "train": steady(train),
                     "mem": max((h.get("gpu/max_mem_gib", 0.0) for h in res.history), default=0),
                     "report": steady(report), "fit": fit,
                     "startup": fit - sum(train) - sum(report),
                     "rate": steady([s / x for s, x in zip(snip, train, strict=True)]),
                     "cycle_rate": steady([s / (x + r) for s, x, r in
                                           zip(snip, train, report, strict=True)])})
    ray.shutdown()

    print(f"\nray.init (local, {ncpu} CPUs): {init_s:.1f} s\n")
    head = (f"{'setting':<22}{'train s/ep':>11}{'ckpt+report':>12}{'snippets/s':>12}"
            f"{'incl. report':>13}{'fit s':>8}{'start-up s':>11}{'overhead/ep':>12}"
            + (f"{'peak GiB':>10}" if args.gpu else ""))
    print(head)
    print("-" * len(head))

    def cell(v: float | None, width: int, fmt: str) -> str:
        return ("-" if v is None else format(v, fmt)).rjust(width)

    for r in rows:
        ray_row = "fit" in r
        over = r["train"] + r["report"] - base if ray_row else None
        print(f"{r['name']:<22}{cell(r['train'], 11, '.2f')}{cell(r['report'], 12, '.3f')}"
              f"{cell(r['rate'], 12, '.0f')}{cell(r.get('cycle_rate', r['rate']), 13, '.0f')}"
              f"{cell(r.get('fit'), 8, '.1f')}{cell(r.get('startup'), 11, '.1f')}"
              f"{cell(over, 12, '+.2f')}" + (cell(r["mem"], 10, ".2f") if args.gpu else ""))
    print("\noverhead/ep = Ray's steady epoch (train + ckpt+report) - plain 1-thread epoch; "
          "negative = faster (2 workers split the global batch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
