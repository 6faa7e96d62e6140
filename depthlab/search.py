"""The depth frontier: the largest depth at which a model still trains (SPEC 4, issue 3).

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
every point; `tests/test_search.py` checks this against full-budget runs.

**Trainable depth.** Depth d is trainable when, for some lr of the grid, a majority of the
``seeds`` seeds train; the first such lr found is reported with its fraction of seeds.

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
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from .data import Dataset, check_dataset_name
from .errors import ConfigError
from .runner import run_recorded, stored_result
from .store import Store
from .train import CANCELLED, TrainConfig

CRITERIA = ("either", "test", "train")
DEFAULT_LRS = tuple(round(10 ** (e / 2), 6) for e in range(-6, 1))  # 0.001, 0.003162, ... 1.0
# The quick protocol (FrontierConfig fields) of `depthlab frontier --quick`, the README's main job,
# and of `depthlab reproduce depth-frontier --quick`: all eight presets in minutes on 2 CPU cores.
QUICK_PROTOCOL = dict(train_size=10000, epochs=1, lrs=(0.01, 0.1, 1.0), max_depth=9, eval_size=1000,
                      evals_per_epoch=4)
MAX_GRID = 1000  # more learning rates than this in log:LOW:HIGH:COUNT is a typo (and would never finish)


BISECTIONS = ("cost", "midpoint")


@dataclass(frozen=True)
class FrontierConfig:
    """The frontier protocol. Defaults are the classic one (SPEC 4): MNIST, batch 256, SGD with
    momentum 0.9, trainable when the error drops below 20% within 3 epochs, lr grid 1e-3..1."""

    max_depth: int = 300
    depths: tuple[int, ...] | None = None  # try exactly these depths instead of searching
    lrs: tuple[float, ...] = DEFAULT_LRS
    epochs: int = 3
    threshold: float = 0.2
    criterion: str = "either"
    seeds: int = 1
    seed: int = 0                          # seeds used: seed, seed + 1, ..., seed + seeds - 1
    train_size: int | None = None
    eval_size: int | None = 2000           # test images per evaluation (None: all 10,000)
    evals_per_epoch: int = 5
    batch_size: int = 256
    momentum: float = 0.9
    dataset: str = "mnist"
    device: str = "auto"
    model_args: dict = field(default_factory=dict)  # axis overrides for every model (not depth)
    bisection: str = "cost"                # cost-weighted split (`split_point`) or the plain midpoint

    def validate(self) -> None:
        if not isinstance(self.max_depth, int) or self.max_depth < 3:
            raise ConfigError(f"--max-depth must be at least 3, got {self.max_depth}")
        if self.max_depth % 3:
            raise ConfigError(f"--max-depth must be a multiple of 3, got {self.max_depth}")
        if self.depths is not None:
            if not self.depths:
                raise ConfigError("--depths is empty")
            for d in self.depths:
                if not isinstance(d, int) or d <= 0 or d % 3:
                    raise ConfigError(f"depths must be positive multiples of 3, got {d}")
        if not self.lrs:
            raise ConfigError("the learning-rate grid is empty")
        for lr in self.lrs:
            if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
                raise ConfigError(f"learning rates must be positive, got {lr}")
        if len(set(self.lrs)) != len(self.lrs):
            raise ConfigError("the learning-rate grid has duplicates")
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold < 1):
            raise ConfigError(f"--threshold must be in (0, 1), got {self.threshold}")
        if self.criterion not in CRITERIA:
            raise ConfigError(f"unknown criterion {self.criterion!r}; choose one of: {', '.join(CRITERIA)}")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"--seeds must be a positive integer, got {self.seeds}")
        if "depth" in self.model_args:
            raise ConfigError("the frontier searches the depth: use --depths or --max-depth, not --depth")
        if self.bisection not in BISECTIONS:
            raise ConfigError(f"unknown bisection {self.bisection!r}; choose one of: {', '.join(BISECTIONS)}")
        check_dataset_name(self.dataset)

    def validate_models(self, models: Sequence[str]) -> None:
        """Every model must take the axis overrides and run on the dataset (checked at depth 3)."""
        if not models:
            raise ConfigError("no models given")
        for model in models:
            self.trial_config(model, min(self.depths or (3,)), self.lrs[0], self.seed).validate()

    def trial_config(self, model: str, depth: int, lr: float, seed: int) -> TrainConfig:
        """The `TrainConfig` of one trial (its hash is the trial's key in the store)."""
        return TrainConfig(model=model, model_args={**self.model_args, "depth": depth}, dataset=self.dataset,
                           train_size=self.train_size, test_size=self.eval_size, eval_split="test",
                           epochs=self.epochs, batch_size=self.batch_size, optimizer="sgd", lr=float(lr),
                           momentum=self.momentum, evals_per_epoch=self.evals_per_epoch, seed=seed,
                           device=self.device)

    def sorted_lrs(self) -> tuple[float, ...]:
        return tuple(sorted(float(lr) for lr in self.lrs))


def parse_lrs(text: str) -> tuple[float, ...]:
    """``0.01,0.1,1`` or ``log:0.001:1:7`` (7 log-spaced values from 0.001 to 1)."""
    text = text.strip()
    if text.startswith("log:"):
        parts = text[4:].split(":")
        try:
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
        except (ValueError, IndexError):
            raise ConfigError(f"bad --lrs {text!r}: expected log:LOW:HIGH:COUNT, e.g. log:0.001:1:7") from None
        if len(parts) != 3 or not (0 < lo < hi < math.inf) or not 2 <= n <= MAX_GRID:
            raise ConfigError(f"bad --lrs {text!r}: need 0 < LOW < HIGH and 2 <= COUNT <= {MAX_GRID}")
        return tuple(round(lo * (hi / lo) ** (i / (n - 1)), 8) for i in range(n))
    values = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"bad learning rate {part!r} in --lrs") from None
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"learning rates must be positive, got {part.strip()}")
        values.append(value)
    if not values:
        raise ConfigError("the learning-rate grid is empty")
    return tuple(values)


def parse_depths(text: str) -> tuple[int, ...]:
    values = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            d = int(part)
        except ValueError:
            raise ConfigError(f"bad depth {part!r} in --depths") from None
        if d <= 0 or d % 3:
            raise ConfigError(f"depths must be positive multiples of 3, got {d}")
        values.append(d)
    if not values:
        raise ConfigError("--depths is empty")
    return tuple(sorted(set(values)))


# ---------------------------------------------------------------------------------------------
# The criterion


def point_error(point: dict, criterion: str) -> float:
    """The error a criterion looks at in one evaluation point (a Checkpoint as a dict)."""
    train, test = point["train_error"], point["eval_error"]
    if criterion == "train":
        return train
    if criterion == "test":
        return test
    return min(train, test)


def first_met(points: Sequence[dict], criterion: str, threshold: float) -> dict | None:
    """The first evaluation point at which the criterion holds, if any."""
    for p in points:
        e = point_error(p, criterion)
        if e == e and e < threshold:  # e == e: NaN never meets it
            return p
    return None


@dataclass
class Trial:
    """One training run of the search."""

    depth: int
    lr: float
    seed: int
    trained: bool
    error: float | None      # criterion error at the point that met it, else the best seen
    epochs: float            # fractional epochs trained up to the verdict
    status: str              # done | diverged | failed | cancelled (moot: an lr before it trained)
    seconds: float
    reused: bool = False
    run_hash: str = ""


def trial_from_result(depth: int, lr: float, seed: int, result: dict, criterion: str,
                      threshold: float, run_hash: str = "") -> Trial:
    points = result.get("checkpoints") or []
    hit = first_met(points, criterion, threshold)
    if hit is not None:
        error, epochs = point_error(hit, criterion), hit["epoch"]
    else:
        errors = [point_error(p, criterion) for p in points if point_error(p, criterion) == point_error(p, criterion)]
        error = min(errors) if errors else None
        epochs = points[-1]["epoch"] if points else 0.0
    return Trial(depth, lr, seed, hit is not None, error, epochs, result["status"],
                 float(result.get("seconds") or 0.0), bool(result.get("reused")), run_hash)


@dataclass(frozen=True)
class CriterionMonitor:
    """Stops a trial at the first evaluation point that meets the criterion. A dataclass, not a
    closure, so that process and Ray workers can run it (`depthlab.executors`)."""

    criterion: str
    threshold: float

    def __call__(self, checkpoint) -> bool:
        return first_met([vars(checkpoint)], self.criterion, self.threshold) is not None


def _needs_retraining(result: dict, config: FrontierConfig) -> bool:
    """A stored run that another criterion stopped early without meeting this one."""
    return bool(result.get("reused") and result.get("stopped_early")
                and first_met(result.get("checkpoints") or [], config.criterion, config.threshold) is None)


def run_trial(model: str, depth: int, lr: float, seed: int, config: FrontierConfig, store: Store | None,
              data: Dataset | None, data_dir=None) -> Trial:
    """Train one trial through the store, stopping as soon as the criterion is met.

    A stored run of the same config is reused when its verdict under *this* criterion is
    certain: it met the criterion, or it was not stopped early (full budget or diverged). A run
    that a different criterion stopped early without meeting this one is trained again."""
    train_config = config.trial_config(model, depth, lr, seed)
    key = train_config.hash()
    monitor = CriterionMonitor(config.criterion, config.threshold)
    result = run_recorded(train_config, store, data, data_dir=data_dir, kind="frontier",
                          experiment="frontier", monitor=monitor)
    if _needs_retraining(result, config):
        result = run_recorded(train_config, store, data, data_dir=data_dir, kind="frontier",
                              experiment="frontier", monitor=monitor, reuse=False)
    return trial_from_result(depth, lr, seed, result, config.criterion, config.threshold, key)


Cell = tuple[int, float, int]  # (depth, lr, seed)


def run_cells(model: str, cells: Sequence[Cell], config: FrontierConfig, runner) -> list[Trial]:
    """`run_trial` for several cells at once through a `depthlab.executors.TrialRunner`: the
    trials run concurrently (fused, with the runner's ``fuse``), the driver records them, and
    the same reuse rules apply. Results in the order of ``cells``.

    ``cells`` are one wave of `evaluate_depth`, in search order. With one seed each cell is
    ranked by its place (`depthlab.executors.Trial.rank`): in a fused group, once a cell trains,
    the group cancels the cells after it, whose verdicts the search would never read. (With
    several seeds a trained seed does not decide its lr, so nothing is ranked.)"""
    from .executors import Trial as Job

    monitor = CriterionMonitor(config.criterion, config.threshold)
    configs = [config.trial_config(model, d, lr, s) for d, lr, s in cells]
    ranked = len({s for _, _, s in cells}) == 1 and len({lr for _, lr, _ in cells}) == len(cells)

    def job(c: TrainConfig, reuse: bool = True, rank: int | None = None) -> Job:
        return Job(c, kind="frontier", experiment="frontier", monitor=monitor, reuse=reuse, rank=rank)

    results = runner.run([job(c, rank=i if ranked else None) for i, c in enumerate(configs)])
    redo = [i for i, r in enumerate(results) if _needs_retraining(r, config)]
    for i, r in zip(redo, runner.run([job(configs[i], reuse=False) for i in redo])):
        results[i] = r
    return [trial_from_result(d, lr, s, r, config.criterion, config.threshold, c.hash())
            for (d, lr, s), r, c in zip(cells, results, configs)]


def stored_cells(model: str, cells: Sequence[Cell], config: FrontierConfig, runner) -> list[Trial | None]:
    """The verdicts the runner's store already holds for ``cells`` (None where a cell would
    train), under the reuse rules of `run_cells`; nothing is trained."""
    configs = [config.trial_config(model, d, lr, s) for d, lr, s in cells]
    return [_stored_verdict(cell, r, config, c.hash()) for cell, r, c in zip(cells, runner.stored(configs), configs)]


def stored_trial(model: str, cell: Cell, config: FrontierConfig, store: Store | None) -> Trial | None:
    """`stored_cells` for one cell, read from ``store`` directly."""
    key = config.trial_config(model, *cell).hash()
    return _stored_verdict(cell, stored_result(store, key), config, key)


def _stored_verdict(cell: Cell, result: dict | None, config: FrontierConfig, key: str) -> Trial | None:
    if result is None or _needs_retraining(result, config):
        return None
    return trial_from_result(*cell, result, config.criterion, config.threshold, key)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class DepthResult:
    """The verdict at one depth: trainable or not, with the lr that trained it (if any)."""

    depth: int
    trainable: bool
    lr: float | None          # the first lr (in search order) at which a majority of seeds trained
    error: float | None       # the median seed error at that lr; when failing, the best over lrs
    fraction: float           # fraction of seeds that trained at that lr (best over lrs when failing)
    epochs: float | None      # median epochs to meet the criterion at that lr
    trials: list[Trial] = field(default_factory=list)

    def to_dict(self) -> dict:
        cells: dict[str, dict] = {}
        for t in self.trials:
            cell = cells.setdefault(f"{t.lr:g}", {"trained": 0, "seeds": 0, "errors": []})
            cell["trained"] += t.trained
            cell["seeds"] += 1
            cell["errors"].append(t.error)
        return {"trainable": self.trainable, "lr": self.lr, "error": self.error, "fraction": self.fraction,
                "epochs": self.epochs, "lrs_tried": cells}


@dataclass
class ModelFrontier:
    model: str
    max_trainable_depth: int | None
    lr: float | None
    error: float | None
    first_failing_depth: int | None
    fraction: float | None
    depths: dict[int, DepthResult]
    monotone: bool
    seconds: float
    trials: int
    trials_reused: int
    next_trial: Cell | None = None  # (depth, lr, seed) the search needs next; None when it finished
    trial_seconds: float = 0.0      # training time of its trials (when they were trained, reused or not)

    def to_dict(self) -> dict:
        nxt = dict(zip(("depth", "lr", "seed"), self.next_trial)) if self.next_trial is not None else None
        return {"model": self.model, "max_trainable_depth": self.max_trainable_depth, "lr": self.lr,
                "error": self.error, "first_failing_depth": self.first_failing_depth,
                "fraction": self.fraction, "monotone": self.monotone, "seconds": round(self.seconds, 1),
                "trials": self.trials, "trials_reused": self.trials_reused, "next_trial": nxt,
                "trial_seconds": round(self.trial_seconds, 1),
                "depths": {str(d): r.to_dict() for d, r in sorted(self.depths.items())}}


@dataclass
class FrontierResult:
    config: FrontierConfig
    models: list[ModelFrontier]
    seconds: float

    def to_dict(self) -> dict:
        config = asdict(self.config)
        config["lrs"] = list(config["lrs"])
        return {"config": config, "seconds": round(self.seconds, 1), "models": [m.to_dict() for m in self.models]}


# ---------------------------------------------------------------------------------------------
# The search


def lr_order(lrs: Sequence[float], start: float | None) -> list[float]:
    """``start`` (or the middle of the sorted grid), then its neighbours outward, smaller first."""
    lrs = sorted(lrs)
    i = len(lrs) // 2 if start is None or start not in lrs else lrs.index(start)
    order = [lrs[i]]
    for step in range(1, len(lrs)):
        for j in (i - step, i + step):
            if 0 <= j < len(lrs):
                order.append(lrs[j])
    return order


TrialFn = Callable[[int, float, int], Trial]


CellsFn = Callable[[list[Cell]], list[Trial]]
StoredFn = Callable[[list[Cell]], list["Trial | None"]]


def evaluate_depth(depth: int, lrs: Sequence[float], start_lr: float | None, seeds: Sequence[int],
                   trial: TrialFn | None = None, *, cells: CellsFn | None = None, width: int = 1,
                   stored: StoredFn | None = None) -> DepthResult:
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
    runs, another process having retrained it, they come in the next wave)."""
    width = width if cells is not None else 1
    pending = lr_order(lrs, start_lr)
    lead = start_lr in pending and width > 1
    trials: list[Trial] = []
    best_fraction = 0.0
    while pending:
        wave = pending[:1] if lead else pending[:width]
        lead = False
        if cells is not None:
            if stored is not None and len(wave) > 1:
                wave = _cut_at_stored_winner(wave, depth, seeds, stored)
            outcomes = _by_lr(cells([(depth, lr, s) for lr in wave for s in seeds]), len(seeds))
        else:
            outcomes = [[trial(depth, lr, s) for s in seeds] for lr in wave]
        pending = pending[len(wave):]
        for lr, cell in zip(wave, outcomes):
            trials += cell
            trained = [t for t in cell if t.trained]
            fraction = len(trained) / len(cell)
            if 2 * len(trained) > len(cell):
                return DepthResult(depth, True, lr, _median(t.error for t in trained), fraction,
                                   _median(t.epochs for t in trained), trials)
            best_fraction = max(best_fraction, fraction)
    return DepthResult(depth, False, None, _min(t.error for t in trials), best_fraction, None, trials)


def _cut_at_stored_winner(wave: list[float], depth: int, seeds: Sequence[int], stored: StoredFn) -> list[float]:
    """``wave`` up to and including its first lr at which a majority of seeds is stored as
    trained (the verdict is read in search order, so later lrs of the wave cannot matter)."""
    known = _by_lr(stored([(depth, lr, s) for lr in wave for s in seeds]), len(seeds))
    for i, cell in enumerate(known):
        if 2 * sum(t is not None and t.trained for t in cell) > len(seeds):
            return wave[:i + 1]
    return wave


def _by_lr(flat: list, seeds: int) -> list[list]:
    """Per-cell results, lr by lr with all seeds of an lr together, as lists per lr."""
    return [flat[i:i + seeds] for i in range(0, len(flat), seeds)]


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _min(values) -> float | None:
    values = [v for v in values if v is not None]
    return min(values) if values else None


def split_point(lo: int, hi: int, fail_over_ok: float) -> int:
    """Where to probe between ``lo`` (trains) and ``hi`` (fails), in units of 3 depth layers: the
    split that minimises the expected cost of finding the boundary, with the boundary equally
    likely anywhere between and a probe at n costing n if it trains and ``fail_over_ok * n`` if
    it fails (cost grows with depth; a failing depth runs every lr for the whole budget, a
    trainable one usually one trial that stops early). With a ratio of 1 it is the midpoint;
    the costlier failures are, the closer to ``lo`` it probes. Pure: the same interval and
    ratio give the same probe, so a resumed search walks the same path."""

    @functools.lru_cache(maxsize=None)
    def expected(a: int, b: int) -> tuple[float, int]:
        # candidates a+1..b-1; the boundary (last trainable) is one of a..b-1, equally likely
        if b - a <= 1:
            return 0.0, a
        best = (math.inf, a + 1)
        positions = b - a
        for k in range(a + 1, b):
            p_ok = (b - k) / positions  # boundary at k or above: k trains
            cost = p_ok * (k + expected(k, b)[0]) + (1 - p_ok) * (fail_over_ok * k + expected(a, k)[0])
            if cost < best[0] - 1e-12:
                best = (cost, k)
        return best

    return expected(lo, hi)[1]


def failure_cost_ratio(config: FrontierConfig) -> float:
    """How much more a failing depth costs than a trainable one, in the search's own terms: a
    failing depth trains every lr for the whole budget; a trainable one usually trains its first
    lr (the one that trained the depth below), which meets the criterion about half-way (the
    full protocol's trainable trials stopped after 0.2-2.8 of 3 epochs: BENCHMARKS.md). Fixed by
    the flags, never by timings, so the probe order is reproducible."""
    return 2.0 * len(config.lrs)


def search_depths(max_depth: int, evaluate: Callable[[int, float | None], DepthResult],
                  fail_over_ok: float | None = None) -> dict[int, DepthResult]:
    """Geometric growth (3, 6, 12, ...) to the first failure or ``max_depth``, then a bisection
    to two consecutive multiples of 3: at the midpoint, or with ``fail_over_ok`` (how much more
    a failing depth costs than a trainable one) where the expected cost is least
    (`split_point`). ``evaluate(depth, start_lr)`` gives one depth's verdict. The probes depend
    only on the verdicts, never on what a store holds, so a resumed search walks the same path;
    a store filled with one bisection is continued with the same one (``--bisection``)."""
    top = max_depth // 3
    results: dict[int, DepthResult] = {}
    lo: int | None = None   # deepest trainable, in units of 3
    hi: int | None = None   # shallowest failing, in units of 3

    def probe(n: int) -> bool:
        start = results[3 * lo].lr if lo is not None else None
        results[3 * n] = evaluate(3 * n, start)
        return results[3 * n].trainable

    n = 1
    while True:
        if probe(n):
            lo = n
            if n == top:
                break
            n = min(2 * n, top)
        else:
            hi = n
            break
    while lo is not None and hi is not None and hi - lo > 1:
        mid = (lo + hi) // 2 if fail_over_ok is None else split_point(lo, hi, fail_over_ok)
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return results


def summarise(model: str, depths: dict[int, DepthResult], seconds: float,
              next_trial: Cell | None = None) -> ModelFrontier:
    """The frontier of a per-depth map: deepest trainable depth and shallowest failing depth."""
    ok = sorted(d for d, r in depths.items() if r.trainable)
    bad = sorted(d for d, r in depths.items() if not r.trainable)
    best = depths[ok[-1]] if ok else None
    monotone = not ok or not bad or bad[0] > ok[-1]
    trials = [t for r in depths.values() for t in r.trials]
    return ModelFrontier(model, ok[-1] if ok else None, best.lr if best else None, best.error if best else None,
                         bad[0] if bad else None, best.fraction if best else None, dict(sorted(depths.items())),
                         monotone, seconds, len(trials), sum(t.reused for t in trials), next_trial,
                         sum(t.seconds for t in trials))


def find_frontier(model: str, config: FrontierConfig, store: Store | None, data: Dataset | None = None, *,
                  data_dir=None, trial: TrialFn | None = None,
                  log: Callable[[str], None] | None = None, runner=None, cells: CellsFn | None = None,
                  width: int = 1, stored: StoredFn | None = None) -> ModelFrontier:
    """The depth frontier of one model. ``trial(depth, lr, seed) -> Trial`` replaces real training
    (tests use it to check the search against an exhaustive grid).

    With ``runner`` (a `depthlab.executors.TrialRunner`, which then owns the store) trials run
    through its executor, ``width`` lrs of a depth at a time (`evaluate_depth`); the answer is
    the one-at-a-time search's. ``cells`` replaces the runner with a fake batch function and
    ``stored`` its store lookup."""
    config.validate()
    config.validate_models([model])
    started = time.perf_counter()
    seeds = [config.seed + i for i in range(config.seeds)]

    def real_trial(depth: int, lr: float, seed: int) -> Trial:
        t = run_trial(model, depth, lr, seed, config, store, data, data_dir)
        if log is not None:
            verdict = f"trained at epoch {t.epochs:.2f}" if t.trained else f"failed ({t.status})"
            err = f"{100 * t.error:.1f}%" if t.error is not None else "-"
            log(f"{model} depth {depth} lr {lr:g} seed {seed}: {verdict}, error {err}, "
                f"{'stored' if t.reused else f'{t.seconds:.1f}s'}")
        return t

    def real_cells(batch: list[Cell]) -> list[Trial]:
        done = run_cells(model, batch, config, runner)
        if log is not None:
            for t in done:
                verdict = (f"trained at epoch {t.epochs:.2f}" if t.trained else
                           f"cancelled at epoch {t.epochs:.2f}: an lr before it trained"
                           if t.status == CANCELLED else f"failed ({t.status})")
                err = f"{100 * t.error:.1f}%" if t.error is not None else "-"
                log(f"{model} depth {t.depth} lr {t.lr:g} seed {t.seed}: {verdict}, error {err}, "
                    f"{'stored' if t.reused else f'{t.seconds:.1f}s'}")
        return done

    run = trial or real_trial
    batch = cells or (real_cells if runner is not None and trial is None else None)
    peek = stored
    if peek is None and batch is real_cells:  # a real runner: ask its store
        peek = functools.partial(stored_cells, model, config=config, runner=runner)
    lrs = config.sorted_lrs()
    decided: dict[int, DepthResult] = {}  # in probe order, kept if a `trial` stops the search

    def evaluate(depth: int, start_lr: float | None) -> DepthResult:
        decided[depth] = evaluate_depth(depth, lrs, start_lr, seeds, run, cells=batch, width=max(1, width),
                                        stored=peek)
        return decided[depth]

    try:
        if config.depths is not None:
            for d in sorted(config.depths):
                ok = [r for r in decided.values() if r.trainable]
                evaluate(d, ok[-1].lr if ok else None)
        else:
            search_depths(config.max_depth, evaluate,
                          failure_cost_ratio(config) if config.bisection == "cost" else None)
    except PendingTrial as stop:
        return summarise(model, decided, time.perf_counter() - started, next_trial=stop.cell)
    return summarise(model, decided, time.perf_counter() - started)


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
        def trial(depth: int, lr: float, seed: int) -> Trial:
            found = stored_trial(model, (depth, lr, seed), config, store)
            if found is None:
                raise PendingTrial((depth, lr, seed))
            return found
        return trial

    results = [find_frontier(m, config, store, trial=from_store(m)) for m in models]
    return FrontierResult(config, results, time.perf_counter() - started)


def find_frontiers(models: Sequence[str], config: FrontierConfig, store: Store | None,
                   data: Dataset | None = None, *, runner=None, **kwargs) -> FrontierResult:
    """`find_frontier` for several models, sharing the loaded data: one after the other, or with
    ``runner`` (a `depthlab.executors.TrialRunner`) all at once, each model's search in its own
    thread, their trials running side by side on the runner's executor. Each search keeps its
    sequential logic, so the answers are those of the one-after-the-other run."""
    started = time.perf_counter()
    if runner is None:
        results = [find_frontier(m, config, store, data, **kwargs) for m in models]
    else:
        width = search_width(runner.parallelism, runner.fuse, len(models), config)
        results = runner.run_concurrently([functools.partial(find_frontier, m, config, store, data, runner=runner,
                                                             width=width, **kwargs) for m in models])
    return FrontierResult(config, results, time.perf_counter() - started)


def search_width(parallelism: int, fuse: int, models: int, config: FrontierConfig) -> int:
    """How many lrs of a depth each model's search tries at once: enough to keep
    ``parallelism`` trial slots busy when there are fewer models than slots, and the fused group
    size when fusing (a fused group of lrs costs less than its members one by one)."""
    per_model = parallelism // max(1, models * config.seeds)
    return max(1, min(len(config.lrs), max(fuse, per_model)))


# ---------------------------------------------------------------------------------------------
# Output

TABLE_HEADERS = ("model", "max trainable depth", "lr", "error", "first failing depth", "fraction")


def table_rows(result: FrontierResult) -> list[list]:
    return [[m.model, m.max_trainable_depth, m.lr, m.error, m.first_failing_depth, m.fraction]
            for m in result.models]


def depth_rows(result: FrontierResult) -> list[list]:
    """One row per (model, depth) tried: the per-depth map."""
    return [[m.model, d, r.trainable, r.lr, r.error, r.fraction, r.epochs, len(r.trials)]
            for m in result.models for d, r in sorted(m.depths.items())]


DEPTH_HEADERS = ("model", "depth", "trainable", "lr", "error", "fraction", "epochs", "trials")


def depth_label(m: ModelFrontier) -> str:
    """A model's max trainable depth as the frontier plot labels it: ``9``, ``300+`` (the cap
    reached), ``none``, or ``>= 48`` for a search still running (`frontier --status`)."""
    if m.next_trial is not None:
        return f">= {m.max_trainable_depth or 0}"
    if not m.max_trainable_depth:
        return "none"
    return f"{m.max_trainable_depth}" + ("+" if m.first_failing_depth is None else "")


def plot_frontier(result: FrontierResult, folder) -> list:
    """Two PNGs: best error vs depth per model (threshold drawn) and the frontier as bars."""
    from .report import pyplot, safe_child

    plt = pyplot()
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for m in result.models:
        pts = [(d, r.error) for d, r in sorted(m.depths.items()) if r.error is not None]
        if pts:
            line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=m.model)
            fails = [(d, r.error) for d, r in sorted(m.depths.items()) if r.error is not None and not r.trainable]
            ax.scatter([p[0] for p in fails], [p[1] for p in fails], marker="x", color=line.get_color(), zorder=3)
    ax.axhline(result.config.threshold, color="k", ls="--", lw=1, label=f"threshold {result.config.threshold:g}")
    ax.set_xscale("log", base=2)
    tried = sorted({d for m in result.models for d in m.depths})
    if tried:  # plain labels at the geometric probes 3, 6, 12, ... (and the deepest depth tried)
        ticks = sorted({d for d in (3 * 2 ** k for k in range(12)) if d <= tried[-1]} | {tried[-1]})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel("depth (conv layers)")
    ax.set_ylabel(f"best {result.config.criterion} error (x = failed)")
    ax.set_title(f"Error reached within {result.config.epochs} epoch(s), best lr of the grid")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(safe_child(folder, "frontier-error.png"))
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.2))
    names = [m.model for m in result.models]
    heights = [m.max_trainable_depth or 0 for m in result.models]
    bars = ax.bar(range(len(names)), heights, color="tab:blue")
    for bar, m in zip(bars, result.models):
        label = depth_label(m)
        if m.next_trial is not None:
            bar.set_facecolor("lightsteelblue")
            bar.set_hatch("//")
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("max trainable depth")
    unfinished = any(m.next_trial is not None for m in result.models)
    ax.set_title(f"Depth frontier (max depth {result.config.max_depth}; + = cap reached)"
                 + ("\nhatched: search not finished, depth trained so far" if unfinished else ""), fontsize=10)
    fig.tight_layout()
    paths.append(safe_child(folder, "frontier-depth.png"))
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    return paths
