"""Tables: aligned text, HTML for a notebook, CSV (written atomically) and pandas frames."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import ConfigError
from .outputs import atomic_write


def format_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A plain, aligned text table."""
    text_rows = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in text_rows]
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Iterable[Sequence], caption: str | None = None) -> str:
    """The same table as HTML, for a notebook's ``_repr_html_`` (every cell escaped)."""
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
    title = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_csv(path: Path, headers: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """A CSV table, written atomically (`atomic_write`)."""
    rows = list(rows)

    def write(fh) -> None:
        out = csv.writer(fh)
        out.writerow(headers)
        out.writerows(rows)

    return atomic_write(path, write, newline="", encoding="utf-8")


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
