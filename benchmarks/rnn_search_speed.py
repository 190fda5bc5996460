"""Seconds per search step and peak memory of NASP vs DARTS (first and second order) on the
RNN cell search, same network, same batches.

Each strategy runs in its own subprocess, so peak memory is measured per strategy: on CPU the
process's peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), reported both
in total and as the increase over the RSS right before the first step; on CUDA
``torch.cuda.max_memory_allocated``. Time per step is the median over ``--steps`` timed steps
after ``--warmup`` untimed ones, both wall-clock and CPU time of the process (``time.process_time``;
with one thread it is the compute time, less sensitive to other jobs on a shared machine). Data: random token ids (the speed does not depend on the text).

    python benchmarks/rnn_search_speed.py                 # defaults below, writes the JSON
    python benchmarks/rnn_search_speed.py --batch-size 256 --device cuda   # DARTS' setting on a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "rnn_search_speed.json"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from nasp.rnn.corpus import Corpus, Vocabulary, batchify, segments
    from nasp.rnn.search import SearchConfig, build_search
    from nasp.devices import resolve_device

    device = resolve_device(args.device)
    torch.manual_seed(0)
    n_tokens = args.batch_size * (args.bptt * (args.steps + args.warmup) + 1)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, args.vocab, (n_tokens,), generator=g)
    vocab = Vocabulary(f"w{i}" for i in range(args.vocab - 2))
    corpus = Corpus(vocab, ids, ids.flip(0).clone(), ids[:10], Path("."))
    cfg = SearchConfig(strategy=args.strategy, space=args.space, epochs=1, batch_size=args.batch_size,
                       bptt=args.bptt, emb_size=args.hidden, hidden_size=args.hidden)
    strategy, _ = build_search(corpus, cfg, device)
    train = segments(batchify(corpus.train, args.batch_size, device), args.bptt, "train")
    valid = segments(batchify(corpus.valid, args.batch_size, device), args.bptt, "valid")
    strategy.network.train()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rss_before = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_cuda = torch.cuda.memory_allocated(device) / 2**20
    times, cpu_times = [], []
    for i in range(args.warmup + args.steps):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        stats = strategy.step(train[i], valid[i])
        float(stats["train_loss"])  # the step is done
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    out = {
        "strategy": args.strategy,
        "seconds_per_step": statistics.median(times),
        "step_times": times,
        "cpu_seconds_per_step": statistics.median(cpu_times),
        "step_cpu_times": cpu_times,
        "device": str(device),
    }
    if device.type == "cuda":
        out["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["memory_before_mb"] = base_cuda
        out["memory_kind"] = "torch.cuda.max_memory_allocated"
    else:
        out["peak_memory_mb"] = _rss_mb()
        out["memory_before_mb"] = rss_before
        out["memory_kind"] = "peak RSS of the process (getrusage ru_maxrss)"
    out["peak_increase_mb"] = out["peak_memory_mb"] - out["memory_before_mb"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategies", default="nasp,darts,darts2")
    p.add_argument("--space", default="darts")
    p.add_argument("--vocab", type=int, default=10000, help="vocabulary size (PTB: 10000)")
    p.add_argument("--batch-size", type=int, default=64, help="DARTS searches with 256; 64 keeps a CPU run short")
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--hidden", type=int, default=300, help="embedding = hidden size (search: 300)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--strategy", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    results = []
    for name in args.strategies.split(","):
        cmd = [sys.executable, __file__, "--worker", "--strategy", name] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k not in ("worker", "strategy", "strategies", "out")
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if done.returncode != 0:
            sys.exit(f"{name} failed:\n{done.stderr}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{name}: {results[-1]['seconds_per_step']:.3f} s/step", file=sys.stderr)

    base = {r["strategy"]: r for r in results}.get("nasp", results[0])
    print(f"\nRNN cell search, space {args.space}: vocab {args.vocab}, batch {args.batch_size}, bptt {args.bptt}, "
          f"hidden {args.hidden}, device {args.device}, threads {args.threads}; median of {args.steps} steps")
    print(f"{'strategy':10s} {'s/step':>9s} {'x nasp':>7s} {'cpu s/step':>11s} {'x nasp':>7s} "
          f"{'peak MB':>9s} {'+MB in steps':>13s} {'x nasp':>7s}")
    for r in results:
        print(f"{r['strategy']:10s} {r['seconds_per_step']:9.3f} {r['seconds_per_step'] / base['seconds_per_step']:7.1f} "
              f"{r['cpu_seconds_per_step']:11.3f} {r['cpu_seconds_per_step'] / base['cpu_seconds_per_step']:7.1f} "
              f"{r['peak_memory_mb']:9.0f} {r['peak_increase_mb']:13.0f} "
              f"{r['peak_increase_mb'] / max(base['peak_increase_mb'], 1e-9):7.1f}")
    report = {"settings": {k: v for k, v in vars(args).items() if k not in ("worker", "strategy", "out")},
              "memory_kind": results[0]["memory_kind"], "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
