"""Accuracy at equal search time: every search strategy of the core on SIF's autocf space.

The NASP paper's claim is that at equal search time NASP reaches a better architecture than the
other one-shot methods. For each seed this script times NASP's search of ``--epochs`` epochs on
MovieLens-100K (ratings, ``--space autocf``): that wall time is the budget. Every other
strategy gets as many epochs as fit in the same budget (its seconds per epoch measured by a
one-epoch pilot on the same seed; the standalone-training methods, random, reinforce and tpe,
one candidate per epoch), searches, and retrains what it found (``keep="searched"``, no
baselines). Reported per strategy: the epochs it was given, its search seconds, the found
architecture's validation and test RMSE after retraining, and its place in the ground truth of
the space (``benchmarks/sif_bench.py``) where measured.

Usage: python benchmarks/equal_time.py [--seeds 0 1 2] [--strategies ...] [--epochs 10] [--quick]
Writes ``benchmarks/results/equal_time.json`` after every run (a stopped run goes on where it
was) and, with ``--report``, ``docs/results/equal_time.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from nasp.strategies import STRATEGIES, search_strategy_names  # noqa: E402
from sif.groundtruth import GroundTruth  # noqa: E402
from sif_search import DEFAULT_DATA, fit  # noqa: E402

STANDALONE = ("random", "reinforce", "tpe")
"""Strategies that train every candidate from scratch: one candidate per epoch of the budget."""
PAGE = ROOT / "docs" / "results" / "equal_time.md"


def strategies() -> list[str]:
    """Every search strategy of SIF but local (a search over fixed models whose budget is its own);
    pcdarts needs a CNN cell."""
    return [s for s in search_strategy_names("sif") if s != "local"]


def search(strategy: str, seed: int, data: str, epochs: int, quick: bool, retrain: bool = True) -> tuple[dict, float]:
    """One search of ``epochs`` (and the retraining of what it found, unless ``retrain`` is off)."""
    options = {"strategy": strategy, "space": "autocf", "baselines": "none", "keep": "searched", "epochs": max(1, epochs),
               "retrain": retrain}
    if "candidates" in STRATEGIES.get(strategy).reads:
        options["candidates"] = max(1, epochs)
    if quick:
        options["max_epochs"] = 2
    summary, seconds = fit("rating", seed, data, False, **options)
    return summary, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=strategies())
    ap.add_argument("--epochs", type=int, default=10, help="NASP's search epochs: their wall time is every strategy's budget")
    ap.add_argument("--truth", default=str(ROOT / "benchmarks" / "results" / "sif_bench.jsonl"))
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2 budget epochs, 2 retraining epochs (not a result)")
    ap.add_argument("--report", action="store_true", help="write docs/results/equal_time.md from the results file; run nothing")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "equal_time.json"))
    ap.add_argument("--page", default=str(PAGE), help="the markdown page the report writes")
    args = ap.parse_args()
    out, page = Path(args.out), Path(args.page)
    if args.report:
        report(json.loads(out.read_text()), page)
        return
    torch.set_num_threads(1)
    truth = GroundTruth.read(args.truth) if Path(args.truth).exists() else None
    result = json.loads(out.read_text()) if out.exists() and not args.quick else {"benchmark": "equal_time", "runs": []}
    budget_epochs = 2 if args.quick else args.epochs
    result.update({"data": args.data, "quick": args.quick, "torch": torch.__version__, "threads": 1, "nasp_epochs": budget_epochs})
    done = {(r["seed"], r["strategy"]) for r in result["runs"]}
    for seed in args.seeds:
        budget = next((r["search_seconds"] for r in result["runs"] if r["seed"] == seed and r["strategy"] == "nasp"), None)
        order = ["nasp"] + [s for s in args.strategies if s != "nasp"]
        for strategy in order:
            if (seed, strategy) in done:
                continue
            if strategy == "nasp":
                epochs = budget_epochs
            else:
                pilot, _ = search(strategy, seed, args.data, 1, args.quick, retrain=False)  # one epoch: its pace
                per_epoch = max(float(pilot.get("search_seconds") or 0.0), 1e-3)
                epochs = max(1, int(round(budget / per_epoch))) if budget else budget_epochs
            summary, seconds = search(strategy, seed, args.data, epochs, args.quick)
            row = {"seed": seed, "strategy": strategy, "epochs": epochs, "search_seconds": summary.get("search_seconds"),
                   "seconds": round(seconds, 2), "valid_rmse": summary.get("valid_rmse"), "test_rmse": summary.get("test_rmse"),
                   "choices": summary.get("choices")}
            if truth is not None and summary.get("choices"):
                row["truth"] = truth.place("rating", summary["choices"])
            if strategy == "nasp":
                budget = row["search_seconds"]
            result["runs"].append(row)
            out.write_text(json.dumps(result, indent=1) + "\n")
            print(json.dumps(row), flush=True)
    report(result, page)


def report(result: dict, page: Path = PAGE) -> None:
    """A markdown table per strategy (mean over the seeds), written to ``page``."""
    import statistics

    rows = result["runs"]
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    lines = ["# Accuracy at equal search time (SIF, MovieLens-100K, ratings, autocf space)", "",
             f"Budget: the wall time of NASP's {result.get('nasp_epochs')}-epoch search on the same seed; every other strategy "
             "gets the epochs that fit in it. Test RMSE after retraining the found architecture (lower is better); "
             "`benchmarks/equal_time.py` wrote this page from `benchmarks/results/equal_time.json`"
             + (" (a quick smoke run, not a result)" if result.get("quick") else "") + ".", "",
             "| strategy | seeds | epochs | search s | valid RMSE | test RMSE | test rank in the ground truth |", "|---|---|---|---|---|---|---|"]
    for name in names:
        mine = [r for r in rows if r["strategy"] == name]
        mean = lambda key: statistics.mean(r[key] for r in mine if r.get(key) is not None) if any(r.get(key) is not None for r in mine) else float("nan")  # noqa: E731
        ranks = [f"{r['truth']['test_rank']}/{r['truth']['of']}" for r in mine if r.get("truth", {}).get("measured")]
        lines.append(f"| {name} | {len(mine)} | {mean('epochs'):.1f} | {mean('search_seconds'):.1f} | {mean('valid_rmse'):.4f} | "
                     f"{mean('test_rmse'):.4f} | {', '.join(ranks) or 'not measured'} |")
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
