"""Accuracy on scikit-learn's digits (real 8x8 images, CPU-sized): the cells found by NASP and by
DARTS (first order) with equal search budgets, each retrained from scratch and tested on the
fixed 360-image test split; and the model-size curve of NASP's --eta.

    python benchmarks/cnn_digits_accuracy.py            # ~15 min on one CPU core
    python benchmarks/cnn_digits_accuracy.py --quick    # smaller budgets, a smoke run

Runs the real commands (``nasp cnn search`` / ``nasp cnn train``) in subprocesses, keeps their run
directories under ``--work`` and writes ``benchmarks/results/cnn_digits_accuracy.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
NASP = [sys.executable, "-c", "from nasp.cli import main; main()"]


def run(args: list, threads: int) -> dict:
    """Run ``nasp <args>``; a finished run directory (--out) is read back, an unfinished one resumed."""
    out = Path(args[args.index("--out") + 1])
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    if (out / "config.json").exists():
        args = args[:2] + ["--out", out, "--resume"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    res = subprocess.run(NASP + [str(a) for a in args] + ["--json", "--device", "cpu"], capture_output=True, text=True,
                         cwd=HERE.parent, env=env)
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, args))}\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--budget", choices=("epochs", "time"), default="epochs",
                   help="equal search epochs, or equal search time: NASP gets as many epochs as fit in DARTS' search time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--strategies", default="nasp,darts", help="which cells to search and retrain (comma-separated)")
    p.add_argument("--arch-lr", type=float, default=None, help="--arch-lr of every search (default: the command's, 3e-4)")
    p.add_argument("--warmup-epochs", type=int, default=0,
                   help="NASP's --warmup-epochs (weights trained on sampled cells before the alphas move)")
    p.add_argument("--etas", default="0,0.1,1,10")
    p.add_argument("--parts", default="cells,eta", help="cells (NASP vs DARTS), eta (the --eta curve)")
    p.add_argument("--eta-train-epochs", type=int, default=10, help="retraining epochs of the eta-curve cells (0: search only)")
    p.add_argument("--work", default=None, help="keep run directories here (default: a temporary folder)")
    p.add_argument("--out", default=str(HERE / "results" / "cnn_digits_accuracy.json"))
    a = p.parse_args()
    search_epochs, train_epochs = (2, 3) if a.quick else (10, 30)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="nasp-digits-"))
    work.mkdir(parents=True, exist_ok=True)  # finished runs in it are reused, unfinished ones resumed
    search = ["cnn", "search", "--data", "digits", "--epochs", search_epochs, "--layers", 5, "--channels", 8,
              "--batch-size", 32, "--seed", a.seed] + (["--arch-lr", a.arch_lr] if a.arch_lr else [])
    train = ["cnn", "train", "--data", "digits", "--epochs", train_epochs, "--layers", 6, "--channels", 16,
             "--batch-size", 32, "--seed", a.seed, "--drop-path", 0.1]
    result = {"config": {"search_epochs": search_epochs, "train_epochs": train_epochs, "seed": a.seed,
                         "search": "layers 5, channels 8, batch 32", "arch_lr": a.arch_lr or 3e-4, "train": "layers 6, channels 16, batch 32, drop-path 0.1, aux 0.4"},
              "cells": [], "eta_curve": []}
    parts = set(a.parts.split(","))
    result["config"]["eta_train_epochs"] = a.eta_train_epochs
    result["config"]["budget"] = a.budget
    wanted = a.strategies.split(",")
    order = [s for s in (("darts", "nasp") if a.budget == "time" else ("nasp", "darts")) if s in wanted]
    darts_seconds = None
    for strategy in (order if "cells" in parts else ()):
        args = list(search)
        name = f"{strategy}-equal-time" if strategy == "nasp" and a.budget == "time" else strategy
        if strategy == "nasp" and a.warmup_epochs:
            args += ["--warmup-epochs", a.warmup_epochs]
            name += f"-warmup{a.warmup_epochs}"
        if a.arch_lr:
            name += f"-archlr{a.arch_lr:g}"
        if strategy == "nasp" and darts_seconds is not None:
            # equal time: scale NASP's epochs by DARTS' search time over NASP's time per epoch (one probe epoch)
            probe = run(search[:5] + [1] + search[6:] + ["--strategy", "nasp", "--out", work / "probe-nasp"], a.threads)
            args[5] = max(search_epochs, int(darts_seconds / probe["search_seconds"]))
        s = run(args + ["--strategy", strategy, "--out", work / f"search-{name}"], a.threads)
        if strategy == "darts":
            darts_seconds = s["search_seconds"]
        t = run(train + ["--genotype", work / f"search-{name}", "--out", work / f"train-{name}"], a.threads)
        row = {"strategy": strategy, "search_epochs": args[5], "warmup_epochs": a.warmup_epochs if strategy == "nasp" else 0, "search_seconds": s["search_seconds"], "search_valid_acc": s["valid_acc"],
               "test_acc": t["test_acc"], "params": t["params"], "genotype": s["genotype"]}
        result["cells"].append(row)
        print(json.dumps(row), flush=True)
    eta_train = train[:5] + [a.eta_train_epochs] + train[6:]
    for eta in ([float(e) for e in a.etas.split(",")] if "eta" in parts else ()):
        s = run(search + ["--strategy", "nasp", "--eta", eta, "--out", work / f"search-eta{eta}"], a.threads)
        t = {"params": None, "test_acc": None}
        if a.eta_train_epochs > 0:
            t = run(eta_train + ["--genotype", work / f"search-eta{eta}", "--out", work / f"train-eta{eta}"], a.threads)
        row = {"eta": eta, "seed": a.seed, "params_of_derived_cell": s["params_of_derived_cell"], "params": t["params"],
               "test_acc": t["test_acc"], "genotype": s["genotype"]}
        result["eta_curve"].append(row)
        print(json.dumps(row), flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'cell':8s} {'search s':>9s} {'test acc':>9s} {'params':>9s}")
    for r in result["cells"]:
        print(f"{r['strategy']:8s} {r['search_seconds']:9.1f} {r['test_acc']:9.4f} {r['params']:9d}")
    print(f"\n{'eta':>6s} {'cell params':>12s} {'net params':>11s} {'test acc':>9s}")
    for r in result["eta_curve"]:
        print(f"{r['eta']:6g} {r['params_of_derived_cell']:12d} {r['params'] or 0:11d} {r['test_acc'] or 0:9.4f}")
    print(f"written {out}")


if __name__ == "__main__":
    main()
