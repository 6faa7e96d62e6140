"""The parts of an experiment: result tables (`PartResult`), plots, and the `Context` a part runs in."""

from __future__ import annotations

import logging
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.dataset import Dataset
from ..data.registry import load_dataset
from ..engine.callbacks import LambdaCallback
from ..engine.config import TrainConfig
from ..engine.extras import extras_for
from ..records.record import RunResult, RunStatus
from ..report.figures import EPOCH_AXIS, new_axes, save_figure
from ..report.outputs import safe_child
from ..report.tables import data_frame, format_table, write_csv
from ..report.wording import classic_line
from ..sweep.runner import run_recorded


@dataclass
class Column:
    key: str
    header: str
    kind: str = "text"  # text | pct (fraction as %) | pct_pm (mean +- std, as %) | sec (+- std) | float | sci

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
    name: str  # file stem
    title: str
    ylabel: str
    curves: list[Curve]
    log_y: bool = False
    percent: bool = False
    log_x: bool = False
    xlabel: str = "epoch"
    marks: list[tuple[float, str]] = field(default_factory=list)  # vertical lines (x, label)
    levels: list[tuple[float, str]] = field(default_factory=list)  # horizontal lines (y, label)
    ylim: tuple[float, float] | None = None  # the y range shown (what lies outside is clipped)


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

    def to_frame(self):
        """The table as a pandas DataFrame: one row per run or arm, the raw numbers of `rows`
        (errors and accuracies as fractions, seconds as seconds, ``*_std`` their spreads)."""
        return data_frame(self.rows)

    def format_table(self) -> str:
        return format_table(
            [c.header for c in self.columns], [[c.cell(r) for c in self.columns] for r in self.rows]
        )

    def row(self, **match) -> dict:
        """The one row whose values equal ``match`` (a KeyError names the miss)."""
        found = [r for r in self.rows if all(r.get(k) == v for k, v in match.items())]
        if len(found) != 1:
            raise KeyError(f"{self.label}: {len(found)} rows match {match}")
        return found[0]

    def best(self, key: str = "test_error", **match) -> dict | None:
        """The row with the lowest ``key`` among those matching (rows without a value skipped)."""
        rows = [
            r for r in self.rows if r.get(key) is not None and all(r.get(k) == v for k, v in match.items())
        ]
        return min(rows, key=lambda r: r[key]) if rows else None

    def write(self, folder: Path, stem: str) -> list[Path]:
        """The table as CSV (raw numbers) and every plot as PNG under ``folder``; returns the paths."""
        keys = []
        for c in self.columns:
            keys += [c.key] + (
                [c.key + "_std"]
                if c.kind in ("pct_pm", "sec") and any(r.get(c.key + "_std") is not None for r in self.rows)
                else []
            )
        paths = [
            write_csv(safe_child(folder, f"{stem}.csv"), keys, [[r.get(k) for k in keys] for r in self.rows])
        ]
        for plot in self.plots:
            paths.append(save_figure(draw_plot(plot), safe_child(folder, f"{stem}-{plot.name}.png")))
        return paths

    def to_dict(self) -> dict:
        return {"label": self.label, "title": self.title, "rows": self.rows, "notes": self.notes}


def _draw_curves(ax, plot: Plot, scale: float) -> None:
    """Draw ``plot``'s curves (scaled by ``scale``), each with its std band when it has one."""
    for i, curve in enumerate(plot.curves):
        ys = [scale * v if v is not None else math.nan for v in curve.values]
        # past the colour cycle's 10 colours, a new line style tells the curves apart
        (line,) = ax.plot(
            curve.epochs,
            ys,
            marker="o" if len(ys) < 12 else None,
            ms=3,
            label=curve.label,
            ls=("-", "--", ":")[(i // 10) % 3],
        )
        if curve.std is not None:
            lo = [y - scale * s for y, s in zip(ys, curve.std)]
            hi = [y + scale * s for y, s in zip(ys, curve.std)]
            ax.fill_between(curve.epochs, lo, hi, color=line.get_color(), alpha=0.15)


def _draw_marks(ax, plot: Plot) -> None:
    """Draw ``plot``'s marks: a dashed vertical line at each x, labelled along it."""
    for x, label in plot.marks:
        ax.axvline(x, ls="--", color="grey", lw=1)
        ax.annotate(
            label,
            (x, 0.98),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
            color="grey",
        )


def _format_log_axes(ax, plot: Plot) -> None:
    """Put the axes that ``plot`` asks for on a log scale, with plain-number tick labels."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 3, 10, 60 rather than 3x10^0 on log axes
    if plot.log_y:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "2345" else ""))
    if plot.log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plain)
        low, high = ax.get_xlim()
        if high / low <= 300:  # over more than a few decades, labelled minor ticks overlap
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "2358" else ""))
        else:
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def draw_plot(plot: Plot, ax=None):
    """``plot`` as a `matplotlib.figure.Figure` (drawn into ``ax`` when given)."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = new_axes(ax)
    scale = 100.0 if plot.percent else 1.0
    _draw_curves(ax, plot, scale)
    _draw_marks(ax, plot)
    _format_log_axes(ax, plot)
    if plot.ylim is not None:
        ax.set_ylim(*(scale * y for y in plot.ylim))
    for y, label in plot.levels:
        ax.axhline(y * scale, ls="--", color="k", lw=1, label=label)
    xlabel = plot.xlabel
    if plot.xlabel == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        xlabel = EPOCH_AXIS
    ax.set_xlabel(xlabel)
    ax.set_ylabel(plot.ylabel + (" (%)" if plot.percent else ""))
    ax.set_title(textwrap.fill(plot.title, 70), fontsize=10)  # a long title wraps instead of being cut
    ax.grid(True, which="both", alpha=0.3)
    if plot.curves:
        ax.legend(fontsize=7, ncol=2 if len(plot.curves) > 6 else 1)
    fig.tight_layout()
    return fig


PROGRESS = logging.getLogger("depthlab.progress")


def progress(line: str) -> None:
    """A progress line (a run's epoch, a search's step): INFO on the ``depthlab.progress``
    logger, which the CLI prints (on stdout, or stderr under ``--json``); silent in library use
    unless logging is configured."""
    PROGRESS.info(line)


@dataclass
class Context:
    """Where runs go (store), what they load (data_dir, device), the budget cut (``overrides``,
    applied to every config, and ``quick``) and where progress lines go (``echo``: by default
    the ``depthlab.progress`` logger)."""

    store: Any = None
    data_dir: str | None = None
    overrides: dict = field(default_factory=dict)
    quick: bool = False
    experiment: str | None = None
    echo: Callable[[str], None] = progress
    tensorboard: Any = None  # a `TensorBoardLog`: each run's epochs under its label
    datasets: dict = field(default_factory=dict)
    runner: Any = None  # a `depthlab.sweep.TrialRunner`: `run_many` runs on its executor, all at once
    epoch_lines: bool = False  # with a runner, echo each run's epoch lines as it comes back (the CLI does)

    def dataset(self, name: str) -> Dataset:
        if name not in self.datasets:
            self.datasets[name] = load_dataset(name, self.data_dir)
        return self.datasets[name]

    def run(
        self, config: TrainConfig, label: str, extras: Callable | None = None, kind: str = "experiment"
    ) -> RunResult:
        """Train (or read back) one config, echoing the classic per-epoch line with a label."""
        data = self.dataset(config.dataset)

        callbacks = [LambdaCallback(on_epoch_metrics=lambda loop, i, m: self._epoch_line(label, config, m))]
        if self.tensorboard is not None:
            callbacks.append(self.tensorboard.for_run(label))
        result = run_recorded(
            config,
            self.store,
            data,
            kind=kind,
            experiment=self.experiment,
            callbacks=callbacks,
            extras=extras,
        )
        if result.reused or result.status != RunStatus.DONE:
            self._report(label, result)
        return result

    def run_many(self, items: Sequence[tuple[TrainConfig, str, str | None]]) -> list[RunResult]:
        """Train (or read back) each ``(config, label, extras name)``: one after another through
        `run` (with its per-epoch lines), or with a ``runner`` all at once on its executor
        (workers, fused lr groups, Ray), one line per run as it is in (after its per-epoch lines
        with ``epoch_lines``); results in order."""
        if self.runner is None:
            return [
                self.run(c, label, extras=extras_for(name, c, self.dataset(c.dataset)))
                for c, label, name in items
            ]
        from ..sweep.jobs import Job

        for c, _, _ in items:
            self.runner.use_dataset(self.dataset(c.dataset))

        def arrived(index: int, result: RunResult) -> None:
            config, label = items[index][0], items[index][1]
            if not result.reused:  # what a run trained here streams, all at once
                for e in result.epochs:
                    if self.epoch_lines:
                        self._epoch_line(label, config, e)
                    if self.tensorboard is not None:
                        self.tensorboard.for_run(label).write_epoch(e.to_dict())
            self._report(label, result)

        return self.runner.run(
            [Job(c, kind="experiment", experiment=self.experiment, extras=name) for c, _, name in items],
            on_result=arrived,
        )

    def _epoch_line(self, label: str, config: TrainConfig, m) -> None:
        """The classic line of one epoch of run ``label``."""
        eval_name = "Val" if config.eval_split == "val" else "Test"
        self.echo(f"[{label}] {classic_line(m.epoch, config.epochs, m.train_error, m.test_error, eval_name)}")

    def _report(self, label: str, result: RunResult) -> None:
        final = result.test_error
        tail = f", test error {100 * final:.2f}%" if final is not None else ""
        if result.reused:
            self.echo(f"[{label}] {result.status} (read from the store{tail})")
        elif result.status != RunStatus.DONE:
            self.echo(f"[{label}] {result.status}: {result.reason}")
        else:
            self.echo(f"[{label}] done in {result.seconds or 0:.0f}s, {len(result.epochs)} epoch(s){tail}")
