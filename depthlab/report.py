"""Output helpers: safe output folders, tables (text and CSV) and figures (matplotlib's object API)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable, Sequence

from .errors import ConfigError


def safe_output_dir(folder: str | os.PathLike, *, base: str | os.PathLike | None = None) -> Path:
    """Create and return ``folder``; with ``base``, refuse a folder that escapes it."""
    path = Path(folder)
    if base is not None:
        root = Path(base).resolve()
        resolved = (root / path).resolve()
        if resolved != root and root not in resolved.parents:
            raise ConfigError(f"output path {folder} escapes {root}")
        path = resolved
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {folder}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"output folder {folder} is not writable")
    return path


def check_output_dir(folder: str | os.PathLike) -> Path:
    """Check, creating nothing, that ``folder`` is a writable folder or can be created as one:
    commands call this with the other flag checks, before the store is opened."""
    path = Path(folder)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing == path and not path.is_dir():
        raise ConfigError(f"output folder {folder} exists and is not a folder")
    if not existing.is_dir():
        raise ConfigError(f"cannot create output folder {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder {folder} is not writable")
    return path


def safe_child(folder: Path, name: str) -> Path:
    """``folder / name`` for a plain file name (no separators, no ``..``)."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise ConfigError(f"bad output file name {name!r}")
    return folder / name


def format_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A plain, aligned text table."""
    text_rows = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in text_rows]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_csv(path: Path, headers: Sequence[str], rows: Iterable[Sequence]) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(headers)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


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


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> Path:
    """Write ``fig`` to ``path`` (its folder created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **savefig_kwargs)
    return path

def classic_line(epoch: int, epochs: int, train_error: float, test_error: float, label: str = "Test") -> str:
    return f"Epoch {epoch:03d}/{epochs:03d}, Train Error {100 * train_error:.2f}% || {label} Error {100 * test_error:.2f}%"


def data_frame(rows: Iterable[dict], columns: Sequence[str] | None = None):
    """A pandas DataFrame of ``rows`` with ``columns`` in that order (default: every key, in the
    order first seen). pandas is an optional extra: without it, one line says how to get it."""
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError("to_frame() needs pandas: pip install 'depthlab[frames]'") from None
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    return pd.DataFrame([[r.get(c) for c in columns] for r in rows], columns=list(columns))

