"""Does the search pick the right interaction function at small embedding sizes?

For each ``--dim`` (the authors ran dim 2), runs the real commands on one ml-100k split:
``nasp sif search`` with several strategies and warm-up lengths, and ``nasp sif train --ifc``
for every fixed IFC at the same dim, then prints which IFC each search chose, its test RMSE, and
the best fixed IFC by validation RMSE (what a search should find).

Usage: python benchmarks/sif_search_pick.py [--dims 2 64] [--seed 0] [--quick]
Writes ``benchmarks/results/sif_search_pick.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from sif_movielens import DEFAULT_DATA, ROOT, nasp

IFCS = ("multiply", "plus", "min", "max", "concat")

#: (strategy, search epochs, warm-up epochs); ("nasp", 10, "auto") is the command's default
SEARCHES = (("nasp", 10, "auto"), ("nasp", 20, "auto"), ("nasp", 10, 3), ("nasp", 10, 0), ("no-auto", 10, 3), ("darts", 10, 3))


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "ml-100k")
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 64])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-epochs", type=int, default=100, help="retraining / fixed-IFC training cap")
    ap.add_argument("--quick", action="store_true", help="tiny budgets (smoke test of the script)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sif_search_pick.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="sif-pick-"))
    cap = ["--max-epochs", "2" if args.quick else str(args.max_epochs)]
    results = []
    for dim in args.dims:
        common = ["--data", args.data, "--seed", str(args.seed), "--dim", str(dim), "--device", "cpu", "--json", *cap]
        fixed = {ifc: nasp("sif", "train", "--ifc", ifc, *common, "--out", tmp / f"d{dim}-{ifc}") for ifc in IFCS}
        best = min(fixed, key=lambda k: fixed[k]["valid_rmse"])
        rows = []
        for strategy, epochs, warmup in SEARCHES:
            if args.quick:
                epochs, warmup = 2, (warmup if warmup == "auto" else min(warmup, 1))
            label = f"{strategy}, {epochs} epochs" + (f", warm-up {warmup}" if strategy != "darts" else "")
            s = nasp("sif", "search", *common, "--baselines", "none", "--strategy", strategy, "--epochs", str(epochs), "--warmup-epochs", str(warmup),
                     "--out", tmp / f"d{dim}-{len(rows)}")
            rows.append({"search": label, "chose": s["interaction"], "test_rmse": s["test_rmse"], "valid_rmse": s["valid_rmse"],
                         "right": s["interaction"] == best, "seconds": s["seconds"]})
            print(f"dim {dim} {label:40s} chose {s['interaction']:8s} test {s['test_rmse']:.4f}", file=sys.stderr, flush=True)
        results.append({"dim": dim, "best_fixed_by_valid": best,
                        "fixed": {k: {"valid_rmse": v["valid_rmse"], "test_rmse": v["test_rmse"], "best_epoch": v["best_epoch"]}
                                  for k, v in fixed.items()},
                        "searches": rows})
    for res in results:
        print(f"\n--dim {res['dim']}: fixed IFCs (valid / test RMSE): " +
              ", ".join(f"{k} {v['valid_rmse']:.4f}/{v['test_rmse']:.4f}" for k, v in res["fixed"].items()))
        print(f"{'search':42s} {'chose':>8s} {'right':>6s} {'test RMSE':>9s} {'seconds':>8s}")
        for r in res["searches"]:
            print(f"{r['search']:42s} {r['chose']:>8s} {str(r['right']):>6s} {r['test_rmse']:9.4f} {r['seconds']:8.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"data": args.data, "seed": args.seed, "quick": args.quick, "results": results}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main_()
