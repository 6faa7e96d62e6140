"""Output helpers: safe output folders, atomic writes (every output file: text, CSV, figures),
tables (text and CSV) and figures (matplotlib's object API)."""

from __future__ import annotations

import csv
import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterable, Sequence

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


OWNER_FILE = ".depthlab-command"  # which command's results a folder holds


def check_output_owner(folder: str | os.PathLike, command: str, force: bool = False, *,
                       own: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse (unless ``force``) to write ``command``'s results into a folder that already holds
    another command's (as its `OWNER_FILE` says), or into an existing folder depthlab never marked
    that holds anything but ``own`` (the command's store and its companion files): those are the
    user's files, and a result written there could replace one of them. Creates nothing."""
    marker = Path(folder) / OWNER_FILE
    try:
        owner = marker.read_text(encoding="utf-8").strip() if marker.is_file() else None
    except OSError:
        owner = None
    if owner and owner != command and not force:
        raise ConfigError(f"output folder {folder} already holds the results of `depthlab {owner}`; "
                          f"write `{command}` elsewhere (--out) or pass --force")
    if owner or force:
        return
    foreign = sorted(set(_entries(Path(folder))) - {name for path in own for name in _companions(Path(path), folder)})
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(f"output folder {folder} holds files depthlab did not write ({shown}); write `{command}` "
                          "elsewhere (--out) or pass --force to write into it")


def _entries(folder: Path) -> list[str]:
    """The names in ``folder`` (none if it does not exist or cannot be listed)."""
    try:
        return [entry.name for entry in folder.iterdir()]
    except OSError:
        return []


def _companions(store: Path, folder: str | os.PathLike) -> list[str]:
    """The names, in ``folder``, of a store's file and the files depthlab keeps beside it."""
    try:
        if store.resolve().parent != Path(folder).resolve():
            return []
    except OSError:
        return []
    return [store.name + suffix for suffix in ("", "-wal", "-shm", "-journal", "-checkpoints")]


def mark_output_dir(folder: Path, command: str) -> Path:
    """Record in ``folder`` that it holds ``command``'s results (see `check_output_owner`)."""
    write_text_atomic(folder / OWNER_FILE, command + "\n")
    return folder


def default_output_dir(store_path: str | os.PathLike | None, command: str) -> str:
    """A command's default output folder, from its store and its name:
    ``depthlab-out/<store stem>/<command>`` (``depthlab-out/depthlab/frontier`` for the default store)."""
    stem = Path(store_path).stem if store_path else "depthlab"
    return f"depthlab-out/{stem}/{command}"


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


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, writer: Callable[[IO], None], *, binary: bool = False,
                 **open_kwargs) -> Path:
    """Write ``path`` through ``writer(fh)`` atomically: into a temp file beside it (a unique
    ``.NAME.*.tmp``), flushed to disk, then renamed over ``path``. Readers see the previous file
    or the new one, never a part: a full disk, a read-only folder or an exception in ``writer``
    leaves the previous file as it was and no temp file behind. An `OSError` is raised again
    naming ``path`` (not the temp file); the CLI turns a full or read-only disk into one line."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.",
                                   suffix=".tmp")
        os.chmod(tmp, 0o666 & ~_UMASK)  # as open() would make it (mkstemp makes it private)
        with os.fdopen(fd, "wb" if binary else "w", **open_kwargs) as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if exc.filename == tmp or exc.filename is None:
            raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from None
        raise
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
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


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """``Path(path).write_text(text)``, atomically (`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(text), encoding="utf-8")


def write_csv(path: Path, headers: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """A CSV table, written atomically (`atomic_write`)."""
    rows = list(rows)

    def write(fh) -> None:
        out = csv.writer(fh)
        out.writerow(headers)
        out.writerows(rows)

    return atomic_write(path, write, newline="", encoding="utf-8")


def save_figure(fig, path: str | os.PathLike, **kwargs) -> Path:
    """``fig.savefig(path, **kwargs)``, atomically (`atomic_write`; the format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # a figure asked for in a new folder gets it
    kwargs.setdefault("format", path.suffix.lstrip(".").lower() or "png")
    return atomic_write(path, lambda fh: fig.savefig(fh, **kwargs), binary=True)


# What a full or read-only disk looks like, as an OSError errno or in an SQLite message.
DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
               errno.EROFS: "the file system is read-only"}


def disk_problem(exc: BaseException) -> str | None:
    """One line for an exception that means the disk is full or read-only, else None: an
    `OSError` (ENOSPC, EDQUOT, EROFS) or an `sqlite3` error saying so."""
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        where = f" writing {exc.filename}" if exc.filename else ""
        return (f"{DISK_ERRNOS[exc.errno]}{where} ({exc.strerror or exc}); nothing was half-written (a file it "
                "would replace is intact) and the runs finished so far are kept in the store")
    if type(exc).__module__ == "sqlite3" and isinstance(exc, Exception):
        text = str(exc).lower()
        if "disk is full" in text:
            what = "the disk is full"
        elif "readonly" in text or "read-only" in text:
            what = "the store is read-only"
        else:
            return None
        return (f"{what}: the store could not be written ({exc}); the write in progress was rolled back "
                "and every run finished before it is kept")
    return None


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



# ---------------------------------------------------------------------------------------------
# Wording: one convention in everything a person reads. Errors are percentages (JSON and CSV
# keep fractions, and say so); epochs are zero-based epoch numbers in the classic line and
# "after 0.75 epochs" (epochs of training done) for fractional evaluation points.


# The x label of every per-epoch plot: the same epoch numbers as the classic lines and the JSON.
EPOCH_AXIS = "epoch (numbered from 000, as in the Epoch 000/N lines)"


def percent(fraction: float | None, digits: int = 1) -> str:
    """``0.185`` -> ``18.5%``; None (or NaN) -> ``-``."""
    if fraction is None or fraction != fraction:
        return "-"
    return f"{100 * fraction:.{digits}f}%"


def epochs_words(epochs: float, preposition: str = "after") -> str:
    """``after 0.75 epochs``, ``after 1 epoch``, ``in 3 epochs``: training done, as a count."""
    value = f"{epochs:.2f}".rstrip("0").rstrip(".") if epochs != int(epochs) else f"{int(epochs)}"
    return f"{preposition} {value} epoch{'' if value == '1' else 's'}"


def trial_words(trained: bool, status: str, error: float | None, epochs: float, reason: str | None = None) -> str:
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
