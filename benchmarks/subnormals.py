"""What subnormal numbers cost a training step on this CPU: fp32 against fp32-ftz, through the engine.

    python benchmarks/subnormals.py [--cases cnn-tanh:96:0.01,cnn-tanh-lecun:96:1] [--steps 20]

A net whose gradients shrink by more than 38 orders of magnitude from the loss to its first layers
(``cnn-tanh``, naive initialisation, at depth 96), or a large-lr run on its way to diverging
(``cnn-tanh-lecun`` at lr 1), computes much of its backward pass on subnormal numbers (below
1.2e-38), which x86 cores handle in slow microcode. Each case trains ``--steps`` steps of batch 256
on real MNIST through `depthlab.engine.loop.train` on one thread, once at fp32 and once at
fp32-ftz (subnormals flushed to zero), in the same process after an untimed one-step warm-up
(oneDNN builds its kernels on the first step), and reports each one's CPU seconds per step after
the first (the median, the slowest and the sum), the ratio of the sums, and whether the two runs' losses, errors and
final parameters are bit-identical (else the largest parameter difference).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from precision import timed_train  # noqa: E402  (this folder: the engine timed step by step)

from depthlab.data.registry import load_dataset  # noqa: E402
from depthlab.engine.config import TrainConfig  # noqa: E402

CASES = "cnn-tanh:96:0.01,cnn-tanh-lecun:96:1"
BATCH = 256


def timed_run(model: str, depth: int, lr: float, steps: int, precision: str, data):
    """One run of ``steps`` steps: its result and each step's CPU seconds."""
    config = TrainConfig(
        model=model,
        model_args={"depth": depth},
        lr=lr,
        epochs=1,
        train_size=steps * BATCH,
        batch_size=BATCH,
        evals_per_epoch=1,
        device="cpu",
        threads=1,
        precision=precision,
    )
    results, seconds = timed_train([config], data)
    return results[0], seconds[1:]


def compare(ieee, flushed) -> str:
    """Whether two runs agree bit for bit (metrics and parameters), else by how much."""
    same_metrics = [(e.loss, e.train_error, e.test_error) for e in ieee.epochs] == [
        (e.loss, e.train_error, e.test_error) for e in flushed.epochs
    ]
    pairs = list(zip(ieee.model.parameters(), flushed.model.parameters()))
    if same_metrics and all(torch.equal(a, b) for a, b in pairs):
        return "bit-identical"
    diff = max(float((a - b).detach().abs().max()) for a, b in pairs)
    return f"differ (metrics equal: {same_metrics}; largest parameter difference {diff:.3g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=CASES, help="model:depth:lr,...")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    data = load_dataset("mnist")
    print(f"torch {torch.__version__}, 1 thread, batch {BATCH}, {args.steps} steps per run, CPU seconds")
    for case in args.cases.split(","):
        model, depth, lr = case.split(":")
        timed_run(model, int(depth), float(lr), 1, "fp32", data)  # warm-up
        runs = {p: timed_run(model, int(depth), float(lr), args.steps, p, data) for p in ("fp32", "fp32-ftz")}
        (ieee, slow), (flushed, fast) = runs["fp32"], runs["fp32-ftz"]
        print(
            f"{model} depth {depth} lr {lr}: fp32 median {statistics.median(slow):.2f} s/step "
            f"(slowest {max(slow):.2f}, all {sum(slow):.1f} s); fp32-ftz median "
            f"{statistics.median(fast):.2f} (slowest {max(fast):.2f}, all {sum(fast):.1f} s); "
            f"ratio {sum(slow) / sum(fast):.2f}x; {compare(ieee, flushed)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
