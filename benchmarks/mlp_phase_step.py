"""Step time of the fused phase-diagram trainer (`depthlab.analysis.mlp_phase`) and the wall time of the
classic grid it implies, without running the grid.

Times fused SGD steps of all 13 sigma_w2 members (width 300, batch 256) at depth 100 and at
depth 10, and the accuracy pass over a slice of the training set at both depths. Per-step and
per-sample costs are linear in depth (one bmm per layer), so the two points give the grid's
total: sum over depths 10..100 of (steps x step time + 60,000 x evaluation time per sample).
Random uint8 pixels: the arithmetic does not depend on the data.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/mlp_phase_step.py [--steps 5] [--eval 2048]
"""

import argparse
import time

import torch

from depthlab.analysis.mlp_phase import (
    PhaseGridConfig,
    init_fused_mlp,
    member_accuracies,
    train_fused_,
)


def step_seconds(config: PhaseGridConfig, depth: int, steps: int, x, y) -> float:
    net = init_fused_mlp(depth, config.sigma_w2s, config, x.shape[1])
    train_fused_(net, PhaseGridConfig(**{**config.__dict__, "steps": 1}), x, y)  # warm-up
    t0 = time.perf_counter()
    train_fused_(net, PhaseGridConfig(**{**config.__dict__, "steps": steps}), x, y)
    return (time.perf_counter() - t0) / steps


def eval_seconds_per_sample(config: PhaseGridConfig, depth: int, x, y) -> float:
    net = init_fused_mlp(depth, config.sigma_w2s, config, x.shape[1])
    t0 = time.perf_counter()
    member_accuracies(net, x, y)
    return (time.perf_counter() - t0) / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per depth (after one warm-up)")
    parser.add_argument("--eval", type=int, default=2048, help="samples in the timed accuracy pass")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = PhaseGridConfig()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (max(config.batch_size, args.eval), 784), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (len(x),), generator=g)
    n_train, members = 60_000, len(config.sigma_w2s)
    lo, hi = min(config.depths), max(config.depths)
    step = {d: step_seconds(config, d, args.steps, x, y) for d in (hi, lo)}
    per_sample = {d: eval_seconds_per_sample(config, d, x[: args.eval], y[: args.eval]) for d in (hi, lo)}

    def linear(table, depth):
        return table[lo] + (table[hi] - table[lo]) * (depth - lo) / (hi - lo)

    train = sum(config.steps * linear(step, d) for d in config.depths)
    evaluate = sum(n_train * linear(per_sample, d) for d in config.depths)
    print(
        f"threads {torch.get_num_threads()}, {members} members, width {config.width}, batch {config.batch_size}"
    )
    for d in (hi, lo):
        print(
            f"depth {d:>3}: {step[d]:.3f} s per fused step, {per_sample[d] * n_train:.1f} s per 60k accuracy pass"
        )
    print(
        f"grid {members} sigma_w2 x {len(config.depths)} depths x {config.steps} steps: "
        f"train {train / 60:.1f} min + accuracy {evaluate / 60:.1f} min = {(train + evaluate) / 3600:.2f} h"
    )


if __name__ == "__main__":
    main()
