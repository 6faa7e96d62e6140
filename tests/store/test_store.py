"""The SQLite run store: transactions, a run killed mid-way, bad paths, concurrent writers,
and the runner on top of it (skip finished configs, record failures)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fakedata import synthetic_dataset

from depthlab.engine.config import TrainConfig
from depthlab.errors import StoreError
from depthlab.store.sqlite import Store, check_store_path
from depthlab.sweep.runner import run_recorded

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_run_lifecycle(tmp_path):
    with Store(tmp_path / "s.db") as store:
        run_id = store.start_run({"model": "cnn-tanh", "dataset": "mnist", "lr": 0.1}, "h1", device="cpu")
        assert store.runs()[0].status == "running" and store.find_finished("h1") is None
        store.log_epoch(
            run_id,
            {
                "epoch": 0,
                "train_error": 0.5,
                "test_error": 0.4,
                "loss": 1.0,
                "lr": 0.1,
                "seconds": 1.0,
                "head_errors": [0.6, 0.5, 0.4],
            },
        )
        store.finish_run(run_id, "done", seconds=2.0, result={"status": "done", "test_error": 0.4})
        row = store.find_finished("h1")
        assert row.status == "done" and row.result["test_error"] == 0.4 and row.config["lr"] == 0.1
        assert row.torch_version and row.device == "cpu" and row.seconds == 2.0
        assert store.epochs(run_id) == [
            {
                "epoch": 0,
                "train_error": 0.5,
                "test_error": 0.4,
                "loss": 1.0,
                "lr": 0.1,
                "seconds": 1.0,
                "head_errors": [0.6, 0.5, 0.4],
            }
        ]
        with pytest.raises(ValueError):
            store.finish_run(run_id, "running", seconds=0)
    with Store(tmp_path / "s.db", must_exist=True) as store:  # and it is all still there
        assert store.count() == 1 and store.count("done") == 1
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_transaction_rolls_back_on_error(tmp_path):
    with Store(tmp_path / "s.db") as store:
        run_id = store.start_run({"model": "m", "dataset": "d"}, "h")
        with pytest.raises(RuntimeError):
            with store.transaction() as c:
                store._insert_epoch(c, run_id, {"epoch": 0, "loss": 1.0})
                c.execute("UPDATE runs SET status = 'done' WHERE id = ?", (run_id,))
                raise RuntimeError("killed half-way")
        assert store.epochs(run_id) == [] and store.runs()[0].status == "running"


_KILLED_CHILD = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    from fakedata import synthetic_dataset
    from depthlab.sweep.runner import run_recorded
    from depthlab.store import Store
    from depthlab.engine import TrainConfig
    config = TrainConfig(model="cnn-tanh", model_args={"depth": 3}, epochs=2, batch_size=64, device="cpu")
    from depthlab.engine.callbacks import LambdaCallback
    def on_epoch(loop, i, m):
        print("epoch recorded", flush=True)
        time.sleep(120)  # the parent kills us here, between two epochs
    with Store(sys.argv[1]) as store:
        run_recorded(config, store, synthetic_dataset(256, 64), callbacks=[LambdaCallback(on_epoch_metrics=on_epoch)])
""")


def test_killed_run_is_running_not_done_and_is_replaced(tmp_path):
    db = tmp_path / "s.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, str(db)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()  # blocks until the first epoch is in the store
        assert line.strip() == "epoch recorded", child.stderr.read()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL

    config = TrainConfig(model="cnn-tanh", model_args={"depth": 3}, epochs=2, batch_size=64, device="cpu")
    with Store(db) as store:
        [row] = store.runs()
        assert row.status == "running" and row.result is None and row.config_hash == config.hash()
        assert len(store.epochs(row.id)) == 1
        assert store.find_finished(config.hash()) is None  # a killed run never looks finished
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

        out = run_recorded(config, store, synthetic_dataset(256, 64))
        assert out.status == "done" and not out.reused
        rows = store.runs()
        assert [r.status for r in rows] == ["done"]  # the stale row was replaced, not kept
        assert len(store.epochs(rows[0].id)) == 2
        assert store.conn.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 2


def test_live_running_row_is_not_taken_over(tmp_path):
    # A `running` row whose process is alive (here: this one, seen from another pid) stays.
    with Store(tmp_path / "s.db") as store:
        store.start_run({"model": "m", "dataset": "d"}, "h")
        store.conn.execute("UPDATE runs SET pid = ?", (os.getppid(),))
        store.start_run({"model": "m", "dataset": "d"}, "h")
        assert [r.status for r in store.runs()] == ["running", "running"]


def test_runner_reuses_finished_runs_and_records_failures(tmp_path, monkeypatch):
    data = synthetic_dataset(128, 64)
    config = TrainConfig(model="cnn-tanh", model_args={"depth": 3}, epochs=1, batch_size=64, device="cpu")
    with Store(tmp_path / "s.db") as store:
        first = run_recorded(config, store, data)
        again = run_recorded(config, store, data)
        assert not first.reused and again.reused
        assert again.epochs == first.epochs and store.count() == 1

        def boom(*args, **kwargs):
            raise RuntimeError("out of memory (simulated)")

        monkeypatch.setattr("depthlab.engine.run.train", boom)
        failed = run_recorded(TrainConfig(**{**config.__dict__, "seed": 1}), store, data)
        assert failed.status == "failed" and "out of memory" in failed.reason
        assert store.runs()[0].status == "failed" and store.runs()[0].reason.startswith("RuntimeError")


def test_not_a_depthlab_store(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database\n" * 10)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    for path, message in [(text, "not a depthlab store"), (other, "not a depthlab store")]:
        before = path.read_bytes()
        with pytest.raises(StoreError, match=message):
            Store(path)
        assert path.read_bytes() == before


def test_bad_store_paths(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        Store(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing" / "s.db")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(StoreError, match="does not exist"):
        Store(a_file / "s.db")
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "absent.db", must_exist=True)
    assert not (tmp_path / "absent.db").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only files")
def test_read_only_store(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    Store(folder / "s.db").close()
    os.chmod(folder / "s.db", 0o444)
    os.chmod(folder, 0o555)
    try:
        with pytest.raises(StoreError, match="not writable"):
            check_store_path(folder / "s.db")
        with pytest.raises(StoreError, match="not writable"):
            check_store_path(folder / "new.db")
    finally:
        os.chmod(folder, 0o755)


_WRITER = textwrap.dedent("""
    import pathlib, sys, time
    import torch  # imported first (the store records its version) so that the writes overlap
    from depthlab.store import Store
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    folder = pathlib.Path(path).parent
    (folder / f"ready-{tag}").touch()
    while len(list(folder.glob("ready-*"))) < 2:  # a barrier: both start writing together
        time.sleep(0.01)
    with Store(path) as store:
        for i in range(n):
            run_id = store.start_run({"model": "m", "dataset": "d", "i": i, "tag": tag}, f"{tag}-{i}")
            for epoch in range(3):
                store.log_epoch(run_id, {"epoch": epoch, "loss": float(i)})
            store.finish_run(run_id, "done", seconds=0.0, result={"tag": tag, "i": i})
""")


def test_two_processes_write_at_once(tmp_path):
    db = tmp_path / "s.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(db), tag, "40"], env=_env(), stderr=subprocess.PIPE, text=True
        )
        for tag in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with Store(db) as store:
        rows = store.runs()
        assert len(rows) == 80 and {r.status for r in rows} == {"done"}
        assert sorted(r.config_hash for r in rows) == sorted(f"{t}-{i}" for t in "ab" for i in range(40))
        assert store.conn.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 240
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_record_writes_a_whole_run(tmp_path):
    with Store(tmp_path / "s.db") as store:
        result = {
            "status": "diverged",
            "reason": "nan",
            "seconds": 1.5,
            "device": "cpu",
            "epochs": [
                {"epoch": 0, "train_error": 0.9, "test_error": 0.9, "loss": 2.3, "lr": 1.0, "seconds": 1.5}
            ],
        }
        run_id = store.record({"model": "m", "dataset": "d"}, "h", result, kind="frontier", experiment="e1")
        row = store.find_finished("h")
        assert row.id == run_id and row.status == "diverged" and row.kind == "frontier"
        assert row.experiment == "e1" and json.loads(json.dumps(row.result)) == result
        assert store.epochs(run_id)[0]["loss"] == 2.3
        assert [r.id for r in store.runs(kind="frontier", status="diverged")] == [run_id]
        assert store.runs(kind="train") == []


_OPEN_AS_SOON_AS_IT_EXISTS = textwrap.dedent("""
    import os, sys, time
    from depthlab.store import Store
    folder, count = sys.argv[1], int(sys.argv[2])
    open(os.path.join(folder, f"ready-{os.getpid()}"), "w").close()
    for i in range(count):
        path, start = os.path.join(folder, f"s{i}.db"), time.monotonic()
        while not os.path.exists(path):  # open it the moment another process has created it
            if time.monotonic() - start > 30:
                sys.exit(f"{path} never appeared")
        with Store(path) as store:
            store.runs(limit=1)
""")


@pytest.mark.slow
def test_a_new_store_opened_by_several_processes_at_the_same_moment(tmp_path):
    """The switch of a new file to WAL needs the file to itself; SQLite answers "database is
    locked" at once (no busy wait) when another process opens the same new store in that
    instant. 300 stores, each created by this process while 6 others open it as soon as it
    exists: every open succeeds. (Before the retry, about one open in a few hundred failed.)"""
    count = 300
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_AS_SOON_AS_IT_EXISTS, str(tmp_path), str(count)],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < len(readers) and time.monotonic() < deadline:
        time.sleep(0.01)  # all of them imported and watching before the first store appears
    for i in range(count):
        with Store(tmp_path / f"s{i}.db"):
            pass
    for r in readers:
        _, err = r.communicate(timeout=300)
        assert r.returncode == 0, err[-2000:]


def test_snapshot_of_a_live_store_carries_its_runs_and_checkpoints(tmp_path):
    from depthlab.store.snapshot import snapshot_store
    from depthlab.store.sqlite import checkpoint_dir_for

    data = synthetic_dataset(128, 64)
    config = TrainConfig(model="cnn-tanh", model_args={"depth": 3}, epochs=1, batch_size=64, device="cpu")
    live = tmp_path / "live" / "store.db"
    live.parent.mkdir()
    dest = tmp_path / "carried" / "store.db"
    with Store(live) as store:  # held open: its writes may still sit in the -wal file only
        run_recorded(config, store, data)
        running = store.start_run({"model": "m", "dataset": "d"}, "in-flight")
        store.log_epoch(running, {"epoch": 0, "loss": 1.0})
        ckpt = Path(checkpoint_dir_for(live))
        ckpt.mkdir()
        (ckpt / "group-a.pt").write_bytes(b"a" * 1000)
        (ckpt / "group-b.pt.tmp").write_bytes(b"half-written")  # a write in progress: not carried
        Path(checkpoint_dir_for(dest)).mkdir(parents=True)
        (Path(checkpoint_dir_for(dest)) / "finished-group.pt").write_bytes(b"stale")

        info = snapshot_store(live, dest, force=True)  # replaces the stale checkpoint of an earlier snapshot

    assert info["runs"] == 2 and info["checkpoints"] == 1
    assert sorted(os.listdir(checkpoint_dir_for(dest))) == ["group-a.pt"]
    assert (Path(checkpoint_dir_for(dest)) / "group-a.pt").read_bytes() == b"a" * 1000
    assert not Path(str(dest) + "-wal").exists() and not Path(str(dest) + ".tmp").exists()
    raw = sqlite3.connect(dest)  # one self-contained file, whole
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    with Store(dest) as carried:
        assert {r.status for r in carried.runs()} == {"done", "running"}
        assert run_recorded(config, carried, data).reused  # a sweep on the copy skips it

    # The checkpoint is gone once its trial finishes: the next snapshot drops it too.
    os.remove(Path(checkpoint_dir_for(live)) / "group-a.pt")
    assert snapshot_store(live, dest, force=True)["checkpoints"] == 0
    assert not os.path.exists(checkpoint_dir_for(dest))
    with pytest.raises(StoreError, match="is the store itself"):
        snapshot_store(live, live)
    with pytest.raises(StoreError):
        snapshot_store(tmp_path / "missing.db", dest)


def test_cli_snapshot(tmp_path, capsys):
    from depthlab.cli import main

    with Store(tmp_path / "s.db") as store:
        store.record({"model": "m", "dataset": "d"}, "h1", {"status": "done", "epochs": []})
    assert main(["runs", "--store", str(tmp_path / "s.db"), "--snapshot", str(tmp_path / "copy.db")]) == 0
    assert "1 run(s), 0 checkpoint(s)" in capsys.readouterr().out
    with Store(tmp_path / "copy.db") as copy:
        assert [r.config_hash for r in copy.runs()] == ["h1"]
    assert main(["runs", "--store", str(tmp_path / "s.db"), "--snapshot", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err
    assert "is the store itself" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_reading_a_carried_snapshot_leaves_its_file_byte_for_byte(tmp_path, capsys):
    """`depthlab runs` and `frontier --status` on a DELETE-mode snapshot must not switch it to
    WAL: the carried file would differ in git after every look."""
    from depthlab.cli import main
    from depthlab.store.snapshot import snapshot_store

    data = synthetic_dataset(128, 64)
    config = TrainConfig(model="cnn-tanh", model_args={"depth": 3}, epochs=1, batch_size=64, device="cpu")
    live, dest = tmp_path / "live.db", tmp_path / "carried.db"
    with Store(live) as store:
        run_recorded(config, store, data)
    snapshot_store(live, dest)
    before = dest.read_bytes()
    for args in (
        ["runs", "--store", str(dest)],
        ["frontier", "--models", "cnn-tanh", "--status", "--store", str(dest)],
    ):
        assert main(args) == 0, capsys.readouterr().err
    assert dest.read_bytes() == before
    assert not Path(str(dest) + "-wal").exists()
    with Store(dest) as writer:  # a writer still takes it over in WAL mode
        assert writer.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ---------------------------------------------------------------------------------------------
# Wrong-typed records (issue 24, item 7): valid JSON of the wrong type is a corrupted record


@pytest.mark.parametrize(
    "column, value",
    [
        ("result", "[1, 2, 3]"),
        ("result", "3"),
        ("result", '"done"'),
        ("result", '{"epochs": 7}'),
        ("result", '{"test_error": "low"}'),
        ("config", "[1, 2, 3]"),
        ("config", "null"),
        ("config", '{"model_args": [3]}'),
        ("config", '{"lr": [0.1]}'),
        ("result", '{"epochs": [{"test_error": "x"}]}'),
        ("seconds", "'slow'"),
    ],
)
def test_a_record_of_the_wrong_type_is_reported_like_malformed_json(
    column, value, frontier_store, tmp_path, capsys
):
    from depthlab.cli import main
    from depthlab.sweep.runner import stored_result

    source, args = frontier_store
    store = tmp_path / "store.db"
    store.write_bytes(source.read_bytes())
    raw = sqlite3.connect(store)
    run_id, config_hash = raw.execute("SELECT id, config_hash FROM runs").fetchone()
    raw.execute(
        f"UPDATE runs SET {column} = {value if column == 'seconds' else '?'}",
        () if column == "seconds" else (value,),
    )
    raw.commit()
    raw.close()
    with (
        Store(store, reading=True) as s,
        pytest.raises(StoreError, match=f"run {run_id} has a corrupted record"),
    ):
        stored_result(s, config_hash)
    for command in (
        ["runs"],
        ["runs", "--json"],
        args + ["--status"],
        args + ["--out", str(tmp_path / "out")],
    ):
        code = main(command + ["--store", str(store)])
        captured = capsys.readouterr()
        assert code == 2 and f"run {run_id} has a corrupted record" in captured.err, (command, captured.err)
        errors = [line for line in captured.err.splitlines() if line.startswith("depthlab:")]
        assert len(errors) == 1 and "internal error" not in captured.err and "Traceback" not in captured.err


def test_an_epoch_extra_of_the_wrong_type_is_a_corrupted_record(tmp_path):
    with Store(tmp_path / "s.db") as store:
        run_id = store.start_run({"model": "m", "dataset": "d"}, "h")
        store.log_epoch(run_id, {"epoch": 0, "loss": 1.0, "head_errors": [0.5]})
        store.conn.execute("""UPDATE epochs SET extra = '[["loss", "high"]]'""")  # dict() of it would pass
        with pytest.raises(StoreError, match=f"epoch 0 of run {run_id} has a corrupted record"):
            store.epochs(run_id)


# ---------------------------------------------------------------------------------------------
# Reading never writes (issue 24, item 10); a store on a read-only medium is still read; SIGTERM


def test_reading_commands_never_write_a_schema_into_an_empty_file(tmp_path, capsys):
    from depthlab.cli import main

    empty = tmp_path / "empty.db"
    empty.touch()
    assert main(["runs", "--store", str(empty)]) == 0
    assert "0 run(s)" in capsys.readouterr().out
    assert main(["runs", "--store", str(empty), "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    assert main(["frontier", "--models", "cnn-tanh", "--status", "--store", str(empty)]) == 0
    assert "0 of 1 searches finished" in capsys.readouterr().out
    assert empty.stat().st_size == 0 and sorted(os.listdir(tmp_path)) == ["empty.db"]
    with Store(empty) as writer:  # a writer makes it a store, as before
        assert writer.count() == 0
    assert empty.stat().st_size > 0


def test_a_store_on_a_read_only_medium_can_still_be_read(tmp_path, monkeypatch, capsys):
    """Root may write anything, so the medium's answer is simulated where depthlab asks it."""
    import depthlab.store.sqlite as S
    from depthlab.cli import main
    from depthlab.store.snapshot import snapshot_store

    live, carried = tmp_path / "live.db", tmp_path / "carried.db"
    with Store(live) as store:  # WAL mode
        store.record({"model": "m", "dataset": "d"}, "h1", {"status": "done", "epochs": []})
    snapshot_store(live, carried)  # DELETE mode
    real_access = os.access
    monkeypatch.setattr(
        S.os, "access", lambda p, mode, **kw: False if mode & os.W_OK else real_access(p, mode, **kw)
    )
    for path in (live, carried):
        before = path.read_bytes()
        assert main(["runs", "--store", str(path)]) == 0, capsys.readouterr().err
        assert "1 run(s)" in capsys.readouterr().out
        with Store(path, reading=True) as store:
            assert [r.config_hash for r in store.runs()] == ["h1"]
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                store.conn.execute("DELETE FROM runs")
        assert path.read_bytes() == before
        with pytest.raises(StoreError, match="is not writable"):
            Store(path)
    assert snapshot_store(carried, tmp_path / "copy.db")["runs"] == 1  # a snapshot reads the source only


def test_sigterm_prints_one_line_like_ctrl_c_and_keeps_the_store(tmp_path):
    from fakedata import write_idx_folder

    write_idx_folder(tmp_path / "data" / "FashionMNIST" / "raw", 512, 64)
    store = tmp_path / "s.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "depthlab",
            "train",
            "cnn-tanh",
            "--depth",
            "3",
            "--epochs",
            "200",
            "--batch-size",
            "64",
            "--dataset",
            "fashion-mnist",
            "--data-dir",
            str(tmp_path / "data"),
            "--store",
            str(store),
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    assert proc.stdout.readline().startswith("Epoch 000/200")  # training, inside the store's run
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert (
        err.strip().splitlines()[-1] == "depthlab: terminated (SIGTERM; finished runs are kept in the store)"
    )
    assert "Traceback" not in err and sum(line.startswith("depthlab:") for line in err.splitlines()) == 1
    raw = sqlite3.connect(store)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert raw.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] >= 1  # the finished epochs are kept
    raw.close()


# ---------------------------------------------------------------------------------------------
# runs --snapshot never destroys what is at DEST (issue 24, item 8)


def _snapshot_source(tmp_path):
    src = tmp_path / "live.db"
    with Store(src) as store:
        store.record({"model": "m", "dataset": "d"}, "h1", {"status": "done", "epochs": []})
    ckpt = Path(str(src) + "-checkpoints")
    ckpt.mkdir()
    (ckpt / "group-a.pt").write_bytes(b"a" * 100)
    return src


def _tree(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("dest_kind", ["file", "store", "checkpoints-only", "folder", "empty-path"])
@pytest.mark.parametrize("force", [False, True])
def test_snapshot_refuses_to_destroy_what_is_at_dest(dest_kind, force, tmp_path, capsys, monkeypatch):
    from depthlab.cli import main

    monkeypatch.chdir(tmp_path)  # an empty DEST is relative to here

    (tmp_path / "src").mkdir()
    src = _snapshot_source(tmp_path / "src")
    place = tmp_path / "place"
    place.mkdir()
    dest = place / "dest.db"
    if dest_kind == "file":
        dest.write_text("my thesis\n")
    elif dest_kind == "store":
        with Store(dest) as other:
            other.record({"model": "x", "dataset": "d"}, "other", {"status": "done", "epochs": []})
    elif dest_kind == "folder":
        dest.mkdir()
        (dest / "keep.txt").write_text("mine")
    if dest_kind in ("file", "store", "checkpoints-only"):
        mine = place / "dest.db-checkpoints"
        mine.mkdir()
        (mine / "notes.txt").write_text("not a checkpoint")
        (mine / "sub").mkdir()
        (mine / "sub" / "x.pt").write_bytes(b"nested")
        (mine / "old-group.pt").write_bytes(b"stale")
    before = _tree(place)
    target = "" if dest_kind == "empty-path" else str(dest)
    args = ["runs", "--store", str(src), "--snapshot", target] + (["--force"] if force else [])
    code = main(args)
    out, err = capsys.readouterr()
    if force and dest_kind in (
        "store",
        "checkpoints-only",
    ):  # --force replaces a store and its checkpoint files
        assert code == 0, err
        with Store(dest, reading=True) as copy:
            assert [r.config_hash for r in copy.runs()] == ["h1"]
        assert sorted(_tree(place / "dest.db-checkpoints")) == ["group-a.pt", "notes.txt", "sub", "sub/x.pt"]
    else:
        assert code == 2 and not out and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "internal error" not in err and _tree(place) == before
    assert not [p for p in place.rglob("*.tmp")] and not list(tmp_path.rglob("*.db.tmp"))


def test_snapshot_failing_half_way_leaves_dest_and_no_temp_file(tmp_path, monkeypatch):
    from depthlab.store.snapshot import snapshot_store

    src = _snapshot_source(tmp_path)
    dest = tmp_path / "out" / "dest.db"
    snapshot_store(src, dest)
    before = dest.read_bytes()

    import depthlab.store.sqlite as S

    class FullConnection:
        """The source's connection, whose backup fails as on a full disk."""

        def __init__(self, conn):
            self.conn = conn

        def __getattr__(self, name):
            return getattr(self.conn, name)

        def backup(self, *args, **kwargs):
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(S.Store, "__init__", _wrapping_init(S.Store.__init__, FullConnection))
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        snapshot_store(src, dest, force=True)
    assert dest.read_bytes() == before
    assert sorted(os.listdir(dest.parent)) == ["dest.db", "dest.db-checkpoints"]


def _wrapping_init(init, wrapper):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.conn = wrapper(self.conn)

    return wrapped
