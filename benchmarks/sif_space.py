"""Does the larger search space pay? The searched model against the fixed models of its space.

On MovieLens-100K, for each task (``rating``: the paper's random 7:1:2 split of all ratings,
test RMSE; ``ranking``: RecBole's per-user 8:1:1 split, test NDCG@10), and each seed (the split
and the initialisation):

* ``search autocf``: ``SIF(space="autocf", baselines="none", keep="searched")``, the searched
  model itself (every choice searched jointly, then retrained);
* ``search sif``: the same in the paper's space (the command's default space);
* fixed models of the larger space, each one cheap training (``pipeline.fixed_arch``): the
  default (SVD++: both/id, identity, multiply, box head) and every model one choice away from
  it (18). The space has 3,024 fixed models; training each on five seeds is out of reach here,
  so all 19 are trained on ``--screen-seed`` and the ``--top`` best *by validation* on every
  seed (selection never looks at test).

Prints mean ± std over the seeds of the test metric and of the wall time, the time ratio to one
fixed training (the default model), and the issue's target: the searched model better than the
best fixed one by more than two standard deviations of the seed spread, at no more than 3x the
time of one fixed training. RecBole rows (ranking, seed 0) are copied from
``benchmarks/results/sif_ranking.json`` when present; Surprise rows when ``surprise`` imports.

Usage: python benchmarks/sif_space.py [--tasks rating ranking] [--seeds 0 1 2 3 4] [--top 3] [--quick]
Writes ``benchmarks/results/sif_space.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sif import SIF  # noqa: E402
from sif.joint import DEFAULT_CHOICES  # noqa: E402
from sif.pipeline import fixed_arch  # noqa: E402
from sif.space import SPACES  # noqa: E402
from sif.tasks import build_task  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"
DEFAULT = DEFAULT_CHOICES  # the default fixed model of the larger space (``multiply`` with SVD++'s user vector)
METRIC = {"rating": ("rmse", False), "ranking": ("ndcg@10", True)}


def variants() -> dict[str, dict]:
    """The default model and every model one choice away from it, by a short label."""
    out = {"default (SVD++)": DEFAULT}
    for row, names in SPACES["autocf"].items():
        for name in names:
            if name != DEFAULT[row]:
                out[f"{row}={name}"] = {**DEFAULT, row: name}
    return out


def run(task: str, seed: int, folder: Path, data: str, quick: bool, **options) -> dict:
    """One fit; its validation and test metric and wall time."""
    metric, _ = METRIC[task]
    budget = {"epochs": 2, "max_epochs": 2} if quick else {}
    t0 = time.perf_counter()
    model = SIF(task=task, seed=seed, device="cpu", **budget, **options).fit(data)
    s = model.summary_
    return {"valid": s.get(f"valid_{metric}"), "test": s.get(f"test_{metric}"), "seconds": round(time.perf_counter() - t0, 2),
            "choices": s.get("choices"), "interaction": s.get("interaction")}


def fixed(task: str, seed: int, label: str, choices: dict, folder: Path, data: str, quick: bool) -> dict:
    path = folder / f"{task}-{label.replace('=', '-').replace(' ', '_')}.json"
    path.write_text(json.dumps(fixed_arch(choices, build_task(task))))
    return run(task, seed, folder, data, quick, arch=str(path))


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def write_split(data: str, seed: int, folder: Path) -> tuple[Path, Path]:
    """SIF's own rating split of ``seed`` as tab-separated raw ids: train+valid (what the refit
    trains on) and test."""
    splits, _ = SIF(seed=seed).load_data(data)
    ids = splits.ids

    def write(path: Path, parts) -> Path:
        with open(path, "w") as fh:
            for part in parts:
                for u, i, r in zip(part.users.tolist(), part.items.tolist(), part.ratings.tolist()):
                    fh.write(f"{ids.user_ids[u]}\t{ids.item_ids[i]}\t{r:g}\n")
        return path

    return write(folder / f"train-{seed}.tsv", (splits.train, splits.valid)), write(folder / f"test-{seed}.tsv", (splits.test,))


def surprise_rows(data: str, seeds: list[int], python: Path, folder: Path) -> list[dict]:
    """Surprise's SVD and SVD++ (defaults) on SIF's split of every seed, in Surprise's venv."""
    runs: dict[str, list[dict]] = {"Surprise SVD": [], "Surprise SVD++": []}
    for seed in seeds:
        train, test = write_split(data, seed, folder)
        done = subprocess.run([str(python), str(ROOT / "benchmarks" / "surprise_run.py"), str(train), str(test), "--seed", str(seed)],
                              capture_output=True, text=True, check=True)
        got = json.loads(done.stdout.strip().splitlines()[-1])
        for name in ("SVD", "SVD++"):
            runs[f"Surprise {name}"].append({"test": got[name]["test_rmse"], "seconds": got[name]["seconds"]})
        print(f"rating seed {seed} Surprise {got}", file=sys.stderr, flush=True)
    rows = []
    for label, r in runs.items():
        mean, std = summary([x["test"] for x in r])
        rows.append({"model": label, "test_mean": mean, "test_std": std, "seconds_mean": summary([x["seconds"] for x in r])[0],
                     "seeds": seeds, "runs": r})
    return rows


def external_rows(task: str, data: str, seeds: list[int], surprise_python: Optional[Path], folder: Path) -> list[dict]:
    """RecBole (ranking, seed 0, from sif_ranking.json) and Surprise (rating, when its venv exists)."""
    rows = []
    saved = ROOT / "benchmarks" / "results" / "sif_ranking.json"
    if task == "ranking" and saved.exists():
        for row in json.loads(saved.read_text()).get("rows", []):
            if row["model"].startswith("RecBole"):
                rows.append({"model": f"{row['model']} (seed 0, sif_ranking.json)", "test_mean": row["ndcg@10"], "test_std": None,
                             "seconds_mean": row["seconds"], "seeds": [0]})
    if task == "rating":
        if surprise_python is not None and surprise_python.exists():
            rows.extend(surprise_rows(data, seeds, surprise_python, folder))
        else:
            rows.append({"model": "Surprise SVD / SVD++", "note": "no Surprise venv (bash benchmarks/surprise_setup.sh)"})
    return rows


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "ml-100k")
    ap.add_argument("--tasks", nargs="+", default=["rating", "ranking"], choices=list(METRIC))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--screen-seed", type=int, default=0, help="the seed on which every fixed model is trained")
    ap.add_argument("--top", type=int, default=3, help="fixed models (best by validation on the screen seed) run on every seed")
    ap.add_argument("--quick", action="store_true", help="tiny budgets (smoke test of the script)")
    ap.add_argument("--surprise-python", type=Path, default=ROOT / ".venv-surprise" / "bin" / "python",
                    help="Surprise's interpreter (benchmarks/surprise_setup.sh); skipped when absent")
    ap.add_argument("--external-only", action="store_true",
                    help="only (re)compute the Surprise and RecBole rows of an existing --out file")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sif_space.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="sif-space-"))
    if args.external_only:
        result = json.loads(Path(args.out).read_text())
        for task in args.tasks:
            result["tasks"][task]["external"] = external_rows(task, args.data, result["seeds"], args.surprise_python, folder)
            for r in result["tasks"][task]["external"]:
                print(f"{task} {r['model']:40s} {r.get('test_mean', r.get('note'))}")
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        return
    result = {"benchmark": "sif_space", "data": args.data, "seeds": args.seeds, "screen_seed": args.screen_seed, "top": args.top,
              "quick": args.quick, "torch": torch.__version__, "threads": 1, "tasks": {}}
    for task in args.tasks:
        metric, higher = METRIC[task]
        sign = -1 if higher else 1
        screen = {label: fixed(task, args.screen_seed, label, c, folder, args.data, args.quick) for label, c in variants().items()}
        for label, r in screen.items():
            print(f"{task} screen {label:28s} valid {r['valid']:.4f} test {r['test']:.4f} {r['seconds']:6.1f}s", file=sys.stderr, flush=True)
        ranked = sorted(screen, key=lambda k: sign * screen[k]["valid"])
        top = list(dict.fromkeys([*ranked[:args.top], "default (SVD++)"]))
        per_seed: dict[str, list[dict]] = {"search autocf": [], "search sif": [], **{label: [] for label in top}}
        for seed in args.seeds:
            per_seed["search autocf"].append(run(task, seed, folder, args.data, args.quick, space="autocf", baselines="none", keep="searched"))
            per_seed["search sif"].append(run(task, seed, folder, args.data, args.quick, space="sif", baselines="none", keep="searched"))
            for label in top:
                got = screen[label] if seed == args.screen_seed else fixed(task, seed, label, variants()[label], folder, args.data, args.quick)
                per_seed[label].append(got)
            for label, runs in per_seed.items():
                r = runs[-1]
                print(f"{task} seed {seed} {label:28s} valid {r['valid']:.4f} test {r['test']:.4f} {r['seconds']:6.1f}s "
                      f"{r.get('choices') or ''}", file=sys.stderr, flush=True)
        one_fixed = summary([r["seconds"] for r in per_seed["default (SVD++)"]])[0]
        rows = []
        for label, runs in per_seed.items():
            test_mean, test_std = summary([r["test"] for r in runs])
            valid_mean, _ = summary([r["valid"] for r in runs])
            secs, _ = summary([r["seconds"] for r in runs])
            rows.append({"model": label, "test_mean": test_mean, "test_std": test_std, "valid_mean": valid_mean, "seconds_mean": secs,
                         "time_vs_one_fixed": secs / one_fixed, "seeds": args.seeds, "runs": runs})
        fixed_rows = [r for r in rows if not r["model"].startswith("search")]
        best_fixed = min(fixed_rows, key=lambda r: sign * r["valid_mean"])  # chosen by validation
        verdicts = {}
        for searched in (r for r in rows if r["model"].startswith("search")):
            margin = sign * (best_fixed["test_mean"] - searched["test_mean"])  # > 0: the search is better
            spread = max(searched["test_std"], best_fixed["test_std"])
            verdicts[searched["model"]] = {
                "best_fixed": best_fixed["model"], "margin": margin, "two_std": 2 * spread,
                "better_by_two_std": margin > 2 * spread, "time_vs_one_fixed": searched["time_vs_one_fixed"],
                "within_3x_time": searched["time_vs_one_fixed"] <= 3.0}
        result["tasks"][task] = {"metric": f"test_{metric}", "screen": screen, "rows": rows, "external": external_rows(task, args.data, args.seeds, args.surprise_python, folder),
                                 "verdicts": verdicts}
        print(f"\n{task}: test {metric}, mean ± std over seeds {args.seeds}")
        print(f"{'model':30s} {'test':>17s} {'valid':>8s} {'seconds':>8s} {'x fixed':>8s}")
        for r in rows:
            print(f"{r['model']:30s} {r['test_mean']:8.4f} ± {r['test_std']:.4f} {r['valid_mean']:8.4f} {r['seconds_mean']:8.1f} "
                  f"{r['time_vs_one_fixed']:8.2f}")
        for r in result["tasks"][task]["external"]:
            if "test_mean" in r:
                std = f"± {r['test_std']:.4f}" if r.get("test_std") is not None else " " * 8
                print(f"{r['model']:30s} {r['test_mean']:8.4f} {std} {'':8s} {r['seconds_mean']:8.1f}")
            else:
                print(f"{r['model']:30s} {r['note']}")
        for name, v in verdicts.items():
            print(f"{name}: margin over {v['best_fixed']} {v['margin']:+.4f} (2 std {v['two_std']:.4f}): "
                  f"{'MET' if v['better_by_two_std'] else 'NOT met'}; time {v['time_vs_one_fixed']:.2f}x one fixed training "
                  f"({'within' if v['within_3x_time'] else 'over'} 3x)")
    result["load_average_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main_()
