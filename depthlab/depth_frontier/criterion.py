"""The trainability criterion: when a trial trains, the monitor that stops it at the first evaluation
point that meets it (or where the plateau stop says it will not), and trials run or read back from
the store as verdicts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..data.dataset import Dataset
from ..engine.config import SWEEP_THREADS, TrainConfig
from ..records.record import EvaluationPoint, RunResult, RunStatus, StopReason
from ..store.sqlite import Store
from ..sweep.runner import MONITOR_KEY, run_recorded, stored_result
from .protocol import CRITERIA, FrontierConfig


def point_error(point: dict, criterion: str) -> float:
    """The error a criterion looks at in one evaluation point (an `EvaluationPoint` as a dict)."""
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
class TrialVerdict:
    """The search's verdict on one training run (a cell: depth, lr, seed): did it train, at what error and cost."""

    depth: int
    lr: float
    seed: int
    trained: bool
    error: float | None  # criterion error at the point that met it, else the best seen
    epochs: float  # fractional epochs trained up to the verdict
    status: RunStatus  # done | diverged | failed | cancelled (moot: an lr before it trained)
    seconds: float
    reused: bool = False
    run_hash: str = ""


def criterion_error(
    points: Sequence[dict], criterion: str, threshold: float
) -> tuple[bool, float | None, float]:
    """A run's evaluation points read under a criterion: whether it met it, the criterion error
    at the deciding point (the one that met it, else the best seen) and the epochs up to it."""
    hit = first_met(points, criterion, threshold)
    if hit is not None:
        return True, point_error(hit, criterion), hit["epoch"]
    errors = [
        point_error(p, criterion) for p in points if point_error(p, criterion) == point_error(p, criterion)
    ]
    return False, (min(errors) if errors else None), (points[-1]["epoch"] if points else 0.0)


def recorded_criterion_error(config: dict, result: dict | None) -> tuple[str, float | None] | None:
    """For a stored frontier trial (its stored config and result), the criterion it ran under
    and its criterion error, the number its frontier line and tables show; None for a run
    stored without its criterion (other runs, frontier trials of versions that did not record it)."""
    recorded = config.get(MONITOR_KEY) if isinstance(config, dict) else None
    if not (
        isinstance(recorded, dict)
        and recorded.get("criterion") in CRITERIA
        and isinstance(recorded.get("threshold"), (int, float))
    ):
        return None
    points = [p for p in (result or {}).get("checkpoints") or [] if isinstance(p, dict)]
    return recorded["criterion"], criterion_error(points, recorded["criterion"], recorded["threshold"])[1]


def trial_from_result(
    depth: int, lr: float, seed: int, result: RunResult, criterion: str, threshold: float, run_hash: str = ""
) -> TrialVerdict:
    trained, error, epochs = criterion_error(
        [vars(c) for c in result.evaluation_points], criterion, threshold
    )
    return TrialVerdict(
        depth, lr, seed, trained, error, epochs, result.status, float(result.seconds), result.reused, run_hash
    )


@dataclass(frozen=True)
class PlateauStop:
    """The plateau stop: a trial whose criterion error is still at least ``error`` at an evaluation
    point at or after epoch ``epoch`` stops there; it does not train (`StopReason.PLATEAU`).

    A failing trial that does not diverge runs its whole budget, and at the full protocol such
    trials are most of a frontier's cost. On every stored trial of the full frontier
    (``runs/frontier-full/store.db``, 264 trials, `benchmarks/trial_rules.py`) the rule at epoch 2
    of 3 with error 0.85 changes no trial verdict and saves 19% of the trial seconds; stopping at
    epoch 1 changes 9 (slow starters leave chance level in their second epoch).

    Identity: like the criterion, the rule decides where a run stops, not what it computes, so it
    is not part of a trial's hash; the store records it beside the run (`CriterionMonitor.describe`).
    A stored run is reused only where it answers the search's own monitor (`needs_retraining`): a
    run the rule stopped is trained again by a search without the rule, or with a rule that would
    not have stopped it there; a run that ran its whole budget (recorded with the rule off, the
    carried stores' runs) is reused as it is, its verdict the full budget's."""

    epoch: float
    error: float

    def stops(self, point: dict, criterion: str) -> bool:
        """Whether the rule stops a trial at this evaluation point (a Checkpoint as a dict); a NaN
        error never stops it (a run that diverges is its own verdict)."""
        return point["epoch"] >= self.epoch - 1e-9 and point_error(point, criterion) >= self.error


@dataclass(frozen=True)
class CriterionMonitor:
    """Stops a trial at the first evaluation point that meets the criterion (`StopReason.CRITERION`),
    or, with a ``plateau`` rule, at the first where the rule holds (`StopReason.PLATEAU`). A
    dataclass, not a closure, so that process and Ray workers can run it (`depthlab.sweep`)."""

    criterion: str
    threshold: float
    plateau: PlateauStop | None = None

    def __call__(self, checkpoint) -> StopReason | None:
        point = vars(checkpoint)
        if first_met([point], self.criterion, self.threshold) is not None:
            return StopReason.CRITERION
        if self.plateau is not None and self.plateau.stops(point, self.criterion):
            return StopReason.PLATEAU
        return None

    def describe(self) -> dict:
        """What the store records of the monitor beside a run's config (`MONITOR_KEY`). Without a
        plateau rule it is what it was before the rule existed."""
        plateau = {"plateau": dataclasses.asdict(self.plateau)} if self.plateau is not None else {}
        return {"criterion": self.criterion, "threshold": self.threshold, **plateau}

    def first_stop(self, points: Sequence[dict]) -> tuple[int, StopReason] | None:
        """Where and why this monitor stops a run whose evaluation points are ``points`` (dicts,
        in order): the index of that point and the reason, or None where it lets the run go on."""
        for i, p in enumerate(points):
            reason = self(EvaluationPoint(**p))
            if reason is not None:
                return i, reason
        return None


def frontier_monitor(config: FrontierConfig) -> CriterionMonitor:
    """The monitor of every trial of a search under ``config``: its criterion and plateau rule."""
    plateau = PlateauStop(*config.plateau_stop) if config.plateau_stop is not None else None
    return CriterionMonitor(config.criterion, config.threshold, plateau)


def needs_retraining(result: RunResult, monitor: CriterionMonitor) -> bool:
    """A stored run that was stopped early (by another criterion or plateau rule) where ``monitor``
    would not have stopped it: its curve is cut short of what this search needs."""
    return bool(
        result.reused
        and result.stopped_early
        and monitor.first_stop([vars(c) for c in result.evaluation_points]) is None
    )


def run_trial(
    model: str,
    depth: int,
    lr: float,
    seed: int,
    config: FrontierConfig,
    store: Store | None,
    data: Dataset | None,
    data_dir=None,
) -> TrialVerdict:
    """Train one trial through the store, stopping as soon as the criterion is met (or the
    plateau rule holds).

    A stored run of the same config is reused when its verdict under *this* monitor is certain:
    it was not stopped early (full budget or diverged), or this monitor stops it too (it met this
    criterion, or this plateau rule holds at one of its points). A run that a different criterion
    or plateau rule stopped early where this one would go on is trained again (`needs_retraining`)."""
    train_config = config.trial_config(model, depth, lr, seed)
    if train_config.threads is None:  # on the threads a runner pins (the same bits from every entry point)
        train_config = dataclasses.replace(train_config, threads=SWEEP_THREADS)
    key = train_config.hash()
    monitor = frontier_monitor(config)
    result = run_recorded(
        train_config, store, data, data_dir=data_dir, kind="frontier", experiment="frontier", monitor=monitor
    )
    if needs_retraining(result, monitor):
        result = run_recorded(
            train_config,
            store,
            data,
            data_dir=data_dir,
            kind="frontier",
            experiment="frontier",
            monitor=monitor,
            reuse=False,
        )
    return trial_from_result(depth, lr, seed, result, config.criterion, config.threshold, key)


Cell = tuple[int, float, int]  # (depth, lr, seed)


def run_cells(
    model: str, cells: Sequence[Cell], config: FrontierConfig, runner, *, rank: bool = True
) -> list[TrialVerdict]:
    """`run_trial` for several cells at once through a `depthlab.sweep.TrialRunner`: the
    trials run concurrently (fused, with the runner's ``fuse``), the driver records them, and
    the same reuse rules apply. Results in the order of ``cells``.

    ``cells`` are one wave of `evaluate_depth`, in search order. With one seed each cell is
    ranked by its place (`depthlab.sweep.Job.rank`): in a fused group, once a cell trains,
    the group cancels the cells after it, whose verdicts the search would never read. (With
    several seeds a trained seed does not decide its lr, so nothing is ranked; nor with ``rank``
    False, when every verdict is read: ``--seeds auto`` re-checking a boundary.)"""
    from ..sweep.jobs import Job

    monitor = frontier_monitor(config)
    configs = [config.trial_config(model, d, lr, s) for d, lr, s in cells]
    ranked = rank and len({s for _, _, s in cells}) == 1 and len({lr for _, lr, _ in cells}) == len(cells)

    def job(c: TrainConfig, reuse: bool = True, rank: int | None = None) -> Job:
        return Job(c, kind="frontier", experiment="frontier", monitor=monitor, reuse=reuse, rank=rank)

    results = runner.run([job(c, rank=i if ranked else None) for i, c in enumerate(configs)])
    redo = [i for i, r in enumerate(results) if needs_retraining(r, monitor)]
    for i, r in zip(redo, runner.run([job(configs[i], reuse=False) for i in redo])):
        results[i] = r
    return [
        trial_from_result(d, lr, s, r, config.criterion, config.threshold, c.hash())
        for (d, lr, s), r, c in zip(cells, results, configs)
    ]


def stored_cells(
    model: str, cells: Sequence[Cell], config: FrontierConfig, runner
) -> list[TrialVerdict | None]:
    """The verdicts the runner's store already holds for ``cells`` (None where a cell would
    train), under the reuse rules of `run_cells`; nothing is trained."""
    configs = [config.trial_config(model, d, lr, s) for d, lr, s in cells]
    return [
        _stored_verdict(cell, r, config, c.hash())
        for cell, r, c in zip(cells, runner.stored(configs), configs)
    ]


def stored_trial(model: str, cell: Cell, config: FrontierConfig, store: Store | None) -> TrialVerdict | None:
    """`stored_cells` for one cell, read from ``store`` directly."""
    key = config.trial_config(model, *cell).hash()
    return _stored_verdict(cell, stored_result(store, key), config, key)


def _stored_verdict(
    cell: Cell, result: RunResult | None, config: FrontierConfig, key: str
) -> TrialVerdict | None:
    if result is None or needs_retraining(result, frontier_monitor(config)):
        return None
    return trial_from_result(*cell, result, config.criterion, config.threshold, key)


StoredFn = Callable[[list[Cell]], list["TrialVerdict | None"]]
