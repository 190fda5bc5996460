"""Ground truth of SIF's ``autocf`` space on MovieLens-100K: architectures trained alone.

Trains fixed models of the space one at a time with the task's defaults and early stopping on
validation (no refit: the test metric is the early-stopped model's), for ``--task rating``
(random 7:1:2 split, RMSE) and ``--task ranking`` (per-user 8:1:1, NDCG@10), and appends one
JSON line per (task, seed, architecture) to ``--out``. The architectures
(``sif.groundtruth.bench_architectures``): the default (SVD++), its 18 one-change and 129
two-change neighbours, then ``--samples`` drawn uniformly from the 3,024 (``--all``: every one).
The order is by group, then seed, then task, so that a partial file already answers the first
questions. Rerunning skips what the file holds: stop it any time and start it again.

Usage: python benchmarks/sif_bench.py [--tasks rating ranking] [--seeds 0 1] [--samples 300]
       [--all] [--limit N] [--report]
``--report`` prints the distribution, where the hand-made models rank and a plot
(``benchmarks/results/sif_bench_<task>.png``) from the results file, training nothing, and
writes the results page ``docs/results/sif_ground_truth.md`` (and, for the committed results
file, regenerates the tables of ``docs/results/sif.md`` that place the searches in it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sif import SIF  # noqa: E402
from sif.groundtruth import TASK_METRICS, GroundTruth, all_architectures, arch_key, bench_architectures  # noqa: E402
from sif.pipeline import fixed_arch  # noqa: E402
from sif.tasks import build_task  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "sif_bench.jsonl"
PAGE = ROOT / "docs" / "results" / "sif_ground_truth.md"
#: hand-made models of the space named in the report
NAMED = {"default": "SVD++ (default)", "user_input=id": "biased MF", "item_input=both": "SVD++ both sides",
         "op=concat+head=mlp": "MLP on concat (NCF-MLP)", "head=mlp": "MF + MLP head"}


def done_keys(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    truth = GroundTruth.read(path)
    return {(r.task, int(r.seed), r.arch) for r in truth.rows.itertuples()}


def train_one(task: str, seed: int, choices: dict, data: str) -> dict:
    """One fixed model trained alone: its validation and test metric, epochs, seconds."""
    metric, _ = TASK_METRICS[task]
    with tempfile.TemporaryDirectory() as tmp:
        arch = Path(tmp) / "arch.json"
        arch.write_text(json.dumps(fixed_arch(choices, build_task(task))))
        t0 = time.perf_counter()
        summary = SIF(task=task, seed=seed, device="cpu", arch=str(arch), refit=False).fit(data).summary_
    test = summary.get(f"early_stopped_test_{metric}", summary.get(f"test_{metric}"))
    return {"valid": summary[f"valid_{metric}"], "test": test, "epochs": summary.get("best_epoch"),
            "epochs_trained": summary.get("epochs_trained"), "seconds": round(time.perf_counter() - t0, 2)}


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    archs = [("all", c) for c in all_architectures()] if args.all else bench_architectures(args.samples)
    done = done_keys(args.out)
    todo = [(group, seed, task, choices) for g in dict.fromkeys(group for group, _ in archs)
            for seed in args.seeds for task in args.tasks for group, choices in archs if group == g
            if (task, seed, arch_key(choices)) not in done]
    print(f"{len(done)} done, {len(todo)} to train", file=sys.stderr)
    for count, (group, seed, task, choices) in enumerate(todo[: args.limit], 1):
        record = {"task": task, "seed": seed, "arch": arch_key(choices), "group": group, "choices": choices,
                  **train_one(task, seed, choices, str(args.data)), "torch": torch.__version__, "threads": 1}
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        print(f"[{count}/{len(todo)}] {task} seed {seed} {record['arch']}: valid {record['valid']:.4f} "
              f"test {record['test']:.4f} ({record['seconds']} s)", file=sys.stderr)


def report(args: argparse.Namespace) -> dict:
    """The distribution of each task's results, the hand-made models' places, and a plot."""
    truth = GroundTruth.read(args.out)
    out: dict = {}
    for task in args.tasks:
        table = truth.table(task)
        if table.empty:
            continue
        metric, larger = TASK_METRICS[task]
        best = table.iloc[0]
        rows = {label: truth.rank(task, key) for key, label in NAMED.items() if key in table.index}
        out[task] = {"metric": metric, "architectures": len(table), "best": {"arch": table.index[0], "valid": float(best.valid),
                     "test": float(best.test)}, "named": rows,
                     "valid_quantiles": {q: float(table.valid.quantile(q)) for q in (0.0, 0.1, 0.5, 0.9, 1.0)}}
        print(f"\n{task}: {len(table)} architectures measured ({metric}, {'higher' if larger else 'lower'} is better)")
        print(f"  best by validation (paired to the default): {table.index[0]}  valid {best.valid:.4f}  test {best.test:.4f}")
        for label, r in rows.items():
            print(f"  {label:28s} rank {r['rank']:4d}/{r['of']}  valid {r['valid']:.4f}  test {r['test']:.4f}  "
                  f"regret {r['regret']:.4f}")
        print(table.head(10).to_string(float_format=lambda v: f"{v:.4f}"))
        plot(task, table, rows, args.out.with_name(f"sif_bench_{task}.png"))
    return out


def page(truth: GroundTruth, result: dict) -> str:
    """The results page: per task, how much is measured, the best architectures and where the
    hand-made models stand."""
    lines = ["# Ground truth of the autocf space (MovieLens-100K)", "",
             "Generated by `python benchmarks/sif_bench.py --report` from `benchmarks/results/sif_bench.jsonl`; do not edit.",
             "Every architecture is trained alone with the task's defaults and early stopping on validation",
             "(rating: random 7:1:2 split, RMSE; ranking: per-user 8:1:1, NDCG@10); the test metric is the",
             "early-stopped model's. Values are means over the seeds measured so far (seeds 0 and 1 planned);",
             "architectures are ranked by their paired difference to the default model (SVD++) on the same seeds.", ""]
    for task, r in result.items():
        table = truth.table(task)
        measured = truth.rows[truth.rows.task == task]
        lines += [f"## {task}: {r['architectures']} architectures, {len(measured)} trainings", "",
                  f"![distribution](../../benchmarks/results/sif_bench_{task}.png)", "",
                  f"| rank | architecture | valid {r['metric']} | test {r['metric']} | valid - default | test - default | seeds | seconds |",
                  "|---|---|---|---|---|---|---|---|"]
        for rank, (arch, row) in enumerate(table.head(10).iterrows(), 1):
            lines.append(f"| {rank} | `{arch}` | {row.valid:.4f} | {row.test:.4f} | {row.valid_vs_default:+.4f} | "
                         f"{row.test_vs_default:+.4f} | {row.seeds} | {row.seconds:.0f} |")
        lines += ["", "| hand-made model | rank by validation | valid - default | test - default | regret (valid) |",
                  "|---|---|---|---|---|"]
        for label, n in r["named"].items():
            lines.append(f"| {label} (`{n['arch']}`) | {n['rank']} of {n['of']} | {n['valid_vs_default']:+.4f} | "
                         f"{n['test_vs_default']:+.4f} | {n['regret']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def plot(task: str, table, named: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(table.valid_vs_default, bins=40, color="0.7")
    for label, r in named.items():
        ax.axvline(r["valid_vs_default"], linestyle="--", linewidth=1)
        ax.text(r["valid_vs_default"], ax.get_ylim()[1] * 0.9, label, rotation=90, fontsize=6, va="top")
    ax.set_xlabel(f"valid {TASK_METRICS[task][0]} - the default's on the same seed (mean over seeds)")
    ax.set_ylabel("architectures")
    ax.set_title(f"autocf space, ml-100k, {task}: {len(table)} architectures")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tasks", nargs="+", default=["rating", "ranking"], choices=list(TASK_METRICS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--all", action="store_true", help="every architecture of the space (3,024)")
    parser.add_argument("--limit", type=int, default=None, help="train at most this many, then stop")
    parser.add_argument("--report", action="store_true", help="summarise the results file; train nothing")
    args = parser.parse_args()
    if args.report:
        result = report(args)
        args.out.with_name("sif_bench_report.json").write_text(json.dumps(result, indent=2) + "\n")
        PAGE.parent.mkdir(parents=True, exist_ok=True)
        PAGE.write_text(page(GroundTruth.read(args.out), result))
        if args.out.resolve() == DEFAULT_OUT.resolve():  # the strategies' places in docs/results/sif.md read this file
            import report as results_pages
            results_pages.main([])
        return
    if not args.data.is_file():
        sys.exit(f"{args.data}: no such file (MovieLens-100K's u.data)")
    run(args)


if __name__ == "__main__":
    main()
