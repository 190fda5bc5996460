#!/usr/bin/env bash
# The one prepared GPU check (device tool: `run` with `bash benchmarks/gpu_check.sh`, timeout 600).
# Runs from the repository root under the device image's python3 (torch, click, pandas, scipy,
# scikit-learn, tqdm, matplotlib are there; nothing is installed). About 8 minutes:
#   1. the CUDA path of every domain end to end on small synthetic data (cnn search under nasp,
#      darts, darts2, gdas with --amp; rnn search under nasp and darts2 with dropout and --amp; sif
#      search on a synthetic ratings file with and without --amp), each a one-line PASS/FAIL;
#   1a. host syncs per SIF training step in each phase (benchmarks/sif_host_syncs.py: none in a
#      fixed-architecture step, one in a search step), PASS/FAIL and the lines that sync;
#   1b. --deterministic: sif and cnn nasp searches on CUDA and on the CPU with the same seed must
#      export the same architecture (PASS/FAIL), and a table of every run's throughput;
#   2. the CNN search-speed benchmark at the paper's CIFAR-10 shapes (its own 7-minute budget
#      is cut to what is left).
# Results land in $OUT (the device tool brings them back) and are printed as a table last.
set -uo pipefail
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 NASP_QUIET=1
OUT=${OUT:-/tmp/nasp-gpu}; mkdir -p "$OUT"; WORK=$(mktemp -d)
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu rehearses the script on a machine without a GPU
AMP=(); [ "$DEVICE" = cpu ] || AMP=(--amp)
NASP=("$PY" -c "from cli import main; main()")
status=0
check() {  # check NAME COMMAND...: run, keep the log, print one line
  local name=$1; shift
  local t0=$SECONDS
  if timeout 120 "$@" >"$OUT/$name.log" 2>&1; then echo "PASS $name ($((SECONDS - t0)) s)"; else echo "FAIL $name (rc $?, $((SECONDS - t0)) s): $(tail -n 1 "$OUT/$name.log")"; status=1; fi
}
"$PY" - <<EOF || exit 1
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
from nasp.cnn.data import write_synthetic_cifar
write_synthetic_cifar("$WORK/cifar-10-batches-py", 256, 0, ())
import random
rng = random.Random(0)
words = [f"w{i}" for i in range(200)]
for split, n in (("train", 2000), ("valid", 200), ("test", 200)):
    open("$WORK/ptb.%s.txt" % split, "w").write("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(n)) + "\n")
for name, users, items in (("u.data", 500, 400), ("u-large.data", 3000, 2500)):  # large: tables of 2,048+ rows
    with open(f"$WORK/{name}", "w") as fh:
        for k in range(50000):
            u, i = rng.randrange(users), rng.randrange(items)
            fh.write(f"{u}\t{i}\t{1 + (u * 7 + i * 3) % 5}\t{k}\n")
EOF
CNN=(--data "$WORK/cifar-10-batches-py" --epochs 2 --layers 5 --channels 8 --batch-size 32 --device "$DEVICE" "${AMP[@]}" --json)
for s in nasp darts darts2 gdas; do check "cnn-search-$s" "${NASP[@]}" cnn search --strategy "$s" "${CNN[@]}" --out "$WORK/cnn-$s"; done
check cnn-train "${NASP[@]}" cnn train --genotype "$WORK/cnn-nasp" --data "$WORK/cifar-10-batches-py" --epochs 1 --layers 4 --channels 8 --batch-size 32 --device "$DEVICE" "${AMP[@]}" --json --out "$WORK/cnn-train"
RNN=(--data "$WORK" --epochs 2 --batch-size 16 --bptt 20 --emb-size 64 --hidden-size 64 --device "$DEVICE" "${AMP[@]}" --json)
for s in nasp darts2; do check "rnn-search-$s" "${NASP[@]}" rnn search --strategy "$s" "${RNN[@]}" --out "$WORK/rnn-$s"; done
check sif-search "${NASP[@]}" sif search --data "$WORK/u.data" --epochs 3 --device "$DEVICE" --json --out "$WORK/sif"
check sif-search-amp "${NASP[@]}" sif search --data "$WORK/u.data" --epochs 3 --device "$DEVICE" "${AMP[@]}" --json --out "$WORK/sif-amp"
# host syncs per SIF step (CUDA's sync debug mode), per phase, against the expected counts
for f in u u-large; do
  check "sif-host-syncs-$f" "$PY" benchmarks/sif_host_syncs.py --data "$WORK/$f.data" --device "$DEVICE" --out "$OUT/sif_host_syncs_$f.json"
  cat "$OUT/sif-host-syncs-$f.log"
done
# --deterministic: the same seed on CUDA and on the CPU exports the same architecture
SIFD=(sif search --data "$WORK/u.data" --epochs 3 --baselines "" --no-retrain --deterministic --json)
CNND=(cnn search --data "$WORK/cifar-10-batches-py" --strategy nasp --epochs 2 --layers 3 --channels 8 --batch-size 32 --deterministic --json)
DEVICES=("$DEVICE"); [ "$DEVICE" = cpu ] || DEVICES+=(cpu)  # a CPU rehearsal runs each once
for d in "${DEVICES[@]}"; do
  check "sif-det-$d" "${NASP[@]}" "${SIFD[@]}" --device "$d" --out "$WORK/sif-det-$d"
  check "cnn-det-$d" "${NASP[@]}" "${CNND[@]}" --device "$d" --out "$WORK/cnn-det-$d"
done
for m in sif cnn; do
  if cmp -s "$WORK/$m-det-$DEVICE/arch.json" "$WORK/$m-det-cpu/arch.json"; then echo "PASS $m-deterministic-same-architecture"
  else echo "FAIL $m-deterministic-same-architecture ($DEVICE and cpu exported different ones)"; status=1; fi
done
"$PY" - "$WORK" <<'EOF2'
import json, sys
from pathlib import Path
print(f"{'run':22s} {'seconds/epoch':>13s}  throughput")
for f in sorted(Path(sys.argv[1]).glob("*/summary.json")):
    s = json.loads(f.read_text())
    per_epoch = s.get("seconds_per_epoch") or s.get("train_seconds_per_epoch")
    rate = {k: v for k, v in s.items() if k.endswith("per_second")}
    print(f"{f.parent.name:22s} {per_epoch if per_epoch is not None else '':>13}  {rate or s.get('train_seconds', '')}")
EOF2
for f in "$WORK"/*/summary.json; do cp "$f" "$OUT/$(basename "$(dirname "$f")")-summary.json" 2>/dev/null; done
left=$((540 - SECONDS)); echo "speed benchmark: ${left} s left"
if [ "$DEVICE" != cpu ] && [ "$left" -gt 120 ]; then
  NASP_GPU_BUDGET_S=$((left - 30)) timeout "$left" "$PY" benchmarks/cnn_search_speed_gpu.py >"$OUT/cnn_search_speed_gpu.log" 2>&1 || status=1
  cp benchmarks/results/cnn_search_speed_gpu.json "$OUT/" 2>/dev/null
  tail -n 20 "$OUT/cnn_search_speed_gpu.log"
fi
exit $status
