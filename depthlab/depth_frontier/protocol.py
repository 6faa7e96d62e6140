"""The frontier protocol: `FrontierConfig` (budget, lr grid, criterion, depths) and its flags' parsers
(over the one grid parser, `depthlab.grids.parse_grid`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

from ..data.registry import check_dataset_name
from ..engine.config import BOUNDS, MAX_LR, MAX_SEEDS, OPTIMIZERS, TrainConfig
from ..engine.device import DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS
from ..engine.memory import MAX_DEPTH
from ..errors import ConfigError
from ..grids import GRID_GRAMMAR, parse_grid
from .points import OptimizerLr, optimizer_of
from .seeds import SeedPolicy

CRITERIA = ("either", "test", "train")


DEFAULT_LRS = tuple(round(10 ** (e / 2), 6) for e in range(-6, 1))  # 0.001, 0.003162, ... 1.0


# Adam and AdamW take steps of about lr per weight whatever the gradient's scale, so their working
# lrs sit below SGD's (1.5 decades at depth 6, and lower with depth: docs/FRONTIER.md): the grid
# spans 1e-5..1e-2 in half decades, like SGD's 1e-3..1.
ADAPTIVE_LRS = tuple(round(10 ** (e / 2), 8) for e in range(-10, -3))  # 1e-05, 3.162e-05, ... 0.01


# Each optimizer's grid (`FrontierConfig.lrs`), and the quick protocol's: the top three decades.
DEFAULT_GRIDS = {"sgd": DEFAULT_LRS, "adam": ADAPTIVE_LRS, "adamw": ADAPTIVE_LRS}
QUICK_GRIDS = {name: grid[2::2] for name, grid in DEFAULT_GRIDS.items()}  # sgd: 0.01, 0.1, 1


BISECTIONS = ("cost", "midpoint")
RECHECK_LRS = ("neighbours", "winner")


AUTO_SEEDS = "auto"


def parse_seeds(text) -> int | str:
    """``--seeds``: a positive integer or ``auto`` (validated by `FrontierConfig.validate`)."""
    if isinstance(text, int) or text is None:
        return 1 if text is None else text
    if text.strip().lower() == AUTO_SEEDS:
        return AUTO_SEEDS
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--seeds must be a positive integer or {AUTO_SEEDS}, got {text!r}") from None


PLATEAU_OFF, PLATEAU_AUTO = "off", "auto"
DEFAULT_PLATEAU_STOP = (2.0, 0.85)  # validated on the carried full frontier (`criterion.PlateauStop`)


def plateau_text(rule: tuple[float, float] | None) -> str:
    """A plateau rule as ``--plateau-stop`` writes it: ``2:0.85`` or ``off``."""
    return PLATEAU_OFF if rule is None else ":".join(f"{v:g}" for v in rule)


def parse_plateau_stop(text, threshold: float) -> tuple[float, float] | None:
    """``--plateau-stop``: ``EPOCH:ERROR`` (stop a trial at an evaluation point at or after epoch
    EPOCH whose criterion error is still at least ERROR), ``off``, or ``auto``: the default rule
    (`DEFAULT_PLATEAU_STOP`) where the criterion's ``threshold`` is below its ERROR, else off (a
    threshold that high leaves no "still near chance" to see). A tuple or list is taken as it is;
    `FrontierConfig.validate` checks the values."""
    if text is None or isinstance(text, (tuple, list)):
        return tuple(text) if text is not None else None
    word = text.strip().lower() if isinstance(text, str) else None
    if word == PLATEAU_AUTO:
        return (
            DEFAULT_PLATEAU_STOP
            if isinstance(threshold, (int, float)) and threshold < DEFAULT_PLATEAU_STOP[1]
            else None
        )
    if word == PLATEAU_OFF:
        return None
    parts = text.split(":") if word is not None else []
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(
            f"--plateau-stop must be EPOCH:ERROR (e.g. 2:0.85), {PLATEAU_AUTO} or {PLATEAU_OFF}, got {text!r}"
        ) from None


@dataclass(frozen=True)
class FrontierConfig:
    """The frontier protocol. Defaults are the classic one (SPEC 4): MNIST, batch 256, SGD with
    momentum 0.9, trainable when the error drops below 20% within 3 epochs, lr grid 1e-3..1."""

    max_depth: int = field(default=300, metadata={"help": "Deepest depth the search tries."})
    depths: tuple[int, ...] | None = field(
        default=None,
        metadata={  # exactly these depths instead of searching
            "help": "Try exactly these depths instead of searching (for the built-in families, multiples of the depth "
            "step)."
        },
    )
    depth_step: int | None = field(
        default=None,
        metadata={  # None: each model's own (`step_for`)
            "help": "The search probes multiples of this depth, from 1 to the deepest depth (default: 3 for the built-in "
            "families, whose --max-depth and --depths are multiples of it; for --model-file, build.depth_step, "
            "else 1: which depths it takes is the factory's business)."
        },
    )
    optimizers: tuple[str, ...] = field(
        default=("sgd",),
        metadata={
            "help": f"Optimizers to search (comma-separated: {', '.join(OPTIMIZERS)}): a depth trains when some "
            "optimizer trains it at some lr of its own grid."
        },
    )
    lrs: tuple[float, ...] | Mapping[str, tuple[float, ...]] | None = field(
        default=None,
        metadata={  # None: defaults
            "help": f"Learning-rate grid: {GRID_GRAMMAR}; per optimizer OPTIMIZER=GRID (repeat the flag: --lrs "
            "sgd=0.01,0.1 --lrs adam=log:1e-5:1e-2:7; a plain grid needs a single optimizer; an optimizer "
            "not named keeps its default grid)."
        },
    )
    epochs: int = field(default=3, metadata={"help": "Budget per trial."})
    threshold: float = field(default=0.2, metadata={"help": "Trainable when the error drops below this."})
    criterion: str = field(
        default="either", metadata={"help": "Which error must drop below the threshold.", "choices": CRITERIA}
    )
    seeds: int | str = field(
        default=1,
        metadata={  # or "auto": `depthlab.depth_frontier.seeds`
            "help": "Seeds per (depth, lr); a majority must train. auto: search with one seed, then re-check the "
            "boundary with 3-5 seeds and report the frontier with its band."
        },
    )
    seed: int = 0  # seeds used: seed, seed + 1, ..., seed + seeds - 1
    # seeds auto re-checks the deciding lr and its grid neighbours ("neighbours"), or, at a third
    # of the cost, the deciding lr alone ("winner"): a band that says how the seed moves the
    # answer at the lr that decided it, not whether a neighbouring lr would have decided it too.
    recheck_lrs: str = "neighbours"
    train_size: int | None = None
    eval_size: int | None = field(
        default=2000,
        metadata={  # None: all 10,000
            "help": "Test images per evaluation, or all."
        },
    )
    evals_per_epoch: int = field(default=5, metadata={"help": "Evaluation points per epoch."})
    batch_size: int = 256
    momentum: float = 0.9
    dataset: str = "mnist"
    device: str = "auto"
    precision: str = field(
        default=DEFAULT_PRECISION,
        metadata={  # recorded with every trial
            "help": PRECISION_HELP,
            "choices": PRECISIONS,
        },
    )
    model_args: dict = field(default_factory=dict)  # axis overrides for every model (not depth)
    bisection: str = field(
        default="cost",
        metadata={  # cost-weighted split (`split_point`) or the plain midpoint
            "help": "How the search splits between a trainable and a failing depth: where the expected cost is "
            "least, or the midpoint (continue a store with the one that filled it).",
            "choices": BISECTIONS,
        },
    )
    plateau_stop: tuple[float, float] | str | None = field(
        default=PLATEAU_AUTO,
        metadata={  # None: off
            "help": "Stop a trial at an evaluation point at or after epoch EPOCH whose criterion error is still at "
            "least ERROR: it does not train. EPOCH:ERROR, off, or auto: 2:0.85 where the threshold is below "
            "0.85, else off (it changes no verdict of the stored full frontier and saves a fifth of its trial "
            "time; it never fires within 1 epoch, --quick)."
        },
    )

    def __post_init__(self) -> None:
        check_optimizers(self.optimizers)
        object.__setattr__(self, "optimizers", tuple(self.optimizers))
        object.__setattr__(self, "lrs", resolve_grids(self.lrs, self.optimizers, DEFAULT_GRIDS))
        object.__setattr__(self, "plateau_stop", parse_plateau_stop(self.plateau_stop, self.threshold))
        self.validate()

    @classmethod
    def quick(cls, **changes) -> FrontierConfig:
        """The quick protocol of `depthlab frontier --quick`, the README's main job, and of
        `depthlab reproduce depth-frontier --quick`: all eight presets in minutes on 2 CPU cores
        (10k training images, 1 epoch, lrs 0.01,0.1,1 for SGD (1e-4,1e-3,1e-2 for Adam/AdamW),
        max depth 9, 4 evaluations of 1,000 test images per epoch). ``changes`` replace any of
        its fields; an optimizer without a grid of its own gets its quick grid."""
        quick = dict(train_size=10000, epochs=1, max_depth=9, eval_size=1000, evals_per_epoch=4)
        optimizers = changes.get("optimizers", ("sgd",))
        check_optimizers(optimizers)
        lrs = resolve_grids(changes.get("lrs"), tuple(optimizers), QUICK_GRIDS)
        return cls(**{**quick, **changes, "lrs": lrs})

    def changes(self) -> dict:
        """The fields that differ from the classic protocol (the defaults)."""
        default = type(self)()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }

    def validate(self) -> None:
        if not isinstance(self.max_depth, int) or isinstance(self.max_depth, bool):
            raise ConfigError(f"--max-depth must be an integer, got {self.max_depth!r}")
        if self.max_depth > MAX_DEPTH or any(isinstance(d, int) and d > MAX_DEPTH for d in self.depths or ()):
            raise ConfigError(f"depths must be at most {MAX_DEPTH:,}")
        if isinstance(self.evals_per_epoch, int) and self.evals_per_epoch > BOUNDS["evals_per_epoch"]:
            raise ConfigError(
                f"--evals-per-epoch must be at most {BOUNDS['evals_per_epoch']:,}, "
                f"got {self.evals_per_epoch:,}"
            )
        if self.depths is not None:
            if not self.depths:
                raise ConfigError("--depths is empty")
            for d in self.depths:
                if not isinstance(d, int) or isinstance(d, bool):
                    raise ConfigError(f"depths must be integers, got {d!r}")
        step, deepest = self.depth_step, self.deepest()
        if step is not None and (
            not isinstance(step, int) or isinstance(step, bool) or not 1 <= step <= deepest
        ):
            raise ConfigError(
                f"--depth-step must be an integer from 1 to the deepest depth ({deepest}), got {step}"
            )
        check_optimizers(self.optimizers)
        for name, grid in self._given_grids().items():
            check_grid(grid, "" if len(self.optimizers) == 1 else f"{name}'s ")
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold < 1):
            raise ConfigError(f"--threshold must be in (0, 1), got {self.threshold}")
        if self.criterion not in CRITERIA:
            raise ConfigError(f"unknown criterion {self.criterion!r}; choose one of: {', '.join(CRITERIA)}")
        if self.seeds != AUTO_SEEDS and (
            not isinstance(self.seeds, int) or isinstance(self.seeds, bool) or self.seeds < 1
        ):
            raise ConfigError(f"--seeds must be a positive integer or {AUTO_SEEDS}, got {self.seeds}")
        if self.seeds != AUTO_SEEDS and self.seeds > MAX_SEEDS:
            raise ConfigError(f"--seeds must be at most {MAX_SEEDS:,}, got {self.seeds:,}")
        if "depth" in self.model_args:
            raise ConfigError("the frontier searches the depth: use --depths or --max-depth, not --depth")
        if self.recheck_lrs not in RECHECK_LRS:
            raise ConfigError(
                f"unknown recheck_lrs {self.recheck_lrs!r}; choose one of: {', '.join(RECHECK_LRS)}"
            )
        if self.bisection not in BISECTIONS:
            raise ConfigError(f"unknown bisection {self.bisection!r}; choose one of: {', '.join(BISECTIONS)}")
        check_dataset_name(self.dataset)
        self._check_plateau_stop()

    def _check_plateau_stop(self) -> None:
        rule = self.plateau_stop
        if rule is None:
            return
        shape = f"--plateau-stop must be EPOCH:ERROR (e.g. 2:0.85), {PLATEAU_AUTO} or {PLATEAU_OFF}"
        if not (
            isinstance(rule, tuple)
            and len(rule) == 2
            and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in rule
            )
        ):
            raise ConfigError(f"{shape}, got {rule!r}")
        epoch, error = rule
        if epoch <= 0:
            raise ConfigError(f"--plateau-stop's EPOCH must be positive, got {epoch:g}")
        if not self.threshold < error <= 1:
            raise ConfigError(
                f"--plateau-stop's ERROR must be above the threshold ({self.threshold:g}) and at most 1, "
                f"got {error:g}"
            )

    def validate_models(self, models: Sequence[str]) -> None:
        """Every model must take the axis overrides and run on the dataset (checked at its smallest
        depth). For a built-in family the depths are multiples of the step in use (`step_for`);
        for a model factory any positive depth, which ones it takes being its own business."""
        if not models:
            raise ConfigError("no models given")
        for model in models:
            step, preset = self.step_for(model), isinstance(model, str)
            if self.max_depth < step:
                raise ConfigError(f"--max-depth must be at least {step}, got {self.max_depth}")
            if preset and self.max_depth % step:
                raise ConfigError(f"--max-depth must be a multiple of {step}, got {self.max_depth}")
            for d in self.depths or ():
                if d <= 0 or (preset and d % step):
                    raise ConfigError(
                        f"depths must be positive{f' multiples of {step}' if preset else ''}, got {d}"
                    )
            for lr in {
                optimizer_of(p): p for p in reversed(self.points())
            }.values():  # each optimizer's first lr
                self.trial_config(model, min(self.depths or (step,)), lr, self.seed).validate()

    def step_for(self, model) -> int:
        """The depths a model's search probes are multiples of this: ``depth_step`` when set, else
        3 for a built-in family and a factory's own ``depth_step`` (1 unless it sets one)."""
        return self.depth_step or getattr(model, "depth_step", 3)

    def trial_config(self, model: str, depth: int, lr: float, seed: int) -> TrainConfig:
        """The `TrainConfig` of one trial (its hash is the trial's key in the store). ``lr`` is a
        search point: a plain lr is the first optimizer's, an `OptimizerLr` names its own."""
        return TrainConfig(
            model=model,
            model_args={**self.model_args, "depth": depth},
            dataset=self.dataset,
            train_size=self.train_size,
            test_size=self.eval_size,
            eval_split="test",
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=optimizer_of(lr, self.optimizers[0]),
            lr=float(lr),
            momentum=self.momentum,
            evals_per_epoch=self.evals_per_epoch,
            seed=seed,
            device=self.device,
            precision=self.precision,
        )

    def seed_policy(self) -> SeedPolicy:
        """How ``seeds="auto"`` backs the boundary: from ``seed`` on, at the lrs ``recheck_lrs`` names."""
        return SeedPolicy(first_seed=self.seed, neighbours=self.recheck_lrs == "neighbours")

    @property
    def auto_seeds(self) -> bool:
        """``seeds="auto"``: one seed for the search, then more at the boundary (`frontier.seeds`)."""
        return self.seeds == AUTO_SEEDS

    def seed_count(self) -> int:
        """Seeds per (depth, lr) in the search itself (1 with ``seeds="auto"``)."""
        return 1 if self.auto_seeds else self.seeds

    def grids(self) -> dict[str, tuple[float, ...]]:
        """Each optimizer's lr grid, sorted, in the order of ``optimizers``."""
        return {name: tuple(sorted(float(lr) for lr in grid)) for name, grid in self._given_grids().items()}

    def _given_grids(self) -> dict:
        """Each optimizer's grid as given (`validate` checks these before `grids` sorts them)."""
        given = self.lrs if isinstance(self.lrs, Mapping) else {self.optimizers[0]: self.lrs}
        return {name: given[name] for name in self.optimizers}

    def points(self) -> tuple[float, ...]:
        """Every (optimizer, lr) the search may try, optimizer by optimizer, each grid sorted:
        `OptimizerLr` values, except for SGD alone (the classic protocol), whose search keeps
        plain lrs and so the cells and outputs it had before the optimizer became an axis."""
        if not self.names_optimizer:
            return self.grids()["sgd"]
        return tuple(OptimizerLr(name, lr) for name, grid in self.grids().items() for lr in grid)

    @property
    def names_optimizer(self) -> bool:
        """The search's points, answers and tables name their optimizer: anything but SGD alone."""
        return self.optimizers != ("sgd",)

    def sorted_lrs(self) -> tuple[float, ...]:
        """The search points (`points`)."""
        return self.points()

    def widest_grid(self) -> int:
        """The most lrs one optimizer has: how many trials of one depth can fuse at most."""
        return max(len(grid) for grid in self.grids().values())

    def grid_text(self) -> str:
        """The grids as a plan or a note says them: ``0.01, 0.1`` or ``sgd 0.01, 0.1; adam 0.001``."""
        grids = self.grids()
        text = {name: ", ".join(f"{lr:g}" for lr in grid) for name, grid in grids.items()}
        return text[self.optimizers[0]] if len(grids) == 1 else "; ".join(f"{n} {t}" for n, t in text.items())

    def deepest(self) -> int:
        """The deepest depth the protocol may try."""
        return max(self.depths) if self.depths is not None else self.max_depth


def parse_lrs(text: str, what: str = "--lrs") -> tuple[float, ...]:
    """A learning-rate grid (`parse_grid`): ``0.01,0.1,1`` or ``log:0.001:1:7``."""
    return parse_grid(text, what, "learning rate")


def check_optimizers(optimizers) -> None:
    """``optimizers``: a non-empty tuple of distinct names from `OPTIMIZERS` (one `ConfigError` line)."""
    if isinstance(optimizers, str) or not isinstance(optimizers, (tuple, list)) or not optimizers:
        raise ConfigError(
            f"optimizers must be a non-empty list of {', '.join(OPTIMIZERS)}, got {optimizers!r}"
        )
    for name in optimizers:
        if name not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {name!r}; choose from: {', '.join(OPTIMIZERS)}")
    if len(set(optimizers)) != len(optimizers):
        raise ConfigError(f"--optimizers has duplicates: {','.join(optimizers)}")


def check_grid(grid, whose: str = "") -> None:
    """One optimizer's lr grid: non-empty, positive finite values, no duplicates."""
    if not isinstance(grid, (tuple, list)):
        raise ConfigError(f"the {whose}learning-rate grid must be a list of lrs, got {grid!r}")
    if not grid:
        raise ConfigError(f"the {whose}learning-rate grid is empty")
    for lr in grid:
        if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"learning rates must be positive, got {lr}")
        if lr > MAX_LR:
            raise ConfigError(f"learning rates must be at most {MAX_LR:g}, got {lr:g}")
    if len(set(grid)) != len(grid):
        raise ConfigError(f"the {whose}learning-rate grid has duplicates")


def resolve_grids(lrs, optimizers: tuple[str, ...], defaults: Mapping[str, tuple[float, ...]]):
    """``FrontierConfig.lrs`` as stored: one optimizer's grid as a plain tuple (as before the
    optimizer axis), several as ``{optimizer: grid}`` in the order of ``optimizers``. ``lrs`` is
    None (each optimizer's default), a plain grid (a single optimizer only: with several it would
    be ambiguous which one it means), or a mapping naming some of the optimizers (the others take
    their default)."""
    if lrs is None:
        lrs = {}
    if not isinstance(lrs, Mapping):
        if len(optimizers) > 1:
            raise ConfigError(
                f"with several optimizers name each grid, e.g. --lrs {optimizers[0]}=0.01,0.1 "
                f"(or lrs={{'{optimizers[0]}': (0.01, 0.1)}})"
            )
        return tuple(lrs) if isinstance(lrs, (tuple, list)) else lrs
    for name in lrs:
        if name not in optimizers:
            raise ConfigError(
                f"--lrs names {name!r}, which is not among the optimizers searched ({','.join(optimizers)})"
            )
    grids = {
        name: tuple(lrs[name]) if isinstance(lrs.get(name), (tuple, list)) else lrs.get(name, defaults[name])
        for name in optimizers
    }
    return grids[optimizers[0]] if len(optimizers) == 1 else grids


def parse_optimizers(text: str) -> tuple[str, ...]:
    """``--optimizers sgd,adam``: the names, checked (`check_optimizers`)."""
    names = tuple(part.strip().lower() for part in (text or "").split(",") if part.strip())
    check_optimizers(names)
    return names


def parse_optimizer_lrs(values: Sequence[str]):
    """The ``--lrs`` flags: one plain grid (``0.01,0.1``, ``log:0.001:1:7``: the single
    optimizer's) or ``OPTIMIZER=GRID`` per optimizer (``sgd=0.01,0.1``, ``adam=log:1e-5:1e-2:7``;
    the flag repeated, the optimizers not named keep their default grid). Returns what
    `FrontierConfig.lrs` takes: None (no flag), a tuple or ``{optimizer: grid}``."""
    values = [values] if isinstance(values, str) else list(values or ())
    if not values:
        return None
    named: dict[str, tuple[float, ...]] = {}
    for text in values:
        name, sep, grid = text.partition("=")
        if not sep:
            if len(values) > 1:
                raise ConfigError(
                    f"bad --lrs {text!r}: with several --lrs flags each names its optimizer, "
                    "e.g. --lrs sgd=0.01,0.1 --lrs adam=log:1e-5:1e-2:7"
                )
            return parse_lrs(text)
        name = name.strip().lower()
        if name not in OPTIMIZERS:
            raise ConfigError(
                f"bad --lrs {text!r}: unknown optimizer {name!r}; choose from: {', '.join(OPTIMIZERS)}"
            )
        if name in named:
            raise ConfigError(f"--lrs gives {name}'s grid twice")
        named[name] = parse_lrs(grid, f"--lrs for {name}")
    return named


def parse_depths(text: str) -> tuple[int, ...]:
    """``--depths``: whole numbers (`parse_grid`), sorted, each once. Which depths a model takes
    (positive multiples of its step) is `FrontierConfig.validate_models`' check, which names the step."""
    return tuple(sorted(set(parse_grid(text, "--depths", "depth", whole=True, positive=False))))
