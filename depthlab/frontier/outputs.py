"""The frontier's outputs: table rows, per-depth rows and its figures."""

from __future__ import annotations

from pathlib import Path

from ..report import new_axes, safe_child, save_figure
from .search import FrontierResult, ModelFrontier


TABLE_HEADERS = ("model", "max trainable depth", "lr", "error", "first failing depth", "fraction")


def table_rows(result: FrontierResult) -> list[list]:
    """One row per model; with ``--seeds auto`` the depth is the majority frontier with its band,
    ``66 [51–72]`` (every seed trains up to 51, some seed up to 72)."""
    return [[m.model, m.label or m.max_trainable_depth, m.lr, m.error, m.first_failing_depth, m.fraction]
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
    if m.label is not None:  # --seeds auto: the majority frontier and its band
        return m.label
    if not m.max_trainable_depth:
        return "none"
    return f"{m.max_trainable_depth}" + ("+" if m.first_failing_depth is None else "")


def plot_frontier(result: FrontierResult, kind: str = "depth", *, ax=None):
    """The frontier as a `matplotlib.figure.Figure`: ``kind="depth"``, the max trainable depth of
    each model as bars; ``kind="error"``, the best error reached at each depth tried, per model,
    with the threshold drawn. ``ax`` draws into an existing axes."""
    if kind not in ("depth", "error"):
        raise ValueError(f"kind must be 'depth' or 'error', got {kind!r}")
    fig, ax = new_axes(ax, figsize=(7, 4.2))
    if kind == "error":
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
    else:
        names = [m.model for m in result.models]
        heights = [m.max_trainable_depth or 0 for m in result.models]
        bars = ax.bar(range(len(names)), heights, color="tab:blue")
        for bar, m in zip(bars, result.models):
            if m.next_trial is not None:
                bar.set_facecolor("lightsteelblue")
                bar.set_hatch("//")
            ax.annotate(depth_label(m), (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("max trainable depth")
        unfinished = any(m.next_trial is not None for m in result.models)
        ax.set_title(f"Depth frontier (max depth {result.config.max_depth}; + = cap reached)"
                     + ("\nhatched: search not finished, depth trained so far" if unfinished else ""), fontsize=10)
    fig.tight_layout()
    return fig


def save_frontier_plots(result: FrontierResult, folder) -> list[Path]:
    """``frontier-error.png`` and ``frontier-depth.png`` in ``folder`` (a str or path; created)."""
    return [save_figure(plot_frontier(result, kind), safe_child(Path(folder), f"frontier-{kind}.png"))
            for kind in ("error", "depth")]
