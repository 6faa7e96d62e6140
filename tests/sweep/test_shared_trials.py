"""Processes that share a store share its trials (issue 29): a trial another live process is
training is waited for and read back, never trained twice; a claim whose process is gone is
taken over."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from fakedata import write_idx_folder

from depthlab.data.registry import load_dataset
from depthlab.engine.config import TrainConfig
from depthlab.store.sqlite import Store
from depthlab.sweep.driver import TrialRunner
from depthlab.sweep.executors import InProcessExecutor
from depthlab.sweep.jobs import Job
from depthlab.sweep.runner import run_recorded

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
LRS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)

SWEEP = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from depthlab.data.registry import load_dataset
    from depthlab.engine.config import TrainConfig
    from depthlab.store.sqlite import Store
    from depthlab.sweep.driver import TrialRunner
    from depthlab.sweep.executors import InProcessExecutor
    from depthlab.sweep.jobs import Job

    store_path, data_dir, go = sys.argv[1:4]
    data = load_dataset("fashion-mnist", data_dir)
    trials = [Job(TrainConfig(model="cnn-tanh", model_args={"depth": 3}, dataset="fashion-mnist", lr=lr, epochs=2,
                              batch_size=32, device="cpu"), kind="sweep") for lr in LRS]
    while not Path(go).exists():  # both processes start their sweep at the same moment
        time.sleep(0.005)
    with Store(store_path) as store, InProcessExecutor() as executor:
        runner = TrialRunner(executor, store, data, log=lambda line: print(line, file=sys.stderr))
        runner.claim_poll = 0.2
        results = runner.run(trials)
    print(json.dumps({"trained": runner.trials_run, "read_back": runner.trials_reused,
                      "losses": [[e.loss for e in r.epochs] for r in results]}))
""").replace("LRS", repr(LRS))


def env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), "OMP_NUM_THREADS": "1"}


def job(lr=0.1, **extra):
    return Job(
        TrainConfig(
            model="cnn-tanh",
            model_args={"depth": 3},
            dataset="fashion-mnist",
            lr=lr,
            epochs=1,
            batch_size=64,
            device="cpu",
            threads=1,
            **extra,
        )
    )


def test_two_identical_sweeps_at_once_train_each_trial_once(tmp_path):
    write_idx_folder(tmp_path / "data" / "FashionMNIST" / "raw", 512, 64)
    store, go = tmp_path / "s.db", tmp_path / "go"
    Store(store).close()
    (tmp_path / "sweep.py").write_text(SWEEP)
    procs = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "sweep.py"), str(store), str(tmp_path / "data"), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        for _ in range(2)
    ]
    time.sleep(1.0)
    go.touch()
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    with Store(store, reading=True) as s:
        rows = s.runs()
        claims_left = s.conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
    assert len(rows) == len(LRS) and len({r.config_hash for r in rows}) == len(LRS)  # one row per hash
    assert {r.status for r in rows} <= {"done", "diverged"} and claims_left == 0
    assert sum(o["trained"] for o in outs) == len(LRS)  # no trial trained twice...
    assert sum(o["read_back"] for o in outs) == len(LRS)  # ...each read back by the other sweep
    assert outs[0]["losses"] == outs[1]["losses"]  # and both answer the same


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def claim_by(
    store: Store, config_hash: str, pid: int, host: str | None = None, heartbeat: float | None = None
):
    import socket

    now = time.time()
    with store.transaction() as c:
        c.execute(
            "INSERT OR REPLACE INTO claims VALUES (?,?,?,?,?,?)",
            (config_hash, pid, host or socket.gethostname(), "other", now, heartbeat or now),
        )


def test_a_claim_of_a_dead_process_is_taken_over(tmp_path):
    write_idx_folder(tmp_path / "data" / "FashionMNIST" / "raw", 128, 64)
    data = load_dataset("fashion-mnist", tmp_path / "data")
    trial = job()
    with Store(tmp_path / "s.db") as store, InProcessExecutor() as executor:
        claim_by(store, trial.config.hash(), dead_pid())
        runner = TrialRunner(executor, store, data)
        started = time.monotonic()
        [result] = runner.run([trial])
        assert not result.reused and runner.trials_run == 1 and time.monotonic() - started < 60
        assert store.count("done") + store.count("diverged") == 1
        assert (
            store.conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
        )  # released with the result


def test_a_claim_from_another_host_is_stale_once_its_heartbeat_stops(tmp_path):
    from depthlab.store import claims

    with Store(tmp_path / "s.db") as store:
        claim_by(store, "fresh", 1, host="elsewhere")
        claim_by(store, "silent", 1, host="elsewhere", heartbeat=time.time() - claims.STALE_AFTER - 1)
        assert store.claim(["fresh", "silent"]) == {"fresh": (1, "elsewhere")}


def test_a_trial_in_flight_in_a_live_process_is_waited_for_then_taken_over_when_it_dies(tmp_path):
    write_idx_folder(tmp_path / "data" / "FashionMNIST" / "raw", 128, 64)
    data = load_dataset("fashion-mnist", tmp_path / "data")
    trial = job()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    lines, outcome = [], {}
    try:
        with Store(tmp_path / "s.db") as store:
            claim_by(store, trial.config.hash(), holder.pid)

        def sweep():
            with Store(tmp_path / "s.db") as store, InProcessExecutor() as executor:
                runner = TrialRunner(executor, store, data, log=lines.append)
                runner.claim_poll = 0.1
                outcome["result"] = runner.run([trial])[0]
                outcome["trained"] = runner.trials_run

        thread = threading.Thread(target=sweep)
        thread.start()
        time.sleep(2.0)
        assert thread.is_alive() and "result" not in outcome  # waiting, not training
        assert any("in flight in another process (pid " + str(holder.pid) in line for line in lines), lines
    finally:
        holder.kill()
        holder.wait()
    thread.join(timeout=120)
    assert outcome["trained"] == 1 and not outcome["result"].reused  # its process gone: trained here


def test_run_recorded_waits_for_a_live_claim_and_reads_the_result_back(tmp_path):
    write_idx_folder(tmp_path / "data" / "FashionMNIST" / "raw", 128, 64)
    data = load_dataset("fashion-mnist", tmp_path / "data")
    config = job().config
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with Store(tmp_path / "s.db") as store:
            claim_by(store, config.hash(), holder.pid)
            done = run_recorded(config, None, data)  # what the other process will record
        outcome = {}

        def train():
            with Store(tmp_path / "s.db") as store:
                outcome["result"] = run_recorded(config, store, data)

        thread = threading.Thread(target=train)
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive()
        with Store(tmp_path / "s.db") as store:
            from depthlab.sweep.runner import stored_config

            store.record(stored_config(config, data), config.hash(), done.to_dict())
        thread.join(timeout=60)
        assert outcome["result"].reused and [e.loss for e in outcome["result"].epochs] == [
            e.loss for e in done.epochs
        ]
        with Store(tmp_path / "s.db") as store:
            assert store.count() == 1  # read back, not trained a second time
    finally:
        holder.kill()
        holder.wait()


def test_a_snapshot_carries_no_claims(tmp_path):
    from depthlab.store.snapshot import snapshot_store

    with Store(tmp_path / "live.db") as store:
        store.record({"model": "m", "dataset": "d"}, "h1", {"status": "done", "epochs": []})
        assert store.claim(["h2"]) == {}  # in flight here, while the snapshot is taken
        snapshot_store(tmp_path / "live.db", tmp_path / "copy.db")
        assert store.conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 1
    with Store(tmp_path / "copy.db", reading=True) as copy:
        assert copy.conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0 and copy.count() == 1
