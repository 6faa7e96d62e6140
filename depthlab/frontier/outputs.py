"""The frontier's outputs: table rows, per-depth rows and the plot."""

from __future__ import annotations

from .search import FrontierResult, ModelFrontier


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
    from ..report import pyplot, safe_child, save_figure

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
    save_figure(fig, paths[-1], dpi=90)
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
    save_figure(fig, paths[-1], dpi=90)
    plt.close(fig)
    return paths
