"""Reliability with real processes and real SQLite files (issue 5): a frontier sweep killed
with SIGKILL at random moments and resumed ends with exactly the trials of an uninterrupted
run; several processes write one store at once; diverging and crashing trials are recorded and
the sweep goes on; the same command with the same seed gives the same metrics twice."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from fakedata import synthetic_dataset

from depthlab.cli import main
from depthlab.store.sqlite import Store, _pid_alive

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"  # the same thread count in every process: bit-identical results
    env["MKL_NUM_THREADS"] = "1"
    env["DEPTHLAB_OFFLINE"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a crash in a child prints every thread's stack to its log
    env.update(extra)
    return env


def _rows(db: Path) -> list[tuple]:
    """(id, config_hash, status) of every run, read with plain sqlite3 (a second reader)."""
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT id, config_hash, status FROM runs ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        con.close()


def _snapshot(db: Path) -> dict:
    """Everything a finished store says about its trials, keyed by config hash."""
    with Store(db, must_exist=True) as store:
        out = {}
        for r in store.runs():
            epochs = [
                {k: e[k] for k in ("epoch", "train_error", "test_error", "loss", "lr")}
                for e in store.epochs(r.id)
            ]
            out.setdefault(r.config_hash, []).append(
                {
                    "status": r.status,
                    "config": r.config,
                    "epochs": epochs,
                    "checkpoints": (r.result or {}).get("checkpoints"),
                    "test_error": (r.result or {}).get("test_error"),
                }
            )
        orphans = store.conn.execute(
            "SELECT COUNT(*) FROM epochs WHERE run_id NOT IN (SELECT id FROM runs)"
        ).fetchone()[0]
        integrity = store.conn.execute("PRAGMA integrity_check").fetchone()[0]
    return {"trials": out, "orphan_epochs": orphans, "integrity": integrity}


# ---------------------------------------------------------------------------------------------
# Kill -9 at random moments, resume, compare with an uninterrupted run

# A small real sweep: three presets, depths 3..12 with bisection, five lrs, real MNIST, on the
# local executor with two worker processes (the default on 2 cores: the driver alone writes the
# store, each model's search runs in its own thread). 18 trials of 0.1-0.7 s of CPU each.
KILL_SWEEP = [
    "frontier",
    "--models",
    "cnn-elu-bn,cnn-tanh,resnet-elu-bn",
    "--train-size",
    "1000",
    "--epochs",
    "1",
    "--lrs",
    "0.01,0.03,0.1,0.3,1",
    "--max-depth",
    "12",
    "--eval-size",
    "300",
    "--evals-per-epoch",
    "4",
    "--threshold",
    "0.6",
    "--device",
    "cpu",
    "--workers",
    "2",
    "--json",
]
KILL_MODES = ["startup"] * 2 + ["in-flight"] * 5 + ["after-record"] * 5


def _sweep(data_root: Path, db: Path, out: Path, log: Path) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "depthlab",
        *KILL_SWEEP,
        "--store",
        str(db),
        "--out",
        str(out),
        "--data-dir",
        str(data_root),
    ]
    with open(log, "w") as err:  # its own session: its workers can be found after the kill
        return subprocess.Popen(
            args,
            env=_env(),
            cwd=db.parent,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )


def _session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (the killed driver's spawned workers, if any survived)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in "ZX":  # fields: state ppid pgrp session ...
            alive.append(int(stat.parent.name))
    return alive


def _wait_for(proc: subprocess.Popen, condition, timeout: float = 180.0) -> bool:
    """Poll ``condition()`` every 10 ms; False if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if condition():
            return True
        time.sleep(0.01)
    raise AssertionError("the sweep made no progress for 3 minutes")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds orphaned workers through /proc")
def test_frontier_killed_at_random_moments_resumes_to_the_uninterrupted_result(data_root, tmp_path):
    """12 SIGKILLs of the driver at seeded random moments, each followed by the same command:
    during start-up (a random fraction of the reference run's imports and data loading), while
    trials are in flight (0.3-1.5 s after this run's workers appeared), and just after a trial was
    recorded (the next ones in flight, the driver between writes). The moments are relative to
    the run being killed, not to the reference's timings: under a loaded machine those differ.
    The end state equals an uninterrupted run's, trial for trial, and no worker process
    outlives a killed driver."""
    rng = random.Random(1234)
    ref_db, db = tmp_path / "ref" / "ref.db", tmp_path / "killed" / "k.db"
    ref_db.parent.mkdir()
    db.parent.mkdir()

    reference = _sweep(data_root, ref_db, tmp_path / "ref-out", tmp_path / "ref.log")
    launched = time.monotonic()
    _wait_for(reference, lambda: len(_session_members(reference.pid)) >= 2)
    startup = time.monotonic() - launched  # imports and data loading, up to the first worker spawn
    ref_out, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, (tmp_path / "ref.log").read_text()[-3000:]
    ref = _snapshot(ref_db)
    assert len(ref["trials"]) >= 15 and {s["status"] for t in ref["trials"].values() for s in t} == {"done"}

    modes = KILL_MODES[:]
    rng.shuffle(modes)
    kills, moments, logs = 0, [], []
    for i, mode in enumerate(modes):
        finished = len(_rows(db))
        logs.append(tmp_path / f"run-{i}.log")
        proc = _sweep(data_root, db, tmp_path / "out", logs[-1])
        one_more = lambda: len(_rows(db)) > finished  # noqa: E731, B023  (trials recorded as they end; awaited in this pass)
        if mode == "startup":
            time.sleep(rng.uniform(0.1, 0.6) * startup)
        elif mode == "in-flight":  # this run's workers exist: trials are being handed out or trained
            _wait_for(proc, lambda: len(_session_members(proc.pid)) >= 3)  # noqa: B023  (awaited in this pass)
            time.sleep(rng.uniform(0.3, 1.5))
        else:  # after-record
            _wait_for(proc, one_more)
            time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if proc.returncode != -signal.SIGKILL:
            assert proc.returncode == 0, (mode, logs[-1].read_text()[-3000:])
            break  # it finished the sweep before this kill: nothing was left to interrupt
        kills += 1
        moments.append(f"{mode}: {len(_rows(db)) - finished} trial(s) recorded")
        deadline = time.monotonic() + 20  # workers poll for their driver and exit
        while _session_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _session_members(proc.pid), f"workers outlived their killed driver ({mode})"
    assert kills >= 10, moments
    resumed = [m for m in moments if not m.endswith(": 0 trial(s) recorded")]
    assert len(resumed) >= 3, moments  # killed runs that had resumed the sweep and recorded more of it

    final = _sweep(data_root, db, tmp_path / "out", tmp_path / "final.log")
    final_out, _ = final.communicate(timeout=600)
    assert final.returncode == 0, (tmp_path / "final.log").read_text()[-3000:]

    got = _snapshot(db)
    assert got["integrity"] == "ok" and got["orphan_epochs"] == 0
    assert sorted(got["trials"]) == sorted(ref["trials"])  # none lost, none extra
    assert all(len(runs) == 1 for runs in got["trials"].values())  # none duplicated
    assert {s["status"] for t in got["trials"].values() for s in t} == {"done"}  # none left running
    assert got["trials"] == ref["trials"]  # same configs, epochs, verdicts
    # (A killed run's own stderr may end with a worker's traceback: a worker caught receiving
    # the dataset from a driver that just died reports the broken connection as it exits.)
    for log in (tmp_path / "ref.log", tmp_path / "final.log"):
        assert "Traceback" not in log.read_text(), log.read_text()[-2000:]
    print(f"kills ({len(ref['trials'])} trials):", "; ".join(moments))

    def frontier(doc):
        return [
            {k: v for k, v in m.items() if k not in ("seconds", "trials_reused", "trial_seconds")}
            for m in json.loads(doc)["models"]
        ]

    assert frontier(final_out) == frontier(ref_out)  # the same answer


# ---------------------------------------------------------------------------------------------
# Stale `running` rows: whose process is gone (killed, zombie, pid reused)


def test_stale_running_rows_of_zombies_and_reused_pids_are_replaced(tmp_path):
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while (
        not os.path.exists(f"/proc/{zombie.pid}")
        or open(f"/proc/{zombie.pid}/stat").read().split(") ")[1][0] != "Z"
    ):
        time.sleep(0.01)  # exited, not reaped: kill(pid, 0) still succeeds
        if not os.path.exists("/proc"):
            pytest.skip("needs /proc")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        now = time.time()
        assert not _pid_alive(zombie.pid, now)
        assert not _pid_alive(sleeper.pid, now - 3600)  # started long after the row: a reused pid
        assert _pid_alive(sleeper.pid, now) and _pid_alive(os.getpid(), now)
        with Store(tmp_path / "s.db") as store:
            for key, pid, created in (
                ("zombie", zombie.pid, now),
                ("reused", sleeper.pid, now - 3600),
                ("live", sleeper.pid, now),
            ):
                store.start_run({"model": "m", "dataset": "d"}, key)
                store.conn.execute(
                    "UPDATE runs SET pid = ?, created_at = ? WHERE config_hash = ?", (pid, created, key)
                )
                store.start_run({"model": "m", "dataset": "d"}, key)
            counts = dict(store.conn.execute("SELECT config_hash, COUNT(*) FROM runs GROUP BY config_hash"))
        assert counts == {"zombie": 1, "reused": 1, "live": 2}
    finally:
        sleeper.kill()
        sleeper.wait()
        zombie.wait()


# ---------------------------------------------------------------------------------------------
# Concurrency: several processes write trials to one (new) store at once

_TRIAL_WRITER = textwrap.dedent("""
    import pathlib, sys, time, torch
    torch.set_num_threads(1)
    from fakedata import synthetic_dataset
    from depthlab.sweep.runner import run_recorded
    from depthlab.store import Store
    from depthlab.engine import TrainConfig
    path, tag = sys.argv[1], int(sys.argv[2])
    data = synthetic_dataset(128, 64)
    folder = pathlib.Path(path).parent
    (folder / f"ready-{tag}").touch()
    while len(list(folder.glob("ready-*"))) < int(sys.argv[3]):  # a barrier: all create the store together
        time.sleep(0.005)
    with Store(path) as store:
        for i in range(6):
            config = TrainConfig(model="cnn-tanh", model_args={"depth": 3}, epochs=2, batch_size=64,
                                 lr=0.01 * (i + 1), seed=tag, device="cpu")
            assert run_recorded(config, store, data).status == "done"
            for j in range(10):  # and a burst of small raw writes between trials
                run_id = store.start_run({"model": "m", "dataset": "d"}, f"raw-{tag}-{i}-{j}")
                store.log_epoch(run_id, {"epoch": 0, "loss": 1.0})
                store.finish_run(run_id, "done", seconds=0.0, result={})
""")

_READER = textwrap.dedent("""
    import pathlib, sys, time
    from depthlab.cli import main
    folder = pathlib.Path(sys.argv[1]).parent
    while not (folder / "writers-done").exists():  # list the store over and over while it is written
        if pathlib.Path(sys.argv[1]).exists():
            code = main(["runs", "--store", sys.argv[1], "--limit", "5", "--json"])
            assert code == 0, code
        time.sleep(0.01)
""")


def test_processes_writing_trials_to_one_new_store_at_once(tmp_path):
    db, n = tmp_path / "shared.db", 4
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(db)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _TRIAL_WRITER, str(db), str(tag), str(n)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in range(n)
    ]
    errors = []
    for w in writers:
        out, err = w.communicate(timeout=240)
        errors.append(out + err)
        assert w.returncode == 0, err
    (tmp_path / "writers-done").touch()
    _, reader_err = reader.communicate(timeout=60)
    assert reader.returncode == 0, reader_err
    assert not any("locked" in e for e in errors + [reader_err])
    with Store(db) as store:
        rows = store.runs()
        trials = [r for r in rows if r.model == "cnn-tanh"]
        assert len(rows) == n * 6 * 11 and len(trials) == n * 6
        assert len({r.config_hash for r in trials}) == n * 6 and {r.status for r in rows} == {"done"}
        assert all(len(store.epochs(r.id)) == 2 for r in trials)
        assert store.conn.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == n * 6 * 2 + n * 60
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# ---------------------------------------------------------------------------------------------
# Divergence and crashing trials: recorded, and the sweep continues


def _cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_diverging_trials_are_recorded_and_the_sweep_continues(mnist, data_root, tmp_path, capsys):
    # lr 100 sends cnn-elu at depth 6 to inf/NaN within a few steps (on this seed); the search
    # tries the middle of the sorted grid first, so that is the first trial of the sweep.
    db = tmp_path / "d.db"
    code, out, err = _cli(
        [
            "frontier",
            "--models",
            "cnn-elu,cnn-elu-bn",
            "--lrs",
            "0.1,100",
            "--depths",
            "6",
            "--train-size",
            "600",
            "--epochs",
            "1",
            "--eval-size",
            "200",
            "--threshold",
            "0.7",
            "--device",
            "cpu",
            "--workers",
            "2",
            "--data-dir",
            str(data_root),
            "--store",
            str(db),
            "--out",
            str(tmp_path / "o"),
            "--json",
        ],
        capsys,
    )  # trials in worker processes
    assert code == 0, err
    doc = json.loads(out)
    with Store(db) as store:
        rows = {(r.model, r.config["lr"]): r for r in store.runs()}
        assert set(rows) == {("cnn-elu", 100.0), ("cnn-elu", 0.1), ("cnn-elu-bn", 100.0), ("cnn-elu-bn", 0.1)}
        diverged = rows["cnn-elu", 100.0]
        assert diverged.status == "diverged" and diverged.reason.startswith(
            "non-finite loss at epoch 0, step"
        )
        assert diverged.result["test_error"] is None and store.epochs(diverged.id) == []  # stopped at once
        assert store.count("running") == 0 and store.count("failed") == 0
    elu = doc["models"][0]
    assert (
        elu["model"] == "cnn-elu" and elu["max_trainable_depth"] == 6 and elu["lr"] == 0.1
    )  # the next lr trained
    assert doc["models"][1]["model"] == "cnn-elu-bn"  # the next model ran
    assert "lr 100 seed 0: diverged " in err and "failed (" not in err


def test_a_trial_that_raises_is_recorded_failed_and_the_sweep_continues(
    mnist, data_root, tmp_path, capsys, monkeypatch
):
    engine = sys.modules["depthlab.engine.setup"]  # where every trainer builds its networks
    real = engine.create_model

    def create_model(name, input_shape, num_classes, **overrides):
        if overrides.get("depth", 0) >= 9:  # what a huge model does on a small machine
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB (simulated)")
        return real(name, input_shape, num_classes, **overrides)

    monkeypatch.setattr(engine, "create_model", create_model)
    db = tmp_path / "f.db"
    code, out, err = _cli(
        [
            "frontier",
            "--models",
            "cnn-elu-bn,resnet-elu-bn",
            "--lrs",
            "0.1",
            "--max-depth",
            "12",
            "--train-size",
            "1000",
            "--epochs",
            "1",
            "--eval-size",
            "200",
            "--threshold",
            "0.8",
            "--device",
            "cpu",
            "--workers",
            "1",
            "--data-dir",
            str(data_root),
            "--store",
            str(db),
            "--out",
            str(tmp_path / "o"),
            "--json",
        ],
        capsys,
    )  # in this process: the patch applies
    assert code == 0, err
    doc = json.loads(out)
    for m in doc["models"]:  # depth 6 trained, 12 and 9 "ran out of memory": the frontier is 6 for both
        assert (m["max_trainable_depth"], m["first_failing_depth"]) == (6, 9), m
    with Store(db) as store:
        failed = store.runs(status="failed")
        assert len(failed) == 4 and store.count("running") == 0
        assert all(r.reason.startswith("OutOfMemoryError: CUDA out of memory") for r in failed)
        assert {r.config["model_args"]["depth"] for r in failed} == {9, 12}
    assert "error in training" in err  # the log line says so


def test_a_real_out_of_memory_is_recorded_failed_and_the_sweep_continues(
    mnist, data_root, tmp_path, capsys, monkeypatch
):
    # Width x1e6: the second conv would need 1.15e15 bytes (more than a 47-bit address space).
    # The memory estimate refuses it before anything runs (exit 2, with the estimate); one that
    # the estimate misses fails at the allocation, on any machine, and is recorded failed.
    db = tmp_path / "oom.db"
    args = [
        "frontier",
        "--models",
        "cnn-tanh,cnn-elu",
        "--width",
        "1e6",
        "--depths",
        "3,6",
        "--lrs",
        "0.1,1",
        "--train-size",
        "600",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--data-dir",
        str(data_root),
        "--store",
        str(db),
        "--out",
        str(tmp_path / "o"),
        "--json",
    ]
    code, out, err = _cli(args, capsys)
    assert code == 2 and "GiB to train, more than the" in err and not db.exists(), err
    monkeypatch.setattr(
        "depthlab.engine.config.check_memory", lambda *a, **k: None
    )  # an estimate that misses
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert [(m["model"], m["max_trainable_depth"]) for m in doc["models"]] == [
        ("cnn-tanh", None),
        ("cnn-elu", None),
    ]
    with Store(db) as store:
        rows = store.runs()
        assert len(rows) == 2 * 2 * 2 and {r.status for r in rows} == {
            "failed"
        }  # every trial tried, none lost
        assert all("can't allocate memory" in r.reason for r in rows), rows[0].reason


def test_a_failed_trial_is_retried_by_the_next_run_not_reused(tmp_path, monkeypatch):
    """A failure (out of memory, a bug since fixed) is not a result: running the sweep again
    tries that trial again, while done and diverged trials are reused."""
    from depthlab.engine.config import TrainConfig
    from depthlab.sweep.runner import run_recorded

    data = synthetic_dataset(128, 64)
    config = TrainConfig(model="cnn-tanh", model_args={"depth": 3}, epochs=1, batch_size=64, device="cpu")
    with Store(tmp_path / "s.db") as store:
        with monkeypatch.context() as m:
            m.setattr(
                "depthlab.engine.run.train", lambda *a, **k: (_ for _ in ()).throw(MemoryError("simulated"))
            )
            assert run_recorded(config, store, data).status == "failed"
        again = run_recorded(config, store, data)
        assert again.status == "done" and not again.reused
        assert run_recorded(config, store, data).reused
        assert [r.status for r in store.runs()] == ["done", "failed"]  # the failure stays as history

    from depthlab.sweep.driver import TrialRunner
    from depthlab.sweep.executors import InProcessExecutor
    from depthlab.sweep.jobs import Job

    config2 = TrainConfig(**{**config.__dict__, "seed": 1})
    data = dataclasses.replace(data, name="mnist")  # the runner serves trials of "mnist" with this data
    with (
        Store(tmp_path / "r.db") as store,
        InProcessExecutor() as executor,
    ):  # the parallel driver does the same
        store.record(
            config2.canonical(), config2.hash(), {"status": "failed", "reason": "MemoryError", "epochs": []}
        )
        [again] = TrialRunner(executor, store, data).run([Job(config2)])
        assert again.status == "done" and not again.reused
        [reused] = TrialRunner(executor, store, data).run([Job(config2)])
        assert reused.reused


# ---------------------------------------------------------------------------------------------
# Determinism: the same command with the same seed, twice, in fresh processes


def _train_json(data_root, tmp_path, name, seed):
    args = [
        sys.executable,
        "-m",
        "depthlab",
        "train",
        "cnn-elu-bn",
        "--depth",
        "6",
        "--train-size",
        "1000",
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--schedule",
        "1@0.05,1@0.01",
        "--seed",
        str(seed),
        "--device",
        "cpu",
        "--data-dir",
        str(data_root),
        "--store",
        str(tmp_path / f"{name}.db"),
        "--json",
    ]
    proc = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_same_command_same_seed_gives_identical_per_epoch_metrics(data_root, tmp_path):
    a = _train_json(data_root, tmp_path, "a", 7)
    b = _train_json(data_root, tmp_path, "b", 7)
    c = _train_json(data_root, tmp_path, "c", 8)

    def metrics(doc):
        return [(e["epoch"], e["train_error"], e["test_error"], e["loss"], e["lr"]) for e in doc["epochs"]]

    assert a["status"] == "done" and len(a["epochs"]) == 2
    assert metrics(a) == metrics(b) and a["test_error"] == b["test_error"]  # bit for bit
    assert metrics(a) != metrics(c)  # and the seed matters
