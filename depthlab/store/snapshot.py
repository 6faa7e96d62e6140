"""Snapshots: a consistent copy of a store (SQLite's online backup, safe while a sweep writes it)
with the checkpoints of its trials in flight, to carry a long run to another machine."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from ..errors import StoreError
from .sqlite import (
    SQLITE_MAGIC,
    Store,
    _committed_tables,
    check_store_path,
    checkpoint_dir_for,
    remove_if_empty,
)

CHECKPOINT_SUFFIXES = (".pt", ".tmp")  # a sweep's checkpoints, and the temp files of their writes


def _is_depthlab_store(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            if fh.read(16) != SQLITE_MAGIC:
                return False
    except OSError:
        return False
    return "depthlab_meta" in (_committed_tables(path) or set())


def _check_snapshot_destination(dest: Path, dest_ckpt: Path, force: bool) -> None:
    """Refuse a destination whose replacement could lose anything: without ``force``, any
    existing DEST or DEST-checkpoints; with it, anything but a depthlab store (and a folder)."""
    if dest.is_dir():
        raise StoreError(f"snapshot destination {dest} is a folder; give the path of a store file")
    if dest.exists() or dest.is_symlink():
        if not force:
            raise StoreError(
                f"snapshot destination {dest} exists; --force replaces it if it is a depthlab store"
            )
        if not _is_depthlab_store(dest):
            raise StoreError(f"snapshot destination {dest} exists and is not a depthlab store: not replaced")
    if dest_ckpt.exists() or dest_ckpt.is_symlink():
        if not dest_ckpt.is_dir() or dest_ckpt.is_symlink():
            raise StoreError(f"snapshot destination {dest_ckpt} exists and is not a checkpoint folder")
        if not force:
            raise StoreError(
                f"snapshot destination {dest_ckpt} exists; --force replaces the checkpoint files in it"
            )


def snapshot_store(store_path: str | os.PathLike, dest: str | os.PathLike, *, force: bool = False) -> dict:
    """Copy a store, even one a live sweep is writing, and its checkpoint folder to ``dest``.

    The store is copied with SQLite's online backup (a consistent state, WAL included, which
    copying the file is not) to a temporary file renamed over ``dest``; each checkpoint is
    copied to a temporary name and renamed. Checkpoints are copied before the store so that
    nothing the store still calls ``running`` is missing its checkpoint. A sweep started on
    ``dest`` (or on a copy of it) continues where the source was: this is how a long search is
    carried across machines that keep only a git checkout.

    Nothing that exists is destroyed unasked: an existing ``dest`` or ``dest-checkpoints/`` is
    refused (`StoreError`) unless ``force``, and even then only a depthlab store is replaced
    and, in its checkpoint folder, only checkpoint files (``*.pt``, ``*.tmp``) that no longer
    exist beside the source are removed; any other file or folder there is left alone. A
    folder, or an empty path, is refused. A failure leaves no temporary file behind.
    Returns ``{"runs": n, "checkpoints": m, "bytes": total}``.
    """
    if not os.fspath(dest).strip():
        raise StoreError("snapshot destination is empty; give the path of a store file")
    src = check_store_path(store_path, must_exist=True, writing=False)
    dest = Path(dest)
    if dest.resolve() == src.resolve():
        raise StoreError(f"snapshot destination {dest} is the store itself")
    src_ckpt, dest_ckpt = Path(checkpoint_dir_for(src)), Path(checkpoint_dir_for(dest))
    _check_snapshot_destination(dest, dest_ckpt, force)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"snapshot destination {dest}: cannot create its folder ({exc.strerror})") from None
    copied, total = _copy_checkpoints(src_ckpt, dest_ckpt)
    runs = _backup_store(src, dest)
    total += dest.stat().st_size
    return {"runs": runs, "checkpoints": len(copied), "bytes": total}


def _copy_checkpoints(src_ckpt: Path, dest_ckpt: Path) -> tuple[set[str], int]:
    """Copy the finished checkpoint files (each to a temporary name, then renamed) and remove the
    destination's checkpoint files that no longer exist beside the source; (names copied, bytes)."""
    copied: set[str] = set()
    total = 0
    # Checkpoints being written are "*.tmp" files (train.save_checkpoint): not carried.
    carried = (
        [f for f in sorted(src_ckpt.iterdir()) if f.is_file() and not f.name.endswith(".tmp")]
        if src_ckpt.is_dir()
        else []
    )
    if carried:
        dest_ckpt.mkdir(parents=True, exist_ok=True)
    for f in carried:
        tmp = dest_ckpt / (f.name + ".tmp")
        try:
            shutil.copyfile(f, tmp)
        except FileNotFoundError:  # the trial finished while we copied: nothing to carry
            tmp.unlink(missing_ok=True)
            continue
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, dest_ckpt / f.name)
        copied.add(f.name)
        total += (dest_ckpt / f.name).stat().st_size
    if dest_ckpt.is_dir():
        for f in dest_ckpt.iterdir():
            if (
                f.name not in copied
                and f.is_file()
                and not f.is_symlink()
                and f.name.endswith(CHECKPOINT_SUFFIXES)
            ):
                f.unlink()
        remove_if_empty(dest_ckpt)
    return copied, total


def _backup_store(src: Path, dest: Path) -> int:
    """SQLite's online backup of ``src`` into a temporary file renamed over ``dest``, in DELETE
    journal mode; the number of runs copied. A failure leaves no temporary file behind."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".tmp")
    os.close(fd)
    tmp_db = Path(tmp_name)
    try:
        with Store(src, reading=True) as store:
            out = sqlite3.connect(tmp_db)
            try:
                store.conn.backup(out)
                # Claims name the processes training the source's trials: none of them trains the copy's.
                if out.execute("SELECT 1 FROM sqlite_master WHERE name = 'claims'").fetchone():
                    out.execute("DELETE FROM claims")
                    out.commit()
                # A snapshot is one self-contained file: no -wal beside it to forget in a commit.
                out.execute("PRAGMA journal_mode = DELETE")
            finally:
                out.close()
            runs = store.count()
        for side in ("-wal", "-shm"):
            Path(os.fspath(dest) + side).unlink(missing_ok=True)
        os.replace(tmp_db, dest)
    finally:
        for leftover in (
            tmp_db,
            Path(tmp_name + "-journal"),
            Path(tmp_name + "-wal"),
            Path(tmp_name + "-shm"),
        ):
            leftover.unlink(missing_ok=True)
    return runs
