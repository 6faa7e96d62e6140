"""Experiment parts: lr sweeps (`Sweep`), toggle ablations over folds or seeds (`Ablation`) and the
depth frontier as a part (`Frontier`)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..depth_frontier.points import optimizer_of, plain_lr
from ..depth_frontier.protocol import FrontierConfig
from ..depth_frontier.search import find_frontiers
from ..engine.config import TrainConfig
from ..engine.extras import _has_gates
from ..engine.schedule import parse_schedule
from ..errors import ConfigError
from ..records.record import RunResult, RunStatus
from .configs import make_config, parse_lrs, toggle_override
from .parts import Column, Context, Curve, PartResult, Plot, progress


def _error_plots(
    title: str, curves_train: list[Curve], curves_eval: list[Curve], eval_name: str
) -> list[Plot]:
    return [
        Plot("train-error", f"{title}: train error", "train error", curves_train, log_y=True, percent=True),
        Plot(
            f"{eval_name}-error",
            f"{title}: {eval_name} error",
            f"{eval_name} error",
            curves_eval,
            log_y=True,
            percent=True,
        ),
    ]


@dataclass(frozen=True)
class Sweep:
    """One run per (arm, lr). ``base`` is a dict of `TrainConfig` fields; an arm is
    ``(label, overrides)``; without ``lrs`` every arm runs at its own ``lr``."""

    label: str
    base: Mapping
    lrs: tuple[float, ...] = ()
    arms: tuple[tuple[str, Mapping], ...] = ()
    title: str = ""
    quick: Mapping = field(default_factory=dict)
    quick_lrs: tuple[float, ...] | None = None

    def grid(self, ctx: Context) -> list[tuple[str, TrainConfig]]:
        arms = self.arms or (("", {}),)
        lrs = (self.quick_lrs if ctx.quick and self.quick_lrs else self.lrs) or (None,)
        quick = self.quick if ctx.quick else {}
        grid = []
        for (arm, overrides), lr in itertools.product(arms, lrs):
            # order: the arm, its lr, the context's overrides (device, --quick budget), the part's own cut
            config = make_config(
                self.base, overrides, {"lr": lr} if lr is not None else {}, ctx.overrides, quick
            )
            grid.append((arm, config))
        if len(lrs) > 1 and parse_schedule(grid[0][1].schedule).kind == "piecewise":
            raise ConfigError(
                f"a piecewise schedule ({grid[0][1].schedule}) sets absolute learning rates: "
                "sweeping lrs would train the same run several times; use one lr or multistep/cosine"
            )
        return grid

    def configs(self, ctx: Context) -> list[TrainConfig]:
        return [c for _, c in self.grid(ctx)]

    def run(self, ctx: Context) -> PartResult:
        rows, runs, train_curves, eval_curves = [], [], [], []
        grid = self.grid(ctx)
        eval_name = "val" if grid[0][1].eval_split == "val" else "test"
        names = [
            " ".join(p for p in (arm, f"lr={config.lr:g}" if self.lrs else "") if p) or config.model
            for arm, config in grid
        ]
        results = ctx.run_many(
            [
                (
                    config,
                    f"{self.label}: {name}",
                    "gates" if _has_gates(config, ctx.dataset(config.dataset)) else None,
                )
                for (_, config), name in zip(grid, names)
            ]
        )
        for (arm, config), name, result in zip(grid, names, results):
            epochs = result.epochs
            row = {
                "arm": arm,
                "lr": config.lr,
                "status": result.status,
                "train_error": epochs[-1].train_error if epochs else None,
                "test_error": result.test_error,
                "best_test_error": min((e.test_error for e in epochs), default=None),
                "epochs": len(epochs),
                "seconds": round(result.seconds, 3),
                "label": name,
                "schedule": config.schedule,
                "batch_size": config.batch_size,
                "momentum": config.momentum,
            }
            row.update(result.extras or {})
            rows.append(row)
            runs.append({"label": name, "config": config.canonical(), "result": result})
            xs = [e.epoch for e in epochs]  # numbered as the classic lines and the JSON number them (from 0)
            train_curves.append(Curve(name, xs, [e.train_error for e in epochs]))
            eval_curves.append(Curve(name, xs, [e.test_error for e in epochs]))
        columns = ([Column("arm", "arm")] if self.arms else []) + [
            Column("lr", "lr", "sci"),
            Column("status", "status"),
            Column("train_error", "final train err", "pct"),
            Column("test_error", f"final {eval_name} err", "pct"),
            Column("best_test_error", f"best {eval_name} err", "pct"),
            Column("epochs", "epochs", "int"),
            Column("seconds", "seconds", "sec"),
        ]
        if any("gate_mean" in r for r in rows):
            columns += [
                Column("gate_mean", "gate mean", "float"),
                Column("gate_min", "gate min", "float"),
                Column("gate_max", "gate max", "float"),
            ]
        title = self.title or self.label
        return PartResult(
            self.label, title, columns, rows, _error_plots(title, train_curves, eval_curves, eval_name), runs
        )


def lr_sweep(
    base: TrainConfig | Mapping,
    lrs: Sequence[float],
    store=None,
    *,
    data_dir: str | None = None,
    echo: Callable[[str], None] = progress,
    label: str = "lr-sweep",
    runner=None,
) -> PartResult:
    """One run per learning rate (fixed batch size, momentum, schedule): table of final errors,
    train and test error vs epoch (plots). With ``runner`` (a `depthlab.sweep.TrialRunner`)
    the runs go to its executor at once: worker processes, a fused lr group, Ray."""
    base = dataclasses.asdict(base) if isinstance(base, TrainConfig) else dict(base)
    sweep = Sweep(label, base, parse_lrs(lrs), title=f"{base['model']} lr sweep")
    ctx = Context(store=store, data_dir=data_dir, echo=echo, experiment=label, runner=runner)
    sweep.configs(ctx)  # validate everything before the first run
    return sweep.run(ctx)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std().item() if len(values) > 1 else 0.0)


def _mean_curve(label: str, series: list[list[float]]) -> Curve:
    length = max((len(s) for s in series), default=0)
    means, stds = [], []
    for i in range(length):
        m, s = _mean_std([x[i] for x in series if i < len(x) and x[i] is not None and math.isfinite(x[i])])
        means.append(m if m is not None else math.nan)
        stds.append(s if s is not None else 0.0)
    return Curve(label, list(range(length)), means, stds)  # epochs numbered from 0, as everywhere


@dataclass(frozen=True)
class Ablation:
    """Every on/off combination of ``toggles`` (or the explicit ``arms``) over ``folds`` K-fold
    splits (train on K-1 folds, validate on one: K = 3 gives the 2/3-1/3 protocol) or ``seeds``
    seeds on one fixed 2/3-1/3 split. Reports mean +- std of train/val/test error."""

    label: str
    base: Mapping
    toggles: tuple[str, ...] = ()
    arms: tuple[tuple[str, Mapping], ...] = ()
    folds: int | None = 3
    seeds: int | None = None
    title: str = ""
    quick: Mapping = field(default_factory=dict)
    quick_repeats: int | None = None

    def validate(self) -> None:
        if self.folds is not None and self.seeds is not None:
            raise ConfigError("choose either folds or seeds, not both")
        if self.folds is None and self.seeds is None:
            raise ConfigError("an ablation needs folds (K >= 2) or seeds (N >= 1)")
        if self.folds is not None and (not isinstance(self.folds, int) or self.folds < 2):
            raise ConfigError(f"fold count must be at least 2, got {self.folds}")
        if self.seeds is not None and (not isinstance(self.seeds, int) or self.seeds < 1):
            raise ConfigError(f"seed count must be at least 1, got {self.seeds}")
        if len(set(self.toggles)) != len(self.toggles):
            raise ConfigError("a toggle is listed twice")
        if not self.toggles and not self.arms:
            raise ConfigError("an ablation needs at least one toggle (or explicit arms)")

    def arm_overrides(self) -> list[tuple[str, dict]]:
        arms = list(self.arms)
        if self.toggles:
            model = self.base["model"]
            for states in itertools.product((False, True), repeat=len(self.toggles)):
                args: dict = {}
                for name, on in zip(self.toggles, states):
                    args.update(toggle_override(model, name, on))
                label = " ".join(f"{name}={'on' if on else 'off'}" for name, on in zip(self.toggles, states))
                arms.append((label, {"model_args": args}))
        return arms

    def repeats(self, ctx: Context) -> list[dict]:
        if self.folds is not None:
            k = self.folds
            return [{"eval_split": "val", "folds": k, "fold": i} for i in range(k)]
        n = self.quick_repeats if ctx.quick and self.quick_repeats else self.seeds
        base_seed = ctx.overrides.get("seed", self.base.get("seed", 0))
        return [{"eval_split": "val", "val_fraction": 1 / 3, "seed": base_seed + i} for i in range(n)]

    def grid(self, ctx: Context) -> list[tuple[str, int, TrainConfig]]:
        self.validate()
        quick = self.quick if ctx.quick else {}
        grid = []
        for arm, overrides in self.arm_overrides():
            for i, repeat in enumerate(self.repeats(ctx)):
                # the repeat's seed must win over a context-wide seed override
                config = make_config(self.base, overrides, ctx.overrides, quick, repeat)
                grid.append((arm, i, config))
        return grid

    def configs(self, ctx: Context) -> list[TrainConfig]:
        return [c for _, _, c in self.grid(ctx)]

    def run(self, ctx: Context) -> PartResult:
        grid = self.grid(ctx)
        by_arm: dict[str, list[tuple[TrainConfig, RunResult]]] = {}
        what = "fold" if self.folds is not None else "seed"
        results = ctx.run_many(
            [(config, f"{self.label}: {arm} {what} {i}", "splits") for arm, i, config in grid]
        )
        for (arm, _, config), result in zip(grid, results):
            by_arm.setdefault(arm, []).append((config, result))
        rows, runs, loss_curves, val_curves = [], [], [], []
        for arm, items in by_arm.items():
            done = [(c, r) for c, r in items if r.status == RunStatus.DONE]
            row: dict = {"arm": arm, "fits": f"{len(done)}/{len(items)}"}
            for key, values in (
                ("train_error", [r.extras["fit_error"] for _, r in done if r.extras]),
                ("val_error", [r.extras["eval_error"] for _, r in done if r.extras]),
                ("test_error", [r.test_error for _, r in done if r.test_error is not None]),
                ("seconds", [round(r.seconds, 3) for _, r in done]),
                ("epochs", [len(r.epochs) for _, r in done]),
            ):
                row[key], row[key + "_std"] = _mean_std(values)
            rows.append(row)
            runs += [{"label": arm, "config": c.canonical(), "result": r} for c, r in items]
            loss_curves.append(_mean_curve(arm, [[e.loss for e in r.epochs] for _, r in done]))
            val_curves.append(_mean_curve(arm, [[e.test_error for e in r.epochs] for _, r in done]))
        columns = [
            Column("arm", "arm"),
            Column("train_error", "train err %", "pct_pm"),
            Column("val_error", "val err %", "pct_pm"),
            Column("test_error", "test err %", "pct_pm"),
            Column("seconds", "s/fit", "sec"),
            Column("epochs", "epochs", "float"),
            Column("fits", "fits"),
        ]
        title = self.title or self.label
        n = len(self.repeats(ctx))
        mean_over = f"mean ± std over {n} {what}s"
        plots = [
            Plot("loss", f"{title}: train loss ({mean_over})", "train loss", loss_curves, log_y=True),
            Plot(
                "val-error",
                f"{title}: validation error ({mean_over})",
                "validation error",
                val_curves,
                log_y=True,
                percent=True,
            ),
        ]
        notes = [
            f"{mean_over}; errors of the final (restored) network in eval mode: train on its fit split, val on "
            "its validation split, test once on the test set"
        ]
        return PartResult(self.label, title, columns, rows, plots, runs, notes)


def ablate(
    base: TrainConfig | Mapping,
    toggles: Sequence[str],
    store=None,
    *,
    folds: int | None = None,
    seeds: int | None = None,
    data_dir: str | None = None,
    echo: Callable[[str], None] = progress,
    label: str = "ablate",
    runner=None,
) -> PartResult:
    """Every on/off combination of ``toggles`` over K folds (default 3) or N seeds (all fits at
    once on the executor of ``runner``, a `depthlab.sweep.TrialRunner`, when given)."""
    base = dataclasses.asdict(base) if isinstance(base, TrainConfig) else dict(base)
    if folds is None and seeds is None:
        folds = 3
    part = Ablation(label, base, tuple(toggles), folds=folds, seeds=seeds, title=f"{base['model']} ablation")
    ctx = Context(store=store, data_dir=data_dir, echo=echo, experiment=label, runner=runner)
    part.configs(ctx)
    return part.run(ctx)


@dataclass(frozen=True)
class Frontier:
    """The depth frontier of each model (SPEC 4) found by `depthlab.depth_frontier.find_frontiers`.
    ``config`` and ``quick`` hold `FrontierConfig` fields; the context's device, seed,
    train_size, epochs and precision overrides apply too. ``optimizers`` (a field) makes the
    optimizer an axis of the search; ``lrs`` may map optimizer names to grids, quick's per
    optimizer over config's, and a grid for an optimizer not searched is ignored (an experiment
    declares the grids it may use; the optimizers searched choose among them)."""

    label: str
    models: tuple[str, ...]
    config: Mapping = field(default_factory=dict)
    title: str = ""
    quick: Mapping = field(default_factory=dict)
    claims: Mapping[str, str] = field(default_factory=dict)  # model -> what its paper claims (a column)

    def frontier_config(self, ctx: Context) -> FrontierConfig:
        values = {**self.config, **(self.quick if ctx.quick else {})}
        values["lrs"] = _searched_grids(
            self.config.get("lrs"),
            self.quick.get("lrs") if ctx.quick else None,
            values.get("optimizers", ("sgd",)),
        )
        values.update(
            {
                k: v
                for k, v in ctx.overrides.items()
                if k in ("device", "seed", "train_size", "epochs", "precision")
            }
        )
        known = {f.name for f in dataclasses.fields(FrontierConfig)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown frontier setting(s): {', '.join(sorted(unknown))}")
        config = FrontierConfig(**values)
        config.validate()
        config.validate_models(self.models)
        return config

    def configs(self, ctx: Context) -> list[TrainConfig]:
        """The shallowest trial of each model (the search decides the rest as it goes)."""
        fc = self.frontier_config(ctx)
        return [fc.trial_config(m, min(fc.depths or (3,)), fc.sorted_lrs()[0], fc.seed) for m in self.models]

    def run(self, ctx: Context) -> PartResult:
        fc = self.frontier_config(ctx)
        data = ctx.dataset(fc.dataset)
        if ctx.runner is not None:
            ctx.runner.use_dataset(data)
        result = find_frontiers(self.models, fc, ctx.store, data, log=ctx.echo, runner=ctx.runner)
        rows = [self._row(m, fc) for m in result.models]
        curves = []
        for m in result.models:
            pts = [(d, r.error) for d, r in sorted(m.depths.items()) if r.error is not None]
            curves.append(Curve(m.model, [d for d, _ in pts], [e for _, e in pts]))
        title = self.title or self.label
        plot = Plot(
            "error-vs-depth",
            f"{title}: best {fc.criterion} error within {fc.epochs} epoch(s)",
            f"best {fc.criterion} error",
            curves,
            log_y=True,
            percent=True,
            log_x=True,
            xlabel="depth (conv layers)",
            levels=[(fc.threshold, f"threshold {100 * fc.threshold:g}%")],
        )
        notes = [
            f"trainable: {fc.criterion} error < {fc.threshold:g} within {fc.epochs} epoch(s), best lr of "
            f"{fc.grid_text()}; batch {fc.batch_size}, momentum {fc.momentum:g}, max depth {fc.max_depth}, "
            f"train size {fc.train_size or 'all'}"
            + (
                "; seeds auto: the band runs from the deepest depth every seed trained to the deepest "
                "any seed trained"
                if fc.auto_seeds
                else ""
            )
        ]
        return PartResult(self.label, title, self._columns(fc), rows, [plot], [r for r in rows], notes)

    def _row(self, m, fc: FrontierConfig) -> dict:
        """One model's frontier as a row: the answer, the point that won, and at the first failing
        depth the evidence of why it failed (best error over every point, how many trials diverged)."""
        failing = m.depths.get(m.first_failing_depth) if m.first_failing_depth is not None else None
        return {
            "model": m.model,
            "max_depth": m.max_trainable_depth,
            "lr": plain_lr(m.lr),
            **({"optimizer": optimizer_of(m.lr)} if fc.names_optimizer else {}),
            **({"band": m.label} if fc.auto_seeds else {}),
            **({"claim": self.claims.get(m.model)} if self.claims else {}),
            "error": m.error,
            "first_failing": m.first_failing_depth,
            "fraction": m.fraction,
            "trials": m.trials,
            "capped": m.capped,
            "seconds": m.seconds,
            "depth_map": {d: r.trainable for d, r in sorted(m.depths.items())},
            "failing_error": failing.error if failing else None,
            "failing_diverged": sum(t.status == RunStatus.DIVERGED for t in failing.trials)
            if failing
            else None,
            "failing_trials": len(failing.trials) if failing else None,
        }

    def _columns(self, fc: FrontierConfig) -> list[Column]:
        return [
            Column("model", "model"),
            Column("max_depth", "max trainable depth"),
            *([Column("band", "frontier [band]")] if fc.auto_seeds else []),
            *([Column("optimizer", "optimizer")] if fc.names_optimizer else []),
            Column("lr", "lr", "sci"),
            Column("error", f"{fc.criterion} error", "pct"),
            Column("first_failing", "first failing depth"),
            Column("fraction", "fraction", "float"),
            Column("trials", "trials"),
            Column("seconds", "seconds", "sec"),
            *([Column("claim", "the paper's claim")] if self.claims else []),
        ]


def _searched_grids(config_lrs, quick_lrs, optimizers):
    """A `Frontier` part's ``lrs`` for the optimizers it searches: quick's grid over config's
    (per optimizer when both map optimizers to grids), grids of optimizers not searched left out."""
    lrs = quick_lrs if quick_lrs is not None else config_lrs
    if isinstance(config_lrs, Mapping) and isinstance(quick_lrs, Mapping):
        lrs = {**config_lrs, **quick_lrs}
    if isinstance(lrs, Mapping):
        return {name: grid for name, grid in lrs.items() if name in optimizers}
    return lrs
