"""How the 3-way ranking defaults were chosen: ComplEx on Kinships, validation MRR over a grid.

Stage 1: ``train --ifc complex`` on Kinships' own split (``--patience 10``, seed 0) for every
``--dim`` x ``--lr`` x ``--reg`` (Adam's weight decay) of the grid. Stage 2: the ``--top``
settings by stage 1's validation MRR among dims of at most ``--max-dim``, the best of a larger
dim, and the previous defaults (dim 64, lr 0.02, no weight decay), on ``--seeds`` more. The defaults are the best mean validation MRR of stage 2 among
dims of at most ``--max-dim`` (a larger dim costs the search's max and min trials in
proportion). Test MRR is printed beside it and chooses nothing.

Usage: python benchmarks/sif_tensor_settings.py [--kinships DIR] [--top 4] [--seeds 1 2] [--quick]
Writes ``benchmarks/results/sif_tensor_settings.json`` after every run (a stopped run goes on
where it was); the table in docs/results/sif.md is ``python benchmarks/report.py``'s.
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sif import SIF  # noqa: E402

DEFAULT_KINSHIPS = ROOT.parent / "shared" / "data" / "kinships"
GRID = {"dim": (64, 128, 256, 512), "lr": (0.002, 0.005, 0.02), "reg": (0.0, 1e-5, 3e-5)}
#: the defaults before this benchmark
PREVIOUS = {"dim": 64, "lr": 0.02, "reg": 0.0}


def key(setting: dict) -> tuple:
    return setting["dim"], setting["lr"], setting["reg"]


def run(folder: Path, setting: dict, seed: int, quick: bool) -> dict:
    """One ComplEx training: the setting, validation and test MRR, epochs and seconds."""
    t0 = time.perf_counter()
    s = SIF(ways=3, task="ranking", ifc="complex", seed=seed, verbose=False, patience=10, **setting,
            **({"max_epochs": 2} if quick else {})).fit(
        folder / "train.txt", valid_data=folder / "valid.txt", test_data=folder / "test.txt").summary_
    return {**setting, "seed": seed, "valid_mrr": s["valid_mrr"], "test_mrr": s["test_mrr"], "epochs": s["epochs_trained"],
            "seconds": round(time.perf_counter() - t0, 2)}


def choose(runs: list[dict], seeds: list[int], max_dim: int) -> dict:
    """The setting of the best mean validation MRR over ``seeds`` among dims <= ``max_dim``."""
    by: dict = {}
    for r in runs:
        by.setdefault(key(r), {})[r["seed"]] = r["valid_mrr"]
    full = {k: statistics.mean(v.values()) for k, v in by.items() if set(seeds) <= set(v) and k[0] <= max_dim}
    dim, lr, reg = max(full, key=full.get)
    return {"dim": dim, "lr": lr, "reg": reg}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinships", default=str(DEFAULT_KINSHIPS), help="Kinships' folder (train.txt, valid.txt, test.txt)")
    ap.add_argument("--top", type=int, default=4, help="stage 1's best settings run on the other seeds")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2], help="stage 2's seeds (stage 1: seed 0)")
    ap.add_argument("--max-dim", type=int, default=256, help="the largest dim the defaults may take")
    ap.add_argument("--quick", action="store_true", help="two settings, two epochs (a smoke run, not a result)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sif_tensor_settings.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder, out = Path(args.kinships), Path(args.out)
    result = json.loads(out.read_text()) if out.exists() and not args.quick else {"benchmark": "sif_tensor_settings", "runs": []}
    result.update({"data": "Kinships (its own split)", "model": "complex", "patience": 10, "grid": GRID, "previous": PREVIOUS,
                   "max_dim": args.max_dim, "quick": args.quick, "torch": torch.__version__, "threads": 1,
                   "machine": platform.processor() or platform.machine()})
    done = {(key(r), r["seed"]) for r in result["runs"]}

    def measure(setting: dict, seed: int) -> None:
        if (key(setting), seed) in done:
            return
        row = run(folder, setting, seed, args.quick)
        result["runs"].append(row)
        done.add((key(setting), seed))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"dim {row['dim']:4d} lr {row['lr']:g} reg {row['reg']:g} seed {seed}: valid MRR {row['valid_mrr']:.4f} "
              f"test MRR {row['test_mrr']:.4f} ({row['epochs']} epochs, {row['seconds']:.1f}s)", file=sys.stderr, flush=True)

    grid = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    for setting in grid[:2] if args.quick else grid:
        measure(setting, 0)
    first = sorted((r for r in result["runs"] if r["seed"] == 0), key=lambda r: -r["valid_mrr"])
    within = [r for r in first if r["dim"] <= args.max_dim][:args.top]
    larger = [r for r in first if r["dim"] > args.max_dim][:1]  # what a larger dim would give
    finalists = [{k: r[k] for k in GRID} for r in within + larger] + [PREVIOUS]
    for setting in finalists[:1] if args.quick else finalists:
        for seed in args.seeds:
            measure(setting, seed)
    seeds = [0, *args.seeds]
    if not args.quick:
        result["chosen"] = choose(result["runs"], seeds, args.max_dim)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"chosen (best mean validation MRR over seeds {seeds}, dim <= {args.max_dim}): {result['chosen']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
