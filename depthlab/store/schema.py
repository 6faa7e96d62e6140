"""The store's schema, its version and the migrations from each older version.

The version lives in ``depthlab_meta`` (key ``schema_version``) and is read on every open:
a store newer than this code is refused before anything is written to it; an older one
opened to write is migrated in place, after a backup beside it, in one transaction (a
migration that fails leaves the store as it was). A store opened only to read is never
migrated: every older version reads through the current code as it is (a version only adds
tables, so what a reader needs is there), and a carried store stays byte for byte.

Versions: 1 (runs, epochs, depthlab_meta); 2 adds ``claims``, the trials
in flight and the process training each (`depthlab.store.claims`).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from ..errors import StoreError

SCHEMA_VERSION = 2


CLAIMS_TABLE = """
CREATE TABLE IF NOT EXISTS claims (
    config_hash TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    token TEXT NOT NULL,
    started_at REAL NOT NULL,
    heartbeat REAL NOT NULL
)"""


SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS depthlab_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    config_hash TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'train',
    experiment TEXT,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    result TEXT,
    seconds REAL,
    torch_version TEXT,
    device TEXT,
    pid INTEGER,
    host TEXT,
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS runs_by_hash ON runs (config_hash, status);
CREATE TABLE IF NOT EXISTS epochs (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    train_error REAL,
    test_error REAL,
    loss REAL,
    lr REAL,
    seconds REAL,
    extra TEXT,
    PRIMARY KEY (run_id, epoch)
);
"""
    + CLAIMS_TABLE
    + ";\n"
)


# The statements that take a store from version N to N + 1.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (CLAIMS_TABLE,),
}


log = logging.getLogger("depthlab")


def statements(script: str) -> list[str]:
    return [s for s in script.split(";") if s.strip()]


def create(conn: sqlite3.Connection) -> None:
    """Write the current schema and its version into an empty store (inside a transaction)."""
    for statement in statements(SCHEMA):
        conn.execute(statement)
    conn.execute("INSERT OR REPLACE INTO depthlab_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def read_version(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version a store says it has (a store without one is version 1, the first);
    one line (`StoreError`) for a version that is not a positive integer or is newer than this
    code knows, so that nothing reads or writes a store it does not understand."""
    row = conn.execute("SELECT value FROM depthlab_meta WHERE key = 'schema_version'").fetchone()
    text = row[0] if row is not None else "1"
    try:
        version = int(text)
        if version < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise StoreError(f"{path}: schema version {str(text)[:40]!r} is not a version number") from None
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this depthlab reads (up to "
            f"{SCHEMA_VERSION}): upgrade depthlab to use it (the store was not changed)"
        )
    return version


def backup_path(path: Path, version: int) -> Path:
    """Where the copy of a version-``version`` store goes before its migration: beside it, never
    over an earlier backup (``store.db.bak-v1``, then ``store.db.bak-v1.2``, ...)."""
    candidate = path.with_name(f"{path.name}.bak-v{version}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.bak-v{version}.{n}")
    return candidate


def back_up(conn: sqlite3.Connection, path: Path, version: int) -> Path:
    """Copy an older store beside itself before its migration (SQLite's online backup: a
    consistent copy even while other processes write, taken before the store is switched to WAL)."""
    backup = backup_path(path, version)
    target = sqlite3.connect(backup)
    try:
        conn.backup(target)
    finally:
        target.close()
    return backup


def migrate(conn: sqlite3.Connection, path: Path, transaction, backup: Path) -> None:
    """Bring an older store to `SCHEMA_VERSION` (its ``backup`` taken by `back_up`): every step
    in one transaction, which re-reads the version (another process may have migrated it
    meanwhile: then the backup is dropped, that process kept its own)."""
    with transaction() as c:
        version = read_version(c, path)
        if version == SCHEMA_VERSION:
            backup.unlink()
            return
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[step]:
                c.execute(statement)
        c.execute("INSERT OR REPLACE INTO depthlab_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    log.info(
        f"migrated store {path} from schema version {version} to {SCHEMA_VERSION}; "
        f"the version-{version} store is kept as {backup}"
    )
