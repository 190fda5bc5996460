"""Hard budgets against the soft --eta on digits: NASP searches under a sweep of --max-params and
under a sweep of --eta, every searched cell retrained from scratch and tested once on the fixed
360-image test split; test accuracy against the retrained network's own parameter count, in one
table and one plot.

    python benchmarks/cnn_budget.py                 # seed 0: 8 searches + retrainings, ~9 min of one core
                                                    # (14 min wall on this 2-core machine under load)
    python benchmarks/cnn_budget.py --seeds 1,2 --out benchmarks/results/cnn_budget_seed12.json
    python benchmarks/cnn_budget.py --quick         # a smoke run (tiny budgets)

Settings (small, CPU-sized): search 4 epochs, 5 cells x 8 channels, batch 32, --arch-lr 3e-3 (the
digits defaults but the epochs); the costs are counted in the network that is retrained
(--eval-layers 4 --eval-channels 12) and retraining is 8 epochs of that network (batch 32,
drop-path 0.1, aux 0.4). The budget sweep is --budgets plus, with --match-eta (default), one
budget equal to the parameter count of every eta cell, so that the two sweeps meet at equal
parameters. Runs the real commands in subprocesses, keeps their run directories under --work
(finished runs are reused, unfinished ones resumed) and writes JSON and a PNG next to it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cnn_digits_accuracy import run as run_nasp  # noqa: E402


def run(args: list, threads: int) -> dict:
    """``nasp <args>`` with ``threads`` torch threads, quiet (finished runs read back, unfinished resumed)."""
    return run_nasp(list(args) + ["--threads", str(threads), "-q"], threads)


def amount(text: str) -> float:
    from nasp.budget import parse_amount

    return parse_amount(text, "--budgets")


def comparison(rows: list[dict]) -> list[dict]:
    """Per eta cell, two budget cells of the same seed: the matched one (searched with --max-params
    equal to the eta cell's parameters) and the best one with at most its parameters."""
    out = []
    for e in (r for r in rows if r["sweep"] == "eta"):
        budgets = [b for b in rows if b["sweep"] == "budget" and b["seed"] == e["seed"]]
        matched = next((b for b in budgets if b["value"] == e["params"]), None)
        best = max((b for b in budgets if b["params"] <= e["params"]), key=lambda b: (b["test_acc"], -b["params"]), default=None)
        row = {"seed": e["seed"], "eta": e["value"], "eta_params": e["params"], "eta_test_acc": e["test_acc"]}
        for name, b in (("matched", matched), ("best", best)):
            row[f"{name}_budget"] = b and b["value"]
            row[f"{name}_params"] = b and b["params"]
            row[f"{name}_test_acc"] = b and b["test_acc"]
            row[f"{name}_at_least_as_good"] = None if b is None else b["test_acc"] >= e["test_acc"]
        out.append(row)
    return out


def plot(rows: list[dict], path: Path) -> None:
    from nasp.plots import figure

    with figure(path, "digits: retrained test accuracy against parameters", figsize=(6, 4)) as (_, ax):
        for sweep, marker, colour, offset in (("eta", "o", "#1f77b4", (3, 4)), ("budget", "s", "#d62728", (3, -10))):
            points = [r for r in rows if r["sweep"] == sweep]
            ax.scatter([r["params"] for r in points], [r["test_acc"] for r in points], marker=marker, color=colour,
                       label="--eta sweep" if sweep == "eta" else "--max-params sweep", s=28)
            for r in points:
                label = f"eta {r['value']:g}" if sweep == "eta" else f"<= {r['value'] / 1e3:.4g}K"
                ax.annotate(label, (r["params"], r["test_acc"]), fontsize=7, xytext=offset, textcoords="offset points",
                            color=colour)
        ax.set_xlabel("parameters of the retrained network")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="0")
    p.add_argument("--etas", default="0,0.1,1")
    p.add_argument("--budgets", default="35K,45K", help="--max-params values (K/M suffixes)")
    p.add_argument("--match-eta", action=argparse.BooleanOptionalAction, default=True,
                   help="also search under a budget equal to each eta cell's parameters")
    p.add_argument("--search-epochs", type=int, default=4)
    p.add_argument("--train-epochs", type=int, default=8)
    p.add_argument("--eval-layers", type=int, default=4)
    p.add_argument("--eval-channels", type=int, default=12)
    p.add_argument("--quick", action="store_true", help="1 search and 1 training epoch, two points per sweep")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=None, help="keep run directories here (default: a temporary folder)")
    p.add_argument("--out", default=str(HERE / "results" / "cnn_budget.json"))
    a = p.parse_args()
    if a.quick:
        a.search_epochs, a.train_epochs, a.etas, a.budgets = 1, 1, "0,1", "40K"
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="nasp-budget-"))
    work.mkdir(parents=True, exist_ok=True)
    size = ["--eval-layers", a.eval_layers, "--eval-channels", a.eval_channels]
    rows: list[dict] = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        search = ["cnn", "search", "--data", "digits", "--epochs", a.search_epochs, "--layers", 5, "--channels", 8,
                  "--batch-size", 32, "--arch-lr", 3e-3, "--seed", seed, *size]
        train = ["cnn", "train", "--data", "digits", "--epochs", a.train_epochs, "--layers", a.eval_layers,
                 "--channels", a.eval_channels, "--batch-size", 32, "--drop-path", 0.1, "--seed", seed]

        def point(sweep: str, value: float, extra: list) -> dict:
            name = f"s{seed}-{sweep}{value:g}"
            s = run(search + extra + ["--out", work / f"search-{name}"], a.threads)
            t = run(train + ["--genotype", work / f"search-{name}", "--out", work / f"train-{name}"], a.threads)
            budget = s.get("budget") or {}
            row = {"sweep": sweep, "value": value, "seed": seed, "search_seconds": s["search_seconds"],
                   "search_valid_acc": s["valid_acc"], "search_params": s["cost"]["params"],
                   "binding": budget.get("binding"), "params": t["params"], "madds": t["flops"],
                   "within_budget": None if sweep == "eta" else t["params"] <= value,
                   "test_acc": t["test_acc"], "train_seconds": t["train_seconds"], "genotype": s["genotype"]}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "genotype"}), flush=True)
            return row

        eta_rows = [point("eta", float(eta), ["--eta", eta]) for eta in a.etas.split(",")]
        budgets = [amount(b) for b in a.budgets.split(",") if b]
        if a.match_eta:
            budgets += [float(r["params"]) for r in eta_rows if float(r["params"]) not in budgets]
        for limit in sorted(set(budgets)):
            point("budget", limit, ["--max-params", int(limit)])
    pairs = comparison(rows)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"data": "digits", "seeds": a.seeds, "etas": a.etas, "budgets": a.budgets, "match_eta": a.match_eta,
                "search": f"nasp, {a.search_epochs} epochs, 5 cells x 8 channels, batch 32, arch-lr 3e-3",
                "train": f"{a.train_epochs} epochs, {a.eval_layers} cells x {a.eval_channels} channels, batch 32, "
                         f"drop-path 0.1, aux 0.4 (the network the budget counts)", "threads": a.threads}
    out.write_text(json.dumps({"settings": settings, "rows": rows, "equal_params": pairs,
                               "every_budget_cell_within": all(r["within_budget"] for r in rows if r["sweep"] == "budget")},
                              indent=2) + "\n")
    plot(rows, out.with_suffix(".png"))
    print(f"\n{'seed':>4s} {'sweep':7s} {'value':>9s} {'binding':>8s} {'params':>8s} {'test acc':>9s} {'search s':>9s}")
    for r in sorted(rows, key=lambda r: (r["seed"], r["sweep"], r["params"])):
        value = f"{r['value']:g}" if r["sweep"] == "eta" else f"{r['value'] / 1e3:.4g}K"
        print(f"{r['seed']:4d} {r['sweep']:7s} {value:>9s} {str(r['binding']):>8s} {r['params']:8d} {r['test_acc']:9.4f} "
              f"{r['search_seconds']:9.1f}")
    print(f"\n{'seed':>4s} {'eta':>6s} {'eta params':>10s} {'eta acc':>8s} {'matched':>8s} {'its acc':>8s} "
          f"{'best <=':>8s} {'its acc':>8s}")
    for c in pairs:
        print(f"{c['seed']:4d} {c['eta']:6g} {c['eta_params']:10d} {c['eta_test_acc']:8.4f} "
              f"{c['matched_params'] or 0:8d} {c['matched_test_acc'] or 0:8.4f} {c['best_params'] or 0:8d} "
              f"{c['best_test_acc'] or 0:8.4f}")
    print(f"written {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
