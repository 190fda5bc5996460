"""Self-test of benchmarks/recbole_run.py on MovieLens-100k: split, run RecBole's models, report.

Makes a per-user random 0.8/0.1/0.1 split of ``u.data`` (tab-separated user, item, rating,
timestamp; every rating is an interaction) into ``ml-100k.{train,valid,test}.inter``, runs
``recbole_run.py`` with the RecBole venv's python for each model, prints a table and writes the
collected JSON. Standard library only (it can run under any python 3.9+); RecBole runs in the venv.

    bash benchmarks/recbole_setup.sh
    python3 benchmarks/recbole_selftest.py [--models BPR,NeuMF,LightGCN] [--epochs MODEL=N,...]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from recbole_files import RecBoleRunError, recbole_python, run_recbole, write_split  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"


def read_udata(path):
    rows = []
    with open(path, encoding="latin-1") as f:
        for line in f:
            if line.strip():
                u, i, r, t = line.split("\t")[:4]
                rows.append((u, i, float(r), float(t)))
    return rows


def per_user_split(rows, seed, ratios=(0.8, 0.1, 0.1)):
    """Each user's interactions shuffled and cut into train/valid/test by ``ratios``.

    valid and test get floor(ratio * n) each, but at least one when the user has 3 or more
    interactions; train gets the rest (so never fewer than the others). Users and parts keep
    the file order otherwise (sorted by user id as a string, then shuffled within a user).
    """
    by_user = defaultdict(list)
    for row in rows:
        by_user[row[0]].append(row)
    rng = random.Random(seed)
    parts = {"train": [], "valid": [], "test": []}
    for user in sorted(by_user):
        inter = by_user[user][:]
        rng.shuffle(inter)
        n = len(inter)
        n_valid = int(ratios[1] * n)
        n_test = int(ratios[2] * n)
        if n >= 3:
            n_valid, n_test = max(n_valid, 1), max(n_test, 1)
        n_train = n - n_valid - n_test
        parts["train"] += inter[:n_train]
        parts["valid"] += inter[n_train:n_train + n_valid]
        parts["test"] += inter[n_train + n_valid:]
    return parts


def columns(rows):
    return tuple(list(c) for c in zip(*rows))  # users, items, ratings, timestamps


def parse_epochs(text):
    out = {}
    for part in filter(None, (text or "").split(",")):
        model, _, n = part.partition("=")
        out[model.strip()] = int(n)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--seed", type=int, default=0, help="split seed and RecBole seed")
    p.add_argument("--models", default="BPR,NeuMF,LightGCN")
    p.add_argument("--epochs", default="", help="per-model override, e.g. NeuMF=50,LightGCN=50 (default: RecBole's)")
    p.add_argument("--python", default=None,
                   help="the RecBole venv's python (default: $RECBOLE_PYTHON, else .venv-recbole/bin/python)")
    p.add_argument("--split-dir", default=None, help="write the split here and keep it (default: a temp dir)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per run (default 1; 0: torch's default). On a loaded 2-core machine "
                        "torch's 2 threads made an epoch 10-20x slower than 1 thread")
    p.add_argument("--out", default=str(HERE / "results" / "recbole_selftest.json"))
    args = p.parse_args(argv)

    python = recbole_python(args.python)
    if python is None:
        print("recbole_selftest: no RecBole venv (run benchmarks/recbole_setup.sh); skipped")
        return 0
    epochs = parse_epochs(args.epochs)
    rows = read_udata(args.data)
    parts = per_user_split(rows, args.seed)
    assert sum(len(v) for v in parts.values()) == len(rows)
    tmp = None if args.split_dir else tempfile.TemporaryDirectory(prefix="recbole-selftest-")
    try:
        return _run(args, python, epochs, parts, args.split_dir or tmp.name)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run(args, python, epochs, parts, split_dir):
    write_split(split_dir, "ml-100k", **{k: columns(v) for k, v in parts.items()})
    sizes = {k: len(v) for k, v in parts.items()}
    print(f"split {args.data} (seed {args.seed}) -> {split_dir}: {sizes}", flush=True)

    results = []
    for model in filter(None, args.models.split(",")):
        out = os.path.join(split_dir, f"{model}.json")
        t0 = time.perf_counter()
        try:
            res = run_recbole(split_dir, "ml-100k", model, seed=args.seed, out=out, epochs=epochs.get(model),
                              threads=args.threads, python=python)
        except RecBoleRunError as e:
            print(e.stderr, file=sys.stderr)
            raise SystemExit(f"recbole_selftest: {e}")
        wall = time.perf_counter() - t0
        res["process_seconds"] = round(wall, 1)
        results.append(res)
        t = res["test"]
        print(f"{model:9s} ndcg@10 {t['ndcg@10']:.4f} recall@10 {t['recall@10']:.4f} mrr@10 {t['mrr@10']:.4f} "
              f"hit@10 {t['hit@10']:.4f} prec@10 {t['precision@10']:.4f} | epochs {res['epochs_trained']} "
              f"(best {res['best_epoch']}) {res['seconds']:.0f}s train+eval, {wall:.0f}s process", flush=True)

    report = {
        "what": "RecBole 1.2.1 via benchmarks/recbole_run.py on a per-user random 0.8/0.1/0.1 split of ml-100k u.data",
        "data": str(args.data),
        "split_seed": args.seed,
        "split_sizes": sizes,
        "torch_threads": args.threads or "default",
        "epochs_override": epochs,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
