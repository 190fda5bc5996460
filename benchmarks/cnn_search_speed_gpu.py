"""GPU version of the CNN search-speed benchmark: one prepared script, < 8 minutes on one H200.

    python benchmarks/cnn_search_speed_gpu.py          # writes benchmarks/results/cnn_search_speed_gpu.json

1. Search-step time and peak memory of nasp / darts / darts2 / random at the full CIFAR-10 search
   shapes (8 cells, 16 channels, batch 64, 32x32 images, DARTS space), with bfloat16 autocast
   (AMP) and in float32, each strategy in a fresh process (``cnn_search_speed.py --device cuda``):
   median of 10 steps after 3 warm-up steps; memory = ``torch.cuda.max_memory_allocated``.
   Also the implied seconds per search epoch (25,000 weight images / 64 = 391 steps).
2. End to end on the device: ``nasp cnn search`` (nasp, 1 epoch, --amp) and ``nasp cnn train``
   (1 epoch) on a synthetic CIFAR-10-format folder (no download on the device machine).
Every subprocess has a time limit so the whole script stays inside its budget.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from nasp.cnn.data import write_synthetic_cifar  # noqa: E402
OUT = HERE / "results" / "cnn_search_speed_gpu.json"
BUDGET_S = float(os.environ.get("NASP_GPU_BUDGET_S", 7 * 60))  # gpu_check.sh passes what is left of its call
START = time.monotonic()


def left() -> float:
    return BUDGET_S - (time.monotonic() - START)


def call(cmd: list, limit: float) -> tuple[int, str, str]:
    limit = max(5.0, min(limit, left()))
    try:
        res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=ROOT, timeout=limit)
        return res.returncode, res.stdout, res.stderr
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {limit:.0f}s"


def speed(amp: bool, result: dict) -> None:
    tag = "bf16_amp" if amp else "fp32"
    out = HERE / "results" / f"cnn_search_speed_gpu_{tag}.tmp"
    cmd = [sys.executable, HERE / "cnn_search_speed.py", "--device", "cuda", "--layers", 8, "--channels", 16,
           "--batch-size", 64, "--image-size", 32, "--steps", 10, "--warmup", 3, "--threads", 4, "--out", out]
    rc, stdout, stderr = call(cmd + (["--amp"] if amp else []), 150)
    print(stdout, stderr[-1500:], sep="\n", flush=True)
    if rc == 0:
        rows = json.loads(out.read_text())["rows"]
        for r in rows:
            r["epoch_seconds_estimate"] = r["median_step_s"] * 391
        result["speed"][tag] = rows
        out.unlink()
    else:
        result["speed"][tag] = {"error": stderr[-1500:], "rc": rc}


def end_to_end(result: dict) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="nasp-gpu-"))
    data = write_synthetic_cifar(tmp / "cifar-10-batches-py", per_batch=1000, noise=128, signal=12)
    nasp = [sys.executable, "-c", "from nasp.cli import main; main()"]
    runs = {
        "search": ["cnn", "search", "--data", data, "--epochs", 1, "--batch-size", 64, "--device", "cuda", "--amp",
                   "--out", tmp / "search", "--json"],
        "train": ["cnn", "train", "--genotype", tmp / "search", "--data", data, "--epochs", 1, "--batch-size", 96,
                  "--layers", 20, "--channels", 36, "--device", "cuda", "--amp", "--out", tmp / "train", "--json"],
    }
    for name, args in runs.items():
        rc, stdout, stderr = call(nasp + args, 120)
        print(name, rc, stdout[-1500:], stderr[-800:], flush=True)
        result["end_to_end"][name] = json.loads(stdout.strip().splitlines()[-1]) if rc == 0 else {"rc": rc, "error": stderr[-1500:]}


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: run benchmarks/cnn_search_speed.py for the CPU table")
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "speed": {}, "end_to_end": {}}
    speed(True, result)
    speed(False, result)
    if left() > 60:
        end_to_end(result)
    result["wall_seconds"] = round(time.monotonic() - START, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for tag, rows in result["speed"].items():
        if isinstance(rows, list):
            ref = next(r for r in rows if r["strategy"] == "nasp")
            print(f"\n[{tag}] {'strategy':8s} {'s/step':>8s} {'x NASP':>7s} {'peak MB':>9s} {'x NASP mem':>10s}")
            for r in rows:
                print(f"       {r['strategy']:8s} {r['median_step_s']:8.4f} {r['median_step_s'] / ref['median_step_s']:7.2f} "
                      f"{r['peak_memory_mb']:9.1f} {r['peak_memory_mb'] / ref['peak_memory_mb']:10.2f}")
    print(f"written {OUT} in {result['wall_seconds']} s")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
