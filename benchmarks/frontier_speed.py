"""The main job's speed: a fixed slice of the full frontier protocol, the pinned earlier engine against this one.

The full eight-preset frontier spends most of its trial time in depths that fail without
diverging: every lr of the grid runs the whole 3 epochs (BENCHMARKS.md, issue 31). This slice
stands for it: presets at depths around their frontiers where failing, non-diverging lrs dominate,
the full 7-lr grid, 3 epochs of 5 evaluations, the main job's executor (``--workers 2 --fuse 7``),
on a reduced number of training and test images (``--train-size``, ``--eval-size``; the defaults,
2,560 and 100, keep evaluation's share of a trial near the full protocol's and should take about
45 minutes on the idle 2-core machine, both engines together: an estimate from the per-step
times in BENCHMARKS.md, not a measurement). Each slice element (some presets at one depth, searched together as the main
job searches them, one fused group per worker) runs with the pinned engine (A) and then with this
checkout's (B), interleaved A, B, A, B, each in a fresh process with its own empty store.

The pinned engine is commit c120618 (``--pinned``): the engine when issue 31 was filed, before any
of its levers (the commit after it changed only the trainability-fixes experiment). It is unpacked
from git (``git archive``) into a temporary folder and runs with ``PYTHONPATH`` at it; this
checkout runs with its own defaults (the plateau stop on: ``--plateau-stop auto``).

It prints, per element and in all: the wall ratio A/B, the member-steps (trial epochs trained
times steps per epoch) per core-second of each (CPU seconds of the whole process tree, workers
included: a loaded machine's waiting is not counted) and whether every verdict (trained or not,
per lr) and criterion error agrees. A trial this engine stopped on the plateau reports its best
error up to the stop, not over the whole budget, and may have diverged later under the pinned
engine: such trials are listed apart, not counted as disagreements; their verdict (does not train)
must still agree.

``--precision P`` runs this checkout (B) at precision P: ``fp32-ftz`` (fp32 with subnormals
flushed to zero) against the pinned engine's fp32, every verdict still to agree; ``bf16 --baseline
fp32`` the further factor bf16 gives: this checkout at fp32 (A) against this checkout at bf16 (B),
element by element in the same run. bf16 is another identity whose verdicts may differ from
fp32's: they are listed, not an error.

    python benchmarks/frontier_speed.py [--train-size 2560] [--elements N] [--smoke] [--pinned c120618]
    python benchmarks/frontier_speed.py --precision fp32-ftz
    python benchmarks/frontier_speed.py --precision bf16 --baseline fp32
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PINNED = "c120618"
BATCH = 256
EPOCHS = 3  # the full protocol's budget, the frontier's default
# (presets, depth): searched together, as the main job runs two groups at once. Around the full
# protocol's frontiers (runs/frontier-full): cnn-tanh-lecun fails at 96 (trains at 93), cnn-elu at
# 72 (trains at 69, fails at 96), cnn-tanh-bn at 111 (trains at 108), cnn-elu-bn trains at 111.
SLICE = (
    (("cnn-tanh-lecun", "cnn-elu"), 96),
    (("cnn-elu", "cnn-tanh-bn"), 72),
    (("cnn-tanh-bn", "cnn-elu-bn"), 111),
)
SMOKE_SLICE = ((("cnn-tanh-lecun", "cnn-elu"), 6),)
SMOKE = {"train_size": 256, "eval_size": 100}
DEFAULT_SIZES = {"train_size": 2560, "eval_size": 100}


def child(spec: dict) -> None:
    """Run one slice element with whichever depthlab ``PYTHONPATH`` gives; print its trials as JSON."""
    import depthlab
    from depthlab.data.registry import load_dataset
    from depthlab.sweep.executors import ExecutorSpec

    data = load_dataset("mnist", os.environ.get("DEPTHLAB_DATA"))
    # only this checkout is asked for a precision: the pinned engine runs its default, fp32
    precision = {"precision": spec["precision"]} if spec.get("precision") else {}
    started = time.perf_counter()
    result = depthlab.frontier(
        list(spec["models"]),
        store=spec["store"],
        progress=False,
        data=data,
        executor=ExecutorSpec(workers=spec["workers"], fuse=spec["fuse"]),
        depths=(spec["depth"],),
        train_size=spec["train_size"],
        eval_size=spec["eval_size"],
        device="cpu",
        **precision,
    )
    wall = time.perf_counter() - started
    trials = [
        {
            "model": m.model,
            "lr": float(t.lr),
            "trained": bool(t.trained),
            "error": t.error,
            "epochs": float(t.epochs),
            "status": str(t.status),
        }
        for m in result.models
        for t in m.depths[spec["depth"]].trials
    ]
    print(json.dumps({"wall": wall, "trials": trials, "engine": str(Path(depthlab.__file__).parent)}))


def run_element(
    engine_path: Path, models, depth: int, args, store_dir: Path, label: str, precision: str | None = None
) -> dict:
    """One element in a fresh process on the engine at ``engine_path``: its trials, wall seconds
    of the search, and CPU seconds of the process tree."""
    from depthlab.report.outputs import safe_child  # the parent's depthlab; a child imports its own engine's

    spec = {
        "models": models,
        "depth": depth,
        "train_size": args.train_size,
        "eval_size": args.eval_size,
        "workers": args.workers,
        "fuse": args.fuse,
        "precision": precision,
        "store": str(safe_child(store_dir, f"{label}-{depth}.db")),
    }
    env = {**os.environ, "PYTHONPATH": str(engine_path)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        env=env,
        cwd=store_dir,
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{label} failed on {models} at depth {depth}:\n{out.stderr[-3000:]}")
    found = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(found["engine"]).resolve() != (engine_path / "depthlab").resolve():
        raise SystemExit(f"{label} ran the engine at {found['engine']}, not {engine_path}")
    found["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    found["member_steps"] = sum(t["epochs"] for t in found["trials"]) * math.ceil(args.train_size / BATCH)
    return found


def plateau_stopped(trial: dict) -> bool:
    """Whether a trial ended before its budget without training or diverging: only the plateau
    stop ends a trial so (the pinned engine never does)."""
    return trial["status"] == "done" and not trial["trained"] and trial["epochs"] < EPOCHS


def compare(a: dict, b: dict) -> tuple[list[str], list[str]]:
    """(disagreements, trials B stopped on the plateau whose error or status differs) between two
    runs of one element. A verdict is trained or not; a trial B stopped on the plateau may have
    diverged later in A (it did not train either way) and reports its best error up to the stop."""
    bad, plateau = [], []
    theirs = {(t["model"], t["lr"]): t for t in a["trials"]}
    ours = {(t["model"], t["lr"]): t for t in b["trials"]}
    if set(theirs) != set(ours):
        bad.append(f"different trials: {sorted(set(theirs) ^ set(ours))}")
    for key in sorted(set(theirs) & set(ours)):
        t, o = theirs[key], ours[key]
        where = (
            f"{key[0]} lr {key[1]:g}: {t['status']} {t['error']} vs {o['status']} {o['error']} "
            f"(epochs {t['epochs']:g} vs {o['epochs']:g})"
        )
        if t["trained"] != o["trained"]:
            bad.append(f"{where}: the verdict differs")
        elif (t["status"], t["error"]) != (o["status"], o["error"]):
            (plateau if plateau_stopped(o) else bad).append(where)
    return bad, plateau


def unpack_pinned(commit: str, into: Path) -> Path:
    """The package of ``commit`` unpacked from git (no work tree touched)."""
    archive = subprocess.run(
        ["git", "archive", commit, "depthlab"], cwd=REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="training images per trial (default 2,560, --smoke 256; full protocol: 60,000)",
    )
    parser.add_argument(
        "--eval-size",
        type=int,
        default=None,
        help="test images per evaluation (full protocol: 2,000; 100 at 2,560 training images keeps "
        "evaluation's share of the trial, about 6%%)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fuse", type=int, default=7)
    parser.add_argument("--pinned", default=PINNED, help="the earlier engine's commit")
    parser.add_argument(
        "--precision",
        choices=("fp32", "fp32-ftz", "bf16"),
        default="fp32",
        help="this checkout's precision (B)",
    )
    parser.add_argument(
        "--baseline",
        choices=("pinned", "fp32"),
        default="pinned",
        help="A: the pinned engine (its fp32) or this checkout at fp32",
    )
    parser.add_argument("--elements", type=int, default=None, help="only the first N slice elements")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny slice (two presets at depth 6; 256 training images unless --train-size), for the test",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    sizes = SMOKE if args.smoke else DEFAULT_SIZES
    args.train_size = sizes["train_size"] if args.train_size is None else args.train_size
    args.eval_size = sizes["eval_size"] if args.eval_size is None else args.eval_size
    elements = (SMOKE_SLICE if args.smoke else SLICE)[: args.elements]
    names = ", ".join("+".join(m) + f"@{d}" for m, d in elements)
    print(
        f"slice: {names}; {args.train_size:,} training images, "
        f"{args.eval_size:,} test images, 3 epochs, 7 lrs, --workers {args.workers} --fuse {args.fuse}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        pinned_dir = Path(tmp) / "pinned"
        pinned_dir.mkdir()
        pinned = args.baseline == "pinned"
        baseline = unpack_pinned(args.pinned, pinned_dir) if pinned else REPO
        totals = {"A": [0.0, 0.0, 0.0], "B": [0.0, 0.0, 0.0]}  # wall, cpu, member-steps
        disagreements, plateau = [], []
        for models, depth in elements:
            a = run_element(baseline, models, depth, args, Path(tmp), "A", None if pinned else "fp32")
            b = run_element(REPO, models, depth, args, Path(tmp), "B", args.precision)
            bad, stopped = compare(a, b)
            disagreements += bad
            plateau += stopped
            for label, run in (("A", a), ("B", b)):
                totals[label] = [
                    x + y for x, y in zip(totals[label], (run["wall"], run["cpu"], run["member_steps"]))
                ]
            print(
                f"{'+'.join(models)}@{depth}: A {a['wall']:.1f} s wall, {a['cpu']:.1f} cpu-s, "
                f"{a['member_steps']:,.0f} member-steps; B {b['wall']:.1f} s, {b['cpu']:.1f} cpu-s, "
                f"{b['member_steps']:,.0f}; ratio {a['wall'] / b['wall']:.2f}x; "
                f"{'agree' if not bad else f'{len(bad)} disagree'}"
            )
    report(totals, disagreements, plateau, args)


def report(totals: dict, disagreements: list[str], plateau: list[str], args) -> None:
    """The whole slice's figures; exit 1 where the engines disagree (not asked of bf16)."""
    bf16 = args.precision == "bf16"
    (wa, ca, sa), (wb, cb, sb) = totals["A"], totals["B"]
    names = (
        f"pinned {args.pinned}" if args.baseline == "pinned" else "this checkout, fp32",
        f"this checkout, {args.precision}",
    )
    print(f"A ({names[0]}): {wa:.1f} s wall, {sa / ca:,.1f} member-steps per core-second")
    print(f"B ({names[1]}):  {wb:.1f} s wall, {sb / cb:,.1f} member-steps per core-second")
    print(f"wall ratio A/B: {wa / wb:.2f}x; every verdict and criterion error agrees: {not disagreements}")
    for line in plateau:
        print(f"  stopped on the plateau by B (does not train in both): {line}")
    for line in disagreements:
        print(f"  {'DIFFERS UNDER BF16' if bf16 else 'DISAGREES'}: {line}")
    if disagreements and not bf16:
        sys.exit(1)


if __name__ == "__main__":
    main()
