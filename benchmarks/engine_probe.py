"""Where the time of one training step of cnn-tanh depth 9 (batch 256, CPU) goes.

    python benchmarks/engine_probe.py [--steps N] [--no-compile] [--profile]

Times one SGD step on a fixed random batch for: the default (NCHW) and channels_last memory
formats, 1 and 2 torch threads, and ``torch.compile`` (with its compile time); then the
activation alone (``torch.tanh`` against ``torch.sigmoid`` on the same tensor) and a oneDNN
convolution with tanh fused in. Each variant is timed in several rounds, interleaved, and the
fastest round is reported (the machine may be shared: the minimum is the least disturbed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depthlab.models import create_model  # noqa: E402


def make_step(channels_last: bool, compiled: bool = False):
    torch.manual_seed(0)
    model = create_model("cnn-tanh", depth=9)
    x = torch.randn(256, 1, 28, 28)
    y = torch.randint(0, 10, (256,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    forward = torch.compile(model) if compiled else model

    def step():
        loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def best_of(fn, rounds: int, reps: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t) / reps)
    return min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per timing round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="only print torch.profiler's op table for 5 channels_last steps on 1 thread")
    args = parser.parse_args(argv)
    if args.profile:
        torch.set_num_threads(1)
        step = make_step(True)
        step()
        with torch.profiler.profile() as prof:
            for _ in range(5):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
        return 0
    default = torch.get_num_threads()
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, default threads {default}, "
          f"load average {os.getloadavg()[0]:.1f}")

    variants = {}
    for threads in sorted({1, default}):
        for cl in (False, True):
            torch.set_num_threads(threads)
            step = make_step(cl)
            step()
            variants[(f"{'channels_last' if cl else 'NCHW (default)'}, eager", threads)] = step
    if not args.no_compile:
        torch.set_num_threads(1)
        t = time.perf_counter()
        step = make_step(True, compiled=True)
        step()
        step()
        print(f"torch.compile (channels_last, 1 thread): first two steps incl. compilation {time.perf_counter() - t:.1f}s")
        variants[("channels_last, torch.compile", 1)] = step

    results = {k: [] for k in variants}
    for _ in range(args.rounds):  # interleaved: a change of load hits every variant
        for (name, threads), step in variants.items():
            torch.set_num_threads(threads)
            results[(name, threads)].append(best_of(step, 1, args.steps))
    print(f"{'variant':40} {'threads':>7} {'s/step (best round)':>20}")
    for (name, threads), times in results.items():
        print(f"{name:40} {threads:>7} {min(times):>20.3f}")

    torch.set_num_threads(1)
    x = torch.randn(256, 4, 28, 28).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1).to(memory_format=torch.channels_last)
    w, b = conv.weight.detach(), conv.bias.detach()
    with torch.no_grad():
        ops = {
            "torch.tanh on 256x4x28x28": lambda: torch.tanh(x),
            "torch.sigmoid on 256x4x28x28": lambda: torch.sigmoid(x),
            "conv 4->4 3x3": lambda: conv(x),
            "conv 4->4 3x3, then torch.tanh": lambda: torch.tanh(conv(x)),
            "oneDNN conv with fused tanh": lambda: torch.ops.mkldnn._convolution_pointwise(
                x, w, b, [1, 1], [1, 1], [1, 1], 1, "tanh", [], ""),
        }
        print(f"{'op (1 thread, forward only)':40} {'ms (best of rounds)':>28}")
        for name, fn in ops.items():
            try:
                fn()
                print(f"{name:40} {1e3 * best_of(fn, args.rounds, 20):>28.2f}")
            except Exception as exc:  # the fused op is a private oneDNN entry point
                print(f"{name:40} {'unavailable: ' + type(exc).__name__:>28}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
