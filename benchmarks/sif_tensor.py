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
The Kinships (ranking) table of docs/results/sif.md is measured by hand (the commands named there).

Usage: python benchmarks/sif_tensor.py --data ml100k-dow --task rating [--seeds 0 1 2 3 4]
       [--source u.data] [--quick] [--out benchmarks/results/sif_tensor_ml100k_dow.json]

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
    ap.add_argument("--data", choices=["ml100k-dow"], default="ml100k-dow")
    ap.add_argument("--task", choices=["rating"], default="rating")
    ap.add_argument("--source", default=str(DEFAULT_SOURCE), help="MovieLens-100K's u.data")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--models", nargs="+", default=[*ROWS, TWO_WAY], choices=[*ROWS, TWO_WAY])
    ap.add_argument("--quick", action="store_true", help="two epochs everywhere (a smoke run, not a result)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sif_tensor_ml100k_dow.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() and not args.quick else {"benchmark": "sif_tensor", "runs": []}
    result.update({"data": "ml-100k-dow (nasp data prepare ml-100k-dow; context: day of the week, UTC)", "task": args.task,
                   "split": "random 70/10/20 of the rows per seed", "quick": args.quick, "torch": torch.__version__,
                   "threads": 1, "machine": platform.processor() or platform.machine()})
    done = {(r["model"], r["seed"]) for r in result["runs"]}
    with tempfile.TemporaryDirectory() as tmp:
        data, _ = prepare("ml-100k-dow", source=args.source, out=Path(tmp) / "ml-100k-dow.inter")
        for seed in args.seeds:
            for label in args.models:
                if (label, seed) in done:
                    continue
                row = (two_way_row(data, seed, args.quick, Path(tmp)) if label == TWO_WAY
                       else three_way_row(label, data, seed, args.quick))
                result["runs"].append(row)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(result, indent=2) + "\n")
                print(f"seed {seed} {label}: {row['interaction']} valid {row['valid_rmse']:.4f} test {row['test_rmse']:.4f} "
                      f"{row['seconds']:.0f}s", file=sys.stderr, flush=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
