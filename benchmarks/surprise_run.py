"""Surprise's SVD and SVD++ (default settings) on given train/test files, in Surprise's own venv.

Usage: python benchmarks/surprise_run.py TRAIN TEST [--seed 0]   (tab-separated user, item, rating)
Prints one JSON object: test RMSE and wall time of each model. Run by benchmarks/sif_space.py.
"""
from __future__ import annotations

import argparse
import json
import time

from surprise import SVD, Dataset, Reader, SVDpp, accuracy


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    reader = Reader(line_format="user item rating", sep="\t", rating_scale=(1, 5))
    train = Dataset.load_from_file(args.train, reader).build_full_trainset()
    with open(args.test) as fh:
        test = [(u, i, float(r)) for u, i, r in (line.rstrip("\n").split("\t") for line in fh)]
    out = {}
    for name, algo in (("SVD", SVD(random_state=args.seed)), ("SVD++", SVDpp(random_state=args.seed))):
        t0 = time.perf_counter()
        algo.fit(train)
        rmse = accuracy.rmse(algo.test(test), verbose=False)
        out[name] = {"test_rmse": rmse, "seconds": round(time.perf_counter() - t0, 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main_()
