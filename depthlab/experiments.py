"""Experiments over training runs: learning-rate sweeps, the lr range test, toggle ablations
over K folds or seeds, and ``reproduce``: the classic experiments as a registry of named data.

Python API (the CLI commands ``lr-sweep``, ``lr-find``, ``ablate`` and ``reproduce`` are thin
layers over these)::

    from depthlab import Store, TrainConfig
    from depthlab.experiments import ablate, lr_find, lr_sweep, reproduce

    base = TrainConfig(model="strided", model_args={"stack_depth": 1}, batch_size=64, momentum=0.0, epochs=5)
    with Store("depthlab.db") as store:
        sweep = lr_sweep(base, [0.01, 0.03, 0.1], store)          # a PartResult
        print(sweep.format_table())
        abl = ablate(TrainConfig(model="skipfc", dataset="mnist32", optimizer="adam", lr=1e-3),
                     toggles=["bn", "skip"], folds=3, store=store)
        out = reproduce("lr-momentum", store, quick=True)          # parts + one computed sentence
    found = lr_find(base, min_lr=1e-4, max_lr=10)                  # no store: nothing is recorded
    print(found.suggestion, found.rule)

Every run goes through `depthlab.runner.run_recorded`: a finished configuration is read back
from the store instead of being trained again, so an interrupted experiment resumes where it
stopped and a finished one re-prints its tables instantly.

Registering an experiment (one call)
------------------------------------
An experiment is data: a name, the question it asks, a tuple of *parts*, the budget cut of
``--quick``, and a ``conclude`` function that turns the parts' own numbers into one sentence::

    from depthlab.experiments import Experiment, Sweep, Ablation, register_experiment

    register_experiment(Experiment(
        name="resnet-cifar",
        question="Does a deeper CIFAR ResNet reach a lower test error?",
        parts=(Sweep("depths", base=dict(model="resnet20", dataset="cifar10", epochs=200, lr=0.1,
                                         momentum=0.9, weight_decay=1e-4, batch_size=128,
                                         schedule="multistep:100,150", augment=True),
                     arms=(("resnet20", {}), ("resnet56", {"model": "resnet56"}))),),
        quick=dict(train_size=2000, test_size=1000, epochs=1),
        conclude=lambda parts: f"resnet56 ended at {parts['depths'].row(arm='resnet56')['test_error']:.2%} ...",
    ))

Part kinds (all frozen dataclasses whose configs are plain dicts of `TrainConfig` fields;
``model_args`` dicts are merged, not replaced):

- `Sweep(label, base, lrs=(), arms=())`: one run per (arm, lr); an arm is ``(label, overrides)``.
  Without ``lrs`` each arm runs at its own lr. Table: final train/test error per run; plots: train
  and test error vs epoch, one line per run.
- `Ablation(label, base, toggles=(), arms=(), folds=3 | seeds=N)`: every on/off combination of
  the toggles (or the explicit arms) over K folds (validation = one fold) or N seeds (a fixed 2/3 -
  1/3 split); mean +- std of train/validation/test accuracy and seconds per fit; loss curves.
- `Frontier(label, models, config={FrontierConfig fields}, quick={...})`: the depth frontier of
  each model through `depthlab.search` (max trainable depth, its lr, first failing depth).
- anything else with a ``label`` and a ``run(ctx: Context) -> PartResult`` method (and
  ``configs(ctx) -> list[TrainConfig]`` so bad input is caught before the store is opened).

``conclude(parts)`` receives ``{part label: PartResult}``; ``PartResult.rows`` are dicts of raw
numbers (errors as fractions) and ``PartResult.row(**match)`` finds one. It must compute its
sentence from those numbers: never a canned conclusion.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .data import Batches, Dataset, load_dataset
from .errors import ConfigError
from .models import CLASSIC_PRESETS, create_model, resolve_model
from .report import format_table, pyplot, safe_child, write_csv
from .runner import run_recorded
from .search import QUICK_PROTOCOL, FrontierConfig, find_frontiers
from .search import parse_lrs as search_parse_lrs
from .train import (EpochMetrics, TrainConfig, evaluate, make_optimizer, multi_head_loss, parse_schedule, prepare_splits,
                    resolve_device)

CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


# ---------------------------------------------------------------------------------------------
# Building configs from dicts


def make_config(base: Mapping | TrainConfig, *overrides: Mapping) -> TrainConfig:
    """A validated `TrainConfig` from a base and overrides; ``model_args`` dicts are merged."""
    values = dataclasses.asdict(base) if isinstance(base, TrainConfig) else dict(base)
    values["model_args"] = dict(values.get("model_args") or {})
    for extra in overrides:
        for key, value in extra.items():
            if key not in CONFIG_FIELDS:
                raise ConfigError(f"unknown training setting {key!r}; settings are: {', '.join(CONFIG_FIELDS)}")
            if key == "model_args":
                values["model_args"].update(value)
            else:
                values[key] = value
    unknown = set(values) - set(CONFIG_FIELDS)
    if unknown:
        raise ConfigError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    if "dataset" not in values and "model" in values:
        family, _ = resolve_model(values["model"], **values["model_args"])
        values["dataset"] = family.datasets[0]
    config = TrainConfig(**values)
    config.validate()
    return config


def parse_lrs(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"0.01,0.03,0.1"`` -> (0.01, 0.03, 0.1): the frontier's ``--lrs`` grammar (also
    ``log:LOW:HIGH:COUNT``); every lr positive and finite, none listed twice."""
    lrs = search_parse_lrs(text if isinstance(text, str) else ",".join(str(x) for x in text))
    if len(set(lrs)) != len(lrs):
        raise ConfigError("--lrs lists a learning rate twice")
    return lrs


# ---------------------------------------------------------------------------------------------
# Toggles: named on/off switches of a family's spec


TOGGLES: dict[tuple[str, str], tuple[str, Any, Any]] = {}


def register_toggle(family: str, name: str, key: str, off: Any, on: Any) -> None:
    """``--toggle NAME`` on a model of ``family`` switches spec field ``key`` between off and on."""
    TOGGLES[(family, name)] = (key, off, on)


register_toggle("stages", "bn", "norm", "none", "bn")
register_toggle("stages", "skip", "skip", "none", "post")
register_toggle("strided", "skip", "skip", "none", "res")
register_toggle("skipfc", "bn", "bn", False, True)
register_toggle("skipfc", "skip", "skip", False, True)


def model_toggles(model: str) -> dict[str, tuple[str, Any, Any]]:
    """The toggles a model takes: the registered ones plus every boolean field of its spec."""
    family, _ = resolve_model(model)
    toggles = {f.name: (f.name, False, True) for f in dataclasses.fields(family.spec_cls)
               if f.type in ("bool", bool)}
    toggles.update({name: spec for (fam, name), spec in TOGGLES.items() if fam == family.name})
    return toggles


def toggle_override(model: str, name: str, on: bool) -> dict:
    """The model_args that switch toggle ``name`` on or off for ``model``."""
    toggles = model_toggles(model)
    if name not in toggles:
        choices = ", ".join(sorted(toggles)) or "none"
        raise ConfigError(f"unknown toggle {name!r} for model {model!r}; it takes: {choices}")
    key, off, on_value = toggles[name]
    return {key: on_value if on else off}


# ---------------------------------------------------------------------------------------------
# Results of one part of an experiment


@dataclass
class Column:
    key: str
    header: str
    kind: str = "text"   # text | pct (fraction as %) | pct_pm (mean +- std, as %) | sec (+- std) | float | sci

    def cell(self, row: Mapping) -> Any:
        value = row.get(self.key)
        if value is None:
            return "-"
        if self.kind == "pct":
            return f"{100 * value:.2f}%"
        if self.kind == "pct_pm":
            std = row.get(self.key + "_std")
            return f"{100 * value:.2f} ± {100 * std:.2f}" if std is not None else f"{100 * value:.2f}"
        if self.kind == "float":
            return f"{value:.3g}"
        if self.kind == "sec":
            std = row.get(self.key + "_std")
            return f"{value:.1f} ± {std:.1f}" if std is not None else f"{value:.1f}"
        if self.kind == "sci":
            return f"{value:.3g}"
        return str(value)


@dataclass
class Curve:
    label: str
    epochs: list[float]
    values: list[float]
    std: list[float] | None = None


@dataclass
class Plot:
    name: str          # file stem
    title: str
    ylabel: str
    curves: list[Curve]
    log_y: bool = False
    percent: bool = False
    log_x: bool = False
    xlabel: str = "epoch"
    marks: list[tuple[float, str]] = field(default_factory=list)  # vertical lines (x, label)
    levels: list[tuple[float, str]] = field(default_factory=list)  # horizontal lines (y, label)


@dataclass
class PartResult:
    """A table (rows of raw numbers, columns that format them), plots and the underlying runs."""

    label: str
    title: str
    columns: list[Column]
    rows: list[dict]
    plots: list[Plot] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def format_table(self) -> str:
        return format_table([c.header for c in self.columns], [[c.cell(r) for c in self.columns] for r in self.rows])

    def row(self, **match) -> dict:
        """The one row whose values equal ``match`` (a KeyError names the miss)."""
        found = [r for r in self.rows if all(r.get(k) == v for k, v in match.items())]
        if len(found) != 1:
            raise KeyError(f"{self.label}: {len(found)} rows match {match}")
        return found[0]

    def best(self, key: str = "test_error", **match) -> dict | None:
        """The row with the lowest ``key`` among those matching (rows without a value skipped)."""
        rows = [r for r in self.rows if r.get(key) is not None and all(r.get(k) == v for k, v in match.items())]
        return min(rows, key=lambda r: r[key]) if rows else None

    def write(self, folder: Path, stem: str) -> list[Path]:
        """The table as CSV (raw numbers) and every plot as PNG under ``folder``; returns the paths."""
        keys = []
        for c in self.columns:
            keys += [c.key] + ([c.key + "_std"] if c.kind in ("pct_pm", "sec") and any(
                r.get(c.key + "_std") is not None for r in self.rows) else [])
        paths = [write_csv(safe_child(folder, f"{stem}.csv"), keys, [[r.get(k) for k in keys] for r in self.rows])]
        for plot in self.plots:
            paths.append(draw_plot(plot, safe_child(folder, f"{stem}-{plot.name}.png")))
        return paths

    def to_dict(self) -> dict:
        return {"label": self.label, "title": self.title, "rows": self.rows, "notes": self.notes}


def draw_plot(plot: Plot, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=90)
    scale = 100.0 if plot.percent else 1.0
    for curve in plot.curves:
        ys = [scale * v if v is not None else math.nan for v in curve.values]
        (line,) = ax.plot(curve.epochs, ys, marker="o" if len(ys) < 12 else None, ms=3, label=curve.label)
        if curve.std is not None:
            lo = [y - scale * s for y, s in zip(ys, curve.std)]
            hi = [y + scale * s for y, s in zip(ys, curve.std)]
            ax.fill_between(curve.epochs, lo, hi, color=line.get_color(), alpha=0.15)
    for x, label in plot.marks:
        ax.axvline(x, ls="--", color="grey", lw=1)
        ax.annotate(label, (x, 0.98), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=8, color="grey")
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 3, 10, 60 rather than 3x10^0 on log axes
    if plot.log_y:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "2345" else ""))
    if plot.log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "2358" else ""))
    for y, label in plot.levels:
        ax.axhline(y * scale, ls="--", color="k", lw=1, label=label)
    if plot.xlabel == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(plot.xlabel)
    ax.set_ylabel(plot.ylabel + (" (%)" if plot.percent else ""))
    ax.set_title(plot.title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if plot.curves:
        ax.legend(fontsize=7, ncol=2 if len(plot.curves) > 6 else 1)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# The context a part runs in


@dataclass
class Context:
    """Where runs go (store), what they load (data_dir, device), the budget cut (``overrides``,
    applied to every config, and ``quick``) and where progress lines go (``echo``)."""

    store: Any = None
    data_dir: str | None = None
    overrides: dict = field(default_factory=dict)
    quick: bool = False
    experiment: str | None = None
    echo: Callable[[str], None] = lambda line: None
    on_epoch: Callable[[str, Any], None] | None = None   # (run label, EpochMetrics), e.g. TensorBoard
    datasets: dict = field(default_factory=dict)
    runner: Any = None  # a `depthlab.executors.TrialRunner`: `run_many` runs on its executor, all at once

    def dataset(self, name: str) -> Dataset:
        if name not in self.datasets:
            self.datasets[name] = load_dataset(name, self.data_dir)
        return self.datasets[name]

    def run(self, config: TrainConfig, label: str, extras: Callable | None = None, kind: str = "experiment") -> dict:
        """Train (or read back) one config, echoing the classic per-epoch line with a label."""
        data = self.dataset(config.dataset)
        eval_name = "Val" if config.eval_split == "val" else "Test"

        def on_epoch(m):
            self.echo(f"[{label}] Epoch {m.epoch:03d}/{config.epochs:03d}, Train Error {100 * m.train_error:.2f}% "
                      f"|| {eval_name} Error {100 * m.test_error:.2f}%")
            if self.on_epoch is not None:
                self.on_epoch(label, m)

        result = run_recorded(config, self.store, data, kind=kind, experiment=self.experiment,
                              on_epoch=on_epoch, extras=extras)
        if result.get("reused") or result["status"] != "done":
            self._report(label, result)
        return result

    def run_many(self, items: Sequence[tuple[TrainConfig, str, str | None]]) -> list[dict]:
        """Train (or read back) each ``(config, label, extras name)``: one after another through
        `run` (with its per-epoch lines), or with a ``runner`` all at once on its executor
        (workers, fused lr groups, Ray), one line per run as it is in; results in order."""
        if self.runner is None:
            return [self.run(c, label, extras=extras_for(name, c, self.dataset(c.dataset))) for c, label, name in items]
        from .executors import Trial

        for c, _, _ in items:
            self.runner.use_dataset(self.dataset(c.dataset))

        def arrived(index: int, result: dict) -> None:
            label = items[index][1]
            self._report(label, result)
            if self.on_epoch is not None and not result.get("reused"):
                for e in result.get("epochs", []):
                    self.on_epoch(label, EpochMetrics(**e))

        return self.runner.run([Trial(c, kind="experiment", experiment=self.experiment, extras=name)
                                for c, _, name in items], on_result=arrived)

    def _report(self, label: str, result: dict) -> None:
        final = result.get("test_error")
        tail = f", test error {100 * final:.2f}%" if final is not None else ""
        if result.get("reused"):
            self.echo(f"[{label}] {result['status']} (read from the store{tail})")
        elif result["status"] != "done":
            self.echo(f"[{label}] {result['status']}: {result.get('reason')}")
        else:
            self.echo(f"[{label}] done in {result.get('seconds') or 0:.0f}s, {len(result.get('epochs', []))} "
                      f"epoch(s){tail}")


def _has_gates(config: TrainConfig, data: Dataset) -> bool:
    """Whether the config's network has gates to report (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = create_model(config.model, data.input_shape, data.num_classes, **config.model_args)
    return callable(getattr(model, "gates", None)) and len(model.gates()) > 0


def gate_stats(model) -> dict:
    """Mean/min/max of a gated model's gate values (empty for other models)."""
    gates = model.gates() if callable(getattr(model, "gates", None)) else []
    if not gates:
        return {}
    values = torch.cat([g.flatten().float().cpu() for g in gates])
    return {"gate_mean": values.mean().item(), "gate_min": values.min().item(), "gate_max": values.max().item()}


def split_errors(config: TrainConfig, data: Dataset) -> Callable:
    """An ``extras`` function measuring the trained model (eval mode, restored weights) on its
    fit split and its evaluation split, so that train/val/test accuracies describe one network."""

    def measure(model) -> dict:
        device = next(model.parameters()).device
        channels_last = device.type in ("cpu", "cuda")
        tx, ty, ex, ey, _, _ = prepare_splits(config, data)
        out = {}
        for key, x, y in (("fit_error", tx, ty), ("eval_error", ex, ey)):
            batches = Batches(x.to(device), y.to(device), 1024, data.mean, data.std, shuffle=False,
                              channels_last=channels_last)
            out[key], _ = evaluate(model, batches, amp=device.type == "cuda")
        return {**out, **gate_stats(model)}

    return measure


EXTRAS: dict[str, Callable[[TrainConfig, Dataset], Callable]] = {
    "gates": lambda config, data: gate_stats,
    "splits": split_errors,
}


def extras_for(name: str | None, config: TrainConfig, data: Dataset) -> Callable | None:
    """The ``extras`` function (see `depthlab.runner.run_recorded`) called ``name`` in `EXTRAS`,
    for ``config`` on ``data``; None for None. By name, so that trials that need one can be
    shipped to worker processes and Ray tasks, which build it there."""
    if name is None:
        return None
    if name not in EXTRAS:
        raise ConfigError(f"unknown extras {name!r}; choose one of: {', '.join(EXTRAS)}")
    return EXTRAS[name](config, data)


# ---------------------------------------------------------------------------------------------
# Sweeps: one run per (arm, lr)


def _error_plots(title: str, curves_train: list[Curve], curves_eval: list[Curve], eval_name: str) -> list[Plot]:
    return [Plot("train-error", f"{title}: train error", "train error", curves_train, log_y=True, percent=True),
            Plot(f"{eval_name}-error", f"{title}: {eval_name} error", f"{eval_name} error", curves_eval,
                 log_y=True, percent=True)]


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
            config = make_config(self.base, overrides, {"lr": lr} if lr is not None else {}, ctx.overrides, quick)
            grid.append((arm, config))
        if len(lrs) > 1 and parse_schedule(grid[0][1].schedule).kind == "piecewise":
            raise ConfigError(f"a piecewise schedule ({grid[0][1].schedule}) sets absolute learning rates: "
                              "sweeping lrs would train the same run several times; use one lr or multistep/cosine")
        return grid

    def configs(self, ctx: Context) -> list[TrainConfig]:
        return [c for _, c in self.grid(ctx)]

    def run(self, ctx: Context) -> PartResult:
        rows, runs, train_curves, eval_curves = [], [], [], []
        grid = self.grid(ctx)
        eval_name = "val" if grid[0][1].eval_split == "val" else "test"
        names = [" ".join(p for p in (arm, f"lr={config.lr:g}" if self.lrs else "") if p) or config.model
                 for arm, config in grid]
        results = ctx.run_many([(config, f"{self.label}: {name}",
                                 "gates" if _has_gates(config, ctx.dataset(config.dataset)) else None)
                                for (_, config), name in zip(grid, names)])
        for (arm, config), name, result in zip(grid, names, results):
            epochs = result.get("epochs", [])
            last = epochs[-1] if epochs else {}
            row = {"arm": arm, "lr": config.lr, "status": result["status"],
                   "train_error": last.get("train_error"), "test_error": result.get("test_error"),
                   "best_test_error": min((e["test_error"] for e in epochs), default=None),
                   "epochs": len(epochs), "seconds": result.get("seconds"), "label": name,
                   "schedule": config.schedule, "batch_size": config.batch_size, "momentum": config.momentum}
            row.update(result.get("extras") or {})
            rows.append(row)
            runs.append({"label": name, "config": config.canonical(), "result": result})
            xs = [e["epoch"] + 1 for e in epochs]
            train_curves.append(Curve(name, xs, [e["train_error"] for e in epochs]))
            eval_curves.append(Curve(name, xs, [e["test_error"] for e in epochs]))
        columns = ([Column("arm", "arm")] if self.arms else []) + [
            Column("lr", "lr", "sci"), Column("status", "status"), Column("train_error", "final train err", "pct"),
            Column("test_error", f"final {eval_name} err", "pct"),
            Column("best_test_error", f"best {eval_name} err", "pct"), Column("epochs", "epochs", "int"),
            Column("seconds", "seconds", "sec")]
        if any("gate_mean" in r for r in rows):
            columns += [Column("gate_mean", "gate mean", "float"), Column("gate_min", "gate min", "float"),
                        Column("gate_max", "gate max", "float")]
        title = self.title or self.label
        return PartResult(self.label, title, columns, rows,
                          _error_plots(title, train_curves, eval_curves, eval_name), runs)


def lr_sweep(base: TrainConfig | Mapping, lrs: Sequence[float], store=None, *, data_dir: str | None = None,
             echo: Callable[[str], None] = lambda line: None, label: str = "lr-sweep", runner=None) -> PartResult:
    """One run per learning rate (fixed batch size, momentum, schedule): table of final errors,
    train and test error vs epoch (plots). With ``runner`` (a `depthlab.executors.TrialRunner`)
    the runs go to its executor at once: worker processes, a fused lr group, Ray."""
    base = dataclasses.asdict(base) if isinstance(base, TrainConfig) else dict(base)
    sweep = Sweep(label, base, parse_lrs(lrs), title=f"{base['model']} lr sweep")
    ctx = Context(store=store, data_dir=data_dir, echo=echo, experiment=label, runner=runner)
    sweep.configs(ctx)  # validate everything before the first run
    return sweep.run(ctx)


# ---------------------------------------------------------------------------------------------
# Ablations: toggles over folds or seeds


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
    return Curve(label, list(range(1, length + 1)), means, stds)


@dataclass(frozen=True)
class Ablation:
    """Every on/off combination of ``toggles`` (or the explicit ``arms``) over ``folds`` K-fold
    splits (train on K-1 folds, validate on one: K = 3 gives the 2/3-1/3 protocol) or ``seeds``
    seeds on one fixed 2/3-1/3 split. Reports mean +- std of train/val/test accuracy."""

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
        by_arm: dict[str, list[tuple[TrainConfig, dict]]] = {}
        what = "fold" if self.folds is not None else "seed"
        results = ctx.run_many([(config, f"{self.label}: {arm} {what} {i}", "splits") for arm, i, config in grid])
        for (arm, _, config), result in zip(grid, results):
            by_arm.setdefault(arm, []).append((config, result))
        rows, runs, loss_curves, val_curves = [], [], [], []
        for arm, items in by_arm.items():
            done = [(c, r) for c, r in items if r["status"] == "done"]
            row: dict = {"arm": arm, "fits": f"{len(done)}/{len(items)}"}
            for key, values in (
                    ("train_acc", [1 - r["extras"]["fit_error"] for _, r in done if r.get("extras")]),
                    ("val_acc", [1 - r["extras"]["eval_error"] for _, r in done if r.get("extras")]),
                    ("test_acc", [1 - r["test_error"] for _, r in done if r.get("test_error") is not None]),
                    ("seconds", [r["seconds"] for _, r in done]),
                    ("epochs", [len(r["epochs"]) for _, r in done])):
                row[key], row[key + "_std"] = _mean_std(values)
            rows.append(row)
            runs += [{"label": arm, "config": c.canonical(), "result": r} for c, r in items]
            loss_curves.append(_mean_curve(arm, [[e["loss"] for e in r["epochs"]] for _, r in done]))
            val_curves.append(_mean_curve(arm, [[e["test_error"] for e in r["epochs"]] for _, r in done]))
        columns = [Column("arm", "arm"), Column("train_acc", "train acc %", "pct_pm"),
                   Column("val_acc", "val acc %", "pct_pm"), Column("test_acc", "test acc %", "pct_pm"),
                   Column("seconds", "s/fit", "sec"), Column("epochs", "epochs", "float"), Column("fits", "fits")]
        title = self.title or self.label
        n = len(self.repeats(ctx))
        mean_over = f"mean ± std over {n} {what}s"
        plots = [Plot("loss", f"{title}: train loss ({mean_over})", "train loss", loss_curves, log_y=True),
                 Plot("val-error", f"{title}: validation error ({mean_over})", "validation error", val_curves,
                      log_y=True, percent=True)]
        notes = [f"{mean_over}; train acc is the final (restored) network in eval mode on its fit split"]
        return PartResult(self.label, title, columns, rows, plots, runs, notes)


def ablate(base: TrainConfig | Mapping, toggles: Sequence[str], store=None, *, folds: int | None = None,
           seeds: int | None = None, data_dir: str | None = None,
           echo: Callable[[str], None] = lambda line: None, label: str = "ablate", runner=None) -> PartResult:
    """Every on/off combination of ``toggles`` over K folds (default 3) or N seeds (all fits at
    once on the executor of ``runner``, a `depthlab.executors.TrialRunner`, when given)."""
    base = dataclasses.asdict(base) if isinstance(base, TrainConfig) else dict(base)
    if folds is None and seeds is None:
        folds = 3
    part = Ablation(label, base, tuple(toggles), folds=folds, seeds=seeds, title=f"{base['model']} ablation")
    ctx = Context(store=store, data_dir=data_dir, echo=echo, experiment=label, runner=runner)
    part.configs(ctx)
    return part.run(ctx)


# ---------------------------------------------------------------------------------------------
# The depth frontier (through depthlab.search)


@dataclass(frozen=True)
class Frontier:
    """The depth frontier of each model (SPEC 4) found by `depthlab.search.find_frontiers`.
    ``config`` and ``quick`` hold `FrontierConfig` fields; the context's device, seed and
    train_size overrides apply too."""

    label: str
    models: tuple[str, ...]
    config: Mapping = field(default_factory=dict)
    title: str = ""
    quick: Mapping = field(default_factory=dict)

    def frontier_config(self, ctx: Context) -> FrontierConfig:
        values = {**self.config, **(self.quick if ctx.quick else {})}
        values.update({k: v for k, v in ctx.overrides.items() if k in ("device", "seed", "train_size", "epochs")})
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
        rows, curves = [], []
        for m in result.models:
            rows.append({"model": m.model, "max_depth": m.max_trainable_depth, "lr": m.lr, "error": m.error,
                         "first_failing": m.first_failing_depth, "fraction": m.fraction, "trials": m.trials,
                         "capped": m.max_trainable_depth is not None and m.first_failing_depth is None,
                         "seconds": m.seconds,
                         "depth_map": {d: r.trainable for d, r in sorted(m.depths.items())}})
            pts = [(d, r.error) for d, r in sorted(m.depths.items()) if r.error is not None]
            curves.append(Curve(m.model, [d for d, _ in pts], [e for _, e in pts]))
        columns = [Column("model", "model"), Column("max_depth", "max trainable depth"),
                   Column("lr", "lr", "sci"), Column("error", f"{fc.criterion} error", "pct"),
                   Column("first_failing", "first failing depth"), Column("fraction", "fraction", "float"),
                   Column("trials", "trials"), Column("seconds", "seconds", "sec")]
        grid = ", ".join(f"{lr:g}" for lr in fc.sorted_lrs())
        title = self.title or self.label
        plot = Plot("error-vs-depth", f"{title}: best {fc.criterion} error within {fc.epochs} epoch(s)",
                    f"best {fc.criterion} error", curves, log_y=True, percent=True, log_x=True,
                    xlabel="depth (conv layers)", levels=[(fc.threshold, f"threshold {100 * fc.threshold:g}%")])
        notes = [f"trainable: {fc.criterion} error < {fc.threshold:g} within {fc.epochs} epoch(s), best lr of "
                 f"{grid}; batch {fc.batch_size}, momentum {fc.momentum:g}, max depth {fc.max_depth}, "
                 f"train size {fc.train_size or 'all'}"]
        return PartResult(self.label, title, columns, rows, [plot], [r for r in rows], notes)


# ---------------------------------------------------------------------------------------------
# The learning-rate range test


@dataclass
class LRFindResult:
    """The lr range test's trace and its suggestion.

    Suggestion rule: the lr at the minimum of the smoothed loss, divided by 10. At the minimum
    the loss has stopped improving because the lr is about to be too large; an order of
    magnitude below it is the largest lr that still descends steadily (Smith 2017, the
    ``lr_min / 10`` of fastai). The steepest descent point is reported too."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    stopped: str
    min_loss_lr: float | None
    steepest_lr: float | None
    suggestion: float | None
    rule: str = "lr at the minimum of the smoothed loss / 10"
    drop: float = 0.0        # relative fall of the smoothed loss from its first value to its minimum

    @property
    def flat(self) -> bool:
        """True when the loss hardly fell (< 0.5%): nothing in the range learned within the
        test's steps, and the minimum, hence the suggestion, is noise."""
        return self.drop < 0.005

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def plot(self) -> Plot:
        marks = [(v, f"{name} {v:.2g}") for name, v in (("suggested", self.suggestion),
                                                          ("steepest", self.steepest_lr)) if v]
        return Plot("lr-find", f"lr range test ({self.stopped})", "smoothed train loss",
                    [Curve("smoothed loss", self.lrs, self.smoothed), Curve("loss", self.lrs, self.losses)],
                    log_x=True, xlabel="learning rate", marks=marks)


def check_lr_range(min_lr: float, max_lr: float, steps: int, smoothing: float, diverge: float) -> None:
    if not (math.isfinite(min_lr) and min_lr > 0):
        raise ConfigError(f"--min-lr must be positive, got {min_lr}")
    if not (math.isfinite(max_lr) and max_lr > min_lr):
        raise ConfigError(f"--max-lr must be larger than --min-lr, got min {min_lr:g} >= max {max_lr:g}")
    if not isinstance(steps, int) or steps < 10:
        raise ConfigError(f"--steps must be at least 10, got {steps}")
    if not 0 <= smoothing < 1:
        raise ConfigError(f"--smoothing must be in [0, 1), got {smoothing}")
    if not diverge > 1:
        raise ConfigError(f"--diverge must be larger than 1, got {diverge}")


def lr_find(config: TrainConfig, data: Dataset | None = None, *, data_dir=None, min_lr: float = 1e-5,
            max_lr: float = 10.0, steps: int = 100, smoothing: float = 0.98, diverge: float = 4.0,
            model: torch.nn.Module | None = None) -> LRFindResult:
    """Exponential lr range test: ``steps`` mini-batches with the lr growing geometrically from
    ``min_lr`` to ``max_lr``; the loss is smoothed by a bias-corrected exponential moving average;
    the test stops early once the smoothed loss exceeds ``diverge`` times its minimum (or is not
    finite). The network's weights are restored afterwards (pass ``model`` to test, and keep,
    your own network; otherwise one is built from ``config`` and its seed). Nothing is stored."""
    check_lr_range(min_lr, max_lr, steps, smoothing, diverge)
    config.validate()
    device = resolve_device(config.device)
    if data is None:
        data = load_dataset(config.dataset, data_dir)
    channels_last = device.type in ("cpu", "cuda")
    amp = device.type == "cuda"
    torch.manual_seed(config.seed)
    if model is None:
        model = create_model(config.model, data.input_shape, data.num_classes, **config.model_args).to(device)
        if channels_last:  # as train() does; a caller's own network keeps its memory format
            model = model.to(memory_format=torch.channels_last)
    else:
        model = model.to(device)
    saved = copy.deepcopy(model.state_dict())
    was_training = model.training
    optimizer = make_optimizer(config, model.parameters())
    tx, ty, *_ = prepare_splits(config, data)
    batches = Batches(tx.to(device), ty.to(device), config.batch_size, data.mean, data.std, seed=config.seed,
                      augment=config.augment, channels_last=channels_last)
    ratio = max_lr / min_lr
    lrs, losses, smoothed = [], [], []
    avg, best, stopped = 0.0, math.inf, f"reached max lr {max_lr:g}"
    model.train()
    try:
        step = 0
        while step < steps:
            for xb, yb in batches:
                if step >= steps:
                    break
                lr = min_lr * ratio ** (step / (steps - 1))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    outputs = model(xb)
                loss, _ = multi_head_loss(outputs, yb)
                value = loss.item()
                if not math.isfinite(value):
                    stopped = f"diverged at lr {lr:.3g} (non-finite loss)"
                    step = steps
                    break
                avg = smoothing * avg + (1 - smoothing) * value
                smooth = avg / (1 - smoothing ** (step + 1))
                lrs.append(lr)
                losses.append(value)
                smoothed.append(smooth)
                best = min(best, smooth)
                if step > 0 and smooth > diverge * best:
                    stopped = f"diverged at lr {lr:.3g} (smoothed loss > {diverge:g}x its minimum)"
                    step = steps
                    break
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    return _suggest(lrs, losses, smoothed, stopped)


def _suggest(lrs: list[float], losses: list[float], smoothed: list[float], stopped: str) -> LRFindResult:
    if len(smoothed) < 3:
        return LRFindResult(lrs, losses, smoothed, stopped, None, None, None)
    i_min = min(range(len(smoothed)), key=smoothed.__getitem__)
    drop = (smoothed[0] - smoothed[i_min]) / abs(smoothed[0]) if smoothed[0] else 0.0
    # steepest descent of the smoothed loss per unit of log lr, before the minimum, skipping
    # the first tenth of the trace where the moving average is still warming up
    start = max(1, len(smoothed) // 10)
    slopes = [(smoothed[i + 1] - smoothed[i - 1]) / math.log(lrs[i + 1] / lrs[i - 1])
              for i in range(start, min(i_min, len(smoothed) - 1))]
    steepest = lrs[start + min(range(len(slopes)), key=slopes.__getitem__)] if slopes else None
    return LRFindResult(lrs, losses, smoothed, stopped, lrs[i_min], steepest, lrs[i_min] / 10, drop=drop)


# ---------------------------------------------------------------------------------------------
# reproduce: the registry of named experiments


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
    budget: dict = field(default_factory=dict)   # a reduced budget (epochs, train_size), if any

    def to_dict(self) -> dict:
        return {"name": self.name, "question": self.question, "quick": self.quick, "budget": self.budget,
                "conclusion": self.conclusion,
                "seconds": round(self.seconds, 1), "parts": {k: p.to_dict() for k, p in self.parts.items()}}


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


def experiment_context(name: str, store=None, *, quick: bool = False, data_dir: str | None = None,
                       device: str = "auto", echo: Callable[[str], None] = lambda line: None,
                       budget: Mapping | None = None) -> Context:
    experiment = get_experiment(name)
    overrides = {**(experiment.quick if quick else {}), **check_budget(budget), "device": device}
    return Context(store=store, data_dir=data_dir, overrides=overrides, quick=quick, experiment=name, echo=echo)


def fusable_size(part, ctx: Context) -> int:
    """How many of ``part``'s runs one fused network could train (1: none fuse): a frontier's
    lr grid at a depth, a sweep's runs that differ only in lr/seed; never an ablation's fits,
    which are measured after training."""
    from .fused import fusable_group

    if isinstance(part, Frontier):
        return len(part.frontier_config(ctx).lrs)
    if isinstance(part, Ablation):
        return 1
    return fusable_group(part.configs(ctx))


def fusable_runs(name: str, *, quick: bool = False, device: str = "auto", budget: Mapping | None = None) -> int:
    """`fusable_size` of the largest part of ``reproduce(name)``."""
    ctx = experiment_context(name, quick=quick, device=device, budget=budget)
    return max((fusable_size(p, ctx) for p in get_experiment(name).parts), default=1)


def plan(name: str, *, quick: bool = False, device: str = "auto", budget: Mapping | None = None) -> list[TrainConfig]:
    """Every config ``reproduce(name)`` would run, validated (bad input fails here, early)."""
    ctx = experiment_context(name, quick=quick, device=device, budget=budget)
    return [c for part in get_experiment(name).parts for c in part.configs(ctx)]


def reproduce(name: str, store=None, *, quick: bool = False, data_dir: str | None = None, device: str = "auto",
              echo: Callable[[str], None] = lambda line: None, budget: Mapping | None = None,
              datasets: Mapping | None = None, runner=None) -> Reproduction:
    """Run (or read back from the store) every part of a named experiment and conclude.
    ``budget`` (``epochs``, ``train_size``) cuts every run, for a machine that cannot afford the
    full protocol; the result records it so that tables are labelled. With ``runner`` (a
    `depthlab.executors.TrialRunner` recording into ``store``) each part's runs go to its
    executor all at once: worker processes, fused lr groups, Ray."""
    experiment = get_experiment(name)
    plan(name, quick=quick, device=device, budget=budget)
    ctx = experiment_context(name, store, quick=quick, data_dir=data_dir, device=device, echo=echo, budget=budget)
    ctx.datasets.update(datasets or {})  # already loaded by the caller (the CLI loads before opening the store)
    ctx.runner = runner
    started = time.perf_counter()
    parts = {}
    for part in experiment.parts:
        parts[part.label] = part.run(ctx)
    return Reproduction(name, experiment.question, quick, parts, experiment.conclude(parts),
                        time.perf_counter() - started, check_budget(budget))


# ---------------------------------------------------------------------------------------------
# The classic experiments


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


TRAINED = 0.20  # a run "trains" when its best test error falls below 20% (the frontier criterion)

STRIDED_BASE = dict(model="strided", dataset="mnist", epochs=5, batch_size=64, momentum=0.9,
                    model_args={"stack_depth": 3})
STRIDED_LRS = (0.01, 0.03, 0.1)
GATE_A0 = (0.1, 0.5, 0.9)


def _conclude_strided(parts: dict[str, PartResult]) -> str:
    p = parts["stack-depth-3"]
    lrs = ", ".join(f"{r['lr']:g}" for r in p.rows if r["arm"] == "strided")

    def verdict(arm: str) -> str:
        best = p.best("best_test_error", arm=arm)
        if best is None:
            return f"{arm} has no finished run"
        if best["best_test_error"] < TRAINED:
            return f"{arm} trained ({_pct(best['test_error'])} test error at lr {best['lr']:g})"
        return f"{arm} did not train (best test error {_pct(best['best_test_error'])})"

    moves = []
    for r in parts["gate-start"].rows:
        if r.get("gate_mean") is None:
            continue
        a0 = float(r["arm"].split("=")[1])
        how = "stayed at" if abs(r["gate_mean"] - a0) < 0.02 else "moved to"
        moves.append(f"a0 {a0:g} {how} {r['gate_mean']:.2f} ({_pct(r['test_error'])} test error)")
    return (f"At stack depth 3 over lrs {lrs}: {verdict('strided')}, {verdict('strided-res')} and "
            f"{verdict('strided-gated')}; with free gates, " + "; ".join(moves) + ".")


register_experiment(Experiment(
    name="strided-residual",
    question="Does the plain stride-2 net fail at stack depth 3 while the residual and gated ones train?",
    parts=(
        Sweep("stack-depth-3", STRIDED_BASE, STRIDED_LRS,
              arms=(("strided", {}), ("strided-res", {"model": "strided-res"}),
                    ("strided-gated", {"model": "strided-gated"})),
              title="stack depth 3, batch 64, momentum 0.9", quick_lrs=(0.01, 0.1)),
        Sweep("gate-start", {**STRIDED_BASE, "model": "strided-gated", "lr": 0.03},
              arms=tuple((f"a0={a0:g}", {"model_args": {"a0": a0}}) for a0 in GATE_A0),
              title="strided-gated, starting gate a0 (lr 0.03)"),
    ),
    conclude=_conclude_strided,
    # enough steps (2 x 157) for the residual net to leave chance level at lr 0.01
    quick=dict(train_size=10000, test_size=2000, epochs=2),
    reference="plain strided at stack depth 3: stuck near 88.65% error; strided-res ~2.6%; gated ~1.2% "
              "(a signal-dependent gate)",
))

LR_BASE = dict(model="strided", dataset="mnist", epochs=5, model_args={"stack_depth": 1})


def _conclude_lr_momentum(parts: dict[str, PartResult]) -> str:
    a = parts["batch64-m0"].best("test_error")
    b = parts["batch16-m0.75"].best("test_error")
    c = parts["piecewise"].rows[0]
    epochs = parts["piecewise"].rows[0]["epochs"]
    eff_b = b["lr"] / (1 - 0.75)
    return (f"Without momentum at batch 64 the best lr was {a['lr']:g} ({_pct(a['test_error'])} test error); "
            f"with momentum 0.75 at batch 16 it was {b['lr']:g} ({_pct(b['test_error'])}), an effective step "
            f"lr/(1-m) = {eff_b:g}, {eff_b / a['lr']:.2g}x the momentum-free one at a quarter of the batch; "
            f"the piecewise schedule {c['schedule']} (batch 16, no momentum) reached {_pct(c['test_error'])} "
            f"after {epochs} epoch{'s' if epochs != 1 else ''}.")


register_experiment(Experiment(
    name="lr-momentum",
    question="How do learning rate, momentum and batch size interact on the stack-depth-1 strided net?",
    parts=(
        Sweep("batch64-m0", {**LR_BASE, "batch_size": 64, "momentum": 0.0}, (0.01, 0.03, 0.07, 0.1, 0.3),
              title="batch 64, momentum 0", quick_lrs=(0.03, 0.3)),
        Sweep("batch16-m0.75", {**LR_BASE, "batch_size": 16, "momentum": 0.75}, (0.003, 0.01, 0.03, 0.07),
              title="batch 16, momentum 0.75", quick_lrs=(0.01, 0.07)),
        Sweep("piecewise", {**LR_BASE, "batch_size": 16, "momentum": 0.0, "lr": 0.07,
                            "schedule": "2@0.07,3@0.01"},
              title="batch 16, momentum 0, 2@0.07,3@0.01", quick={"schedule": "1@0.07,1@0.01"}),
    ),
    conclude=_conclude_lr_momentum,
    quick=dict(train_size=6000, test_size=2000, epochs=2),
    reference="stack depth 1, lr 0.07 then 0.01, momentum 0, batch 16: ~1.6% test error in 5 epochs",
))

SKIPFC_BASE = dict(model="skipfc", dataset="mnist32", optimizer="adam", lr=1e-3, batch_size=128, epochs=30)


def _conclude_skipfc(parts: dict[str, PartResult]) -> str:
    p = parts["toggles"]

    def acc(bn: str, skip: str) -> dict:
        return p.row(arm=f"bn={bn} skip={skip}")

    d_bn = sum(acc("on", s)["test_acc"] - acc("off", s)["test_acc"] for s in ("on", "off")) / 2
    d_skip = sum(acc(b, "on")["test_acc"] - acc(b, "off")["test_acc"] for b in ("on", "off")) / 2
    spread = max(r["test_acc_std"] for r in p.rows)
    best = max(p.rows, key=lambda r: r["val_acc"])
    bugs = parts["reference-bugs"]
    ref_bn, ref_plain = bugs.row(arm="reference bn=on")["test_acc"], bugs.row(arm="reference bn=off")["test_acc"]
    return (f"Averaged over the other toggle, batch norm changed test accuracy by {100 * d_bn:+.2f} points and the "
            f"skip by {100 * d_skip:+.2f} (largest fold-to-fold std {100 * spread:.2f}); the best validation "
            f"accuracy was {best['arm']} ({100 * best['test_acc']:.2f}% test); re-creating the reference's two bugs "
            f"gave {100 * ref_bn:.2f}% with BN and {100 * ref_plain:.2f}% without, against "
            f"{100 * acc('on', 'on')['test_acc']:.2f}% and {100 * acc('off', 'on')['test_acc']:.2f}% fixed.")


register_experiment(Experiment(
    name="skipfc-ablation",
    question="What do batch norm and the skip over the hidden layer do for the small skipfc net (K-fold)?",
    parts=(
        Ablation("toggles", SKIPFC_BASE, ("bn", "skip"), folds=3, title="skipfc, Adam 1e-3, batch 128"),
        Ablation("reference-bugs", SKIPFC_BASE, folds=3, title="skipfc with the reference's bugs",
                 arms=(("reference bn=on", {"model_args": {"bn": True, "legacy_bn": True, "softmax_out": True}}),
                       ("reference bn=off", {"model_args": {"bn": False, "softmax_out": True}}))),
    ),
    conclude=_conclude_skipfc,
    quick=dict(train_size=3000, test_size=2000, epochs=2),
    reference="93.7% test without BN, 94.9% with (BN never trained, softmax before the cross-entropy)",
))


def _conclude_frontier(parts: dict[str, PartResult]) -> str:
    p = parts["presets"]

    def depth(model: str) -> str:
        r = p.row(model=model)
        if r["max_depth"] is None:
            return "no depth"
        return f"{r['max_depth']}{'+' if r['capped'] else ''}"

    def extreme(pick) -> str:
        value = pick(r["max_depth"] or 0 for r in p.rows)
        names = [r["model"] for r in p.rows if (r["max_depth"] or 0) == value]
        return f"{' and '.join(names)} ({depth(names[0])})"

    capped = [r["max_depth"] for r in p.rows if r["capped"]]
    cap = f" (+: still trainable at the search's cap of {max(capped)})" if capped else ""
    return (f"The deepest trainable presets: {extreme(max)}; the shallowest: {extreme(min)}; batch norm took cnn-elu "
            f"from {depth('cnn-elu')} to {depth('cnn-elu-bn')} and cnn-tanh from {depth('cnn-tanh')} to "
            f"{depth('cnn-tanh-bn')}, LeCun init took cnn-tanh to {depth('cnn-tanh-lecun')}, and with skip "
            f"connections the ELU net reached {depth('resnet-elu-bn')} with BN and {depth('resnet-elu')} without{cap}.")


register_experiment(Experiment(
    name="depth-frontier",
    question="How deep can each of the eight classic presets be and still train (error < 20% within 3 epochs)?",
    parts=(Frontier("presets", CLASSIC_PRESETS, title="depth frontier of the eight classic presets",
                    quick=QUICK_PROTOCOL),),  # the budget of `depthlab frontier --quick`
    conclude=_conclude_frontier,
    reference="cnn-tanh 9 (lr 0.15); cnn-elu-bn 63; resnet-elu-bn 27; cnn-tanh-bn 48-54; resnet-elu 3",
))
