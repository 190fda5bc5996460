"""SIF on MovieLens: accuracy, search cost and throughput, side by side in one run.

Runs the real ``nasp sif`` commands (in-process, ``--json``) on one random 80/20 train/test
split (validation: 10% of all ratings, carved from the training part):

* SIF = ``nasp sif search --space sif --strategy nasp`` (the paper's NASP search, fresh retrain of the found IFC,
  refit on train+valid; biases and the SVD++ implicit term on, box heads);
* ``--strategy no-auto`` and ``--strategy random`` with N candidates (each trained from scratch);
* every fixed IFC of ``nasp sif train --ifc`` with the same defaults (multiply = SVD++, gmf,
  mlp, ...), plus classic biased MF (``--no-implicit``);
* the paper's model (``--no-biases --no-implicit --head ball``): SIF and every fixed IFC;
* ablations of the defaults: without the refit, with the authors' ball head, warm-started retrain;
* Surprise SVD and SVD++ (defaults) on the same train+valid / test ratings, when installed.

Prints a table and writes JSON (default ``benchmarks/results/sif_movielens.json``).
Usage: python benchmarks/sif_movielens.py [--data PATH_OR_NAME] [--seed 0] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nasp.cli import main  # noqa: E402
from sif import pipeline  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"
#: the paper's search (the proximal step over the SIF paper's space), the searched model itself:
#: no fixed baseline trained beside it and kept instead (``--baselines``); a row's own
#: ``--strategy`` comes after and wins
SEARCHED = ["--baselines", "none", "--space", "sif", "--strategy", "nasp"]


def nasp(*args: str) -> dict:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(f"nasp {' '.join(map(str, args))} failed:\n{result.output}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def surprise_rows(data: str, seed: int) -> list[dict]:
    try:
        import surprise
    except ImportError:
        return []
    splits, _ = pipeline.load_splits(pipeline.DataOptions(data, seed=seed))
    ids = splits.ids

    def triples(part):
        return [(ids.user_ids[u], ids.item_ids[i], float(r)) for u, i, r in zip(part.users.tolist(), part.items.tolist(), part.ratings.tolist())]

    reader = surprise.Reader(rating_scale=splits.rating_range)
    import pandas as pd

    train = pd.DataFrame(triples(splits.train) + triples(splits.valid), columns=["u", "i", "r"])
    trainset = surprise.Dataset.load_from_df(train, reader).build_full_trainset()
    test = triples(splits.test)
    rows = []
    for name, algo in (("Surprise SVD", surprise.SVD(random_state=seed)), ("Surprise SVD++", surprise.SVDpp(random_state=seed))):
        t0 = time.perf_counter()
        algo.fit(trainset)
        preds = algo.test(test)
        rows.append({
            "method": name, "test_rmse": surprise.accuracy.rmse(preds, verbose=False),
            "test_mae": surprise.accuracy.mae(preds, verbose=False), "seconds": time.perf_counter() - t0,
            "note": f"scikit-surprise {surprise.__version__}, defaults, trained on train+valid",
        })
    return rows


def fixed_row(rows: list[dict]) -> dict:
    return next(r for r in rows if r["method"] == "fixed IFC: multiply")


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "ml-100k")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidates", type=int, default=10, help="random search candidates")
    ap.add_argument("--epochs-per-candidate", type=int, default=15)
    ap.add_argument("--extra-seeds", type=int, nargs="*", default=[1, 2],
                    help="more seeds (split and init) for SIF and biased MF, reported as mean and std")
    ap.add_argument("--quick", action="store_true", help="a few epochs only (smoke test of the script)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sif_movielens.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="sif-bench-"))
    common = ["--data", args.data, "--seed", str(args.seed), "--device", "cpu"]
    limit = ["--max-epochs", "3"] if args.quick else []
    rows = []

    def add(method: str, summary: dict, note: str = "") -> None:
        row = {"method": method, **{k: summary.get(k) for k in ("interaction", "valid_rmse", "test_rmse", "test_mae", "seconds",
                                                                 "search_seconds", "train_seconds", "epochs_trained", "search_epochs")}}
        if summary.get("train_seconds") and summary.get("epochs_trained"):
            row["ratings_per_second"] = summary["train_ratings"] * summary["epochs_trained"] / summary["train_seconds"]
        row["note"] = note
        rows.append(row)
        print(f"{method:28s} test RMSE {row['test_rmse']:.4f}  {row['seconds']:7.1f}s", file=sys.stderr, flush=True)

    search_epochs = ["--epochs", "2", "--warmup-epochs", "1"] if args.quick else []
    paper = ["--no-biases", "--no-implicit", "--head", "ball"]
    add("SIF (nasp search + retrain)", nasp("sif", "search", *common, *SEARCHED, *search_epochs, *limit, "--out", tmp / "sif", "--json"))
    add("SIF(no-auto) + retrain", nasp("sif", "search", *common, *SEARCHED, "--strategy", "no-auto", *search_epochs, *limit,
                                       "--out", tmp / "noauto", "--json"))
    for ifc in ("multiply", "gmf", "plus", "min", "max", "concat", "mlp"):
        note = "SVD++" if ifc == "multiply" else "NCF GMF, no biases, no implicit" if ifc == "gmf" else "NCF MLP tower" if ifc == "mlp" else ""
        add(f"fixed IFC: {ifc}", nasp("sif", "train", "--ifc", ifc, *common, *limit, "--out", tmp / ifc, "--json"), note)
    add("fixed IFC: multiply, no implicit", nasp("sif", "train", "--ifc", "multiply", "--no-implicit", *common, *limit,
                                                 "--out", tmp / "biased-mf", "--json"), "biased MF")
    add("SIF, paper's model", nasp("sif", "search", *common, *SEARCHED, *paper, *search_epochs, *limit, "--out", tmp / "sif-paper", "--json"),
        " ".join(paper))
    for ifc in ("multiply", "plus", "min", "max", "concat", "mlp"):
        add(f"fixed IFC: {ifc}, paper's model", nasp("sif", "train", "--ifc", ifc, *paper, *common, *limit,
                                                     "--out", tmp / f"{ifc}-paper", "--json"), "plain MF" if ifc == "multiply" else "")
    add("ablation: SIF --no-refit", nasp("sif", "search", *common, *SEARCHED, "--no-refit", *search_epochs, *limit,
                                         "--out", tmp / "sif-norefit", "--json"), "test metrics of the early-stopped model")
    add("ablation: SIF --warm-start", nasp("sif", "search", *common, *SEARCHED, "--warm-start", *search_epochs, *limit,
                                           "--out", tmp / "sif-warm", "--json"), "retrain from the searched weights")
    add("ablation: multiply --no-refit", nasp("sif", "train", "--ifc", "multiply", "--no-refit", *common, *limit,
                                              "--out", tmp / "mf-norefit", "--json"), "SVD++ without the refit")
    add("ablation: multiply --head ball", nasp("sif", "train", "--ifc", "multiply", "--head", "ball", *common, *limit,
                                               "--out", tmp / "mf-ball", "--json"), "SVD++ with the authors' head")
    per = 1 if args.quick else args.epochs_per_candidate
    add(f"random search ({args.candidates} cand.) + retrain",
        nasp("sif", "search", *common, *SEARCHED, "--strategy", "random", "--candidates", str(args.candidates),
             "--epochs", str(args.candidates * per), *limit, "--out", tmp / "random", "--json"),
        f"{per} epochs per candidate")
    rows += surprise_rows(args.data, args.seed)
    seeds = {"SIF": [rows[0]], "MF": [fixed_row(rows)]}
    for seed in args.extra_seeds:
        other = ["--data", args.data, "--seed", str(seed), "--device", "cpu"]
        seeds["SIF"].append(nasp("sif", "search", *other, *search_epochs, *limit, "--out", tmp / f"sif{seed}", "--json"))
        seeds["MF"].append(nasp("sif", "train", "--ifc", "multiply", *other, *limit, "--out", tmp / f"mf{seed}", "--json"))
    repeats = {}
    for name, runs in seeds.items():
        values = torch.tensor([float(r["test_rmse"]) for r in runs], dtype=torch.float64)
        secs = torch.tensor([float(r["seconds"]) for r in runs], dtype=torch.float64)
        repeats[name] = {"seeds": [args.seed, *args.extra_seeds], "test_rmse": values.tolist(),
                         "test_rmse_mean": float(values.mean()), "test_rmse_std": float(values.std()) if len(values) > 1 else 0.0,
                         "seconds_mean": float(secs.mean()),
                         "interactions": [r.get("interaction") for r in runs]}

    base = fixed_row(rows)["seconds"]
    for r in rows:
        r["time_vs_fixed_multiply"] = r["seconds"] / base if r.get("seconds") else None
    print(f"\n{'method':40s} {'test RMSE':>9s} {'test MAE':>8s} {'seconds':>8s} {'x MF time':>9s} {'ratings/s':>10s}")
    for r in rows:
        rps = f"{r['ratings_per_second']:10.0f}" if r.get("ratings_per_second") else " " * 10
        print(f"{r['method']:40s} {r['test_rmse']:9.4f} {r['test_mae']:8.4f} {r['seconds']:8.1f} {r['time_vs_fixed_multiply']:9.2f} {rps}")
    if len(seeds["SIF"]) > 1:
        print(f"\nover seeds {repeats['SIF']['seeds']}:")
        for name, rep in repeats.items():
            print(f"  {name:4s} test RMSE {rep['test_rmse_mean']:.4f} +- {rep['test_rmse_std']:.4f}  mean {rep['seconds_mean']:.1f}s  {rep['interactions']}")
        print(f"  SIF time / MF time: {repeats['SIF']['seconds_mean'] / repeats['MF']['seconds_mean']:.2f}")
    result = {
        "data": args.data, "seed": args.seed, "split": "random 80/20 train/test; validation 10% of all, from the train part",
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(), "threads": 1,
                    "cuda": torch.cuda.is_available()},
        "quick": args.quick, "rows": rows, "repeats": repeats,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main_()
