"""Kill storm (issue #24, Hardening II item 6): SIGKILL a small frontier sweep again and again,
its driver and its workers, until it finishes; then compare its store with an uninterrupted
run's. Counted per mode: kills survived, trials lost, trials recorded twice, trials whose
status or per-epoch numbers changed, frontier answers changed, exits 3 (workers that kept
dying: the run stopped, unrecorded, and the next invocation went on) and processes left behind.

    DEPTHLAB_DATA=... python benchmarks/kill_storm.py [--kills 10] [--modes inproc,w2,fuse2,ray] [--seed 0]

Each mode: one uninterrupted reference run, then storm rounds of the same command on a fresh
store. In a round the command is started, and after a random pause (0.3 s to 0.6 x the
reference's wall time) a random target is SIGKILLed: the driver, or one of its workers (local
worker processes, or Ray's task workers). A killed driver is restarted; a killed worker is left
to the driver (it retries). The round ends when the command exits 0 with no kill pending; a
mode ends after ``--kills`` kills and a finished round.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from depthlab.report.outputs import safe_child  # noqa: E402

SWEEP = [
    "frontier",
    "--models",
    "cnn-tanh,cnn-elu-bn",
    "--depths",
    "3,6",
    "--lrs",
    "0.01,0.1",
    "--epochs",
    "1",
    "--train-size",
    "600",
    "--eval-size",
    "300",
    "--device",
    "cpu",
    "--json",
]
MODES = {
    "inproc": ["--workers", "1"],
    "w2": ["--workers", "2"],
    "fuse2": ["--workers", "2", "--fuse", "2"],
    "ray": ["--executor", "ray"],
}


def command(mode: str, store: Path) -> list[str]:
    return [sys.executable, "-m", "depthlab", *SWEEP, *MODES[mode], "--store", str(store)]


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux /proc)."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def workers(pid: int, mode: str) -> list[int]:
    found = []
    for k in children(pid):
        line = cmdline(k)
        if mode == "ray" and ("ray::" in line or "default_worker.py" in line):
            found.append(k)
        elif mode != "ray" and "multiprocessing" in line and "resource_tracker" not in line:
            found.append(k)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stored(path: Path) -> dict:
    """hash -> list of (status, epochs without wall times, result checkpoints), all finished rows."""
    out: dict[str, list] = {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        for run_id, key, status, result in c.execute(
            "SELECT id, config_hash, status, result FROM runs WHERE status IN ('done','diverged','failed')"
        ):
            epochs = c.execute(
                "SELECT epoch, train_error, test_error, loss, lr FROM epochs WHERE run_id = ? ORDER BY epoch",
                (run_id,),
            ).fetchall()
            checkpoints = (json.loads(result) or {}).get("checkpoints") if result else None
            out.setdefault(key, []).append((status, epochs, json.dumps(checkpoints, sort_keys=True)))
        running = c.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0]
    return {"rows": out, "running": running}


def answer(stdout: str) -> list:
    doc = json.loads(stdout)
    return [(m["model"], m["max_trainable_depth"]) for m in doc["models"]]


def storm(mode: str, kills_wanted: int, rng: random.Random, folder: Path, env: dict) -> dict:
    ref_store = safe_child(folder, f"{mode}-ref.db")
    started = time.monotonic()
    ref = subprocess.run(command(mode, ref_store), capture_output=True, text=True, env=env, cwd=REPO)
    ref_seconds = time.monotonic() - started
    assert ref.returncode == 0, ref.stderr[-2000:]
    reference, ref_answer = stored(ref_store), answer(ref.stdout)
    figures = {
        "mode": mode,
        "reference_seconds": round(ref_seconds, 1),
        "trials": len(reference["rows"]),
        "kills": 0,
        "driver_kills": 0,
        "worker_kills": 0,
        "rounds": 0,
        "exits_3": 0,
        "invocations": 0,
        "trials_lost": 0,
        "trials_duplicated": 0,
        "trials_changed": 0,
        "answers_changed": 0,
        "running_rows_left": 0,
        "processes_left_behind": 0,
    }
    while figures["kills"] < kills_wanted:
        figures["rounds"] += 1
        store = safe_child(folder, f"{mode}-{figures['rounds']}.db")
        while True:  # one round: invoke until an exit 0
            figures["invocations"] += 1
            proc = subprocess.Popen(
                command(mode, store),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=REPO,
                start_new_session=True,
            )
            family: set[int] = set()
            while proc.poll() is None and figures["kills"] < kills_wanted:
                deadline = time.monotonic() + rng.uniform(0.3, 0.6 * ref_seconds)
                while proc.poll() is None and time.monotonic() < deadline:
                    family.update(children(proc.pid))
                    time.sleep(0.05)
                if proc.poll() is not None:
                    break
                targets = workers(proc.pid, mode)
                if targets and rng.random() < 0.5:
                    os.kill(rng.choice(targets), signal.SIGKILL)
                    figures["worker_kills"] += 1
                else:
                    family.update(children(proc.pid))
                    proc.kill()
                    figures["driver_kills"] += 1
                figures["kills"] += 1
            out, err = proc.communicate()
            if proc.returncode == 3:
                figures["exits_3"] += 1
            if proc.returncode == 0:
                break
            if proc.returncode not in (-signal.SIGKILL, 3):
                raise SystemExit(f"{mode}: unexpected exit {proc.returncode}: {err[-2000:]}")
            time.sleep(1.0)  # local workers notice their driver is gone within 0.5 s
            left = [p for p in family if alive(p)]
            deadline = time.monotonic() + 20
            while left and time.monotonic() < deadline:
                time.sleep(0.5)
                left = [p for p in left if alive(p)]
            figures["processes_left_behind"] += len(left)
            for p in left:  # do not let them disturb the next invocation
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        got = stored(store)
        figures["trials_lost"] += len(set(reference["rows"]) - set(got["rows"]))
        figures["trials_duplicated"] += sum(len(v) - 1 for v in got["rows"].values())
        figures["trials_changed"] += sum(
            1
            for k, v in got["rows"].items()
            if k not in reference["rows"] or v[-1] != reference["rows"][k][0]
        )
        figures["answers_changed"] += int(answer(out) != ref_answer)
        figures["running_rows_left"] += got["running"]
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kill-storm-") as tmp:
        for mode in args.modes.split(","):
            rows.append(storm(mode, args.kills, rng, Path(tmp), env))
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
