"""``frontier --dry-run``: the plan of a search and an estimate of its CPU time from per-layer
costs measured on this machine (once; cached), before anything trains.

The cost model is benchmarks/frontier_trial_cost.py's: a trial at depth d costs about
``images * d * (CPU seconds per image per layer)``, an evaluated image about half a trained one.
The per-layer cost is measured for one model with and one without batch norm (a few SGD steps of
256 images at depth 6, the best of two, over 6 layers: an upper bound that includes the head), in
CPU time, and cached in
``~/.cache/depthlab/layer-cost.json`` per torch version and thread count."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..report.outputs import write_text_atomic

MEASURE = {"plain": "cnn-tanh", "bn": "cnn-elu-bn"}


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "depthlab" / "layer-cost.json"


def _step_seconds(model: str, depth: int, steps: int = 3) -> float:
    import torch

    from ..engine.setup import train_step
    from ..models import create_model

    torch.manual_seed(0)
    x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
    net = create_model(model, depth=depth)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step():  # the engine's own step, fp32
        train_step(net, opt, x, y, amp=False)

    step()
    t = time.process_time()
    for _ in range(steps):
        step()
    return (time.process_time() - t) / steps


def layer_costs(*, measure=_step_seconds) -> dict:
    """CPU seconds per trained image per conv layer, ``{"plain": s, "bn": s}``: from the cache,
    else measured now (a few seconds) and cached."""
    import torch

    key = f"v2, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    path = _cache_file()
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached["costs"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    costs = {kind: min(measure(model, 6) for _ in range(2)) / (6 * 256) for kind, model in MEASURE.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"key": key, "costs": costs, "measured": time.time()}))
    except OSError:
        pass
    return costs


def probe_depths(max_depth: int, depths=None, step: int = 3) -> list[int]:
    """The depths the search probes first: the given grid, else step, 2 step, 4 step, ... and the
    cap (the deepest multiple of ``step`` up to ``max_depth``)."""
    from ..depth_frontier.search import probe_ladder

    return sorted(depths) if depths else probe_ladder(max_depth, step)


def plan_lines(names: list[str], config, costs: dict, train_images: int) -> list[str]:
    """The plan, and its CPU time between the best case (the first lr trains at once at every
    depth, and all depths train) and a bound (every lr of every probed depth runs its full budget)."""
    probed = {str(n): probe_depths(config.max_depth, config.depths, config.step_for(n)) for n in names}
    steps = sorted({config.step_for(n) for n in names})
    shown = {", ".join(map(str, d)) for d in probed.values()}
    first = (
        shown.pop()
        if len(shown) == 1
        else "; ".join(f"{n}: {', '.join(map(str, d))}" for n, d in probed.items())
    )
    seeds = config.seed_count()
    policy = config.seed_policy()
    seeding = (
        f"1 seed, then {policy.min_seeds}-{policy.max_seeds} at the boundary"
        if config.auto_seeds
        else f"{seeds} seed(s)"
    )
    lines = [
        f"plan: {len(names)} model(s) {', '.join(probed)}; depths probed first {first} "
        f"(then bisection between the last trainable and first failing depth, multiples of "
        f"{' or '.join(map(str, steps))}); "
        f"{_grids(config)}; {seeding}; {config.epochs} epoch(s) of "
        f"{train_images:,} images; {config.evals_per_epoch} evaluation(s) of "
        f"{config.eval_size or 10_000:,} test images per epoch; threshold {100 * config.threshold:g}% "
        f"{config.criterion} error"
    ]
    # --seeds auto re-checks the boundary (deepest trainable and first failing depth) with extra
    # seeds: at least (min - 1) at the deciding lr, at most (max - 1) at it and its two neighbours
    recheck_low, recheck_high = (
        (
            policy.min_seeds - 1,
            (policy.max_seeds - 1) * min(3 if policy.neighbours else 1, config.widest_grid()),
        )
        if config.auto_seeds
        else (0, 0)
    )
    low = high = 0.0
    for name in names:
        full = [trial_seconds(name, d, config, costs, train_images) for d in probed[str(name)]]
        first_point = [f / config.epochs / config.evals_per_epoch for f in full]
        low += sum(first_point) * seeds + 2 * first_point[0] * recheck_low
        high += sum(full) * len(config.points()) * seeds + 2 * full[-1] * recheck_high
    recheck = (
        f"; with --seeds auto, {2 * recheck_low} to {2 * recheck_high} boundary re-check trials per model, "
        f"between the shallowest and the deepest probed depth"
        if config.auto_seeds
        else ""
    )
    lines.append(
        f"estimated CPU time on this machine: {_hours(low)} to {_hours(high)} "
        f"(measured {1e6 * costs['plain']:.0f} us per image per layer, {1e6 * costs['bn']:.0f} with batch "
        f"norm; the bound trains every lr of every probed depth for the full budget, bisection steps "
        f"not counted{recheck}); nothing was trained"
    )
    return lines


def trial_seconds(name, depth: int, config, costs: dict, train_images: int) -> float:
    """The cost model's CPU seconds of one trial of ``name`` at ``depth`` run to its full budget:
    every epoch of ``train_images`` and every evaluation (an evaluated image half a trained one)."""
    from ..models import PRESETS  # a preset's norm picks the per-layer cost

    values = PRESETS[name].values if name in PRESETS else {}
    per_layer = costs["bn" if values.get("norm") == "bn" else "plain"]
    evals = config.evals_per_epoch * config.epochs * (config.eval_size or 10_000)
    return (train_images * config.epochs + 0.5 * evals) * depth * per_layer


def planned_trials(names: list, config, costs: dict, train_images: int) -> list[tuple[str, int, float]]:
    """The plan's bound as trials, ``(model, depth, CPU seconds)``: every (optimizer, lr) point and
    seed of every probed depth of every model (what the dry-run's upper estimate adds up;
    bisection steps and ``--seeds auto`` re-checks not counted)."""
    per_depth = len(config.points()) * config.seed_count()
    return [
        (str(name), d, trial_seconds(name, d, config, costs, train_images))
        for name in names
        for d in probe_depths(config.max_depth, config.depths, config.step_for(name))
        for _ in range(per_depth)
    ]


def _grids(config) -> str:
    """The grids the plan names: ``lrs 0.01, 0.1`` (SGD alone), else each optimizer's with its
    count, ``sgd lrs 0.01, 0.1; adam lrs 0.0001, 0.001 (5 (optimizer, lr) points)``."""
    if not config.names_optimizer:
        return f"lrs {config.grid_text()}"
    grids = "; ".join(
        f"{name} lrs {', '.join(f'{lr:g}' for lr in grid)}" for name, grid in config.grids().items()
    )
    return f"{grids} ({len(config.points())} (optimizer, lr) points)"


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
