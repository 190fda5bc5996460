"""Accuracy at equal search time: every search strategy of the core on SIF, CNN or RNN cells.

Domains: SIF's autocf space (``--domain sif``, the default), the CNN cell space on digits
(``--domain cnn``) or the RNN cell space on a small PTB-format corpus (``--domain rnn``).

The NASP paper's claim is that at equal search time NASP reaches a better architecture than the
other one-shot methods. For each seed this script times NASP's search of ``--epochs`` epochs on
MovieLens-100K (ratings, ``--space autocf``): that wall time is the budget. Every other
strategy gets as many epochs as fit in the same budget (its seconds per epoch measured by a
one-epoch pilot on the same seed; the standalone-training methods, random, reinforce and tpe,
one candidate per epoch), searches, and retrains what it found (``keep="searched"``, no
baselines). Reported per strategy: the epochs it was given, its search seconds, the found
architecture's validation and test RMSE after retraining, and its place in the ground truth of
the space (``benchmarks/sif_bench.py``) where measured.

CNN and RNN (``equal_time_nets.py``, one process per strategy and seed): NASP's search of the
domain's ``nasp_epochs`` is the budget; every strategy (NASP included) first runs a one-epoch pilot
(its pace and its extra memory), then searches the epochs that fit in the budget, stopped once it
is spent, scoring the architecture it would export after every epoch on the shared weights; its
final cell is retrained (the same short retraining for all). A strategy that cannot search the
domain gets a row saying so.

Usage: python benchmarks/equal_time.py [--domain sif|cnn|rnn] [--seeds 0 1 2] [--strategies ...] [--quick]
Writes ``benchmarks/results/equal_time.json`` (``equal_time_cnn.json``, ``equal_time_rnn.json``)
after every run (a stopped run goes on where it was) and, with ``--report``,
``docs/results/equal_time.md`` from all three.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from nasp.errors import NaspError  # noqa: E402
from nasp.strategies import STRATEGIES, check_search_strategy, search_strategy_names  # noqa: E402
from equal_time_nets import DOMAINS, sizes_of  # noqa: E402
from equal_time_page import figure_name, plot, read_truth, render  # noqa: E402
from sif_search import DEFAULT_DATA, fit  # noqa: E402

DOMAIN_NAMES = ["sif", *DOMAINS.names()]
RESULTS = ROOT / "benchmarks" / "results"


def results_file(domain: str) -> Path:
    """The results file of ``domain``."""
    return RESULTS / ("equal_time.json" if domain == "sif" else f"equal_time_{domain}.json")


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
    ap.add_argument("--domain", choices=DOMAIN_NAMES, default="sif", help="sif (MovieLens-100K), cnn (digits), rnn (small corpus)")
    ap.add_argument("--data", default=None, help="sif only: the ratings (default: MovieLens-100K)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=None,
                    help="default: every search strategy (cnn, rnn: those that cannot search the domain get a row saying so)")
    ap.add_argument("--epochs", type=int, default=10, help="sif: NASP's search epochs, whose wall time is every strategy's budget "
                    "(cnn, rnn: their sizes in equal_time_nets.py)")
    ap.add_argument("--truth", default=str(ROOT / "benchmarks" / "results" / "sif_bench.jsonl"), help="sif only: the ground truth")
    ap.add_argument("--quick", action="store_true", help="a smoke run (sif: 2 budget epochs, 2 retraining epochs; cnn, rnn: "
                    "the QUICK sizes of equal_time_nets.py), not a result")
    ap.add_argument("--report", action="store_true", help="write docs/results/equal_time.md from the results files; run nothing")
    ap.add_argument("--out", default=None, help="the results file (default: benchmarks/results/equal_time[_DOMAIN].json)")
    ap.add_argument("--page", default=str(PAGE), help="the markdown page the report writes")
    args = ap.parse_args()
    if args.domain != "sif" and args.data is not None:
        ap.error(f"--data: the {args.domain} domain has its own data (digits, a corpus the benchmark writes)")
    for name in args.strategies or ():
        try:
            check_search_strategy(name, None if args.domain == "sif" else args.domain)
        except NaspError as exc:
            ap.error(str(exc))
    out, page = Path(args.out) if args.out else results_file(args.domain), Path(args.page)
    if args.report:
        report_all(page, {args.domain: out})
        return
    if args.domain != "sif":
        run_net(args.domain, args.seeds, args.strategies or search_strategy_names(), args.quick, out)
        report_all(page, {args.domain: out})
        return
    args.data = args.data or str(DEFAULT_DATA)
    args.strategies = args.strategies or strategies()
    torch.set_num_threads(1)
    truth = read_truth(Path(args.truth))
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
    report_all(page, {"sif": out})


def run_net(domain: str, seeds: list[int], names: list[str], quick: bool, out: Path) -> None:
    """The CNN or RNN benchmark: per seed NASP (the budget), then every other strategy of ``names``,
    each in its own process (``equal_time_nets.py``); ``out`` is rewritten after every row."""
    result = json.loads(out.read_text()) if out.exists() and not quick else {"benchmark": "equal_time", "runs": []}
    sizes = sizes_of(domain, quick)
    result.update({"domain": domain, "quick": quick, "torch": torch.__version__, "threads": 1, "sizes": sizes,
                   "metric": DOMAINS.get(domain).metric, "higher_is_better": DOMAINS.get(domain).higher_is_better})
    done = {(r["seed"], r["strategy"]) for r in result["runs"]}
    with tempfile.TemporaryDirectory(prefix="nasp-equal-time-corpus-") as folder:
        corpus = write_corpus(domain, sizes, Path(folder))
        for seed in seeds:
            budget = next((r["search_seconds"] for r in result["runs"] if r["seed"] == seed and r["strategy"] == "nasp"
                           and "search_seconds" in r), None)
            for strategy in ["nasp"] + [s for s in names if s != "nasp"]:
                if (seed, strategy) in done:
                    continue
                row = run_one(domain, strategy, seed, None if strategy == "nasp" else budget, sizes, corpus)
                if strategy == "nasp":
                    budget = row.get("search_seconds")
                result["runs"].append(row)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(result, indent=1) + "\n")
                print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)


def write_corpus(domain: str, sizes: dict, folder: Path) -> Optional[str]:
    """The RNN benchmark's corpus (``rnn_small_corpus.py``'s grammar, seed 0) in ``folder``; None for CNN."""
    if domain != "rnn":
        return None
    from rnn_small_corpus import write_corpus as write

    write(folder, tuple(sizes["sentences"]), 0)
    return str(folder)


def run_one(domain: str, strategy: str, seed: int, budget: Optional[float], sizes: dict, corpus: Optional[str]) -> dict:
    """The row of one strategy and seed: the worker's, or why there is none (refused, failed)."""
    try:
        check_search_strategy(strategy, domain)
    except NaspError as exc:
        return {"seed": seed, "strategy": strategy, "refused": str(exc)}
    if budget is None and strategy != "nasp":
        return {"seed": seed, "strategy": strategy, "failed": "no budget: NASP's run on this seed failed"}
    spec = {"domain": domain, "strategy": strategy, "seed": seed, "budget": budget, "sizes": sizes, "corpus": corpus}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "equal_time_nets.py"), json.dumps(spec)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"seed": seed, "strategy": strategy, "failed": lines[-1] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def report_all(page: Path, given: dict[str, Path]) -> None:
    """Write ``page`` from the results of every domain: ``given``'s files, the default files for the others."""
    results = {}
    for domain in DOMAIN_NAMES:
        path = given.get(domain, results_file(domain))
        if path.exists():
            results[domain] = json.loads(path.read_text())
    text = render(results, read_truth(RESULTS / "sif_bench.jsonl"))
    page.parent.mkdir(parents=True, exist_ok=True)
    for domain in DOMAINS.names():
        if domain in results:
            plot(results[domain], domain, page.parent / figure_name(domain))
    page.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
