"""SIF's training throughput on CPU, phase by phase, beside a minimal PyTorch biased-MF loop.

For MovieLens-100K and synthetic files shaped like ml-1m (6,040 users, 3,706 items, 1,000,209
ratings, ``::`` separated) and ml-20m (138,493 users, 26,744 items, 20,000,263 ratings, a csv
with a header, half stars), each in its own process (so that peak RSS is that size's): read
the file (wall and CPU seconds), split it 70/10/20 (seed 0), then time a bounded number of
steps (``--steps``, after a few untimed ones) of every SIF phase at the defaults (batch 512,
dim 64, the implicit term, the element-wise MLPs):

* ``warm-up``: NASP steps during the warm-up (weights only, all five ops mixed as NASP's
  warm-up does);
* ``search``: NASP steps after it (architecture step on a validation batch + weight step);
* ``retraining``: the fixed ``multiply`` model with frozen element-wise MLPs (``sif train --arch``);
* ``SIF plain MF``: SIF's own biased MF (``multiply``, no implicit term, no element-wise MLPs),
  which does what the hand-written loops do: the framework's cost without the model's extras;
* ``minimal MF``: a hand-written biased MF loop (batch 512, dim 64, Adagrad lr 0.1, dense
  embeddings, the same L2 term), in the same process: the issue's yardstick;
* ``min. MF sparse``: the same loop with sparse embedding gradients, faster on large tables
  (at 20M the dense loop's Adagrad over whole tables makes it the slower yardstick).
* ``Surprise SVD`` (and ``Surprise SVD++`` up to 1M): one epoch of Surprise's Cython SGD
  (``n_factors=64``, one rating at a time) on the same training split, in Surprise's own venv
  (``benchmarks/surprise_setup.sh``; ``--surprise-python``, default ``.venv-surprise/bin/python``
  when it exists; the rows are left out without it). CPU time of ``fit`` alone, as one block.

Reported per phase: ratings per CPU-second and CPU microseconds per rating (of the fastest
of 5 blocks of steps: the machine may be shared; the JSON has the mean too; each block a whole
number of the cached history sums' refresh periods, so it pays its share of the refreshes), the ratio of its
CPU time per rating to the minimal MF loop's (``x_minimal_mf``) and to the faster of the two
minimal loops (``x_fastest_minimal_mf``) and to Surprise's SVD (``x_surprise_svd``, where it
ran), and the CPU seconds of building one pass of
batches. One torch thread. Synthetic users and items are drawn with Pareto weights (a few
very active users and popular items, as in MovieLens) and distinct (user, item) pairs.

Usage: python benchmarks/sif_throughput.py [--sizes 100k,1m[,20m]] [--steps 200]
       [--data-dir DIR] [--synthetic-dir DIR] [--out benchmarks/results/sif_throughput.json]
       [--code DIR]   (time another checkout's nasp/sif, e.g. a worktree of an older commit)
       [--surprise-python PY | --no-surprise]
Prints a table and writes the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: name -> (users, items, ratings, file name) of the synthetic files; "100k" is the real file
SHAPES = {"1m": (6_040, 3_706, 1_000_209, "ratings.dat"), "20m": (138_493, 26_744, 20_000_263, "ratings.csv")}
SIZES = ("100k", "1m", "20m")


def synthetic_file(folder: Path, size: str, seed: int = 0) -> Path:
    """The synthetic file of ``size`` in ``folder`` (written once, then reused)."""
    users, items, n, name = SHAPES[size]
    path = folder / f"ml-{size}-shaped" / name
    if path.exists():
        return path
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    user_w = rng.pareto(1.2, users) + 1
    item_w = rng.pareto(1.0, items) + 1
    codes = np.empty(0, dtype=np.int64)
    while len(codes) < n:  # distinct pairs
        m = int((n - len(codes)) * 1.3) + 1000
        more = rng.choice(users, m, p=user_w / user_w.sum()).astype(np.int64) * items + rng.choice(items, m, p=item_w / item_w.sum())
        codes = np.unique(np.concatenate([codes, more]))
    codes = rng.permutation(codes)[:n]
    frame = pd.DataFrame({"userId": codes // items + 1, "movieId": codes % items + 1,
                          "rating": rng.integers(1, 6, n) if name == "ratings.dat" else rng.integers(1, 11, n) / 2,
                          "timestamp": 956_703_932 + rng.integers(0, 10 ** 8, n)})
    tmp = path.with_suffix(".tmp")
    if name == "ratings.dat":
        frame.to_csv(tmp, sep="\t", header=False, index=False)
        tmp.write_bytes(tmp.read_bytes().replace(b"\t", b"::"))
    else:
        frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def block_steps(steps: int, blocks: int, refresh_every: int) -> int:
    """Steps per timed block: ``steps / blocks``, rounded up to a whole number of the cached
    history sums' refresh periods, so that every block pays the same share of the refreshes
    (an epoch has 64 of them; at 20M one every ~430 steps, which a shorter block would miss)."""
    per_block = max(1, steps // blocks)
    return -(-per_block // refresh_every) * refresh_every


def _timed(step: Callable[[object], object], batches: list, per_block: int, warm: int = 5, blocks: int = 5) -> dict:
    """CPU and wall seconds of ``blocks`` blocks of ``per_block`` calls of ``step`` after ``warm``
    untimed ones: ``cpu_s`` is the total, ``best_cpu_s`` the fastest block times ``blocks``
    (on a shared machine other jobs slow some blocks down; the fastest is the least disturbed)."""
    for k in range(warm):
        step(batches[k % len(batches)])
    cpu, wall, k = [], 0.0, warm
    for _ in range(blocks):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(per_block):
            step(batches[k % len(batches)])
            k += 1
        cpu.append(time.process_time() - c0)
        wall += time.perf_counter() - w0
    return {"steps": per_block * blocks, "cpu_s": sum(cpu), "best_cpu_s": min(cpu) * blocks, "wall_s": wall}


def _minimal_mf_step(n_users: int, n_items: int, mean: float, lr: float, reg: float, sparse: bool) -> Callable[[tuple], None]:
    """One step of a hand-written biased MF (dim 64, Adagrad, the same L2 term as SIF's)."""
    import torch
    from torch import nn

    p, q = nn.Embedding(n_users, 64, sparse=sparse), nn.Embedding(n_items, 64, sparse=sparse)
    bu, bi = nn.Embedding(n_users, 1, sparse=sparse), nn.Embedding(n_items, 1, sparse=sparse)
    for e in (p, q):
        nn.init.normal_(e.weight, std=0.01)
    for e in (bu, bi):
        nn.init.zeros_(e.weight)
    opt = torch.optim.Adagrad([*p.parameters(), *q.parameters(), *bu.parameters(), *bi.parameters()], lr=lr)

    def step(batch: tuple) -> None:
        (u, i, r), _ = batch
        pu, qi, b_u, b_i = p(u), q(i), bu(u).squeeze(-1), bi(i).squeeze(-1)
        pred = mean + b_u + b_i + (pu * qi).sum(-1)
        l2 = (pu.pow(2).sum() + qi.pow(2).sum() + b_u.pow(2).sum() + b_i.pow(2).sum()) / u.shape[0]
        loss = nn.functional.mse_loss(pred, r) + reg * l2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.sparse.check_sparse_tensor_invariants(enable=False):
            opt.step()

    return step


#: Surprise's models timed per size (SVD++ walks each user's whole history per rating: hours at 20M)
SURPRISE_MODELS = {"100k": "SVD,SVD++", "1m": "SVD,SVD++", "20m": "SVD"}


def surprise_epoch(python: Path, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, models: str) -> dict:
    """Phases (CPU seconds of one ``fit`` epoch, as one block) of Surprise's ``models`` on the
    given training ratings, run by ``benchmarks/surprise_speed.py`` in Surprise's venv."""
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.tsv"
        import pandas as pd  # its C writer: np.savetxt formats 14M rows one by one in Python

        pd.DataFrame({"user": users, "item": items, "rating": ratings}).to_csv(train, sep="\t", header=False, index=False)
        out = subprocess.run([str(python), str(ROOT / "benchmarks" / "surprise_speed.py"), str(train), "--models", models,
                              "--scale", f"{ratings.min():g},{ratings.max():g}"],
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"surprise_speed.py failed: {out.stderr[-2000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return {f"Surprise {name}": {"steps": 1, "ratings": got["ratings"], "cpu_s": m["cpu_s"], "best_cpu_s": m["cpu_s"],
                                 "wall_s": None} for name, m in got["models"].items()}


def sif_phases(splits, task, settings, device, mean: float) -> Iterator[tuple[str, Callable[[tuple], object], object]]:
    """SIF's training phases in order, each as (name, step of a (train, valid) batch pair, its
    network), built when reached: the NASP warm-up and the search proper on one network (dim 64,
    the implicit term, the element-wise MLPs), retraining ``multiply`` with the MLPs frozen, and
    SIF's own plain biased MF (``multiply``, no implicit term, no MLPs)."""
    from nasp.strategies import build_strategy
    from sif import pipeline
    from sif.engine import make_problem
    from sif.model import ModelConfig
    from sif.space import SEARCH_SPACE

    n_users, n_items = splits.ids.num_users, splits.ids.num_items
    config = ModelConfig(n_users, n_items, dim=64, ops=tuple(SEARCH_SPACE), implicit=True, global_mean=mean)
    net = pipeline.build_network(splits, config, device, task)
    strat = build_strategy("nasp", make_problem(net, settings, {"seed": 0, "warmup_epochs": 1}, task), 10)
    strat.begin_epoch(0)
    yield "warm-up", lambda b: strat.step(*b), net
    strat.begin_epoch(1)
    yield "search", lambda b: strat.step(*b), net
    for name, plain in (("retraining", False), ("SIF plain MF", True)):
        config = ModelConfig(n_users, n_items, dim=64, ops=("multiply",), elementwise=not plain, implicit=not plain,
                             global_mean=mean)
        net = pipeline.build_network(splits, config, device, task)
        if not plain:  # retraining: the searched element-wise MLPs stay frozen
            net.mlp_u.requires_grad_(False)
            net.mlp_v.requires_grad_(False)
        fixed = build_strategy("fixed", make_problem(net, settings, task=task), 10)
        fixed.begin_epoch(0)
        yield name, lambda b, fixed=fixed: fixed.step(b[0], None), net


def measure(size: str, steps: int, data_dir: Optional[Path], synthetic_dir: Path,
            surprise_python: Optional[Path] = None) -> dict:
    """One size's measurements (run in a process of its own)."""
    import torch

    torch.set_num_threads(1)
    import nasp.devices

    # as the nasp command of the timed checkout does (older checkouts had no such call)
    tuned = nasp.devices.tune_host_allocator() if hasattr(nasp.devices, "tune_host_allocator") else False
    from sif.readers import read_ratings, resolve_ratings_path
    from sif.splits import split_ratings
    from sif.options import SIFOptions
    from sif.tasks import RatingTask

    path = resolve_ratings_path("ml-100k", data_dir) if size == "100k" else synthetic_file(synthetic_dir, size)
    c0, w0 = time.process_time(), time.perf_counter()
    table = read_ratings(path)
    read = {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0}
    c0 = time.process_time()
    splits = split_ratings(table, 0.2, 0.1, 0)
    split_cpu = time.process_time() - c0
    del table
    task, settings, device = RatingTask(), SIFOptions().train_settings(), torch.device("cpu")
    mean = float(splits.train.ratings.mean())
    n_users, n_items = splits.ids.num_users, splits.ids.num_items
    torch.manual_seed(0)

    def pass_of(make: Callable[[int], list]) -> tuple[list, float]:
        c = time.process_time()
        out = make(0)
        return out, time.process_time() - c

    train, train_build = pass_of(task.train_batches(splits, settings.batch_size, 0))
    valid, _ = pass_of(task.valid_batches(splits, settings.batch_size, 0))
    pairs = [(t, valid[k % len(valid)]) for k, t in enumerate(train)]
    phases = {}

    per_block = None
    for name, step, net in sif_phases(splits, task, settings, device, mean):
        if per_block is None:  # steps between two refreshes of the cached sums, from the first network
            refresh_every = -(-net.user_history.period // settings.batch_size)
            per_block = block_steps(steps, 5, refresh_every)
        phases[name] = _timed(step, pairs, per_block)

    # the minimal hand-written biased MF loop, with dense gradients (the issue's yardstick) and
    # with sparse ones (faster on large tables: the fair yardstick at 20M)
    for name, sparse in (("minimal MF", False), ("min. MF sparse", True)):
        phases[name] = _timed(_minimal_mf_step(n_users, n_items, mean, settings.lr, settings.reg, sparse), pairs, per_block)
    if surprise_python is not None:
        t = splits.train
        phases.update(surprise_epoch(surprise_python, t.users.numpy(), t.items.numpy(), t.ratings.numpy(), SURPRISE_MODELS[size]))
    for ph in phases.values():
        ratings = ph.get("ratings", ph["steps"] * settings.batch_size)
        ph["ratings_per_cpu_s"] = ratings / ph["best_cpu_s"]
        ph["us_per_rating"] = ph["best_cpu_s"] / ratings * 1e6
        ph["mean_us_per_rating"] = ph["cpu_s"] / ratings * 1e6
    fastest_mf = min(phases["minimal MF"]["us_per_rating"], phases["min. MF sparse"]["us_per_rating"])
    for ph in phases.values():
        ph["x_minimal_mf"] = ph["us_per_rating"] / phases["minimal MF"]["us_per_rating"]
        ph["x_fastest_minimal_mf"] = ph["us_per_rating"] / fastest_mf
        if "Surprise SVD" in phases:
            ph["x_surprise_svd"] = ph["us_per_rating"] / phases["Surprise SVD"]["us_per_rating"]
    import sif

    return {"size": size, "file": str(path), "ratings": len(splits.train) + len(splits.valid) + len(splits.test),
            "users": n_users, "items": n_items, "train_ratings": len(splits.train), "steps": per_block * 5,
            "refresh_every_steps": refresh_every, "host_allocator_tuned": tuned,
            "read": read, "split_cpu_s": split_cpu, "train_pass_build_cpu_s": train_build, "phases": phases,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "code": str(Path(sif.__file__).parents[1])}


def _commit(code: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100k,1m", help="comma-separated among 100k, 1m, 20m (20m is slow: minutes)")
    ap.add_argument("--steps", type=int, default=200, help="timed steps per phase")
    ap.add_argument("--data-dir", type=Path, default=None, help="data root of ml-100k (default: as the CLI)")
    ap.add_argument("--synthetic-dir", type=Path, default=Path(tempfile.gettempdir()) / "nasp-synthetic")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sif_throughput.json")
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose nasp and sif are timed")
    ap.add_argument("--surprise-python", type=Path, default=None,
                    help="python of a venv with Surprise (default: .venv-surprise/bin/python when it exists)")
    ap.add_argument("--no-surprise", action="store_true", help="leave Surprise's rows out")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one size, print its JSON
    args = ap.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    surprise = None if args.no_surprise else args.surprise_python
    if surprise is None and not args.no_surprise and (ROOT / ".venv-surprise" / "bin" / "python").exists():
        surprise = ROOT / ".venv-surprise" / "bin" / "python"
    if surprise is not None and not surprise.exists():
        ap.error(f"--surprise-python {surprise}: no such file (set one up with benchmarks/surprise_setup.sh)")
    surprise = surprise.absolute() if surprise is not None else None  # the per-size runs start in the repository root
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.data_dir, args.synthetic_dir, surprise)))
        return
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        ap.error(f"unknown sizes {unknown}; choose among {', '.join(SIZES)}")
    results = []
    for size in sizes:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", size, "--steps", str(args.steps),
               "--synthetic-dir", str(args.synthetic_dir), "--code", str(args.code)]
        cmd += ["--no-surprise"] if surprise is None else ["--surprise-python", str(surprise)]
        if args.data_dir is not None:
            cmd += ["--data-dir", str(args.data_dir)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if out.returncode != 0:
            sys.exit(f"{size}: failed\n{out.stderr[-3000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'size':>5} {'phase':>15} {'ratings/CPU-s':>14} {'us/rating':>10} {'x min. MF':>9} {'x fastest':>9}"
          f" {'x Surprise':>10}   read s (wall/CPU)  peak RSS")
    for r in results:
        for k, (name, ph) in enumerate(r["phases"].items()):
            extra = f"   {r['read']['wall_s']:6.2f} / {r['read']['cpu_s']:6.2f}     {r['peak_rss_mib']:6.0f} MiB" if k == 0 else ""
            svd = f"{ph['x_surprise_svd']:10.2f}" if "x_surprise_svd" in ph else f"{'-':>10}"
            print(f"{r['size']:>5} {name:>15} {ph['ratings_per_cpu_s']:14,.0f} {ph['us_per_rating']:10.2f}"
                  f" {ph['x_minimal_mf']:9.2f} {ph['x_fastest_minimal_mf']:9.2f} {svd}{extra}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"commit": _commit(args.code), "code": str(args.code.resolve()), "steps": args.steps,
                                    "torch_threads": 1, "results": results}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
