"""The run store: one SQLite file (WAL mode) holding every run, its config and its metrics.

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import StoreError
from ..records.record import RunStatus


SCHEMA_VERSION = 1


FINISHED = (RunStatus.DONE, RunStatus.DIVERGED, RunStatus.FAILED)


SQLITE_MAGIC = b"SQLite format 3\x00"


EPOCH_COLUMNS = ("epoch", "train_error", "test_error", "loss", "lr", "seconds")


SCHEMA = """
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


RUN_FRAME_COLUMNS = ("id", "status", "model", "depth", "lr", "precision", "epochs", "train_size", "test_error",
                     "seconds", "kind", "dataset", "config_hash", "device")


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


def _number_or_none(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _record_type_problem(r, config, result) -> str | None:
    """What is wrong with the types of a decoded row (see `Store._COLUMNS` for ``r``), or None."""
    if not isinstance(config, dict):
        return f"config is a JSON {type(config).__name__}, not an object"
    if not isinstance(config.get("model_args", {}), dict):
        return "config model_args is not an object"
    if not _number_or_none(config.get("lr")):
        return "config lr is not a number"
    if result is not None:
        if not isinstance(result, dict):
            return f"result is a JSON {type(result).__name__}, not an object"
        epochs = result.get("epochs", [])
        if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
            return "result epochs are not a list of objects"
        if not all(_number_or_none(e.get(k)) for e in epochs for k in ("train_error", "test_error", "loss", "lr")):
            return "result epoch errors are not numbers"
        if not all(_number_or_none(result.get(k)) for k in ("test_error", "train_error", "seconds")):
            return "result errors or seconds are not numbers"
    if not all(isinstance(v, str) for v in (r[1], r[2], r[4], r[5], r[7])):
        return "hash, kind, model, dataset or status is not text"
    if not _number_or_none(r[10]) or not _number_or_none(r[13]):
        return "seconds or created_at is not a number"
    return None


def _linux_process_start(pid: int) -> tuple[str, float] | None:
    """(state, start time as a Unix time) of a process from /proc, or None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        btime = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        fields = stat[stat.rindex(")") + 2:].split()  # the name in (...) may contain spaces
        return fields[0], btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _pid_alive(pid: int | None, since: float | None = None) -> bool:
    """Whether process ``pid`` still runs and, given ``since`` (when the row was written), is the
    process that wrote it: a zombie (killed, not yet reaped) is dead, and on Linux a process that
    started after ``since`` merely reuses the pid of the dead writer."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    info = _linux_process_start(pid)
    if info is not None:
        state, started = info
        if state in ("Z", "X") or (since is not None and started > since + 2.0):  # btime has 1 s resolution
            return False
    return True


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

    def __init__(self, path: str | os.PathLike = "depthlab.db", *, must_exist: bool = False,
                 reading: bool = False):
        """Open (or create) the store at ``path``. ``reading=True`` opens an existing store
        only to read it: its journal mode is left as it is, so looking into a DELETE-mode
        snapshot (`snapshot_store`) does not rewrite its header to WAL; an empty file is read
        as an empty store (no schema is written into it), and a store on a read-only medium is
        opened read-only."""
        self.path = check_store_path(path, must_exist=must_exist or reading, writing=not reading)
        try:
            if reading and not _writable(self.path):
                self.conn = _connect_read_only(self.path)
            else:
                self.conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout = 60000")
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "depthlab_meta" not in tables:
                self.conn.close()
                raise StoreError(f"{self.path} is an SQLite file but not a depthlab store")
            if reading:
                if not tables:  # an empty file reads as an empty store; its schema is written by a writer only
                    for statement in SCHEMA.split(";"):
                        if statement.strip().startswith("CREATE TABLE"):
                            self.conn.execute(statement.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))
                return
            # Switching a new file to WAL needs it to itself, and SQLite answers "locked" at once
            # (no busy wait) while another process opens the same new store: retry, as writes do.
            self._while_locked(lambda: self.conn.execute("PRAGMA journal_mode = WAL"))
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            if not tables:
                with self.transaction() as c:
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            c.execute(statement)
                    c.execute("INSERT OR IGNORE INTO depthlab_meta VALUES ('schema_version', ?)",
                              (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable depthlab store ({exc})") from None

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
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------------

    def start_run(self, config: dict, config_hash: str, *, kind: str = "train",
                  experiment: str | None = None, device: str | None = None) -> int:
        """Insert a ``running`` row, first dropping stale ``running`` rows of the same config."""
        import torch  # the torch version is part of every record

        with self.transaction() as c:
            for run_id, pid, host, created_at in c.execute(
                    "SELECT id, pid, host, created_at FROM runs WHERE config_hash = ? AND status = 'running'",
                    (config_hash,)).fetchall():
                if host != socket.gethostname() or not _pid_alive(pid, created_at) or pid == os.getpid():
                    c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            cur = c.execute(
                "INSERT INTO runs (config_hash, kind, experiment, model, dataset, config, status, "
                "torch_version, device, pid, host, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (config_hash, kind, experiment, config.get("model", "?"), config.get("dataset", "?"),
                 json.dumps(config, sort_keys=True), RunStatus.RUNNING.value, torch.__version__, device,
                 os.getpid(), socket.gethostname(), time.time()))
            return int(cur.lastrowid)

    @staticmethod
    def _insert_epoch(c: sqlite3.Connection, run_id: int, metrics: dict) -> None:
        extra = {k: v for k, v in metrics.items() if k not in EPOCH_COLUMNS}
        c.execute("INSERT OR REPLACE INTO epochs VALUES (?,?,?,?,?,?,?,?)",
                  (run_id, *(metrics.get(k) for k in EPOCH_COLUMNS), json.dumps(extra) if extra else None))

    def log_epoch(self, run_id: int, metrics: dict) -> None:
        with self.transaction() as c:
            self._insert_epoch(c, run_id, metrics)

    def finish_run(self, run_id: int, status: str, *, seconds: float, reason: str | None = None,
                   result: dict | None = None, device: str | None = None) -> None:
        """Write the final status (and the device actually used, when given) in one transaction."""
        if status not in FINISHED:
            raise ValueError(f"bad final status {status!r}")
        with self.transaction() as c:
            c.execute("UPDATE runs SET status = ?, reason = ?, result = ?, seconds = ?, finished_at = ?, "
                      "device = COALESCE(?, device) WHERE id = ?",
                      (status, reason, json.dumps(result) if result is not None else None,
                       seconds, time.time(), device, run_id))

    def record(self, config: dict, config_hash: str, result: dict, *, kind: str = "train",
               experiment: str | None = None) -> int:
        """Write a whole finished run at once (used by executors whose workers cannot write)."""
        run_id = self.start_run(config, config_hash, kind=kind, experiment=experiment,
                                device=result.get("device"))
        with self.transaction() as c:
            for e in result.get("epochs", []):
                self._insert_epoch(c, run_id, e)
            c.execute("UPDATE runs SET status = ?, reason = ?, result = ?, seconds = ?, finished_at = ? "
                      "WHERE id = ?", (result["status"], result.get("reason"), json.dumps(result),
                                       result.get("seconds"), time.time(), run_id))
        return run_id

    # -- reads ------------------------------------------------------------------------------

    def _row(self, r) -> RunRow:
        """Decode a row. Config and result are JSON text: a store from elsewhere is parsed,
        never executed, and what the parse gives must have the types every reader relies on
        (JSON of the wrong type, ``[1,2,3]`` for a config, is as corrupted as broken JSON)."""
        try:
            config, result = json.loads(r[6]), json.loads(r[9]) if r[9] else None
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{self.path}: run {r[0]} has a corrupted record ({type(exc).__name__})") from None
        problem = _record_type_problem(r, config, result)
        if problem:
            raise StoreError(f"{self.path}: run {r[0]} has a corrupted record ({problem})")
        return RunRow(r[0], r[1], r[2], r[3], r[4], r[5], config, r[7], r[8], result, r[10], r[11], r[12], r[13])

    _COLUMNS = ("id, config_hash, kind, experiment, model, dataset, config, status, reason, result, "
                "seconds, torch_version, device, created_at")

    def find_finished(self, config_hash: str) -> RunRow | None:
        """The latest finished run (done, diverged or failed) of a config, if any."""
        r = self.conn.execute(
            f"SELECT {self._COLUMNS} FROM runs WHERE config_hash = ? AND status IN ('done','diverged','failed') "
            "ORDER BY id DESC LIMIT 1", (config_hash,)).fetchone()
        return self._row(r) if r else None

    def runs(self, *, limit: int | None = None, status: str | None = None, kind: str | None = None) -> list[RunRow]:
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
        return [self._row(r) for r in self.conn.execute(sql, args).fetchall()]

    def frame(self, *, limit: int | None = None, status: str | None = None, kind: str | None = None):
        """`runs` as a pandas DataFrame, one row per run: id, status, model, depth, lr, precision,
        epochs, train_size, test_error (a fraction), seconds, kind, dataset, config_hash, device."""
        from ..report import data_frame

        rows = ({"id": r.id, "status": r.status, "model": r.model,
                 "depth": (r.config.get("model_args") or {}).get("depth"), "lr": r.config.get("lr"),
                 "precision": r.config.get("precision", "fp32"), "epochs": r.config.get("epochs"),
                 "train_size": r.config.get("train_size"), "test_error": (r.result or {}).get("test_error"),
                 "seconds": r.seconds, "kind": r.kind, "dataset": r.dataset, "config_hash": r.config_hash,
                 "device": r.device} for r in self.runs(limit=limit, status=status, kind=kind))
        return data_frame(rows, RUN_FRAME_COLUMNS)

    runs_frame = frame

    def epochs(self, run_id: int) -> list[dict]:
        rows = self.conn.execute(f"SELECT {', '.join(EPOCH_COLUMNS)}, extra FROM epochs "
                                 "WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
        out = []
        for r in rows:
            d = dict(zip(EPOCH_COLUMNS, r[:6]))
            if r[6]:
                try:
                    extra = json.loads(r[6])
                    if not isinstance(extra, dict):
                        raise TypeError
                    d.update(extra)
                except (TypeError, ValueError):
                    raise StoreError(f"{self.path}: epoch {r[0]} of run {run_id} has a corrupted record") from None
            out.append(d)
        return out

    def interrupted(self) -> set[int]:
        """Ids of ``running`` rows written on this host by a process that is gone (Ctrl-C, kill):
        interrupted, not running. Rows from another host cannot be checked and stay running."""
        rows = self.conn.execute("SELECT id, pid, host, created_at FROM runs WHERE status = 'running'").fetchall()
        here = socket.gethostname()
        return {r[0] for r in rows if r[2] == here and r[1] != os.getpid() and not _pid_alive(r[1], r[3])}

    def count(self, status: str | None = None) -> int:
        if status:
            return self.conn.execute("SELECT COUNT(*) FROM runs WHERE status = ?", (status,)).fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
