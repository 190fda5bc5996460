"""Data-parallel scaling: the same search on 1 and on N processes (torchrun), side by side.

Workloads (small real shapes, CPU unless ``--device cuda``):

* ``sif``: ``sif search`` on MovieLens-100K (``--data``, default ml-100k), 2 epochs, no
  retraining, at the default batch (512) and at ``sif-4096`` (batch 4,096);
* ``cnn-digits``: ``cnn search`` on scikit-learn's digits (8x8 images), 2 epochs, 8 channels;
* ``cnn``: ``cnn search`` on synthetic CIFAR-10 batches (32x32 images), 2 epochs, 16 channels;
* ``rnn``: ``rnn search`` on a synthetic 20,000-token corpus, 2 epochs, batch 64, 256 units.

Each runs once with one process (``nasp ...``) and once with ``torchrun --standalone
--nproc-per-node N --no-python nasp ...`` (gloo on CPU, NCCL on CUDA), with the same global
batch, in this one invocation. Reported per workload and world size: the training seconds of the
fastest epoch (``metrics.jsonl``'s ``train_seconds``), training examples per second (ratings,
images or tokens), the speed-up over one process, and the wall seconds of the whole command
(process start, rendezvous and data reading included). On a 2-core machine shared with other
jobs, expect far from N x: each rank has one core and gloo's all-reduce of every gradient
costs the same as on one process's step.

Usage: python benchmarks/ddp_scaling.py [--procs 2] [--workloads sif,sif-4096,cnn-digits,cnn,rnn] [--device cpu]
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
    from nasp.cnn.data import write_synthetic_cifar

    corpus = _corpus(tmp / "corpus")
    cifar = write_synthetic_cifar(tmp / "cifar", per_batch=256)  # 1,280 training images
    sif = ["sif", "search", "--data", sif_data, "--epochs", "2", "--warmup-epochs", "1", "--no-retrain", "--device", device]
    return {
        "sif": {"args": sif, "unit": "ratings"},
        "sif-4096": {"args": [*sif, "--batch-size", "4096"], "unit": "ratings"},
        "cnn-digits": {"args": ["cnn", "search", "--data", "digits", "--epochs", "2", "--layers", "3", "--channels", "8",
                                "--batch-size", "64", "--device", device],
                       "unit": "images", "train_images": 1437},
        "cnn": {"args": ["cnn", "search", "--data", str(cifar), "--epochs", "2", "--layers", "3", "--channels", "16",
                         "--batch-size", "64", "--device", device],
                "unit": "images", "train_images": 1280},
        "rnn": {"args": ["rnn", "search", "--data", str(corpus), "--epochs", "2", "--batch-size", "64", "--bptt", "35",
                         "--emb-size", "256", "--hidden-size", "256", "--device", device],
                "unit": "tokens"},
    }


def _examples(job: dict, summary: dict) -> float:
    """Training examples of one epoch (the weight steps' data)."""
    args = job["args"]
    if job["unit"] == "ratings":
        return float(summary["train_ratings"])
    if job["unit"] == "images":  # half of the training images are weight data; full batches only
        batch = int(args[args.index("--batch-size") + 1])
        return float((job["train_images"] // 2) // batch * batch)
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
    parser.add_argument("--workloads", default="sif,sif-4096,cnn-digits,cnn,rnn")
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
                per_second = _examples(job, r["summary"]) / r["train_seconds"]
                base = base or per_second
                results.append({"workload": name, "processes": procs, "unit": job["unit"],
                                "train_seconds_per_epoch": round(r["train_seconds"], 3),
                                "examples_per_second": round(per_second, 1), "speedup": round(per_second / base, 3),
                                "wall_seconds": round(r["wall"], 2), "world_size": r["summary"]["world_size"]})
                print(f"{name:10s} {procs} proc  {r['train_seconds']:8.3f} s/epoch  {per_second:12.1f} {job['unit']}/s  "
                      f"x{per_second / base:5.2f}  wall {r['wall']:6.1f} s", flush=True)
    payload = {"device": a.device, "procs": a.procs, "cpu_count": os.cpu_count(),
               "load_average": list(os.getloadavg()), "results": results}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"{'workload':10s} {'procs':>5s} {'s/epoch':>9s} {'examples/s':>12s} {'speed-up':>8s} {'wall s':>7s}")
    for r in results:
        print(f"{r['workload']:10s} {r['processes']:5d} {r['train_seconds_per_epoch']:9.3f} {r['examples_per_second']:12.1f} "
              f"{r['speedup']:8.2f} {r['wall_seconds']:7.1f}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
