#!/usr/bin/env bash
# The checks and timings that need a CUDA GPU, in as few device calls as possible (a session
# has 30 minutes of device time; each call at most 10). Run from the repository root on the
# GPU machine, whose python3 already has torch, click, matplotlib and pillow: depthlab runs from
# the tree (PYTHONPATH=.), nothing is installed. DEVELOPERS.md ("When a GPU is lent") says how
# to carry the data. Everything lands in $OUT (the device tool brings it back).
#
#   bash benchmarks/gpu_session.sh mnist     # carry gpu-mnist:  CUDA tests, fused G=16, throughput, frontier --quick
#   bash benchmarks/gpu_session.sh resnet20  # carry gpu-cifar:  reproduce resnet-cifar --n 3 (200 epochs; target <= 10 min)
#   bash benchmarks/gpu_session.sh resnet18  # carry gpu-cifar:  reproduce resnet18-shortcuts (30 epochs)
#   bash benchmarks/gpu_session.sh rows      # carry gpu-mnist:  issue 31's GPU rows, <= 10 min (below)
#
# `rows` times, each under its own time limit (9.5 min in all), the rows BENCHMARKS.md compares with
# the CPU: a resnet20 CIFAR epoch (50,000 CIFAR-shaped images through cifar_throughput.py), one
# fused failing group at depth 96 (the 7-lr grid of cnn-tanh, as measured on the CPU), `frontier
# --quick`, and the MLP phase grid (`phase --family mlp`, cut off at its limit if it is longer).
# Each row goes to $OUT/gpu-rows.jsonl (command, wall seconds, exit status, last output lines);
# benchmarks/gpu_rows.py renders them against benchmarks/results/cpu-reference.json into
# $OUT/gpu-rows.json + a table. Copy that JSON to benchmarks/results/gpu-<date>.json, where
# BENCHMARKS.md reads it (`python benchmarks/gpu_rows.py benchmarks/results/gpu-*.json`).
set -uo pipefail
if [ $# -ne 1 ]; then echo "usage: $0 mnist|resnet20|resnet18|rows" >&2; exit 2; fi
if ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_session.sh: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine" >&2
  exit 2
fi
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD:$PWD/tests" PYTHONUNBUFFERED=1
log="$OUT/$1.log"

row() {  # row NAME LIMIT_S COMMAND...: run it under LIMIT_S, append one JSON line to $OUT/gpu-rows.jsonl
  local name=$1 limit=$2; shift 2
  local started rc seconds tail_file="$OUT/row-$name.out"
  started=$(date +%s.%N)
  timeout "$limit" "$@" >"$tail_file" 2>&1; rc=$?
  seconds=$(python3 -c "import sys; print(round($(date +%s.%N) - $started, 1))")
  python3 - "$name" "$limit" "$rc" "$seconds" "$tail_file" "$*" >>"$OUT/gpu-rows.jsonl" <<'PY'
import json, sys
name, limit, rc, seconds, tail_file, command = sys.argv[1:]
lines = [l for l in open(tail_file, errors="replace").read().splitlines() if l.strip() and "step/s" not in l]
print(json.dumps({"row": name, "command": command, "limit_s": int(limit), "rc": int(rc),
                  "timed_out": int(rc) in (124, 137), "seconds": float(seconds), "tail": lines[-6:]}))
PY
  tail -3 "$tail_file"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  case "$1" in
    mnist)
      export DEPTHLAB_DATA="$PWD/gpu-mnist"
      python3 -m pytest -q -p no:cacheprovider tests/engine/test_cuda.py
      python3 benchmarks/sweep_throughput.py --device cuda --trials 16 --modes sequential,fused
      python3 benchmarks/cifar_throughput.py --device cuda
      /usr/bin/time -v python3 -m depthlab frontier --quick --device cuda --store "$OUT/quick.db" \
        --out "$OUT/quick" 2>&1 | grep -E "Elapsed|trials|^cnn|^resnet"
      ;;
    resnet20)
      export DEPTHLAB_DATA="$PWD/gpu-cifar"
      timeout 560 python3 -m depthlab reproduce resnet-cifar --n 3 --device cuda --compile \
        --store "$OUT/cifar.db" --out "$OUT/resnet20" --checkpoint-dir "$OUT/ckpt"
      ;;
    resnet18)
      export DEPTHLAB_DATA="$PWD/gpu-cifar"
      timeout 560 python3 -m depthlab reproduce resnet18-shortcuts --device cuda \
        --store "$OUT/cifar.db" --out "$OUT/resnet18" --checkpoint-dir "$OUT/ckpt"
      ;;
    rows)
      export DEPTHLAB_DATA="$PWD/gpu-mnist"
      rm -f "$OUT/gpu-rows.jsonl"
      row resnet20-epoch 120 python3 benchmarks/cifar_throughput.py --device cuda --models resnet20 --images 50000
      row fused-d96 120 python3 benchmarks/sweep_throughput.py --device cuda --model cnn-tanh --depth 96 \
        --trials 7 --lr-low 0.001 --lr-high 1 --train-size 768 --test-size 256 --modes sequential,fused
      row frontier-quick 150 python3 -m depthlab frontier --quick --device cuda --store "$OUT/quick.db" --out "$OUT/quick"
      row phase-mlp 150 python3 -m depthlab phase --family mlp --device cuda --store "$OUT/phase.db" --out "$OUT/phase"
      python3 benchmarks/gpu_rows.py "$OUT/gpu-rows.jsonl" --json "$OUT/gpu-rows.json"
      ;;
    *) echo "usage: $0 mnist|resnet20|resnet18|rows" >&2; exit 2 ;;
  esac
} 2>&1 | tee "$log"
