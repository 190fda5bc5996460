"""Host synchronisations per SIF training step on CUDA, per phase, and the lines that cause them.

Each phase of ``benchmarks/sif_throughput.py`` (the NASP warm-up, the search proper, retraining
``multiply`` with frozen element-wise MLPs, SIF's plain biased MF) runs ``--steps`` steps on
``--device`` after 5 untimed ones, under ``torch.cuda.set_sync_debug_mode("warn")``: every
operation that makes the host wait for the GPU warns, and the warnings are counted per step and
grouped by the line of nasp/sif that raised them. Expected (docs/ARCHITECTURE.md): no sync in a
fixed-architecture step, one in a search step (the projection's choice, read to the host once), at
most one in a warm-up step (the architecture drawn on the host, copied to the device). Without
CUDA the phases run and nothing is counted (a rehearsal of the script).

Usage: python benchmarks/sif_host_syncs.py --data RATINGS [--device cuda] [--steps 20]
       [--out benchmarks/results/sif_host_syncs.json]
Prints a table and writes the JSON; exits 1 when a phase syncs more often than expected.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from sif_throughput import sif_phases  # noqa: E402  (the same phases as the throughput benchmark)

#: the most host syncs a step of each phase should make
EXPECTED = {"warm-up": 1, "search": 1, "retraining": 0, "SIF plain MF": 0}


def count_syncs(step, pairs: list, steps: int, cuda: bool) -> tuple[float, dict[str, int]]:
    """Syncs per step of ``steps`` calls of ``step`` (after 5 untimed ones) and their sources."""
    for k in range(5):
        step(pairs[k % len(pairs)])
    if cuda:
        torch.cuda.synchronize()
    sources: collections.Counter = collections.Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            for k in range(5, 5 + steps):
                step(pairs[k % len(pairs)])
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message):
            sources[f"{Path(w.filename).relative_to(ROOT) if Path(w.filename).is_relative_to(ROOT) else w.filename}:{w.lineno}"] += 1
    return sum(sources.values()) / steps, dict(sources.most_common())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a ratings file (u.data, ratings.csv, ...) or a known name")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sif_host_syncs.json")
    args = ap.parse_args()
    from nasp.errors import NaspError
    from nasp.devices import resolve_device
    from sif.readers import read_ratings, resolve_ratings_path
    from sif.splits import split_ratings
    from sif.options import SIFOptions
    from sif.tasks import RatingTask

    try:
        device = resolve_device(args.device)
        splits = split_ratings(read_ratings(resolve_ratings_path(args.data)), 0.2, 0.1, 0).to(device)
    except NaspError as exc:
        sys.exit(f"Error: {exc}")
    cuda = device.type == "cuda"
    task, settings = RatingTask(), SIFOptions().train_settings()
    torch.manual_seed(0)
    train = task.train_batches(splits, settings.batch_size, 0)(0)
    valid = task.valid_batches(splits, settings.batch_size, 0)(0)
    pairs = [(t, valid[k % len(valid)]) for k, t in enumerate(train)]
    mean = float(splits.train.ratings.mean())
    rows, failed = {}, []
    print(f"device {device}{'' if cuda else ' (no CUDA: a rehearsal, nothing counted)'}")
    print(f"{'phase':>14} {'syncs/step':>10} {'expected':>8}  sources")
    for name, step, _ in sif_phases(splits, task, settings, device, mean):
        per_step, sources = count_syncs(step, pairs, args.steps, cuda)
        rows[name] = {"syncs_per_step": per_step, "expected_at_most": EXPECTED[name], "sources": sources}
        if per_step > EXPECTED[name]:
            failed.append(name)
        print(f"{name:>14} {per_step:10.2f} {EXPECTED[name]:8d}  {', '.join(f'{s} x{n}' for s, n in sources.items()) or '-'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": str(device), "counted": cuda, "steps": args.steps, "phases": rows},
                                   indent=1) + "\n")
    print(f"wrote {args.out}")
    if failed:
        sys.exit(f"more host syncs than expected in: {', '.join(failed)}")


if __name__ == "__main__":
    main()
