"""CPU time of one training epoch of Surprise's SVD (and SVD++), in Surprise's own venv.

Usage: python benchmarks/surprise_speed.py TRAIN [--models SVD,SVD++] [--factors 64] [--scale 1,5]
       (TRAIN: tab-separated user, item, rating; set up the venv with benchmarks/surprise_setup.sh)

Fits each model for one epoch (``n_epochs=1``) with ``n_factors`` factors on the whole file and
prints one JSON object: per model the CPU seconds of ``fit`` alone (building Surprise's trainset
is timed apart, as ``build_cpu_s``) and the number of ratings. Run by benchmarks/sif_throughput.py,
which turns it into microseconds per rating beside SIF's phases.
"""
from __future__ import annotations

import argparse
import json
import time

from surprise import SVD, Dataset, Reader, SVDpp

MODELS = {"SVD": SVD, "SVD++": SVDpp}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train")
    ap.add_argument("--models", default="SVD")
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--scale", default="1,5", help="lowest,highest rating")
    args = ap.parse_args()
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose among {', '.join(MODELS)}")
    low, high = (float(x) for x in args.scale.split(","))
    c0 = time.process_time()
    reader = Reader(line_format="user item rating", sep="\t", rating_scale=(low, high))
    train = Dataset.load_from_file(args.train, reader).build_full_trainset()
    out = {"ratings": train.n_ratings, "build_cpu_s": time.process_time() - c0, "models": {}}
    for name in names:
        algo = MODELS[name](n_factors=args.factors, n_epochs=1, random_state=0)
        c0 = time.process_time()
        algo.fit(train)
        out["models"][name] = {"cpu_s": time.process_time() - c0}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
