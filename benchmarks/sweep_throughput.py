"""Sweep throughput: trials per hour for an lr grid, sequential vs local workers vs fused.

The workload (issue 8): an lr grid of 8 on ``cnn-elu-bn`` at depth 30, 1 epoch on 10,000 MNIST
images (2,000 test images for the one evaluation), batch 256, SGD momentum 0.9. Modes, all in
one run so that they share the machine's state:

- ``sequential`` (the baseline): the trials one after another in this process with torch's
  default threads (one per core) -- what ``depthlab`` did before executors.
- ``workers``: `depthlab.sweep.ProcessExecutor` with one single-threaded process per core
  (process start-up included in the time).
- ``fused``: `depthlab.engine.fused.train_fused`, all 8 as one network, in this process.
- ``fused-workers``: the grid split into one fused group per core, one single-threaded worker each.

Every mode's trials are checked against the sequential results (same status; final test error
within 1% -- fused members round differently). Prints trials/hour and the ratio to sequential,
by wall time and by CPU time (user + system, this process and its worker processes). On a
machine shared with other jobs the wall-time ratio is mostly noise; the CPU-time ratio says how
much computing each mode spends per trial, which is what a busy machine rations (threads that
spin while waiting for each other count against their mode, as they should).

    python benchmarks/sweep_throughput.py                  # the issue's workload
    python benchmarks/sweep_throughput.py --depth 12 --train-size 2000 --modes sequential,fused
    # issue 31: the frontier's 7-lr grid at a failing depth, one thread, sequential vs fused
    python benchmarks/sweep_throughput.py --model cnn-tanh --depth 96 --trials 7 --lr-low 0.001 \
        --lr-high 1 --train-size 768 --test-size 256 --threads 1 --modes sequential,fused

``--threads N`` pins the in-process modes (sequential, fused) to N torch threads, as a trial of
the frontier runs (one per worker). Besides the gap in test error, each mode says how many of
its trials are bit-identical to the sequential ones (same final loss and test error, exactly).

Timings on a shared machine are noisy: compare the figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from depthlab.data.registry import load_dataset  # noqa: E402
from depthlab.engine.config import TrainConfig
from depthlab.engine.fused import train_fused  # noqa: E402
from depthlab.engine.loop import train  # noqa: E402
from depthlab.sweep.driver import TrialRunner  # noqa: E402
from depthlab.sweep.executors import ProcessExecutor, usable_cores
from depthlab.sweep.jobs import Job

MODES = ("sequential", "workers", "fused", "fused-workers")


def configs(args) -> list[TrainConfig]:
    n = args.trials
    lrs = [args.lr_low * (args.lr_high / args.lr_low) ** (i / max(n - 1, 1)) for i in range(n)]
    return [
        TrainConfig(
            model=args.model,
            model_args={"depth": args.depth},
            train_size=args.train_size,
            test_size=args.test_size,
            epochs=args.epochs,
            lr=round(lr, 6),
            device=args.device,
        )
        for lr in lrs
    ]


def run_mode(mode: str, cfgs: list[TrainConfig], data, cores: int, threads: int | None = None) -> list:
    if threads is not None and mode in ("sequential", "fused"):
        torch.set_num_threads(threads)
    if mode == "sequential":
        return [train(c, data) for c in cfgs]
    if mode == "fused":
        return train_fused(cfgs, data)
    trials = [Job(c) for c in cfgs]
    with ProcessExecutor(workers=cores, threads=1) as executor:
        fuse = -(-len(cfgs) // cores) if mode == "fused-workers" else 1
        return TrialRunner(executor, None, data, fuse=fuse).run(trials)


def warm_up(modes: list[str], cfgs: list[TrainConfig], data, cores: int, threads: int | None) -> None:
    """One step of each in-process mode on a shallow copy of the workload, untimed: oneDNN
    creates its kernels once per layer shape (the same at every depth of a stages net), so that
    no mode is charged for them and the order of the modes does not matter."""
    shallow = [
        dataclasses.replace(
            c,
            model_args={**c.model_args, "depth": min(c.model_args["depth"], 6)},
            train_size=c.batch_size,
            test_size=c.batch_size,
        )
        for c in cfgs
    ]
    for mode in modes:
        if mode in ("sequential", "fused"):
            run_mode(mode, shallow, data, cores, threads)


def last_loss(result) -> float | None:
    """The training loss of a trial's last epoch (None when it recorded none)."""
    return result.epochs[-1].loss if result.epochs else None


def cpu_seconds() -> float:
    """User + system time of this process and of its finished children (the worker pools)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="cnn-elu-bn")
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--trials", type=int, default=8, help="lr grid size (log-spaced)")
    parser.add_argument("--lr-low", type=float, default=0.003)
    parser.add_argument("--lr-high", type=float, default=0.3)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the in-process modes")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            parser.error(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    cores = usable_cores()
    data = load_dataset("mnist", args.data_dir)
    cfgs = configs(args)
    print(
        f"machine: {platform.machine()}, {cores} usable cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads by default), load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"workload: {len(cfgs)} x {args.model} depth {args.depth}, {args.epochs} epoch(s) on {args.train_size} "
        f"images, lrs {', '.join(f'{c.lr:g}' for c in cfgs)}"
    )
    warm_up(modes, cfgs, data, cores, args.threads)
    baseline, seconds, cpu = None, {}, {}
    for mode in modes:
        started, cpu_started = time.perf_counter(), cpu_seconds()
        results = run_mode(mode, cfgs, data, cores, args.threads)
        seconds[mode] = time.perf_counter() - started
        cpu[mode] = cpu_seconds() - cpu_started
        if baseline is None and mode == "sequential":
            baseline = results
        agree = ""
        if baseline is not None and mode != "sequential":
            same_status = all(r.status == b.status for r, b in zip(results, baseline))
            gaps = [
                abs(r.test_error - b.test_error)
                for r, b in zip(results, baseline)
                if r.test_error is not None and b.test_error is not None
            ]
            same_bits = sum(
                r.test_error == b.test_error and last_loss(r) == last_loss(b)
                for r, b in zip(results, baseline)
            )
            agree = (
                f"  statuses {'agree' if same_status else 'DIFFER'}, test errors within "
                f"{100 * max(gaps, default=0):.2f} points of sequential, {same_bits}/{len(results)} bit-identical"
            )
        rate = 3600 * len(cfgs) / seconds[mode]
        ratio = (
            (
                f"  {seconds['sequential'] / seconds[mode]:5.2f}x sequential (wall), "
                f"{cpu['sequential'] / cpu[mode]:5.2f}x (CPU)"
            )
            if "sequential" in seconds
            else ""
        )
        print(
            f"{mode:14s} wall {seconds[mode]:7.1f} s  CPU {cpu[mode]:7.1f} s  {rate:7.0f} trials/h{ratio}{agree}",
            flush=True,
        )
        errors = " ".join(
            f"{r.status[0]}{100 * r.test_error:.1f}" if r.test_error is not None else r.status
            for r in results
        )
        print(f"{'':14s} test error % per lr (d = done): {errors}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
