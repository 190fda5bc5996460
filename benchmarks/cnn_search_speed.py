"""Search-step speed and peak memory of NASP vs DARTS (first and second order) and random search,
side by side: same search network, same batches, same device.

    python benchmarks/cnn_search_speed.py                      # CPU defaults, writes the JSON
    python benchmarks/cnn_search_speed.py --layers 8 --channels 16 --batch-size 64 --device cuda

Every strategy runs in its own fresh subprocess, so peak memory is not polluted by another
strategy. Peak memory: on CPU, the growth of the process' maximum resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) from just before the first search step (network,
optimizers and batches already built) to the end of the timed steps; on CUDA,
``torch.cuda.max_memory_allocated`` over the same steps. Time: median wall seconds of one
``strategy.step(train_batch, valid_batch)`` over ``--steps`` steps after ``--warmup`` steps
(CUDA synchronised around each step).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STRATEGIES = ["nasp", "darts", "darts2", "random"]


def worker(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    from nasp.cnn.search_net import CNNSearchNetwork
    from nasp.devices import resolve_device
    from nasp.strategies import SearchProblem, build_strategy

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    net = CNNSearchNetwork(args.space, channels=args.channels, layers=args.layers, num_classes=10).to(device)
    amp = args.amp and device.type == "cuda"

    def loss(network, batch):
        x, y = batch
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = network(x)
        return F.cross_entropy(logits.float(), y)

    problem = SearchProblem(
        network=net, loss=loss, grad_clip=5.0,
        weight_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.025, momentum=0.9, weight_decay=3e-4),
        options={"candidates": 1, "seed": 0},
    )
    strategy = build_strategy(args.worker, problem, epochs=1)
    strategy.begin_epoch(0)
    g = torch.Generator().manual_seed(1)
    n = args.warmup + args.steps
    batches = [
        (torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g).to(device),
         torch.randint(0, 10, (args.batch_size,), generator=g).to(device))
        for _ in range(2 * n)
    ]
    net.train()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(args.warmup):
        strategy.step(batches[2 * i], batches[2 * i + 1])
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for i in range(args.warmup, n):
        sync()
        t0 = time.perf_counter()
        strategy.step(batches[2 * i], batches[2 * i + 1])
        sync()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        kind = "cuda max_memory_allocated during the timed steps"
        extra = {"peak_above_start_mb": (torch.cuda.max_memory_allocated(device) - base) / 2**20}
    else:
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # with warm-up steps done, the allocator already holds one step's memory; measure from
        # before warm-up instead when --warmup 0
        peak = (rss_after - rss_before) / 1024.0
        kind = "growth of process max RSS over the timed steps (KiB/1024)"
        extra = {"max_rss_mb": rss_after / 1024.0}
    return {"strategy": args.worker, "median_step_s": statistics.median(times), "min_step_s": min(times),
            "steps": len(times), "peak_memory_mb": peak, "memory_kind": kind, **extra}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--space", default="darts")
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--out", default=str(HERE / "results" / "cnn_search_speed.json"))
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    rows = []
    for name in args.strategies.split(","):
        cmd = [sys.executable, __file__, "--worker", name] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k not in {"worker", "strategies", "out", "amp"}
        ] + (["--amp"] if args.amp else [])
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        if res.returncode != 0:
            sys.exit(f"{name} failed:\n{res.stderr[-3000:]}")
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"{name:8s} {rows[-1]['median_step_s']:.3f} s/step  {rows[-1]['peak_memory_mb']:.1f} MB", file=sys.stderr)
    by = {r["strategy"]: r for r in rows}
    ref = by.get("nasp")
    for r in rows:
        if ref:
            r["time_vs_nasp"] = r["median_step_s"] / ref["median_step_s"]
            r["memory_vs_nasp"] = r["peak_memory_mb"] / ref["peak_memory_mb"] if ref["peak_memory_mb"] > 0 else None
    print(f"\n{'strategy':10s} {'median s/step':>14s} {'x NASP time':>12s} {'peak MB':>10s} {'x NASP mem':>11s}")
    for r in rows:
        mem_ratio = r.get("memory_vs_nasp")
        print(f"{r['strategy']:10s} {r['median_step_s']:14.3f} {r.get('time_vs_nasp', float('nan')):12.2f} "
              f"{r['peak_memory_mb']:10.1f} {mem_ratio if mem_ratio is not None else float('nan'):11.2f}")
    import torch

    result = {
        "config": {k: v for k, v in vars(args).items() if k != "worker"},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                    "cuda": torch.cuda.get_device_name() if args.device.startswith("cuda") and torch.cuda.is_available() else None},
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
