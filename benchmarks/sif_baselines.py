"""The strongest simple recommenders beside SIF, on the same files, seeds and metrics.

For each seed, one per-user random 8:1:1 split of the data (RecBole's ``RS`` grouped by user,
made by ``sif.splits``) is written as RecBole atomic files, and every row reads those
files and ranks all items (the user's training items excluded; validation ones too when testing):

* EASE^R and ItemKNN (``--ifc ease|itemknn``: closed form, lambda / k chosen on validation),
  popularity, SVD++-style BPR (``multiply``) and plain BPR-MF (``multiply`` without history);
* a fixed model of the ``autocf-graph`` space (LightGCN-style two-hop inputs on both sides) and
  the local search of that space (``--space autocf-graph --strategy local``);
* SIF's default ranking command (``nasp sif search --task ranking``: search, retrain, and the
  default baselines multiply and EASE^R compared on validation, the best kept) and the searched
  model itself (``--baselines none``);
* RecBole 1.2.1's BPR, NeuMF and LightGCN with their default settings, when its environment
  exists (``benchmarks/recbole_setup.sh``; ``--no-recbole`` skips them).

Reports test NDCG@10, Recall@10, MRR@10 and seconds per row, mean ± std over the seeds, and for
the item-item models the bytes of their matrices. Writes ``benchmarks/results/sif_baselines.json``.

Usage: python benchmarks/sif_baselines.py [--data PATH] [--seeds 0 1 2 3 4] [--models LABEL ...] [--quick]
       [--no-recbole] [--report]
``--report`` prints the table and writes the plot (``sif_baselines.png``) of the results file.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recbole_files import recbole_python, split_paths  # noqa: E402
from sif_ranking import KEYS, arguments, recbole_row, sif_row, write_files  # noqa: E402

ROWS = [
    ("EASE^R", {"ifc": "ease"}),
    ("ItemKNN", {"ifc": "itemknn"}),
    ("LightGCN (same code)", {"ifc": "lightgcn"}),
    ("pop", {"ifc": "pop"}),
    ("BPR-MF + history (multiply)", {"ifc": "multiply"}),
    ("BPR-MF (multiply, no history)", {"ifc": "multiply", "implicit": False}),
    ("SIF default command (keep best)", {}),
    ("SIF searched model", {"baselines": "none"}),
    ("SIF graph model (graph2 both sides)", {"choices": "user_input=graph2+item_input=graph2"}),
    ("SIF local search, autocf-graph", {"space": "autocf-graph", "strategy": "local", "baselines": "none"}),
]


def one_seed(data: str, seed: int, quick: bool, python, done: list[dict], models: Optional[set] = None) -> list[dict]:
    """Every row on one seed's files that ``done`` (this seed's rows so far) lacks, after them
    (of ``models`` only, when given)."""
    rows, have = list(done), {r["model"] for r in done}
    if models is not None:
        have |= {label for label, _ in ROWS if label not in models}
        have |= {f"RecBole {m}" for m in ("BPR", "NeuMF", "LightGCN") if f"RecBole {m}" not in models}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_files(data, seed, folder)
        paths = split_paths(folder, "ml-100k")
        for label, options in ROWS:
            if label in have:
                continue
            budget = ({"epochs": 2, "max_epochs": 2} if not options.get("ifc") else {"max_epochs": 2}) if quick else {}
            if options.get("ifc") in ("ease", "itemknn", "pop"):
                budget = {}
            row = sif_row(label, paths, seed, **options, **budget)
            rows.append(row)
        for model in ("BPR", "NeuMF", "LightGCN") if python else ():
            if f"RecBole {model}" in have:
                continue
            row = recbole_row(model, folder, seed, python, 2 if quick else None)
            if row is not None:
                rows.append(row)
    return rows


def summarise(per_seed: dict[int, list[dict]]) -> list[dict]:
    """Mean and standard deviation (sample; 0 for one seed) of every metric and the time, per row."""
    out = []
    for label in dict.fromkeys(r["model"] for rows in per_seed.values() for r in rows):
        rows = [r for rs in per_seed.values() for r in rs if r["model"] == label]
        entry = {"model": label, "seeds": len(rows)}
        for key in (*KEYS, "valid_ndcg@10", "seconds"):
            values = [r[key] for r in rows if r.get(key) is not None]
            if values:
                entry[key] = statistics.fmean(values)
                entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        entry["kept"] = sorted({r["interaction"] for r in rows if r.get("interaction")})
        out.append(entry)
    return out


def plot(table: list[dict], path: Path, title: str) -> None:
    """Test NDCG@10 of every row, mean and standard deviation over the seeds, best first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((r for r in table if "ndcg@10" in r), key=lambda r: r["ndcg@10"])
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.2))
    ax.barh([r["model"] for r in rows], [r["ndcg@10"] for r in rows], xerr=[r.get("ndcg@10_std", 0) for r in rows],
            color=["#c44" if r["model"].startswith("SIF") else "#888" for r in rows])
    ax.set_xlabel("test NDCG@10 (mean ± std over seeds)")
    ax.set_title(title.split(": ")[0], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = arguments(__doc__, "sif_baselines.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--models", nargs="+", default=None,
                    help="only these rows (their labels, e.g. 'EASE^R' 'RecBole LightGCN'); default: every row")
    ap.add_argument("--report", action="store_true", help="the table and plot of the results file; train nothing")
    args = ap.parse_args()
    out = Path(args.out)
    if args.report:
        done = json.loads(out.read_text())
        report({int(k): v for k, v in done["per_seed"].items()}, done["data"], out)
        return
    torch.set_num_threads(1)
    python = None if args.no_recbole else recbole_python(args.recbole_python)
    if python is None:
        print("RecBole rows skipped", file=sys.stderr)
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.exists() and not args.quick else {}
    per_seed = {int(k): v for k, v in done.get("per_seed", {}).items() if done.get("data") == args.data}
    models = set(args.models) if args.models else None
    for seed in args.seeds:  # a seed's missing rows only: a stopped run, or rows added since, go on
        per_seed[seed] = one_seed(args.data, seed, args.quick, python, per_seed.get(seed, []), models)
        result = {"benchmark": "sif_baselines", "data": args.data, "quick": args.quick, "torch": torch.__version__,
                  "python": platform.python_version(), "threads": 1, "load_average_end": os.getloadavg(),
                  "per_seed": per_seed, "rows": summarise(per_seed)}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")  # after every seed: a long run can stop and go on
    report(per_seed, args.data, out)


def report(per_seed: dict[int, list[dict]], data: str, out: Path) -> None:
    """Print the table and write the plot (``out`` with ``.png``)."""
    table = summarise(per_seed)
    title = f"{Path(data).name}, per-user random 8:1:1 split, seeds {sorted(per_seed)}: test metrics, full ranking"
    print(f"\n{title}")
    print(f"{'model':34s} {'NDCG@10':>15s} {'Recall@10':>15s} {'MRR@10':>15s} {'seconds':>8s}")
    for r in sorted(table, key=lambda r: -r.get("ndcg@10", 0)):
        cells = [f"{r[k]:.4f} ± {r[k + '_std']:.4f}" if k in r else "-" for k in ("ndcg@10", "recall@10", "mrr@10")]
        print(f"{r['model']:34s} {cells[0]:>15s} {cells[1]:>15s} {cells[2]:>15s} {r.get('seconds', 0):8.1f}")
    plot(table, out.with_suffix(".png"), title)
    print(f"\nwrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
