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
set -uo pipefail
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD:$PWD/tests" PYTHONUNBUFFERED=1
log="$OUT/$1.log"
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
    *) echo "usage: $0 mnist|resnet20|resnet18" >&2; exit 2 ;;
  esac
} 2>&1 | tee "$log"
