"""Where the time of one training step of cnn-tanh depth 9 (batch 256, CPU) goes.

    python benchmarks/engine_probe.py [--steps N] [--no-compile] [--profile] [--model M --depth D]

Times one SGD step on a fixed random batch for: the default (NCHW) and channels_last memory
formats, 1 and 2 torch threads, and ``torch.compile`` (with its compile time); then the
activation alone (``torch.tanh`` against ``torch.sigmoid`` on the same tensor) and a oneDNN
convolution with tanh fused in. Each variant is timed in several rounds, interleaved, and the
fastest round is reported (the machine may be shared: the minimum is the least disturbed), in
CPU seconds of this process (on a loaded machine a niced probe mostly waits for a core; its CPU
time is what the step computes).

``--profile`` profiles a few channels_last steps on one thread with torch.profiler and sums the
ops' own CPU time into convolution forward / backward, activation forward / backward, optimizer
and the rest, then times one evaluation batch (1024 images, forward only, as the engine
evaluates) against one training step: with the frontier's 5 evaluations of 2,000 images per
epoch of 235 steps, that says the evaluation's share of a trial.
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

MODEL, DEPTH = "cnn-tanh", 9  # set from --model/--depth


def make_step(channels_last: bool, compiled: bool = False):
    torch.manual_seed(0)
    model = create_model(MODEL, depth=DEPTH)
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
        t = time.process_time()
        for _ in range(reps):
            fn()
        times.append((time.process_time() - t) / reps)
    return min(times)


SHARES = (
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("mkldnn_convolution", "convolution", "_convolution", "conv2d")),
    ("activation backward", ("tanh_backward", "elu_backward", "relu_backward", "threshold_backward")),
    ("activation forward", ("tanh", "elu", "relu", "elu_")),
    (
        "batch norm",
        ("native_batch_norm", "native_batch_norm_backward", "_batch_norm_impl_index", "batch_norm"),
    ),
    ("optimizer (SGD)", ("_foreach_add_", "_foreach_mul_", "_foreach_add", "add_", "mul_", "zero_")),
)


def profile(steps: int) -> None:
    """Print the op table and each kind of op's share of one step's own CPU time, then one
    evaluation batch's cost against one training step."""
    torch.set_num_threads(1)
    step = make_step(True)
    step()
    with torch.profiler.profile() as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=15), flush=True)
    total = sum(e.self_cpu_time_total for e in events)
    assigned = 0.0
    for label, names in SHARES:
        own = sum(e.self_cpu_time_total for e in events if e.key.removeprefix("aten::") in names)
        assigned += own
        print(f"{label:24} {100 * own / total:5.1f}%", flush=True)
    print(f"{'everything else':24} {100 * (total - assigned) / total:5.1f}%", flush=True)
    model = create_model(MODEL, depth=DEPTH).to(memory_format=torch.channels_last).eval()
    x = torch.randn(1024, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        model(x)
        evaluation = best_of(lambda: model(x), 1, 2)
    training = best_of(step, 1, steps)
    per_epoch = 10_000 / 1024 * evaluation / (10_000 / 1024 * evaluation + 235 * training)
    print(
        f"one training step (256 images) {training:.3f} s CPU, one evaluation batch (1024, forward only) "
        f"{evaluation:.3f} s CPU: 5 evaluations of 2,000 images per 235-step epoch are "
        f"{100 * per_epoch:.1f}% of a trial"
    )


def main(argv=None) -> int:
    global MODEL, DEPTH
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per timing round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile --steps channels_last steps on 1 thread: op table, shares, evaluation",
    )
    parser.add_argument("--model", default="cnn-tanh")
    parser.add_argument("--depth", type=int, default=9)
    args = parser.parse_args(argv)
    MODEL, DEPTH = args.model, args.depth
    if args.profile:
        profile(args.steps)
        return 0
    default = torch.get_num_threads()
    print(
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, default threads {default}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )

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
        print(
            f"torch.compile (channels_last, 1 thread): first two steps incl. compilation {time.perf_counter() - t:.1f}s"
        )
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
                x, w, b, [1, 1], [1, 1], [1, 1], 1, "tanh", [], ""
            ),
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
