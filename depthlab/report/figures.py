"""Figures: axes from matplotlib's object API, saved atomically."""

from __future__ import annotations

import os
from pathlib import Path

from .outputs import atomic_write

# The x label of every per-epoch plot: the same epoch numbers as the classic lines and the JSON.
EPOCH_AXIS = "epoch (numbered from 000, as in the Epoch 000/N lines)"


def new_axes(ax=None, *, figsize=(6.4, 4.2), dpi: int = 90, ncols: int = 1):
    """``(figure, axes)`` to draw into: ``ax`` and its figure when given, else a new `Figure`
    built with matplotlib's object API (no pyplot state, no backend switch: inline plots in a
    notebook keep working, and nothing is left open)."""
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    axes = fig.subplots(1, ncols)
    return fig, axes


def save_figure(fig, path: str | os.PathLike, **kwargs) -> Path:
    """``fig.savefig(path, **kwargs)``, atomically (`atomic_write`; the format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # a figure asked for in a new folder gets it
    kwargs.setdefault("format", path.suffix.lstrip(".").lower() or "png")
    return atomic_write(path, lambda fh: fig.savefig(fh, **kwargs), binary=True)
