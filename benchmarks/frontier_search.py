"""Frontier search vs the exhaustive grid, measured in the same run on real MNIST.

Baseline: every (depth, lr) cell of a small case trained for the whole budget (the definition).
Search: `depthlab.depth_frontier.find_frontier` (early stopping at the criterion, lrs from the previous
depth's outward, geometric growth then bisection). Prints both wall times, the trial counts, the
ratio, and checks that both give the same frontier. Times are CPU seconds of this process (one
thread): on a shared machine wall time mostly measures the neighbours.

    python benchmarks/frontier_search.py                      # cnn-elu, 2k images, 2 epochs, max depth 24
    python benchmarks/frontier_search.py --model cnn-tanh-lecun --train-size 5000 --epochs 1
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from depthlab import load_dataset
from depthlab.depth_frontier.criterion import first_met
from depthlab.depth_frontier.protocol import FrontierConfig
from depthlab.depth_frontier.search import find_frontier
from depthlab.engine.loop import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cnn-elu")
    ap.add_argument("--train-size", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-depth", type=int, default=24)
    ap.add_argument("--lrs", default="0.01,0.03,0.1,0.3")
    ap.add_argument("--threshold", type=float, default=0.4)
    ap.add_argument("--eval-size", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = FrontierConfig(
        max_depth=args.max_depth,
        lrs=tuple(float(x) for x in args.lrs.split(",")),
        epochs=args.epochs,
        threshold=args.threshold,
        train_size=args.train_size,
        eval_size=args.eval_size,
        evals_per_epoch=4,
        device="cpu",
    )
    data = load_dataset("mnist")
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s); case: {args.model}, {args.train_size} images, {args.epochs} epoch(s), "
        f"lrs {args.lrs}, depths 3..{args.max_depth}, threshold {args.threshold}"
    )

    t = time.process_time()
    search = find_frontier(args.model, config, None, data)
    search_s = time.process_time() - t

    t = time.process_time()
    verdict = {}
    cells = 0
    for depth in range(3, args.max_depth + 1, 3):
        verdict[depth] = False
        for lr in config.lrs:
            full = train(config.trial_config(args.model, depth, lr, config.seed), data)
            cells += 1
            verdict[depth] |= (
                first_met([vars(c) for c in full.evaluation_points], config.criterion, config.threshold)
                is not None
            )
    grid_s = time.process_time() - t
    good = [d for d, ok in verdict.items() if ok]
    bad = [d for d, ok in verdict.items() if not ok]
    print(
        f"exhaustive grid: {cells} full-budget trials, {grid_s:.1f} CPU s; max trainable "
        f"{max(good) if good else None}, first failing {min(bad) if bad else None}, map {verdict}"
    )
    print(
        f"search:          {search.trials} trials, {search_s:.1f} CPU s; max trainable "
        f"{search.max_trainable_depth}, first failing {search.first_failing_depth}"
    )
    same = search.max_trainable_depth == (max(good) if good else None) and search.first_failing_depth == (
        min(bad) if bad else None
    )
    print(
        f"speed-up {grid_s / search_s:.1f}x ({cells / search.trials:.1f}x fewer trials); same answer: {same}"
    )


if __name__ == "__main__":
    main()
