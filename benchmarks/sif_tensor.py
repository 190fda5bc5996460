"""Three-way SIF (``--ways 3``): the searched composition against the tensor baselines of the same code.

``--data ml100k-dow --task rating``: MovieLens-100K as (user, item, day of the week of the
rating, rating), made by ``nasp data prepare ml-100k-dow`` from ``--source`` (u.data) into a
temporary folder (nothing of MovieLens is written into the repository). For each seed, one
random 70/10/20 split of the rows (two-way rating's shares, fixed by the seed), and on it:

* ``search`` with the local search (the ``--task rating`` default: 60 epochs, one trial per
  composition) and with ``--strategy nasp`` (10 epochs), each retrained;
* ``train --ifc cp``, ``complex``, ``tucker``, ``mlp``, with the same settings (distmult does
  not apply: it shares one table between the first and third columns, a user and a day here);
* the two-way reference without the context: biased MF (``--ifc multiply --no-implicit
  --no-refit``) on the (user, item, rating) of the very same rows of each part.

Reports validation and test RMSE, test MAE, seconds, and the chosen composition of each search.

``--data kinships --task ranking``: Kinships' own split (``--kinships``: its folder, with
train.txt, valid.txt, test.txt), the knowledge-graph completion protocol (filtered ranking of
both directions), ``--patience 10``; per seed (the initialisation; the split is the data set's):
both searches, the local search retrained fresh (``--fresh``), and ``train --ifc cp``,
``distmult``, ``complex``, ``tucker``, ``mlp``. Reports
validation and test MRR, test Hits@1/3/10, seconds and the chosen compositions.

Usage: python benchmarks/sif_tensor.py [--data ml100k-dow --task rating | --data kinships --task ranking]
       [--seeds 0 1 2 3 4] [--source u.data] [--kinships DIR] [--quick] [--out FILE]
       (default --out: benchmarks/results/sif_tensor_<data>.json)

Writes the JSON after every row (a stopped run goes on where it was); the table in
docs/results/sif.md is ``python benchmarks/report.py``'s.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nasp.data import prepare  # noqa: E402
from sif import SIF  # noqa: E402
from sif import tensor as T  # noqa: E402

DEFAULT_SOURCE = Path(os.environ.get("NASP_ML100K", ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"))
#: label -> SIF options of each row (the three-way ones take --ways 3 --task rating)
ROWS = {
    "search (local)": {"strategy": "local"},
    "search (nasp)": {"strategy": "nasp"},
    "cp": {"ifc": "cp"},
    "complex": {"ifc": "complex"},
    "tucker": {"ifc": "tucker"},
    "mlp": {"ifc": "mlp"},
}
#: the Kinships rows: the same, with DistMult (heads and tails share one entity table there)
RANKING_ROWS = {**{k: v for k, v in ROWS.items() if k.startswith("search")},
                "search (local, --fresh)": {"strategy": "local", "warm_start": False}, "cp": {"ifc": "cp"},
                "distmult": {"ifc": "distmult"}, **{k: v for k, v in ROWS.items() if not k.startswith("search") and k != "cp"}}
DEFAULT_KINSHIPS = ROOT.parent / "shared" / "data" / "kinships"
RANKING_KEYS = ("valid_mrr", "test_mrr", "test_hits@1", "test_hits@3", "test_hits@10")
TWO_WAY = "2-way biased MF, no context"
RATIOS = {"valid_ratio": 0.1, "test_ratio": 0.2}


def three_way_row(label: str, data: Path, seed: int, quick: bool) -> dict:
    options = ROWS[label]
    budget = ({"epochs": 3, "max_epochs": 2} if "strategy" in options else {"max_epochs": 2}) if quick else {}
    t0 = time.perf_counter()
    s = SIF(ways=3, task="rating", seed=seed, verbose=False, **RATIOS, **options, **budget).fit(data).summary_
    return {"model": label, "seed": seed, "interaction": s["interaction"], "valid_rmse": s["valid_rmse"],
            "test_rmse": s["test_rmse"], "test_mae": s["test_mae"], "epochs": s["epochs_trained"],
            "seconds": round(time.perf_counter() - t0, 2), **({"search_seconds": s["search_seconds"]} if "search_seconds" in s else {})}


def kinships_row(label: str, folder: Path, seed: int, quick: bool) -> dict:
    """One row of the Kinships table: filtered MRR and Hits@K of one search or baseline."""
    options = RANKING_ROWS[label]
    budget = ({"epochs": 3, "max_epochs": 2} if "strategy" in options else {"max_epochs": 2}) if quick else {}
    t0 = time.perf_counter()
    s = SIF(ways=3, task="ranking", seed=seed, verbose=False, patience=10, **options, **budget).fit(
        folder / "train.txt", valid_data=folder / "valid.txt", test_data=folder / "test.txt").summary_
    return {"model": label, "seed": seed, "interaction": s["interaction"], **{k: s[k] for k in RANKING_KEYS},
            "epochs": s["epochs_trained"], "seconds": round(time.perf_counter() - t0, 2),
            **({"search_seconds": s["search_seconds"]} if "search_seconds" in s else {})}


def two_way_row(data: Path, seed: int, quick: bool, folder: Path) -> dict:
    """Biased MF on the (user, item, rating) of the rows of the three-way split of ``seed``."""
    splits = T.load(data, seed=seed, task="rating", **RATIOS)
    files = []
    for part in ("train", "valid", "test"):
        path = folder / f"{part}.tsv"
        rows = getattr(splits, part).tolist()
        path.write_text("".join(f"{splits.entities[a]}\t{splits.relations[b]}\t{v:g}\n"
                                for (a, b, _), v in zip(rows, splits.values[part].tolist())))
        files.append(path)
    t0 = time.perf_counter()
    s = SIF(task="rating", ifc="multiply", implicit=False, refit=False, seed=seed, verbose=False,
            **({"max_epochs": 2} if quick else {})).fit(*files).summary_
    return {"model": TWO_WAY, "seed": seed, "interaction": "multiply", "valid_rmse": s["valid_rmse"],
            "test_rmse": s["test_rmse"], "test_mae": s["test_mae"], "epochs": s["epochs_trained"],
            "seconds": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["ml100k-dow", "kinships"], default="ml100k-dow")
    ap.add_argument("--task", choices=["rating", "ranking"], default=None, help="rating for ml100k-dow, ranking for kinships")
    ap.add_argument("--source", default=str(DEFAULT_SOURCE), help="MovieLens-100K's u.data")
    ap.add_argument("--kinships", default=str(DEFAULT_KINSHIPS), help="Kinships' folder (train.txt, valid.txt, test.txt)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--models", nargs="+", default=None, choices=[*dict.fromkeys([*ROWS, *RANKING_ROWS]), TWO_WAY],
                    help="default: every row of the data set")
    ap.add_argument("--quick", action="store_true", help="two epochs everywhere (a smoke run, not a result)")
    ap.add_argument("--out", default=None, help="default: benchmarks/results/sif_tensor_<data>.json")
    args = ap.parse_args()
    ranking = args.data == "kinships"
    expected = "ranking" if ranking else "rating"
    if args.task not in (None, expected):
        ap.error(f"--data {args.data} is measured with --task {expected}")
    models = args.models or ([*RANKING_ROWS] if ranking else [*ROWS, TWO_WAY])
    torch.set_num_threads(1)
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"sif_tensor_{'kinships' if ranking else 'ml100k_dow'}.json")
    result = json.loads(out.read_text()) if out.exists() and not args.quick else {"benchmark": "sif_tensor", "runs": []}
    if ranking:
        result.update({"data": "Kinships (its own split)", "task": "ranking", "split": "given", "patience": 10})
    else:
        result.update({"data": "ml-100k-dow (nasp data prepare ml-100k-dow; context: day of the week, UTC)", "task": "rating",
                       "split": "random 70/10/20 of the rows per seed"})
    result.update({"quick": args.quick, "torch": torch.__version__, "threads": 1, "machine": platform.processor() or platform.machine()})
    done = {(r["model"], r["seed"]) for r in result["runs"]}

    def save(row: dict) -> None:
        result["runs"].append(row)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")

    if ranking:
        for seed in args.seeds:
            for label in models:
                if (label, seed) not in done:
                    row = kinships_row(label, Path(args.kinships), seed, args.quick)
                    save(row)
                    print(f"seed {seed} {label}: {row['interaction']} valid MRR {row['valid_mrr']:.4f} test MRR "
                          f"{row['test_mrr']:.4f} {row['seconds']:.0f}s", file=sys.stderr, flush=True)
        print(f"wrote {out}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        data, _ = prepare("ml-100k-dow", source=args.source, out=Path(tmp) / "ml-100k-dow.inter")
        for seed in args.seeds:
            for label in models:
                if (label, seed) in done:
                    continue
                row = (two_way_row(data, seed, args.quick, Path(tmp)) if label == TWO_WAY
                       else three_way_row(label, data, seed, args.quick))
                save(row)
                print(f"seed {seed} {label}: {row['interaction']} valid {row['valid_rmse']:.4f} test {row['test_rmse']:.4f} "
                      f"{row['seconds']:.0f}s", file=sys.stderr, flush=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
