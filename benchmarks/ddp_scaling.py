"""Data-parallel scaling: the same search on 1 and on N processes (torchrun), side by side.

Workloads (small real shapes, CPU unless ``--device cuda``):

* ``sif``: ``sif search`` on MovieLens-100K (``--data``, default ml-100k), 2 epochs, no retraining;
* ``cnn``: ``cnn search`` on scikit-learn's digits (8x8 images), 2 epochs;
* ``rnn``: ``rnn search`` on a synthetic 20,000-token corpus, 2 epochs.

Each runs once with one process (``nasp ...``) and once with ``torchrun --standalone
--nproc-per-node N --no-python nasp ...`` (gloo on CPU, NCCL on CUDA), with the same global
batch, in this one invocation. Reported per workload and world size: the training seconds of the
fastest epoch (``metrics.jsonl``'s ``train_seconds``), training examples per second (ratings,
images or tokens), the speed-up over one process, and the wall seconds of the whole command
(process start, rendezvous and data reading included). On a 2-core machine shared with other
jobs, expect far from N x: each rank has one core and gloo's all-reduce of every gradient
costs the same as on one process's step.

Usage: python benchmarks/ddp_scaling.py [--procs 2] [--workloads sif,cnn,rnn] [--device cpu]
       [--out benchmarks/results/ddp_scaling.json]
Prints a table and writes the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _corpus(folder: Path) -> Path:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(300)]
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in (("train", 1600), ("valid", 200), ("test", 200)):
        text = "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(lines))
        (folder / f"ptb.{split}.txt").write_text(text + "\n")
    return folder


def workloads(tmp: Path, device: str, sif_data: str) -> dict[str, dict]:
    """name -> the command's arguments and the unit of its examples."""
    corpus = _corpus(tmp / "corpus")
    return {
        "sif": {"args": ["sif", "search", "--data", sif_data, "--epochs", "2", "--warmup-epochs", "1", "--no-retrain",
                         "--device", device],
                "unit": "ratings"},
        "cnn": {"args": ["cnn", "search", "--data", "digits", "--epochs", "2", "--layers", "3", "--channels", "8",
                         "--batch-size", "64", "--device", device],
                "unit": "images"},
        "rnn": {"args": ["rnn", "search", "--data", str(corpus), "--epochs", "2", "--batch-size", "32", "--bptt", "35",
                         "--emb-size", "64", "--hidden-size", "64", "--device", device],
                "unit": "tokens"},
    }


def _examples(name: str, summary: dict, args: list[str]) -> float:
    """Training examples of one epoch (the weight steps' data)."""
    if name == "sif":
        return float(summary["train_ratings"])
    if name == "cnn":  # digits: 1,437 training images, half of them weight data; full batches only
        batch = int(args[args.index("--batch-size") + 1])
        return float((1437 // 2) // batch * batch)
    batch, bptt = int(args[args.index("--batch-size") + 1]), int(args[args.index("--bptt") + 1])
    return float(summary["steps_per_epoch"] * batch * bptt)


def run(command: list[str], out: Path, procs: int) -> dict:
    nasp = shutil.which("nasp", path=str(Path(sys.executable).parent)) or "nasp"
    prefix = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), "--no-python"]
              if procs > 1 else [])
    env = {**os.environ, "NASP_QUIET": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    result = subprocess.run([*prefix, nasp, *command, "--out", str(out), "--json"], capture_output=True, text=True,
                            env=env, timeout=1800)
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} on {procs} process(es) failed:\n{result.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"summary": json.loads(result.stdout), "train_seconds": min(r["train_seconds"] for r in rows), "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--workloads", default="sif,cnn,rnn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default="ml-100k", help="SIF's ratings (a file or a known name)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ddp_scaling.json")
    a = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="ddp-") as tmp_name:
        tmp = Path(tmp_name)
        jobs = workloads(tmp, a.device, a.data)
        for name in a.workloads.split(","):
            job = jobs[name]
            base = None
            for procs in (1, a.procs):
                r = run(job["args"], tmp / f"{name}-{procs}", procs)
                per_second = _examples(name, r["summary"], job["args"]) / r["train_seconds"]
                base = base or per_second
                results.append({"workload": name, "processes": procs, "unit": job["unit"],
                                "train_seconds_per_epoch": round(r["train_seconds"], 3),
                                "examples_per_second": round(per_second, 1), "speedup": round(per_second / base, 3),
                                "wall_seconds": round(r["wall"], 2), "world_size": r["summary"]["world_size"]})
                print(f"{name:4s} {procs} proc  {r['train_seconds']:8.3f} s/epoch  {per_second:12.1f} {job['unit']}/s  "
                      f"x{per_second / base:5.2f}  wall {r['wall']:6.1f} s", flush=True)
    payload = {"device": a.device, "procs": a.procs, "cpu_count": os.cpu_count(),
               "load_average": list(os.getloadavg()), "results": results}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"{'workload':8s} {'procs':>5s} {'s/epoch':>9s} {'examples/s':>12s} {'speed-up':>8s} {'wall s':>7s}")
    for r in results:
        print(f"{r['workload']:8s} {r['processes']:5d} {r['train_seconds_per_epoch']:9.3f} {r['examples_per_second']:12.1f} "
              f"{r['speedup']:8.2f} {r['wall_seconds']:7.1f}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
