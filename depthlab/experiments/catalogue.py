"""The `reproduce` catalogue: named experiments as data (`Experiment`), their registry, budgets and runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..engine.config import TrainConfig
from ..engine.device import DEFAULT_PRECISION
from ..errors import ConfigError
from .parts import Context, PartResult, progress
from .sweeps import Ablation, Frontier


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its question, its parts (data), the ``--quick`` budget cut applied to
    every config, and ``conclude(parts) -> str`` computing one sentence from the results."""

    name: str
    question: str
    parts: tuple
    conclude: Callable[[dict[str, PartResult]], str]
    quick: Mapping = field(default_factory=dict)
    reference: str = ""


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(experiment: Experiment) -> Experiment:
    """Add (or replace) a named experiment for ``depthlab reproduce NAME``."""
    labels = [p.label for p in experiment.parts]
    if len(set(labels)) != len(labels):
        raise ValueError(f"experiment {experiment.name}: part labels must be unique, got {labels}")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; choose one of: {', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name]


@dataclass
class Reproduction:
    name: str
    question: str
    quick: bool
    parts: dict[str, PartResult]
    conclusion: str
    seconds: float
    budget: dict = field(default_factory=dict)  # a reduced budget (epochs, train_size), if any

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "question": self.question,
            "quick": self.quick,
            "budget": self.budget,
            "conclusion": self.conclusion,
            "seconds": round(self.seconds, 1),
            "parts": {k: p.to_dict() for k, p in self.parts.items()},
        }


BUDGET_KEYS = ("epochs", "train_size")


def check_budget(budget: Mapping | None) -> dict:
    """A reduced budget for every run of an experiment: ``{"epochs": N, "train_size": N}``."""
    budget = {k: v for k, v in (budget or {}).items() if v is not None}
    for key, value in budget.items():
        if key not in BUDGET_KEYS:
            raise ConfigError(f"unknown budget setting {key!r}; choose from: {', '.join(BUDGET_KEYS)}")
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"--{key.replace('_', '-')} must be a positive integer, got {value}")
    return budget


def experiment_context(
    name: str,
    store=None,
    *,
    quick: bool = False,
    data_dir: str | None = None,
    device: str = "auto",
    echo: Callable[[str], None] = progress,
    budget: Mapping | None = None,
    precision: str = DEFAULT_PRECISION,
) -> Context:
    experiment = get_experiment(name)
    overrides = {**(experiment.quick if quick else {}), **check_budget(budget), "device": device}
    if precision != DEFAULT_PRECISION:
        overrides["precision"] = precision
    return Context(
        store=store, data_dir=data_dir, overrides=overrides, quick=quick, experiment=name, echo=echo
    )


def fusable_size(part, ctx: Context) -> int:
    """How many of ``part``'s runs one fused network could train (1: none fuse): a frontier's
    lr grid at a depth, a sweep's runs that differ only in lr/seed; never an ablation's fits,
    which are measured after training."""
    from ..engine.fused_layers import fusable_group

    if isinstance(part, Frontier):
        return part.frontier_config(ctx).widest_grid()
    if isinstance(part, Ablation):
        return 1
    return fusable_group(part.configs(ctx))


def fusable_runs(
    name: str,
    *,
    quick: bool = False,
    device: str = "auto",
    budget: Mapping | None = None,
    precision: str = DEFAULT_PRECISION,
) -> int:
    """`fusable_size` of the largest part of ``reproduce(name)``."""
    ctx = experiment_context(name, quick=quick, device=device, budget=budget, precision=precision)
    return max((fusable_size(p, ctx) for p in get_experiment(name).parts), default=1)


def plan(
    name: str,
    *,
    quick: bool = False,
    device: str = "auto",
    budget: Mapping | None = None,
    precision: str = DEFAULT_PRECISION,
) -> list[TrainConfig]:
    """Every config ``reproduce(name)`` would run, validated (bad input fails here, early)."""
    ctx = experiment_context(name, quick=quick, device=device, budget=budget, precision=precision)
    return [c for part in get_experiment(name).parts for c in part.configs(ctx)]


def reproduce(
    name: str,
    store=None,
    *,
    quick: bool = False,
    data_dir: str | None = None,
    device: str = "auto",
    echo: Callable[[str], None] = progress,
    budget: Mapping | None = None,
    datasets: Mapping | None = None,
    runner=None,
    precision: str = DEFAULT_PRECISION,
    epoch_lines: bool = False,
) -> Reproduction:
    """Run (or read back from the store) every part of a named experiment and conclude.
    ``budget`` (``epochs``, ``train_size``) cuts every run, for a machine that cannot afford the
    full protocol; the result records it so that tables are labelled. With ``runner`` (a
    `depthlab.sweep.TrialRunner` recording into ``store``) each part's runs go to its
    executor all at once: worker processes, fused lr groups, Ray. ``precision`` (one of
    `depthlab.defaults.PRECISIONS`) applies to every run; ``epoch_lines``: with ``runner``, each run's epoch lines as it is in."""
    experiment = get_experiment(name)
    plan(name, quick=quick, device=device, budget=budget, precision=precision)
    ctx = experiment_context(
        name,
        store,
        quick=quick,
        data_dir=data_dir,
        device=device,
        echo=echo,
        budget=budget,
        precision=precision,
    )
    ctx.datasets.update(
        datasets or {}
    )  # already loaded by the caller (the CLI loads before opening the store)
    ctx.runner, ctx.epoch_lines = runner, epoch_lines
    started = time.perf_counter()
    parts = {}
    for part in experiment.parts:
        parts[part.label] = part.run(ctx)
    return Reproduction(
        name,
        experiment.question,
        quick,
        parts,
        experiment.conclude(parts),
        time.perf_counter() - started,
        check_budget(budget),
    )
