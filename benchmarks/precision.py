"""fp32 vs bf16 on this CPU: the engine's step time, its FLOP rate against the CPU's peak (MFU, as
nanoGPT reports it), and whether the frontier's verdicts agree between the two precisions.

    python benchmarks/precision.py steps   [--rounds 5] [--steps 12] [--fused 7] [--json out.json]
        [--models cnn-tanh:9,cnn-elu-bn:96] [--precisions fp32,bf16]
    python benchmarks/precision.py verdicts [--store-dir DIR] [--max-depth 24] [--json out.json]

``steps`` trains ``cnn-tanh`` depth 9 and ``cnn-elu-bn`` depth 96 through the engine
(`depthlab.train`, one torch thread, batch 256, real MNIST) in each precision, interleaved round
by round, and times every step after the first two of each round (oneDNN's one-time costs) in
CPU seconds of the process (on one thread, the step's compute without the time it waited for a
core: on a loaded machine the wall clock is mostly waiting). The
FLOPs of one step (forward and backward) come from ``torch.utils.flop_counter``; the peak is
cores x clock x FLOPs per cycle, the clock read from /proc/cpuinfo and the FLOPs per cycle given
by ``--fp32-flops-per-cycle`` (32: two 256-bit FMA pipes, as on AMD Zen 4, whose AVX-512 runs
on 256-bit units) and twice that for bf16 (AVX512_BF16 dot products). With ``--fused G`` (7, the
frontier's lr grid, by default; 0: off) each model also trains as one fused group of G members
(`depthlab.engine.fused.train_fused`, lrs 0.01 to 0.016 so that no member diverges and leaves
the group), timed the same way in the same rounds; its FLOPs are G times one member's, its
``speedup_vs_fp32`` is against G separate fp32 steps (``members_per_s`` says the same per member).

``verdicts`` runs the same reduced frontier (10,000 images, one epoch, lrs 0.01/0.1/1, depth cap
``--max-depth``, 1,000 evaluation images) for all eight presets in fp32 and in bf16, each in its
own store (resumable: run it again to continue), and compares the max trainable depths.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depthlab import Store, TrainConfig, load_dataset, train  # noqa: E402
from depthlab.depth_frontier import FrontierConfig, find_frontiers  # noqa: E402
from depthlab.engine.callbacks import LambdaCallback  # noqa: E402
from depthlab.engine.fused import train_fused  # noqa: E402
from depthlab.models import CLASSIC_PRESETS, create_model  # noqa: E402
from depthlab.report.outputs import safe_child  # noqa: E402

MODELS = "cnn-tanh:9,cnn-elu-bn:96"
PRECISIONS = ("fp32", "bf16")


def clock_ghz() -> float:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) / 1000
    return float("nan")


def step_flops(model_name: str, depth: int, batch: int = 256) -> int:
    """FLOPs of one training step's forward and backward (the optimizer step is negligible)."""
    model = create_model(model_name, (1, 28, 28), 10, depth=depth)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
        loss = (
            sum(F.cross_entropy(o, y) for o in out)
            if isinstance(out, (list, tuple))
            else F.cross_entropy(out, y)
        )
        loss.backward()
    return counter.get_total_flops()


def time_steps(
    data, model_name: str, depth: int, precision: str, steps: int, members: int = 1
) -> list[float]:
    """Per-step CPU seconds of this process (one torch thread: the step's own compute, not the
    time it waited for a core on a shared machine) of one engine run of ``steps`` steps, the
    first two dropped: one network (``members`` 1) or a fused group of ``members``."""
    configs = [
        TrainConfig(
            model=model_name,
            model_args={"depth": depth},
            train_size=256 * steps,
            test_size=256,
            epochs=1,
            batch_size=256,
            lr=round(0.01 * (1 + i / 10), 6),
            device="cpu",
            precision=precision,
        )
        for i in range(members)
    ]
    return timed_train(configs, data)[1][2:]


def timed_train(configs: list[TrainConfig], data) -> tuple[list, list[float]]:
    """Train ``configs`` through the engine (one network, or a fused group of several) and give
    back their results and each step's CPU seconds of this process."""
    stamps: list[float] = []
    stamp = LambdaCallback(on_step_end=lambda loop, step: stamps.append(time.process_time()))
    started = time.process_time()
    if len(configs) == 1:
        results = [train(configs[0], data, callbacks=[stamp])]
    else:
        results = train_fused(configs, data, callbacks=[stamp])
    return results, [b - a for a, b in zip([started, *stamps], stamps)]


def parse_models(text: str) -> list[tuple[str, int]]:
    """``name:depth,...`` as (name, depth) pairs."""
    pairs = [item.rsplit(":", 1) for item in text.split(",") if item.strip()]
    return [(name.strip(), int(depth)) for name, depth in pairs]


def step_row(
    model_name: str,
    depth: int,
    precision: str,
    members: int,
    times: list[float],
    flops: int,
    fp32_single: float,
    peak: float,
) -> dict:
    """One table row: the median step, its FLOP rate and MFU, its speed against separate fp32 steps."""
    median = statistics.median(times)
    total = flops * members
    return {
        "model": model_name,
        "depth": depth,
        "precision": precision,
        "members": members,
        "step_s": median,
        "steps_timed": len(times),
        "gflop_per_step": total / 1e9,
        "gflop_per_s": total / median / 1e9,
        "mfu": total / median / peak,
        "members_per_s": members / median,
        "speedup_vs_fp32": fp32_single * members / median,
    }


def run_steps(args) -> dict:
    torch.set_num_threads(1)
    data = load_dataset("mnist")
    ghz = clock_ghz()
    peak = {"fp32": ghz * 1e9 * args.fp32_flops_per_cycle, "bf16": ghz * 1e9 * 2 * args.fp32_flops_per_cycle}
    models, precisions = parse_models(args.models), args.precisions.split(",")
    groups = [1] + ([args.fused] if args.fused > 1 else [])
    cases = [
        (m, d, p, g)
        for m, d in models
        for g in groups
        for p in ("fp32", *[q for q in precisions if q != "fp32"])
    ]
    times: dict[tuple, list[float]] = {case: [] for case in cases}
    for _ in range(args.rounds):  # interleaved, so that load on a shared machine hits every case alike
        for case in cases:
            model_name, depth, precision, members = case
            times[case] += time_steps(data, model_name, depth, precision, args.steps, members)
    rows = []
    for model_name, depth in models:
        flops = step_flops(model_name, depth)
        fp32 = statistics.median(times[model_name, depth, "fp32", 1])
        rows += [
            step_row(m, d, p, g, times[m, d, p, g], flops, fp32, peak[p])
            for m, d, p, g in cases
            if (m, d) == (model_name, depth)
        ]
    return {
        "threads": 1,
        "clock_ghz": ghz,
        "peak_gflop_per_s": {k: v / 1e9 for k, v in peak.items()},
        "fp32_flops_per_cycle": args.fp32_flops_per_cycle,
        "rows": rows,
    }


def run_verdicts(args) -> dict:
    torch.set_num_threads(1)
    data = load_dataset("mnist")
    out = {}
    for precision in PRECISIONS:
        config = FrontierConfig(
            train_size=10000,
            epochs=1,
            lrs=(0.01, 0.1, 1.0),
            max_depth=args.max_depth,
            eval_size=1000,
            device="cpu",
            precision=precision,
        )
        started = time.perf_counter()
        folder = Path(args.store_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with Store(safe_child(folder, f"{precision}.db")) as store:
            result = find_frontiers(list(CLASSIC_PRESETS), config, store, data)
        out[precision] = {
            "seconds": round(time.perf_counter() - started, 1),
            "frontier": {m.model: [m.max_trainable_depth, m.first_failing_depth] for m in result.models},
        }
    out["agree"] = out["fp32"]["frontier"] == out["bf16"]["frontier"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("steps", "verdicts"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--fp32-flops-per-cycle", type=int, default=32)
    parser.add_argument("--models", default=MODELS, help="name:depth,... (steps)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="fp32 is always timed (steps)")
    parser.add_argument("--fused", type=int, default=7, help="also time a fused group of G members (0: off)")
    parser.add_argument("--store-dir", default="bench-precision")
    parser.add_argument("--max-depth", type=int, default=24)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    result = run_steps(args) if args.what == "steps" else run_verdicts(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
