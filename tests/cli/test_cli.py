"""The command line: the classic epoch line, --json, runs, summary, --tensorboard, and every
bad input of issue 2 (one line on stderr, exit 2, no traceback, store untouched)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakedata import write_idx_folder

from depthlab.cli import main
from depthlab.store.sqlite import Store

REPO = Path(__file__).resolve().parents[2]
CLASSIC = re.compile(
    r"^Epoch (\d{3})/(\d{3}), Train Error (\d{1,3}\.\d\d)% \|\| Test Error (\d{1,3}\.\d\d)%$"
)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    """A generated, learnable Fashion-MNIST-shaped set (512 train, 256 test): fast CLI runs."""
    root = tmp_path_factory.mktemp("data")
    write_idx_folder(root / "FashionMNIST" / "raw", 512, 256, gz=True)
    return root


def fast_args(root, db, *extra):
    return [
        "train",
        "cnn-tanh",
        "--depth",
        "3",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(root),
        "--device",
        "cpu",
        "--batch-size",
        "64",
        "--store",
        str(db),
        *extra,
    ]


def run_cli(capsys, args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_classic_lines_and_final_line(small_root, tmp_path, capsys):
    code, out, err = run_cli(capsys, fast_args(small_root, tmp_path / "s.db", "--epochs", "3"))
    assert code == 0, err
    lines = out.splitlines()
    matches = [CLASSIC.match(line) for line in lines[:3]]
    assert all(matches), lines
    assert [(m[1], m[2]) for m in matches] == [("000", "003"), ("001", "003"), ("002", "003")]
    assert all(0 <= float(m[3]) <= 100 and 0 <= float(m[4]) <= 100 for m in matches)
    assert float(matches[-1][4]) < 50  # it learned (chance is 90%)
    assert re.match(r"^done in \d+\.\ds, test error \d+\.\d\d%$", lines[3])
    assert len(lines) == 4 and err == ""  # no progress bar when stderr is not a terminal


def test_json_output_schema(small_root, tmp_path, capsys):
    code, out, err = run_cli(
        capsys, fast_args(small_root, tmp_path / "s.db", "--epochs", "2", "--json", "--lr", "0.05")
    )
    assert code == 0
    assert len(out.splitlines()) == 1  # exactly one JSON object on stdout
    doc = json.loads(out)
    # The schema; "reason" (why a run stopped) and "test_error" (final test error,
    # after best-weight restore) are the two documented additions.
    assert set(doc) == {"config", "status", "epochs", "seconds", "reason", "test_error"}
    assert doc["status"] == "done" and isinstance(doc["seconds"], float) and doc["seconds"] > 0
    assert doc["config"]["lr"] == 0.05 and doc["config"]["model"] == "cnn-tanh"
    assert doc["config"]["model_args"]["depth"] == 3 and doc["config"]["dataset"] == "fashion-mnist"
    assert [e["epoch"] for e in doc["epochs"]] == [0, 1]
    for e in doc["epochs"]:
        assert {"epoch", "train_error", "test_error", "loss"} <= set(e)
        assert 0 <= e["train_error"] <= 1 and 0 <= e["test_error"] <= 1  # fractions, not percent
        assert isinstance(e["loss"], float)
    assert doc["test_error"] == doc["epochs"][-1]["test_error"]
    assert all(CLASSIC.match(line) for line in err.splitlines())  # the classic lines go to stderr


def test_rerun_is_served_from_the_store(small_root, tmp_path, capsys):
    db = tmp_path / "s.db"
    code, first, _ = run_cli(capsys, fast_args(small_root, db, "--epochs", "1"))
    code2, second, err = run_cli(capsys, fast_args(small_root, db, "--epochs", "1"))
    assert code == code2 == 0 and "already in" in err
    assert first.splitlines()[0] == second.splitlines()[0]
    code3, _, err3 = run_cli(capsys, fast_args(small_root, db, "--epochs", "1", "--rerun"))
    assert code3 == 0 and "already in" not in err3
    with Store(db) as store:
        assert store.count("done") == 2


def test_runs_lists_the_store(small_root, tmp_path, capsys):
    db = tmp_path / "s.db"
    run_cli(capsys, fast_args(small_root, db, "--epochs", "1"))
    run_cli(capsys, fast_args(small_root, db, "--epochs", "1", "--seed", "1"))
    code, out, _ = run_cli(capsys, ["runs", "--store", str(db)])
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["id", "hash", "kind"] and lines[-1] == f"showing 2 of 2 run(s) in {db}"
    assert "epochs" in lines[0] and "train size" in lines[0] and "final test error" in lines[0]
    assert sum("cnn-tanh" in line and " done " in line and " 1/1 " in line for line in lines) == 2
    col = lines[0].index("status")
    assert all(line[col:].startswith("done ") for line in lines[2:-1])  # aligned columns
    code, out, _ = run_cli(capsys, ["runs", "--store", str(db), "--json", "--limit", "1"])
    rows = json.loads(out)
    assert len(rows) == 1 and rows[0]["status"] == "done" and rows[0]["config"]["seed"] == 1
    code, out, _ = run_cli(capsys, ["runs", "--store", str(db), "--limit", "1"])
    assert out.splitlines()[-1].startswith(f"showing 1 of 2 run(s) in {db}")
    code, out, _ = run_cli(capsys, ["runs", "--store", str(db), "--status", "diverged"])
    assert out.splitlines()[-1] == f"showing 0 of 0 diverged run(s) in {db}"


def test_runs_shows_a_run_whose_process_is_gone_as_interrupted(tmp_path, capsys):
    import subprocess
    import sys

    db = tmp_path / "s.db"
    with Store(db) as store:
        live = store.start_run({"model": "cnn-tanh", "dataset": "mnist", "epochs": 3}, "live")
        gone = store.start_run({"model": "cnn-tanh", "dataset": "mnist", "epochs": 3}, "gone")
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout.strip()  # a process that has exited: killed mid-run
        store.conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (int(dead), gone))
        store.conn.commit()
    code, out, _ = run_cli(capsys, ["runs", "--store", str(db)])
    lines = {line.split()[0]: line for line in out.splitlines()[2:-1]}
    assert " interrupted " in lines[str(gone)] and " running " not in lines[str(gone)]
    assert " 0/3 " in lines[str(gone)]
    code, out, _ = run_cli(capsys, ["runs", "--store", str(db), "--status", "interrupted", "--json"])
    assert [r["id"] for r in json.loads(out)] == [gone] and json.loads(out)[0]["status"] == "interrupted"
    code, out, _ = run_cli(capsys, ["runs", "--store", str(db), "--status", "running", "--json"])
    assert [r["id"] for r in json.loads(out)] == [live]


def test_summary_matches_torchsummary_style(capsys):
    code, out, _ = run_cli(capsys, ["summary", "cnn-tanh", "--depth", "9"])
    assert code == 0
    lines = out.splitlines()
    assert lines[-1] == "Total parameters: 9,058"
    assert "Output shape" in lines[0] and any("[4, 28, 28]" in line for line in lines)
    assert any(line.startswith("classifier") and "1,450" in line for line in lines)
    code, out, _ = run_cli(capsys, ["summary", "cnn-elu-bn", "--depth", "3"])
    assert code == 0 and "BatchNorm2d" in out


def test_threads_flag_is_used_and_recorded(small_root, tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        code, _, err = run_cli(
            capsys, fast_args(small_root, tmp_path / "s.db", "--epochs", "1", "--threads", "2")
        )
        assert code == 0, err
        with Store(tmp_path / "s.db") as store:
            assert store.runs()[0].result["threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_out_folder_gets_the_json(small_root, tmp_path, capsys):
    code, _, _ = run_cli(
        capsys, fast_args(small_root, tmp_path / "s.db", "--epochs", "1", "--out", str(tmp_path / "o"))
    )
    [written] = list((tmp_path / "o").glob("train-cnn-tanh-*.json"))
    assert code == 0 and json.loads(written.read_text())["status"] == "done"


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, no traceback, store byte-identical


@pytest.fixture(scope="module")
def corrupted_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    folder = root / "FashionMNIST" / "raw"
    write_idx_folder(folder, 64, 32)
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-100])
    return root


@pytest.fixture(scope="module")
def existing_store(small_root, tmp_path_factory):
    db = tmp_path_factory.mktemp("store") / "s.db"
    assert main(fast_args(small_root, db, "--epochs", "1")) == 0
    return db


BAD = {
    "unknown model": (["train", "cnn-tanhh"], "unknown model 'cnn-tanhh'"),
    "unknown dataset": (["train", "cnn-tanh", "--dataset", "mnits"], "unknown dataset 'mnits'"),
    "depth not multiple of 3": (["train", "cnn-tanh", "--depth", "4"], "multiple of 3"),
    "depth zero": (["train", "cnn-tanh", "--depth", "0"], "multiple of 3"),
    "depth negative": (["train", "cnn-tanh", "--depth", "-3"], "multiple of 3"),
    "lr zero": (["train", "cnn-tanh", "--lr", "0"], "learning rate must be positive"),
    "lr negative": (["train", "cnn-tanh", "--lr", "-0.1"], "learning rate must be positive"),
    "lr not a number": (["train", "cnn-tanh", "--lr", "fast"], "'fast' is not a valid float"),
    "epochs zero": (["train", "cnn-tanh", "--epochs", "0"], "epochs must be a positive integer"),
    "batch size zero": (["train", "cnn-tanh", "--batch-size", "0"], "batch size must be a positive integer"),
    "batch size negative": (
        ["train", "cnn-tanh", "--batch-size", "-8"],
        "batch size must be a positive integer",
    ),
    "train size zero": (["train", "cnn-tanh", "--train-size", "0"], "train size"),
    "schedule malformed": (["train", "cnn-tanh", "--schedule", "2@0.07,3@"], "malformed schedule"),
    "schedule unknown": (["train", "cnn-tanh", "--schedule", "linear"], "malformed schedule"),
    "optimizer unknown": (["train", "cnn-tanh", "--optimizer", "rmsprop"], "unknown optimizer"),
    "device unknown": (["train", "cnn-tanh", "--device", "tpu"], "device"),
    "threads zero": (["train", "cnn-tanh", "--threads", "0"], "threads must be a positive integer"),
    "unknown flag": (["train", "cnn-tanh", "--depht", "9"], "No such option"),
    "unknown param": (["train", "cnn-tanh", "-p", "colour=red"], "no parameter 'colour'"),
    "summary unknown model": (["summary", "nope"], "unknown model 'nope'"),
    "summary bad depth": (["summary", "cnn-tanh", "--depth", "5"], "multiple of 3"),
    "runs bad status": (["runs", "--status", "finished"], "unknown status"),
}


def _assert_clean_failure(code, out, err, expected):
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("depthlab: error: ") and expected in err
    assert "Traceback" not in err


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case, existing_store, capsys):
    args, expected = BAD[case]
    before = existing_store.read_bytes()
    siblings = sorted(p.name for p in existing_store.parent.iterdir())
    store_flag = [] if args[0] == "summary" else ["--store", str(existing_store)]
    code, out, err = run_cli(capsys, [*args, *store_flag])
    _assert_clean_failure(code, out, err, expected)
    assert existing_store.read_bytes() == before
    assert sorted(p.name for p in existing_store.parent.iterdir()) == siblings


def test_missing_data_names_folder_and_files(existing_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEPTHLAB_OFFLINE", "1")  # tests never touch the network
    before = existing_store.read_bytes()
    code, out, err = run_cli(
        capsys, ["train", "cnn-tanh", "--data-dir", str(tmp_path), "--store", str(existing_store)]
    )
    _assert_clean_failure(code, out, err, "missing data")
    assert str(tmp_path / "MNIST" / "raw") in err and "train-images-idx3-ubyte" in err
    assert existing_store.read_bytes() == before


def test_corrupted_idx_file(corrupted_root, existing_store, capsys):
    before = existing_store.read_bytes()
    code, out, err = run_cli(
        capsys,
        [
            "train",
            "cnn-tanh",
            "--dataset",
            "fashion-mnist",
            "--data-dir",
            str(corrupted_root),
            "--store",
            str(existing_store),
        ],
    )
    _assert_clean_failure(code, out, err, "train-images-idx3-ubyte: wrong size")
    assert existing_store.read_bytes() == before


def test_modified_real_mnist_file(data_root, existing_store, tmp_path, capsys):
    import gzip

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (raw / name).symlink_to(data_root / "MNIST" / "raw" / name)
    labels = bytearray(
        gzip.decompress((data_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    )
    labels[-1] ^= 1
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    before = existing_store.read_bytes()
    code, out, err = run_cli(
        capsys, ["train", "cnn-tanh", "--data-dir", str(tmp_path), "--store", str(existing_store)]
    )
    _assert_clean_failure(code, out, err, "t10k-labels-idx1-ubyte.gz: checksum mismatch")
    assert existing_store.read_bytes() == before


@pytest.mark.parametrize("kind", ["text file", "other sqlite", "directory", "missing folder"])
def test_unusable_store(kind, small_root, tmp_path, capsys):
    import sqlite3

    path = tmp_path / "store.db"
    if kind == "text file":
        path.write_text("my notes\n" * 20)
    elif kind == "other sqlite":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
    elif kind == "directory":
        path.mkdir()
    else:
        path = tmp_path / "nowhere" / "store.db"
    before = path.read_bytes() if path.is_file() else None
    for args in (fast_args(small_root, path, "--epochs", "1"), ["runs", "--store", str(path)]):
        code, out, err = run_cli(capsys, args)
        _assert_clean_failure(code, out, err, str(path))
        assert (path.read_bytes() if path.is_file() else None) == before
    assert not (tmp_path / "store.db-wal").exists()


def test_store_not_writable(existing_store, small_root, monkeypatch, capsys):
    # Permission bits do not stop root (CI may run as root), so the check is made to see a
    # read-only file the way it sees one for an ordinary user.
    import depthlab.store.sqlite

    monkeypatch.setattr(depthlab.store.sqlite.os, "access", lambda path, mode: False)
    before = existing_store.read_bytes()
    code, out, err = run_cli(capsys, fast_args(small_root, existing_store, "--epochs", "1"))
    _assert_clean_failure(code, out, err, f"store {existing_store} is not writable")
    assert existing_store.read_bytes() == before


def test_runs_on_missing_store(tmp_path, capsys):
    code, out, err = run_cli(capsys, ["runs", "--store", str(tmp_path / "none.db")])
    _assert_clean_failure(code, out, err, "does not exist")
    assert not (tmp_path / "none.db").exists()


# ---------------------------------------------------------------------------------------------
# --tensorboard


def test_tensorboard_scalars(small_root, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "tb"
    code, _, err = run_cli(
        capsys, fast_args(small_root, tmp_path / "s.db", "--epochs", "2", "--tensorboard", str(logdir))
    )
    assert code == 0, err
    events = EventAccumulator(str(logdir))
    events.Reload()
    assert {"train_error", "test_error", "loss", "lr"} <= set(events.Tags()["scalars"])
    assert [s.step for s in events.Scalars("test_error")] == [0, 1]
    assert all(0 <= s.value <= 1 for s in events.Scalars("train_error"))


def test_tensorboard_missing_is_a_clean_error(small_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    db = tmp_path / "s.db"
    code, out, err = run_cli(capsys, fast_args(small_root, db, "--tensorboard", str(tmp_path / "tb")))
    _assert_clean_failure(code, out, err, "pip install 'depthlab[tensorboard]'")
    assert not db.exists() and not (tmp_path / "tb").exists()


# ---------------------------------------------------------------------------------------------
# Real processes: `python -m depthlab`


def _depthlab(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", DEPTHLAB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "depthlab", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_subprocess_json_run_and_bad_input(small_root, tmp_path):
    done = _depthlab(*fast_args(small_root, "s.db", "--epochs", "1", "--json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "done" and len(doc["epochs"]) == 1
    before = (tmp_path / "s.db").read_bytes()
    bad = _depthlab("train", "cnn-tanh", "--depth", "10", "--store", "s.db", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        "depthlab: error: depth must be a positive multiple of 3 for the stages family, got 10"
    ]
    assert (tmp_path / "s.db").read_bytes() == before
    listed = _depthlab("runs", cwd=tmp_path)  # default store: ./depthlab.db does not exist here
    assert listed.returncode == 2 and "depthlab.db does not exist" in listed.stderr


@pytest.mark.slow
def test_subprocess_real_mnist(data_root, tmp_path):
    # The real data end to end: the classic lines, the default store in the working directory.
    done = _depthlab(
        "train",
        "cnn-elu-bn",
        "--depth",
        "3",
        "--epochs",
        "1",
        "--train-size",
        "2000",
        "--batch-size",
        "64",
        "--lr",
        "0.05",
        "--device",
        "cpu",
        "--data-dir",
        str(data_root),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    first = CLASSIC.match(done.stdout.splitlines()[0])
    assert first and float(first[4]) < 30
    with Store(tmp_path / "depthlab.db") as store:
        [row] = store.runs()
        assert row.status == "done" and row.config["train_size"] == 2000 and row.device == "cpu"


def test_a_schedule_longer_than_epochs_warns_naming_what_is_cut(small_root, tmp_path, capsys):
    code, out, err = run_cli(
        capsys,
        fast_args(
            small_root,
            tmp_path / "s.db",
            "--epochs",
            "1",
            "--train-size",
            "128",
            "--schedule",
            "1@0.1,2@0.01",
        ),
    )
    assert code == 0, err
    assert "runs 3 epochs but --epochs is 1: cut 0.01 for epochs 1-3" in err
    code, out, err = run_cli(
        capsys,
        fast_args(
            small_root,
            tmp_path / "s.db",
            "--epochs",
            "1",
            "--train-size",
            "128",
            "--schedule",
            "multistep:1,5",
        ),
    )
    assert code == 0 and "milestone(s) 1,5 at or after --epochs 1: they never apply" in err


def test_patience_says_it_stopped_early_and_restored_the_best_weights(small_root, tmp_path, capsys):
    # a good epoch, then an lr that wrecks the network: patience 1 stops and restores epoch 000
    code, out, err = run_cli(
        capsys,
        fast_args(
            small_root, tmp_path / "s.db", "--epochs", "6", "--schedule", "1@0.1,5@50", "--patience", "1"
        ),
    )
    assert code in (0, 1), err
    line = out.splitlines()[-1]
    if "stopped early" in out:
        assert (
            line.startswith("stopped early after epoch 00")
            and "restored the best weights, from epoch 00" in line
        )
        best = min(
            (ln for ln in out.splitlines() if ln.startswith("Epoch ")),
            key=lambda ln: float(ln.split()[-1][:-1]),
        )
        assert f"from epoch {best.split()[1][:3]}" in line  # the epoch the classic lines show as best
