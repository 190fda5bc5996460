"""Seconds of one full-ranking evaluation of a SIF network shaped like MovieLens-1M.

For each interaction op alone and for the searched 5-op supernet (softmax rule: every op runs),
a ``SIFNetwork`` (6,040 users x 3,706 items, dim 64, biases, element-wise MLPs, the implicit
term over the training interactions) is evaluated with ``sif.ranking.full_ranking``: every item
scored for every user (``SIFNetwork.score_all`` in chunks of users), the training pairs set to
-inf, top-20, every metric at K = 10 and 20. Data: ``--interactions`` random distinct (user,
item) pairs (ml-1m has 1,000,209 ratings), 80% of them "training" (excluded and the implicit
history), 20% held out. The weights are random (the speed does not depend on them). Each
setting runs ``--repeats`` times with torch's threads set to each of ``--threads``; the table
shows the median wall-clock seconds, how much of it the scoring took (the rest: masking, top-K,
hits, metrics) and the process's CPU seconds (``time.process_time``, all threads together: with
one thread the compute time, less sensitive to other jobs on a shared machine).

    python benchmarks/sif_full_ranking_speed.py                  # defaults, writes the JSON
    python benchmarks/sif_full_ranking_speed.py --device cuda    # on a GPU
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nasp.mixing import Mixing  # noqa: E402
from nasp.devices import resolve_device  # noqa: E402
from sif.model import ModelConfig, SIFNetwork  # noqa: E402
from sif.ranking import full_ranking  # noqa: E402
from sif.space import INTERACTION_FUNCTIONS, SEARCH_SPACE  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "sif_full_ranking_speed.json"
SUPERNET = "supernet (5 ops, softmax)"


def interactions(num_users: int, num_items: int, n: int, train_share: float, seed: int, device: torch.device):
    """``n`` distinct random pairs, split at random into (train users, items), (held-out users, items)."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randperm(num_users * num_items, generator=g)[:n]
    cut = int(round(train_share * n))
    train, held = keys[:cut], keys[cut:]
    return ((train // num_items).to(device), (train % num_items).to(device)), ((held // num_items).to(device), (held % num_items).to(device))


def build(ops: tuple[str, ...], args: argparse.Namespace, train, device: torch.device) -> SIFNetwork:
    torch.manual_seed(0)
    net = SIFNetwork(ModelConfig(args.users, args.items, dim=args.dim, ops=ops, implicit=True, elementwise=True,
                                 mlp="paper")).to(device)
    with torch.no_grad():
        for w in (net.user_emb.weight, net.item_emb.weight, net.user_history.factors.weight, net.user_bias.weight, net.item_bias.weight):
            w.normal_(std=0.1)
    net.set_history(*train)
    return net.eval()


def time_ranking(net: SIFNetwork, train, held, args: argparse.Namespace, device: torch.device) -> dict:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    scoring = [0.0]

    def score(users: torch.Tensor) -> torch.Tensor:
        sync()
        t = time.perf_counter()
        out = net.score_all(users)
        sync()
        scoring[0] += time.perf_counter() - t
        return out

    users = torch.arange(args.users, device=device)
    seconds, cpu_seconds, score_seconds, result = [], [], [], None
    for _ in range(args.repeats):
        scoring[0] = 0.0
        sync()
        t, c = time.perf_counter(), time.process_time()
        result = full_ranking(score, users, train, held, args.items, args.ks, chunk=args.chunk)
        sync()
        seconds.append(time.perf_counter() - t)
        cpu_seconds.append(time.process_time() - c)
        score_seconds.append(scoring[0])
    return {"seconds": [round(s, 3) for s in seconds], "seconds_median": round(statistics.median(seconds), 3),
            "score_seconds_median": round(statistics.median(score_seconds), 3),
            "cpu_seconds_median": round(statistics.median(cpu_seconds), 3), "users_ranked": result.num_users,
            "metrics": {k: round(v, 6) for k, v in result.metrics.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=6040)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--interactions", type=int, default=1_000_209)
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--chunk", type=int, default=1024, help="users scored at once")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ops", nargs="+", default=INTERACTION_FUNCTIONS.names() + ["supernet"],
                    help="ops to time alone; 'supernet': the 5 searched ops mixed")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test of the script)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    if args.quick:
        args.users, args.items, args.dim, args.interactions, args.repeats, args.threads = 120, 90, 8, 3000, 1, [1]
    device = resolve_device(args.device)
    train, held = interactions(args.users, args.items, args.interactions, 0.8, 0, device)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.ops:
            supernet = name == "supernet"
            net = build(SEARCH_SPACE if supernet else (name,), args, train, device)
            with net.using(Mixing.SOFTMAX if supernet else Mixing.SINGLE):
                row = {"model": SUPERNET if supernet else name, "threads": threads,
                       **time_ranking(net, train, held, args, device)}
            rows.append(row)
            print(f"{row['model']:26s} threads {threads}: {row['seconds_median']:7.2f} s "
                  f"(scoring {row['score_seconds_median']:.2f} s, CPU {row['cpu_seconds_median']:.2f} s)",
                  file=sys.stderr, flush=True)
    models = list(dict.fromkeys(r["model"] for r in rows))
    by = {(r["model"], r["threads"]): r for r in rows}
    print(f"\nfull ranking, {args.users} users x {args.items} items, dim {args.dim}, top-{max(args.ks)}, "
          f"{args.device}: median wall seconds (of them scoring) [CPU seconds]")
    print(f"{'model':26s}" + "".join(f"{f'{t} thread' + ('s' if t > 1 else ''):>28s}" for t in args.threads))
    for m in models:
        print(f"{m:26s}" + "".join(f"{by[m, t]['seconds_median']:>12.2f} ({by[m, t]['score_seconds_median']:5.2f}) "
                                   f"[{by[m, t]['cpu_seconds_median']:6.2f}]" for t in args.threads))
    report = {"quick": args.quick, "device": str(device), "torch": torch.__version__, "machine": platform.machine(),
              "processor": platform.processor(), "users": args.users, "items": args.items, "dim": args.dim,
              "interactions": args.interactions, "train_share": 0.8, "ks": args.ks, "chunk": args.chunk,
              "repeats": args.repeats, "model": "biases, element-wise MLPs (paper form), implicit term over the training pairs",
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
