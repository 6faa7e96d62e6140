"""The run store: one SQLite file (WAL mode) holding every run, its config and its metrics.
Its schema and migrations are in `depthlab.store.schema`, the checks of what a row holds in
`depthlab.store.rows`, the claims of trials in flight in `depthlab.store.claims`.

A run is inserted as ``running`` before training starts, each epoch is appended in its own
transaction, and the final status is written last. A process killed at any moment therefore
leaves either a finished run or one marked ``running`` (never a half-written run that looks
complete); the next attempt at the same config replaces a ``running`` row whose process is gone.
Several processes may write to one store at once (WAL plus a busy timeout).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from ..records.record import RunStatus
from . import claims, schema
from .claims import _pid_alive  # noqa: F401  (the liveness check callers and tests know it by)
from .rows import BadRecord, decode_epoch, decode_run

FINISHED = (RunStatus.DONE, RunStatus.DIVERGED, RunStatus.FAILED)


SQLITE_MAGIC = b"SQLite format 3\x00"


EPOCH_COLUMNS = ("epoch", "train_error", "test_error", "loss", "lr", "seconds")


RUN_FRAME_COLUMNS = (
    "id",
    "status",
    "model",
    "depth",
    "lr",
    "precision",
    "epochs",
    "train_size",
    "test_error",
    "seconds",
    "kind",
    "dataset",
    "config_hash",
    "device",
)


@dataclass
class RunRow:
    id: int
    config_hash: str
    kind: str
    experiment: str | None
    model: str
    dataset: str
    config: dict
    status: str
    reason: str | None
    result: dict | None
    seconds: float | None
    torch_version: str | None
    device: str | None
    created_at: float


def _committed_tables(path: Path) -> set[str] | None:
    """The tables in the main file of an SQLite database, read without locking or creating
    anything (``immutable``: no -wal/-shm files); None when that read fails. Tables still in
    the WAL are not seen, so only "has tables, none of them ours" is conclusive."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
        try:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def check_store_path(path: str | os.PathLike, *, must_exist: bool = False, writing: bool = True) -> Path:
    """Validate a store path without creating or changing anything (``writing=False``: a store
    that is only read may sit on a read-only medium)."""
    p = Path(path)
    if p.is_dir():
        raise StoreError(f"store {p} is a directory, not a depthlab store file")
    if p.exists():
        if p.stat().st_size:
            with open(p, "rb") as fh:
                if fh.read(16) != SQLITE_MAGIC:
                    raise StoreError(f"{p} is not a depthlab store (not an SQLite file)")
            tables = _committed_tables(p)
            if tables and "depthlab_meta" not in tables:
                raise StoreError(f"{p} is an SQLite file but not a depthlab store")
        if writing and not _writable(p):
            raise StoreError(f"store {p} is not writable")
    else:
        if must_exist:
            raise StoreError(f"store {p} does not exist")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise StoreError(f"store {p}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise StoreError(f"store {p} is not writable (folder {parent} is read-only)")
    return p


def _writable(p: Path) -> bool:
    """Whether the store file and its folder (where SQLite puts its -wal, -shm and journal) can be written."""
    return os.access(p, os.W_OK) and os.access(p.parent if str(p.parent) else ".", os.W_OK)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write ``path`` (a store on a read-only medium): ``mode=ro``,
    or, where SQLite cannot open a WAL-mode file that way (no -shm beside it, none creatable),
    ``immutable=1``, which is exact as nothing can write the file there either."""
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60.0, isolation_level=None)
    try:
        conn.execute("SELECT name FROM sqlite_master").fetchall()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)


def checkpoint_dir_for(store_path: str | os.PathLike) -> str:
    """The folder beside a store where sweeps keep the checkpoints of their trials in flight
    (``<store>-checkpoints``, like SQLite's own ``<store>-wal``); empty when nothing runs."""
    return os.fspath(store_path) + "-checkpoints"


def remove_if_empty(folder: str | os.PathLike) -> None:
    """Remove ``folder`` if it exists and is empty (a finished sweep's checkpoint folder)."""
    try:
        os.rmdir(folder)
    except OSError:  # absent, or still holds checkpoints of another sweep's trials
        pass


class Store:
    """A depthlab run store in one SQLite file. Use as a context manager or call `close`."""

    def __init__(
        self, path: str | os.PathLike = "depthlab.db", *, must_exist: bool = False, reading: bool = False
    ):
        """Open (or create) the store at ``path``. ``reading=True`` opens an existing store
        only to read it: its journal mode is left as it is, so looking into a DELETE-mode
        snapshot (`snapshot_store`) does not rewrite its header to WAL; an empty file is read
        as an empty store (no schema is written into it), and a store on a read-only medium is
        opened read-only."""
        self.path = check_store_path(path, must_exist=must_exist or reading, writing=not reading)
        self.token = uuid.uuid4().hex  # names this store object's claims (`depthlab.store.claims`)
        self._heartbeat: claims.Heartbeat | None = None
        try:
            if reading and not _writable(self.path):
                self.conn = _connect_read_only(self.path)
            else:
                self.conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable depthlab store ({exc})") from None
        try:
            self.version = self._open(reading)
        except BaseException as exc:
            self.conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"{self.path} is not a usable depthlab store ({exc})") from None
            raise

    def _open(self, reading: bool) -> int:
        """Check what the file holds and, for a writer, set it up: WAL, the schema of a new store,
        the migration of an older one. Returns the schema version the file has (for a reader,
        possibly older than `schema.SCHEMA_VERSION`: it is read as it is, never migrated)."""
        self.conn.execute("PRAGMA busy_timeout = 60000")
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "depthlab_meta" not in tables:
            raise StoreError(f"{self.path} is an SQLite file but not a depthlab store")
        version = schema.read_version(self.conn, self.path) if tables else schema.SCHEMA_VERSION
        if reading:
            if not tables:  # an empty file reads as an empty store; its schema is written by a writer only
                for statement in schema.statements(schema.SCHEMA):
                    if statement.strip().startswith("CREATE TABLE"):
                        self.conn.execute(statement.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))
            return version
        backup = (
            schema.back_up(self.conn, self.path, version)
            if tables and version < schema.SCHEMA_VERSION
            else None
        )
        # Switching a new file to WAL needs it to itself, and SQLite answers "locked" at once
        # (no busy wait) while another process opens the same new store: retry, as writes do.
        self._while_locked(lambda: self.conn.execute("PRAGMA journal_mode = WAL"))
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        if not tables:
            with self.transaction() as c:
                if "depthlab_meta" not in {r[0] for r in c.execute("SELECT name FROM sqlite_master")}:
                    schema.create(c)
        elif backup is not None:
            schema.migrate(self.conn, self.path, self.transaction, backup)
        return schema.SCHEMA_VERSION

    # -- plumbing ---------------------------------------------------------------------------

    def _while_locked(self, statement) -> None:
        """Run ``statement()``, retried (about 3 minutes in all) while another process holds
        the lock SQLite needs for it."""
        for attempt in range(200):
            try:
                statement()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(min(0.05 * (attempt + 1), 1.0))
        raise StoreError(f"store {self.path} stayed locked by another process")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locking) transaction, retried while another writer holds the lock."""
        self._while_locked(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        """Close, first releasing the claims this store object still holds (trials it took but
        did not finish: an error, Ctrl-C), so that other processes need not wait for them."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            claims._OPEN_TOKENS.discard(self.token)
            try:
                with self.transaction() as c:
                    claims.release(c, None, self.token)
            except (sqlite3.Error, StoreError):  # e.g. a full disk: the claims go stale with this process
                pass
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- claims (`depthlab.store.claims`) ----------------------------------------------------

    def claim(self, config_hashes: list[str]) -> dict[str, tuple[int, str]]:
        """Claim the trials ``config_hashes`` for this store object before training them (one
        transaction). Returns {hash: (pid, host)} for those another live process is training:
        they are not claimed, their result is to be waited for (`claimed_elsewhere`)."""
        if self._heartbeat is None:
            claims._OPEN_TOKENS.add(self.token)
            self._heartbeat = claims.Heartbeat(self.path, self.token)
        with self.transaction() as c:
            return claims.take(c, list(config_hashes), self.token)

    def release(self, config_hashes: list[str]) -> None:
        """Give up this store object's claims of ``config_hashes`` (a trial cancelled or abandoned)."""
        if self._heartbeat is not None:
            with self.transaction() as c:
                claims.release(c, list(config_hashes), self.token)

    # -- writes -----------------------------------------------------------------------------

    def start_run(
        self,
        config: dict,
        config_hash: str,
        *,
        kind: str = "train",
        experiment: str | None = None,
        device: str | None = None,
    ) -> int:
        """Insert a ``running`` row, first dropping stale ``running`` rows of the same config."""
        import torch  # the torch version is part of every record

        with self.transaction() as c:
            for run_id, pid, host, created_at in c.execute(
                "SELECT id, pid, host, created_at FROM runs WHERE config_hash = ? AND status = 'running'",
                (config_hash,),
            ).fetchall():
                if host != socket.gethostname() or not _pid_alive(pid, created_at) or pid == os.getpid():
                    c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            cur = c.execute(
                "INSERT INTO runs (config_hash, kind, experiment, model, dataset, config, status, "
                "torch_version, device, pid, host, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    config_hash,
                    kind,
                    experiment,
                    config.get("model", "?"),
                    config.get("dataset", "?"),
                    json.dumps(config, sort_keys=True),
                    RunStatus.RUNNING.value,
                    torch.__version__,
                    device,
                    os.getpid(),
                    socket.gethostname(),
                    time.time(),
                ),
            )
            return int(cur.lastrowid)

    @staticmethod
    def _insert_epoch(c: sqlite3.Connection, run_id: int, metrics: dict) -> None:
        extra = {k: v for k, v in metrics.items() if k not in EPOCH_COLUMNS}
        c.execute(
            "INSERT OR REPLACE INTO epochs VALUES (?,?,?,?,?,?,?,?)",
            (run_id, *(metrics.get(k) for k in EPOCH_COLUMNS), json.dumps(extra) if extra else None),
        )

    def log_epoch(self, run_id: int, metrics: dict) -> None:
        with self.transaction() as c:
            self._insert_epoch(c, run_id, metrics)

    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        seconds: float,
        reason: str | None = None,
        result: dict | None = None,
        device: str | None = None,
    ) -> None:
        """Write the final status (and the device actually used, when given) in one transaction."""
        if status not in FINISHED:
            raise ValueError(f"bad final status {status!r}")
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET status = ?, reason = ?, result = ?, seconds = ?, finished_at = ?, "
                "device = COALESCE(?, device) WHERE id = ?",
                (
                    status,
                    reason,
                    json.dumps(result) if result is not None else None,
                    seconds,
                    time.time(),
                    device,
                    run_id,
                ),
            )
            self._release_claim_of(c, run_id)

    def _release_claim_of(self, c: sqlite3.Connection, run_id: int) -> None:
        """With a run's result, in its transaction: its claim (if this store holds it) is released."""
        if self._heartbeat is not None:
            c.execute(
                "DELETE FROM claims WHERE token = ? AND config_hash = (SELECT config_hash FROM runs "
                "WHERE id = ?)",
                (self.token, run_id),
            )

    def record(
        self,
        config: dict,
        config_hash: str,
        result: dict,
        *,
        kind: str = "train",
        experiment: str | None = None,
    ) -> int:
        """Write a whole finished run at once (used by executors whose workers cannot write)."""
        run_id = self.start_run(
            config, config_hash, kind=kind, experiment=experiment, device=result.get("device")
        )
        with self.transaction() as c:
            for e in result.get("epochs", []):
                self._insert_epoch(c, run_id, e)
            c.execute(
                "UPDATE runs SET status = ?, reason = ?, result = ?, seconds = ?, finished_at = ? "
                "WHERE id = ?",
                (
                    result["status"],
                    result.get("reason"),
                    json.dumps(result),
                    result.get("seconds"),
                    time.time(),
                    run_id,
                ),
            )
            self._release_claim_of(c, run_id)
        return run_id

    # -- reads ------------------------------------------------------------------------------

    def _select(self, sql: str, args=()) -> list[sqlite3.Row]:
        """Rows read by column name (never by position: a column added later moves none)."""
        cursor = self.conn.cursor()
        cursor.row_factory = sqlite3.Row
        return cursor.execute(sql, args).fetchall()

    def _row(self, r: sqlite3.Row) -> RunRow:
        """Decode a row. Config and result are JSON text: a store from elsewhere is parsed
        (nesting bounded), never executed, and every column and field a reader relies on must
        have its type and range (`depthlab.store.rows`): a row that fails is named by its id."""
        try:
            config, result = decode_run(r)
        except BadRecord as exc:
            raise StoreError(f"{self.path}: run {r['id']} has a corrupted record ({exc})") from None
        return RunRow(
            r["id"],
            r["config_hash"],
            r["kind"],
            r["experiment"],
            r["model"],
            r["dataset"],
            config,
            r["status"],
            r["reason"],
            result,
            r["seconds"],
            r["torch_version"],
            r["device"],
            r["created_at"],
        )

    _COLUMNS = (
        "id, config_hash, kind, experiment, model, dataset, config, status, reason, result, "
        "seconds, torch_version, device, created_at"
    )

    def find_finished(self, config_hash: str) -> RunRow | None:
        """The latest finished run (done, diverged or failed) of a config, if any."""
        rows = self._select(
            f"SELECT {self._COLUMNS} FROM runs WHERE config_hash = ? AND status IN ('done','diverged','failed') "
            "ORDER BY id DESC LIMIT 1",
            (config_hash,),
        )
        return self._row(rows[0]) if rows else None

    def runs(
        self, *, limit: int | None = None, status: str | None = None, kind: str | None = None
    ) -> list[RunRow]:
        sql = f"SELECT {self._COLUMNS} FROM runs"
        where, args = [], []
        if status:
            where.append("status = ?")
            args.append(status)
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._row(r) for r in self._select(sql, args)]

    def to_frame(self, *, limit: int | None = None, status: str | None = None, kind: str | None = None):
        """`runs` as a pandas DataFrame, one row per run: id, status, model, depth, lr, precision,
        epochs, train_size, test_error (a fraction), seconds, kind, dataset, config_hash, device."""
        from ..report.tables import data_frame

        rows = (
            {
                "id": r.id,
                "status": r.status,
                "model": r.model,
                "depth": (r.config.get("model_args") or {}).get("depth"),
                "lr": r.config.get("lr"),
                "precision": r.config.get("precision", "fp32"),
                "epochs": r.config.get("epochs"),
                "train_size": r.config.get("train_size"),
                "test_error": (r.result or {}).get("test_error"),
                "seconds": r.seconds,
                "kind": r.kind,
                "dataset": r.dataset,
                "config_hash": r.config_hash,
                "device": r.device,
            }
            for r in self.runs(limit=limit, status=status, kind=kind)
        )
        return data_frame(rows, RUN_FRAME_COLUMNS)

    def epochs(self, run_id: int) -> list[dict]:
        """The epochs table's rows of a run, checked (`depthlab.store.rows.decode_epoch`)."""
        out = []
        for r in self._select(
            f"SELECT {', '.join(EPOCH_COLUMNS)}, extra FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
        ):
            try:
                out.append(decode_epoch(r, EPOCH_COLUMNS))
            except BadRecord as exc:
                raise StoreError(
                    f"{self.path}: epoch {r['epoch']} of run {run_id} has a corrupted record ({exc})"
                ) from None
        return out

    def interrupted(self) -> set[int]:
        """Ids of ``running`` rows written on this host by a process that is gone (Ctrl-C, kill):
        interrupted, not running. Rows from another host cannot be checked and stay running."""
        rows = self._select("SELECT id, pid, host, created_at FROM runs WHERE status = 'running'")
        here = socket.gethostname()
        return {
            r["id"]
            for r in rows
            if r["host"] == here and r["pid"] != os.getpid() and not _pid_alive(r["pid"], r["created_at"])
        }

    def count(self, status: str | None = None) -> int:
        if status:
            return self.conn.execute("SELECT COUNT(*) FROM runs WHERE status = ?", (status,)).fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
