"""The frontier's outputs: table rows, per-depth rows and its figures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..report.figures import new_axes, save_figure
from ..report.outputs import safe_child
from ..report.wording import epochs_words, percent
from .points import lr_cell, optimizer_of, plain_lr

if TYPE_CHECKING:  # names for annotations only: the results import this module (`FrontierResult.plot`)
    from .results import FrontierResult, ModelFrontier


# Files (CSV, JSON) hold errors and seed fractions as fractions (0.185); what a person reads (the
# printed table, progress lines, plots) shows percentages (18.5%). The error is the criterion error
# at the evaluation point that decided the depth (median over the seeds that trained), or, for a
# depth that does not train, the best one seen at any lr.
TABLE_HEADERS = (
    "model",
    "max trainable depth",
    "capped",
    "lr",
    "criterion error (fraction)",
    "first failing depth",
    "seeds trained (fraction)",
)
PRINTED_HEADERS = (
    "model",
    "max trainable depth",
    "lr",
    "criterion error",
    "first failing depth",
    "seeds trained",
)
DEPTH_HEADERS = (
    "model",
    "depth",
    "trainable",
    "lr",
    "criterion error (fraction)",
    "seeds trained (fraction)",
    "epochs trained",
    "trials",
)
JSON_UNITS = {
    "error": "fraction (0.185 = 18.5%): the criterion error at the evaluation point that decided "
    "the depth, or the best one seen when it does not train",
    "fraction": "fraction of the seeds that trained at that lr (the best over lrs when none did)",
    "epochs": "epochs of training done at the deciding evaluation point (0.75 = three quarters "
    "of the first epoch)",
    "capped": "true when every depth tried trains: the frontier is at least max_trainable_depth",
}


def table_headers(result: FrontierResult, headers: tuple[str, ...] = TABLE_HEADERS) -> tuple[str, ...]:
    """A CSV's headers (``TABLE_HEADERS`` or ``DEPTH_HEADERS``), with a last column ``optimizer``
    when the search names its optimizer (`FrontierConfig.names_optimizer`: not SGD alone)."""
    return headers + ("optimizer",) if result.config.names_optimizer else headers


def depth_cell(m: ModelFrontier) -> int | str | None:
    """The max trainable depth as a table shows it: ``9``, ``≥ 300 (cap)`` when the cap was reached."""
    if m.capped:
        return f"≥ {m.max_trainable_depth} (cap)"
    return m.max_trainable_depth


def table_rows(result: FrontierResult) -> list[list]:
    """The CSV rows: errors and fractions as fractions; with ``--seeds auto`` the depth is the
    majority frontier with its band, ``66 [51–72]`` (every seed trains up to 51, some seed up to 72)."""
    return [
        [
            m.model,
            m.label if m.label is not None else depth_cell(m),
            m.capped,
            plain_lr(m.lr),
            m.error,
            m.first_failing_depth,
            m.fraction,
        ]
        + _optimizer(m.lr, result)
        for m in result.models
    ]


def _optimizer(lr, result: FrontierResult) -> list:
    """The optimizer column's cell (`table_headers`): the optimizer that trained, None where
    nothing did; no cell for a search with SGD alone."""
    if not result.config.names_optimizer:
        return []
    return [None if lr is None else optimizer_of(lr)]


def _seeds(fraction: float | None, seeds: int) -> str | None:
    if fraction is None:
        return None
    return f"{round(fraction * seeds)}/{seeds}"


def _printed_depth(m: ModelFrontier) -> int | str | None:
    """`depth_cell`, with ``none`` for a finished search where no depth trains (as ``--status`` says)."""
    return "none" if m.max_trainable_depth is None and m.next_trial is None else depth_cell(m)


def printed_rows(result: FrontierResult) -> list[list]:
    """The printed table's rows: errors as percentages, seeds as ``2/3``."""
    seeds = result.config.seeds
    return [
        [
            m.model,
            _printed_depth(m),
            lr_cell(m.lr),
            percent(m.error) if m.error is not None else None,
            m.first_failing_depth,
            _seeds(m.fraction, seeds),
        ]
        for m in result.models
    ]


def depth_rows(result: FrontierResult) -> list[list]:
    """One row per (model, depth) tried: the per-depth map."""
    return [
        [m.model, d, r.trainable, plain_lr(r.lr), r.error, r.fraction, r.epochs, len(r.trials)]
        + _optimizer(r.lr, result)
        for m in result.models
        for d, r in sorted(m.depths.items())
    ]


def frontier_json(result: FrontierResult) -> dict:
    """The result as the JSON `frontier` writes, with what its numbers mean (``units``)."""
    return {"units": JSON_UNITS, **result.to_dict()}


def depth_label(m: ModelFrontier) -> str:
    """A model's max trainable depth as the plot labels it: ``9``, ``≥ 300 (cap)`` (the cap
    reached), ``none``, or ``≥ 48 so far`` for a search still running (`frontier --status`)."""
    if m.next_trial is not None:
        return f"≥ {m.max_trainable_depth or 0} so far"
    if m.label is not None:  # --seeds auto: the majority frontier and its band
        return m.label
    if not m.max_trainable_depth:
        return "none"
    return str(depth_cell(m))


def depth_axis_unit(result: FrontierResult) -> str:
    """What the depth axis counts: the models' own unit (`depthlab.models.depth_unit`) when they
    share one, else ``layers``."""
    from ..models import depth_unit

    units = {depth_unit(m.model) for m in result.models}
    return units.pop() if len(units) == 1 else "layers"


def plot_frontier(result: FrontierResult, kind: str = "depth", *, ax=None):
    """The frontier as a `matplotlib.figure.Figure`: ``kind="depth"``, the max trainable depth of
    each model as bars; ``kind="error"``, the best error reached at each depth tried, per model,
    with the threshold drawn. ``ax`` draws into an existing axes."""
    if kind not in ("depth", "error"):
        raise ValueError(f"kind must be 'depth' or 'error', got {kind!r}")
    fig, ax = new_axes(ax, figsize=(7, 4.2))
    if kind == "error":
        _plot_errors(ax, result)
    else:
        _plot_depths(ax, result)
    fig.tight_layout()
    return fig


def _plot_errors(ax, result: FrontierResult) -> None:
    """Draw into ``ax`` each model's best error at each depth tried (x where it does not train),
    with the threshold, on a log-2 depth axis."""
    for m in result.models:
        pts = [(d, 100 * r.error) for d, r in sorted(m.depths.items()) if r.error is not None]
        if pts:
            (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=m.model)
            fails = [
                (d, 100 * r.error)
                for d, r in sorted(m.depths.items())
                if r.error is not None and not r.trainable
            ]
            ax.scatter(
                [p[0] for p in fails], [p[1] for p in fails], marker="x", color=line.get_color(), zorder=3
            )
    ax.axhline(
        100 * result.config.threshold,
        color="k",
        ls="--",
        lw=1,
        label=f"threshold {100 * result.config.threshold:g}%",
    )
    ax.set_xscale("log", base=2)
    tried = sorted({d for m in result.models for d in m.depths})
    if tried:  # plain labels at the geometric probes 3, 6, 12, ... (and the deepest depth tried)
        ticks = sorted({d for d in (3 * 2**k for k in range(12)) if d <= tried[-1]} | {tried[-1]})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel(f"depth ({depth_axis_unit(result)})")
    ax.set_ylabel(f"{result.config.criterion} error, % (x = does not train)")
    ax.set_title(f"Error reached within {result.config.epochs} epoch(s), best lr of the grid")
    ax.legend(fontsize=7, ncol=2)


def _plot_depths(ax, result: FrontierResult) -> None:
    """Draw into ``ax`` each model's max trainable depth as a bar, labelled (hatched where the
    search has not finished)."""
    names = [m.model for m in result.models]
    heights = [m.max_trainable_depth or 0 for m in result.models]
    bars = ax.bar(range(len(names)), heights, color="tab:blue")
    for bar, m in zip(bars, result.models):
        if m.next_trial is not None:
            bar.set_facecolor("lightsteelblue")
            bar.set_hatch("//")
        label = depth_label(m) + (
            f"\n{lr_cell(m.lr)}" if result.config.names_optimizer and m.lr is not None else ""
        )
        ax.annotate(
            label,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("max trainable depth")
    unfinished = any(m.next_trial is not None for m in result.models)
    ax.set_title(
        f"Depth frontier (max depth {result.config.max_depth}; ≥ N (cap) = cap reached)"
        + ("\nhatched: search not finished, depth trained so far" if unfinished else ""),
        fontsize=10,
    )


def save_frontier_plots(result: FrontierResult, folder) -> list[Path]:
    """``frontier-error.png`` and ``frontier-depth.png`` in ``folder`` (a str or path; created)."""
    return [
        save_figure(plot_frontier(result, kind), safe_child(Path(folder), f"frontier-{kind}.png"))
        for kind in ("error", "depth")
    ]


def trial_words(
    trained: bool, status: str, error: float | None, epochs: float, reason: str | None = None
) -> str:
    """What happened to one frontier trial, in words that cannot contradict each other:
    ``trains: 18.5% after 0.8 epochs``, ``does not train: best 88.4% in 3 epochs``,
    ``diverged after 0.25 epochs``, ``cancelled after 0.5 epochs: an lr before it trained``,
    ``error in training after 0 epochs (OutOfMemoryError ...)``. ``error`` is the criterion error
    at the deciding evaluation point (when it trains) or the best one seen (when it does not)."""
    if trained:
        return f"trains: {percent(error)} {epochs_words(epochs)}"
    if status == "diverged":
        if not epochs:
            return "diverged before its first evaluation point"
        best = f" (best {percent(error)} before)" if error is not None else ""
        return f"diverged {epochs_words(epochs)}{best}"
    if status == "cancelled":
        return f"cancelled {epochs_words(epochs)}: an lr before it trained"
    if status == "failed":
        return f"error in training {epochs_words(epochs)}" + (f" ({reason})" if reason else "")
    return f"does not train: best {percent(error)} {epochs_words(epochs, 'in')}"
