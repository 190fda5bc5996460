"""SIF for top-K recommendation against its fixed IFCs, popularity and RecBole, on the same files.

One per-user random 0.8/0.1/0.1 split of MovieLens-100K (RecBole's ``RS`` grouped by user, made
by ``sif.splits`` with ``--seed``) is written as three RecBole atomic files; every row
below reads those files (SIF through ``valid_data``/``test_data``, RecBole through
``benchmark_filename``), ranks all items excluding the user's training items (and validation
ones when testing) and reports test NDCG@10, Recall@10, MRR@10 and wall time:

* SIF = ``SIF(task="ranking", baselines="none").fit(...)``: the searched model itself (NASP
  search, then the chosen IFC retrained with early stopping on validation NDCG@10; the default
  ``baselines="multiply"`` would also train a fixed multiply and keep the better on validation);
* every fixed IFC of ``nasp sif train --ifc`` (multiply = BPR-MF with SVD++'s history term,
  multiply without it, gmf, mlp, neumf) and ``pop`` (popularity);
* RecBole 1.2.1's BPR, NeuMF and LightGCN with their default settings, run by
  ``benchmarks/recbole_run.py`` in the separate environment ``benchmarks/recbole_setup.sh``
  makes (``.venv-recbole``; ``--recbole-python`` for another). Skipped cleanly when absent.

Prints a table and writes JSON (default ``benchmarks/results/sif_ranking.json``).
Usage: python benchmarks/sif_ranking.py [--data PATH] [--seed 0] [--quick] [--no-recbole]
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from recbole_files import RecBoleRunError, recbole_python, run_recbole, split_paths, write_split  # noqa: E402
from sif import SIF  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"
NAME = "ml-100k"
KEYS = ("ndcg@10", "recall@10", "mrr@10", "hit@10", "precision@10")


def write_files(data: str, seed: int, folder: Path) -> dict:
    """The per-user 8:1:1 split of ``data`` as three .inter files; returns their sizes."""
    splits, _ = SIF(task="ranking", seed=seed).load_data(data)
    ids = splits.ids

    def raw(part):
        return [ids.user_ids[u] for u in part.users.tolist()], [ids.item_ids[i] for i in part.items.tolist()]

    write_split(folder, NAME, train=raw(splits.train), valid=raw(splits.valid), test=raw(splits.test))
    return {p: len(getattr(splits, p)) for p in ("train", "valid", "test")}


def sif_row(label: str, paths: dict, seed: int, **options) -> dict:
    t0 = time.perf_counter()
    model = SIF(task="ranking", seed=seed, **options).fit(paths["train"], valid_data=paths["valid"], test_data=paths["test"])
    s = model.summary_
    row = {"model": label, **{k: s.get(f"test_{k}") for k in KEYS}, "valid_ndcg@10": s.get("valid_ndcg@10"),
           "seconds": round(time.perf_counter() - t0, 1), "interaction": s.get("interaction"),
           "epochs": s.get("epochs_trained")}
    for key in ("search_seconds", "memory_bytes"):  # a search's own time; an item-item model's matrices
        if key in s:
            row[key] = s[key]
    print(f"  {label}: test NDCG@10 {row['ndcg@10']:.4f}, {row['seconds']} s", file=sys.stderr, flush=True)
    return row


def recbole_row(model: str, folder: Path, seed: int, python: str, epochs: int | None) -> dict | None:
    t0 = time.perf_counter()
    try:
        r = run_recbole(folder, NAME, model, seed=seed, out=folder / f"recbole-{model}.json", epochs=epochs, threads=1,
                        python=python)
    except RecBoleRunError as exc:
        print(f"RecBole {model} failed: {exc}\n{exc.stderr[-500:]}", file=sys.stderr)
        return None
    return {"model": f"RecBole {model}", **{k: r["test"].get(k) for k in KEYS}, "valid_ndcg@10": r["valid"].get("ndcg@10"),
            "seconds": round(time.perf_counter() - t0, 1), "epochs": r.get("epochs_trained"),
            "recbole_version": r.get("recbole_version")}


def arguments(doc: str, out: str) -> argparse.ArgumentParser:
    """The options this script and ``sif_baselines.py`` share (``--seed(s)`` is each one's own)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--quick", action="store_true", help="few epochs everywhere (a smoke run, not a result)")
    ap.add_argument("--no-recbole", action="store_true")
    ap.add_argument("--recbole-python", default=None, help="default: $RECBOLE_PYTHON, else .venv-recbole/bin/python")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / out))
    return ap


def main_() -> None:
    ap = arguments(__doc__, "sif_ranking.json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    quick = {"epochs": 2, "max_epochs": 2} if args.quick else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sizes = write_files(args.data, args.seed, folder)
        paths = split_paths(folder, NAME)
        rows.append(sif_row("SIF (search + retrain)", paths, args.seed, baselines="none", **quick))
        fixed_quick = {"max_epochs": 2} if args.quick else {}
        for label, opts in [("multiply (BPR-MF + history)", {"ifc": "multiply"}),
                            ("multiply, no history (BPR-MF)", {"ifc": "multiply", "implicit": False}),
                            ("gmf", {"ifc": "gmf"}), ("mlp", {"ifc": "mlp"}), ("neumf", {"ifc": "neumf"}), ("pop", {"ifc": "pop"})]:
            rows.append(sif_row(label, paths, args.seed, **opts, **fixed_quick))
        chosen = rows[0]["interaction"]
        if chosen not in {r["interaction"] for r in rows[1:]}:  # the time ratio needs one training of it
            rows.append(sif_row(f"{chosen} (the chosen IFC, fixed)", paths, args.seed, ifc=chosen, **fixed_quick))
        python = recbole_python(args.recbole_python)
        if args.no_recbole or python is None:
            print(f"RecBole rows skipped ({'--no-recbole' if args.no_recbole else 'no RecBole venv: run benchmarks/recbole_setup.sh'})",
                  file=sys.stderr)
        else:
            for model in ("BPR", "NeuMF", "LightGCN"):
                row = recbole_row(model, folder, args.seed, python, 2 if args.quick else None)
                if row is not None:
                    rows.append(row)
    same = [r for r in rows[1:] if r.get("interaction") == rows[0].get("interaction") and "no history" not in r["model"]]
    print(f"\nMovieLens-100K, per-user random 8:1:1 split (seed {args.seed}): {sizes}; test metrics, full ranking")
    print(f"{'model':32s} {'NDCG@10':>8s} {'Recall@10':>9s} {'MRR@10':>7s} {'Hit@10':>7s} {'seconds':>8s} {'epochs':>6s}")
    for r in rows:
        print(f"{r['model']:32s} {r['ndcg@10']:8.4f} {r['recall@10']:9.4f} {r['mrr@10']:7.4f} {r['hit@10']:7.4f} "
              f"{r['seconds']:8.1f} {str(r.get('epochs')):>6s}")
    result = {
        "benchmark": "sif_ranking", "load_average_end": os.getloadavg(), "data": args.data, "seed": args.seed, "quick": args.quick, "split_sizes": sizes,
        "torch": torch.__version__, "python": platform.python_version(), "threads": 1, "rows": rows,
        # SIF's search + retrain against one training of the interaction it chose, with the same options
        "sif_seconds_over_one_fixed_training": round(rows[0]["seconds"] / same[0]["seconds"], 2) if same else None,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main_()
