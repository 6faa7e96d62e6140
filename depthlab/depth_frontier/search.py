"""The depth frontier: the largest depth at which a model still trains (SPEC 4).

``find_frontier("cnn-tanh", FrontierConfig(), store, data)`` returns a `ModelFrontier`: the
max trainable depth, the lr that trained it, the first depth that failed and the per-depth map.

**The criterion, exactly.** A *trial* is one training run (model, depth, lr, seed) of at most
``epochs`` epochs, evaluated ``evals_per_epoch`` times per epoch (at the steps
``round(S * i / evals_per_epoch)``, i = 1..evals_per_epoch, S = steps per epoch). At each
evaluation point the engine reports the *train error* (the running error over this epoch's
batches so far, in train mode; at the end of an epoch it is that epoch's train error) and the
*eval error* (the error on a fixed subset of ``eval_size`` test images, eval mode). A trial
*trains* when at some evaluation point the chosen error is below ``threshold``:
``either`` (train or eval error), ``test`` (eval error) or ``train`` (train error). A run that
diverges (non-finite loss) stops at once and trains only if an earlier point already met the
criterion. Training is deterministic given the config, so stopping a trial at the first point
that meets the criterion gives the same verdict as running the whole budget and looking at
every point; `tests/depth_frontier/test_search.py` checks this against full-budget runs.

**Trainable depth.** Depth d is trainable when, for some lr of the grid, a majority of the
``seeds`` seeds train; the first such lr found is reported with its fraction of seeds. With
``seeds="auto"`` the search runs one seed, then `seeds.recheck` backs its boundary with more
(`seeded_frontier`: the majority frontier with its band).

**The search (and why it equals the exhaustive grid).** Learning rates at a depth are tried
starting from the one that trained the nearest shallower depth (the middle of the grid at first),
then its neighbours outward, smaller first; the first lr that trains ends the depth. Since the
verdict "some lr trains d" does not depend on the order, this equals trying every lr. Depths
(multiples of 3) grow geometrically, 3, 6, 12, 24, ... capped at ``max_depth``, until one fails,
then bisect between the deepest trainable and the shallowest failing depth until they are
consecutive multiples of 3. This assumes trainability is *monotone* in depth (if d trains, every
shallower depth trains). Under that assumption the largest trainable depth of the exhaustive
(depth x lr) grid is exactly the bisection's lower end, and the next multiple of 3 is the first
failing depth: every depth below a trainable one is trainable and every depth above a failing
one fails, so only the boundary is unknown and bisection locates it. With ``depths`` given,
every listed depth is tried (no assumption) and ``monotone`` says whether the map was monotone.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence

from ..data.dataset import Dataset
from ..store.sqlite import Store
from .bisection import failure_cost_ratio, split_point
from .criterion import Cell, StoredFn, TrialVerdict, run_cells, run_trial, stored_cells, stored_trial
from .outputs import trial_words
from .points import lr_order, lr_words, one_optimizer
from .protocol import FrontierConfig
from .results import DepthResult, FrontierResult, ModelFrontier
from .seeds import recheck
from .seeds import summarise as summarise_seeds

TrialFn = Callable[[int, float, int], TrialVerdict]


CellsFn = Callable[[list[Cell]], list[TrialVerdict]]


def evaluate_depth(
    depth: int,
    lrs: Sequence[float],
    start_lr: float | None,
    seeds: Sequence[int],
    trial: TrialFn | None = None,
    *,
    cells: CellsFn | None = None,
    width: int = 1,
    stored: StoredFn | None = None,
) -> DepthResult:
    """Try lrs in search order until a majority of seeds train at one of them.

    With ``cells`` (run a batch of (depth, lr, seed) cells concurrently) the lrs go ``width`` at a
    time, all seeds at once, and the verdict is still read in search order: the answer and the
    trials reported are exactly those of the one-at-a-time search. Trials of lrs after the
    deciding one ran speculatively; they are in the store, not in the result.

    When ``start_lr`` trained the previous depth it goes first on its own: it usually trains
    this depth too, often within a fraction of an epoch, while speculative neighbours that fail
    would each run the whole budget for nothing. With ``stored`` (what the store already holds:
    a resumed search) a wave ends at its first lr whose stored trials already train: the lrs
    after it cannot change the verdict (and if that stored verdict no longer holds when the wave
    runs, another process having retrained it, they come in the next wave).

    ``lrs`` are search points (`FrontierConfig.points`): with several optimizers a depth trains
    when some optimizer trains it at some lr, and a wave holds one optimizer's lrs only."""
    width = width if cells is not None else 1
    pending = lr_order(lrs, start_lr)
    lead = start_lr in pending and width > 1
    trials: list[TrialVerdict] = []
    best_fraction = 0.0
    while pending:
        wave = pending[:1] if lead else one_optimizer(pending[:width])
        lead = False
        if cells is not None:
            if stored is not None and len(wave) > 1:
                wave = _cut_at_stored_winner(wave, depth, seeds, stored)
            outcomes = _by_lr(cells([(depth, lr, s) for lr in wave for s in seeds]), len(seeds))
        else:
            outcomes = [[trial(depth, lr, s) for s in seeds] for lr in wave]
        pending = pending[len(wave) :]
        for lr, cell in zip(wave, outcomes):
            trials += cell
            trained = [t for t in cell if t.trained]
            fraction = len(trained) / len(cell)
            if 2 * len(trained) > len(cell):
                return DepthResult(
                    depth,
                    True,
                    lr,
                    _median(t.error for t in trained),
                    fraction,
                    _median(t.epochs for t in trained),
                    trials,
                )
            best_fraction = max(best_fraction, fraction)
    return DepthResult(depth, False, None, _min(t.error for t in trials), best_fraction, None, trials)


def _cut_at_stored_winner(
    wave: list[float], depth: int, seeds: Sequence[int], stored: StoredFn
) -> list[float]:
    """``wave`` up to and including its first lr at which a majority of seeds is stored as
    trained (the verdict is read in search order, so later lrs of the wave cannot matter)."""
    known = _by_lr(stored([(depth, lr, s) for lr in wave for s in seeds]), len(seeds))
    for i, cell in enumerate(known):
        if 2 * sum(t is not None and t.trained for t in cell) > len(seeds):
            return wave[: i + 1]
    return wave


def _by_lr(flat: list, seeds: int) -> list[list]:
    """Per-cell results, lr by lr with all seeds of an lr together, as lists per lr."""
    return [flat[i : i + seeds] for i in range(0, len(flat), seeds)]


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _min(values) -> float | None:
    values = [v for v in values if v is not None]
    return min(values) if values else None


def probe_ladder(max_depth: int, step: int = 3) -> list[int]:
    """The depths the search grows through until its first failure: ``step``, 2 ``step``,
    4 ``step``, ... and the deepest multiple of ``step`` up to ``max_depth`` (`search_depths`)."""
    top, n, ladder = max(max_depth // step, 1), 1, []
    while True:
        ladder.append(step * n)
        if n >= top:
            return ladder
        n = min(2 * n, top)


def search_depths(
    max_depth: int,
    evaluate: Callable[[int, float | None], DepthResult],
    fail_over_ok: float | None = None,
    step: int = 3,
) -> dict[int, DepthResult]:
    """Geometric growth (3, 6, 12, ...) to the first failure or ``max_depth``, then a bisection
    to two consecutive multiples of 3: at the midpoint, or with ``fail_over_ok`` (how much more
    a failing depth costs than a trainable one) where the expected cost is least
    (`split_point`). ``evaluate(depth, start_lr)`` gives one depth's verdict. The probes depend
    only on the verdicts, never on what a store holds, so a resumed search walks the same path;
    a store filled with one bisection is continued with the same one (``--bisection``). Depths
    are multiples of ``step`` (`FrontierConfig.step_for`: 3 for the presets, a model factory's
    ``depth_step``, or ``--depth-step``) up to ``max_depth``, which need not be one."""
    results: dict[int, DepthResult] = {}
    lo: int | None = None  # deepest trainable, in units of 3
    hi: int | None = None  # shallowest failing, in units of 3

    def probe(n: int) -> bool:
        start = results[step * lo].lr if lo is not None else None
        results[step * n] = evaluate(step * n, start)
        return results[step * n].trainable

    for n in (d // step for d in probe_ladder(max_depth, step)):
        if not probe(n):
            hi = n
            break
        lo = n
    while lo is not None and hi is not None and hi - lo > 1:
        mid = (lo + hi) // 2 if fail_over_ok is None else split_point(lo, hi, fail_over_ok)
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return results


def summarise(
    model: str, depths: dict[int, DepthResult], seconds: float, next_trial: Cell | None = None
) -> ModelFrontier:
    """The frontier of a per-depth map: deepest trainable depth and shallowest failing depth."""
    ok = sorted(d for d, r in depths.items() if r.trainable)
    bad = sorted(d for d, r in depths.items() if not r.trainable)
    best = depths[ok[-1]] if ok else None
    monotone = not ok or not bad or bad[0] > ok[-1]
    trials = [t for r in depths.values() for t in r.trials]
    return ModelFrontier(
        model,
        ok[-1] if ok else None,
        best.lr if best else None,
        best.error if best else None,
        bad[0] if bad else None,
        best.fraction if best else None,
        dict(sorted(depths.items())),
        monotone,
        seconds,
        len(trials),
        sum(t.reused for t in trials),
        next_trial,
        sum(t.seconds for t in trials),
    )


def find_frontier(
    model: str,
    config: FrontierConfig,
    store: Store | None,
    data: Dataset | None = None,
    *,
    data_dir=None,
    trial: TrialFn | None = None,
    log: Callable[[str], None] | None = None,
    runner=None,
    cells: CellsFn | None = None,
    width: int = 1,
    stored: StoredFn | None = None,
) -> ModelFrontier:
    """The depth frontier of one model. ``trial(depth, lr, seed) -> TrialVerdict`` replaces real training
    (tests use it to check the search against an exhaustive grid).

    With ``runner`` (a `depthlab.sweep.TrialRunner`, which then owns the store) trials run
    through its executor, ``width`` lrs of a depth at a time (`evaluate_depth`); the answer is
    the one-at-a-time search's. ``cells`` replaces the runner with a fake batch function and
    ``stored`` its store lookup."""
    config.validate()
    config.validate_models([model])
    started = time.perf_counter()
    seeds = [config.seed + i for i in range(config.seed_count())]
    real_trial, real_cells = _training_trials(model, config, store, data, data_dir, log, runner)
    run = trial or real_trial
    batch = cells or (real_cells if runner is not None and trial is None else None)
    peek = stored
    if peek is None and batch is real_cells:  # a real runner: ask its store
        peek = functools.partial(stored_cells, model, config=config, runner=runner)
    lrs = config.sorted_lrs()
    decided: dict[int, DepthResult] = {}  # in probe order, kept if a `trial` stops the search

    def evaluate(depth: int, start_lr: float | None) -> DepthResult:
        decided[depth] = evaluate_depth(
            depth, lrs, start_lr, seeds, run, cells=batch, width=max(1, width), stored=peek
        )
        return decided[depth]

    rechecked: list[TrialVerdict] = []  # --seeds auto: the boundary's extra seeds
    next_trial = None
    try:
        _probe_depths(model, config, decided, evaluate)
        if config.auto_seeds:
            each = (lambda b: batch(b, rank=False)) if batch is real_cells else batch
            run_batch = each or (lambda b: [run(*cell) for cell in b])
            _recheck_boundary(model, config, decided, run_batch, lrs, rechecked)
    except PendingTrial as stop:
        next_trial = stop.cell
    if config.auto_seeds:
        return seeded_frontier(model, decided, rechecked, config, time.perf_counter() - started, next_trial)
    return summarise(str(model), decided, time.perf_counter() - started, next_trial=next_trial)


def _probe_depths(
    model: str,
    config: FrontierConfig,
    decided: dict[int, DepthResult],
    evaluate: Callable[[int, float | None], DepthResult],
) -> None:
    """Evaluate the depths the search needs: ``config.depths`` in order (each starting from the
    lr of the last trainable one), or the probe ladder and bisection of `search_depths`."""
    if config.depths is not None:
        for d in sorted(config.depths):
            ok = [r for r in decided.values() if r.trainable]
            evaluate(d, ok[-1].lr if ok else None)
    else:
        search_depths(
            config.max_depth,
            evaluate,
            failure_cost_ratio(config) if config.bisection == "cost" else None,
            config.step_for(model),
        )


def _recheck_boundary(
    model: str,
    config: FrontierConfig,
    decided: dict[int, DepthResult],
    each: Callable,
    lrs: Sequence[float],
    rechecked: list[TrialVerdict],
) -> None:
    """``--seeds auto``: run the boundary's extra seeds through ``each`` (a batch of cells ->
    their verdicts), collecting their verdicts in ``rechecked``."""
    recheck(
        [t for r in decided.values() for t in r.trials],
        each,
        lrs,
        step=config.step_for(model),
        max_depth=config.deepest(),
        policy=config.seed_policy(),
        into=rechecked,
    )


def _training_trials(
    model: str,
    config: FrontierConfig,
    store: Store | None,
    data: Dataset | None,
    data_dir,
    log: Callable[[str], None] | None,
    runner,
) -> tuple[TrialFn, Callable[..., list[TrialVerdict]]]:
    """The two ways `find_frontier` trains for real: one trial at a time (`run_trial`), or a
    batch of cells through ``runner`` (`run_cells`, ``rank=False`` for the seed re-checks), each
    trial logged as one progress line when ``log`` is given."""

    def real_trial(depth: int, lr: float, seed: int) -> TrialVerdict:
        t = run_trial(model, depth, lr, seed, config, store, data, data_dir)
        if log is not None:
            log(_progress_line(model, depth, lr, seed, t))
        return t

    def real_cells(batch: list[Cell], rank: bool = True) -> list[TrialVerdict]:
        done = run_cells(model, batch, config, runner, rank=rank)
        if log is not None:
            for t in done:
                log(_progress_line(model, t.depth, t.lr, t.seed, t))
        return done

    return real_trial, real_cells


def _progress_line(model: str, depth: int, lr: float, seed: int, t: TrialVerdict) -> str:
    """One trial's progress line: its cell, its verdict, and its training time or ``stored``."""
    return (
        f"{model} depth {depth} {lr_words(lr)} seed {seed}: "
        f"{trial_words(t.trained, t.status, t.error, t.epochs)}, "
        f"{'stored' if t.reused else f'{t.seconds:.1f}s'}"
    )


def seeded_frontier(
    model: str,
    decided: dict[int, DepthResult],
    rechecked: list[TrialVerdict],
    config: FrontierConfig,
    seconds: float,
    next_trial: Cell | None = None,
) -> ModelFrontier:
    """The ``--seeds auto`` frontier: every trial (search and re-checks) voted per depth
    (`seeds.summarise`), the majority frontier with its band and each depth's fraction of seeds."""
    trials = [t for r in decided.values() for t in r.trials] + rechecked
    table = {(t.depth, t.lr, t.seed): t.trained for t in trials}
    seeded = summarise_seeds(table, step=config.step_for(model), max_depth=config.deepest())
    depths = {}
    for d, v in seeded.depths.items():
        at = [t for t in trials if t.depth == d]
        won = [t for t in at if t.lr == v.lr and t.trained] if v.trains else []
        depths[d] = DepthResult(
            d,
            v.trains,
            v.lr if v.trains else None,
            _median(t.error for t in won) if won else _min(t.error for t in at),
            v.fraction,
            _median(t.epochs for t in won) if won else None,
            at,
        )
    result = summarise(str(model), depths, seconds, next_trial)
    best = depths.get(seeded.max_trainable_depth)
    result.max_trainable_depth, result.first_failing_depth = (
        seeded.max_trainable_depth,
        seeded.first_failing_depth,
    )
    result.lr, result.error, result.fraction = (
        (best.lr, best.error, best.fraction) if best else (None, None, None)
    )
    result.monotone, result.band, result.label = seeded.monotone, seeded.band, seeded.label(result.capped)
    return result


class PendingTrial(Exception):
    """Raised by a ``trial`` function that may not train this cell: `find_frontier` stops there
    and reports the depths decided so far with the cell as ``next_trial``."""

    def __init__(self, cell: Cell):
        super().__init__(cell)
        self.cell = cell


def frontier_status(models: Sequence[str], config: FrontierConfig, store: Store) -> FrontierResult:
    """Each model's search replayed on the trials ``store`` already holds, training nothing:
    the depths decided so far, and for a search that has not finished the trial it needs next.
    Read-only, so it is safe while the search itself runs in another process."""
    started = time.perf_counter()

    def from_store(model: str) -> TrialFn:
        def trial(depth: int, lr: float, seed: int) -> TrialVerdict:
            found = stored_trial(model, (depth, lr, seed), config, store)
            if found is None:
                raise PendingTrial((depth, lr, seed))
            return found

        return trial

    results = [find_frontier(m, config, store, trial=from_store(m)) for m in models]
    return FrontierResult(config, results, time.perf_counter() - started)


def find_frontiers(
    models: Sequence[str],
    config: FrontierConfig,
    store: Store | None,
    data: Dataset | None = None,
    *,
    runner=None,
    **kwargs,
) -> FrontierResult:
    """`find_frontier` for several models, sharing the loaded data: one after the other, or with
    ``runner`` (a `depthlab.sweep.TrialRunner`) all at once, each model's search in its own
    thread, their trials running side by side on the runner's executor. Each search keeps its
    sequential logic, so the answers are those of the one-after-the-other run."""
    started = time.perf_counter()
    if runner is None:
        results = [find_frontier(m, config, store, data, **kwargs) for m in models]
    else:
        width = search_width(runner.parallelism, runner.fuse, len(models), config)
        results = runner.run_concurrently(
            [
                functools.partial(find_frontier, m, config, store, data, runner=runner, width=width, **kwargs)
                for m in models
            ]
        )
    return FrontierResult(config, results, time.perf_counter() - started)


def search_width(parallelism: int, fuse: int, models: int, config: FrontierConfig) -> int:
    """How many lrs of a depth each model's search tries at once: enough to keep
    ``parallelism`` trial slots busy when there are fewer models than slots, and the fused group
    size when fusing (a fused group of lrs costs less than its members one by one)."""
    per_model = parallelism // max(1, models * config.seed_count())
    return max(1, min(config.widest_grid(), max(fuse, per_model)))
