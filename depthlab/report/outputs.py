"""Output files and folders: a command's output folder (checked before anything runs, created,
owned by one command), file names built from values, every file written atomically, and what a
full or read-only disk means in one line."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from ..errors import ConfigError


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


def check_output_owner(
    folder: str | os.PathLike, command: str, force: bool = False, *, own: Iterable[str | os.PathLike] = ()
) -> None:
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
        raise ConfigError(
            f"output folder {folder} already holds the results of `depthlab {owner}`; "
            f"write `{command}` elsewhere (--out) or pass --force"
        )
    if owner or force:
        return
    foreign = sorted(
        set(_entries(Path(folder))) - {name for path in own for name in _companions(Path(path), folder)}
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(
            f"output folder {folder} holds files depthlab did not write ({shown}); write `{command}` "
            "elsewhere (--out) or pass --force to write into it"
        )


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


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(
    path: str | os.PathLike, writer: Callable[[IO], None], *, binary: bool = False, **open_kwargs
) -> Path:
    """Write ``path`` through ``writer(fh)`` atomically: into a temp file beside it (a unique
    ``.NAME.*.tmp``), flushed to disk, then renamed over ``path``. Readers see the previous file
    or the new one, never a part: a full disk, a read-only folder or an exception in ``writer``
    leaves the previous file as it was and no temp file behind. An `OSError` is raised again
    naming ``path`` (not the temp file); the CLI turns a full or read-only disk into one line."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(
            dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp"
        )
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


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """``text`` written to ``path`` as UTF-8, atomically (`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(text), encoding="utf-8")


# What a full or read-only disk looks like, as an OSError errno or in an SQLite message.
DISK_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
}


def disk_problem(exc: BaseException) -> str | None:
    """One line for an exception that means the disk is full or read-only, else None: an
    `OSError` (ENOSPC, EDQUOT, EROFS) or an `sqlite3` error saying so."""
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        where = f" writing {exc.filename}" if exc.filename else ""
        return (
            f"{DISK_ERRNOS[exc.errno]}{where} ({exc.strerror or exc}); nothing was half-written (a file it "
            "would replace is intact) and the runs finished so far are kept in the store"
        )
    if type(exc).__module__ == "sqlite3" and isinstance(exc, Exception):
        text = str(exc).lower()
        if "disk is full" in text:
            what = "the disk is full"
        elif "readonly" in text or "read-only" in text:
            what = "the store is read-only"
        else:
            return None
        return (
            f"{what}: the store could not be written ({exc}); the write in progress was rolled back "
            "and every run finished before it is kept"
        )
    return None
