"""Claims: which process is training which trial, so that processes sharing a store share the
work. Before training a config, a process claims its hash in the ``claims`` table (one row per
hash: pid, host, a token naming the `Store` object, when it started, a heartbeat). A live claim
of another process means "in flight elsewhere": wait for its result and read it back instead of
training it again. A claim is released with the trial's result (in the same transaction), when
its store is closed, and is stale (taken over by the next process that wants it) when its
process is gone: on this host a dead pid (or a pid reused by a later process), on another host
a heartbeat older than `STALE_AFTER` seconds.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from pathlib import Path

HEARTBEAT_EVERY = 30.0  # seconds between a holder's heartbeats
STALE_AFTER = 300.0  # a claim from another host without a heartbeat for this long is stale

# Tokens of the stores open in this process: a claim by this pid under another token is live
# only while that store is open (two runners in one process), stale once it was dropped.
_OPEN_TOKENS: set[str] = set()


def _linux_process_start(pid: int) -> tuple[str, float] | None:
    """(state, start time as a Unix time) of a process from /proc, or None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        btime = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        fields = stat[stat.rindex(")") + 2 :].split()  # the name in (...) may contain spaces
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


def claim_is_live(pid: int, host: str, token: str, started_at: float, heartbeat: float) -> bool:
    """Whether a claim's process may still be training its trial."""
    if host != socket.gethostname():
        return time.time() - heartbeat < STALE_AFTER
    if pid == os.getpid():
        return token in _OPEN_TOKENS
    return _pid_alive(pid, started_at)


def take(conn: sqlite3.Connection, keys: list[str], token: str) -> dict[str, tuple[int, str]]:
    """Claim ``keys`` for ``token`` (inside a write transaction): each key that is free, stale or
    already ours becomes ours; returns {key: (pid, host)} for the keys another live process holds."""
    elsewhere: dict[str, tuple[int, str]] = {}
    now, pid, host = time.time(), os.getpid(), socket.gethostname()
    for key in keys:
        row = conn.execute(
            "SELECT pid, host, token, started_at, heartbeat FROM claims WHERE config_hash = ?", (key,)
        ).fetchone()
        if row is not None and row[2] != token and claim_is_live(*row):
            elsewhere[key] = (row[0], row[1])
            continue
        conn.execute("INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?,?)", (key, pid, host, token, now, now))
    return elsewhere


def release(conn: sqlite3.Connection, keys: list[str] | None, token: str) -> None:
    """Drop ``token``'s claims of ``keys`` (all of them with None), inside a write transaction."""
    if keys is None:
        conn.execute("DELETE FROM claims WHERE token = ?", (token,))
    else:
        conn.executemany("DELETE FROM claims WHERE config_hash = ? AND token = ?", [(k, token) for k in keys])


class Heartbeat:
    """A daemon thread that renews ``token``'s claims every `HEARTBEAT_EVERY` seconds, on a
    connection of its own (a trial may train for hours between two writes of its driver)."""

    def __init__(self, path: Path, token: str):
        self.path, self.token = path, token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="depthlab-claims-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY):
            try:
                conn = sqlite3.connect(self.path, timeout=60.0)
                try:
                    with conn:
                        conn.execute(
                            "UPDATE claims SET heartbeat = ? WHERE token = ?", (time.time(), self.token)
                        )
                finally:
                    conn.close()
            except sqlite3.Error:  # a missed beat only brings staleness nearer on another host
                pass

    def stop(self) -> None:
        self._stop.set()
