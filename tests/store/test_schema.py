"""The store's schema version (issue 29): read on every open, a newer store refused and left
byte for byte, an older one migrated in place after a backup (in one transaction), and the
stores carried under runs/ read exactly as before, without being rewritten by a read."""

import hashlib
import json
import logging
import shutil
import sqlite3
from pathlib import Path

import pytest

from depthlab.cli import main
from depthlab.errors import StoreError
from depthlab.store import schema
from depthlab.store.sqlite import Store

REPO = Path(__file__).resolve().parents[2]
CARRIED = ["frontier-full", "phase-mlp", "seeds-auto", "trainability-fixes"]
FRONTIER_FULL_STATUS = ["frontier", "--models", "all", "--max-depth", "300", "--status"]
FRONTIER_FULL_DEPTHS = {
    "cnn-tanh": "9",
    "cnn-tanh-lecun": "93",
    "cnn-elu": "69",
    "cnn-elu-bn": "162",
    "resnet-elu-bn": "≥ 300 (cap)",
    "cnn-tanh-bn": "108",
    "resnet-elu": "24",
    "cnn-elu-multihead": "138",
}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("depthlab:")]
    assert len(lines) == 1 and "internal error" not in err and "Traceback" not in err, err
    return lines[0]


def version_of(path: Path) -> str:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
    try:
        return conn.execute("SELECT value FROM depthlab_meta WHERE key = 'schema_version'").fetchone()[0]
    finally:
        conn.close()


def a_store(path: Path, version: str | None = None) -> Path:
    with Store(path) as store:
        store.record({"model": "m", "dataset": "d", "lr": 0.1}, "h1", {"status": "done", "epochs": []})
    if version is not None:
        conn = sqlite3.connect(path)
        conn.execute("UPDATE depthlab_meta SET value = ? WHERE key = 'schema_version'", (version,))
        conn.commit()
        conn.close()
    return path


def test_a_new_store_has_the_current_version():
    assert schema.SCHEMA_VERSION == 2


def test_a_new_store_is_written_at_the_current_version(tmp_path):
    path = a_store(tmp_path / "s.db")
    assert version_of(path) == str(schema.SCHEMA_VERSION)
    with Store(path, reading=True) as store:
        assert store.version == schema.SCHEMA_VERSION


@pytest.mark.parametrize("reading", [False, True])
def test_a_newer_store_is_refused_in_one_line_and_left_byte_for_byte(reading, tmp_path):
    path = a_store(tmp_path / "s.db", version="99")
    before = md5(path)
    with pytest.raises(StoreError, match="schema version 99, newer than this depthlab reads"):
        Store(path, reading=reading)
    assert md5(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]


@pytest.mark.parametrize(
    "command",
    [
        ["runs"],
        ["runs", "--json"],
        ["frontier", "--models", "cnn-tanh", "--status"],
        ["train", "cnn-tanh", "--depth", "3", "--epochs", "1"],
    ],
)
def test_the_cli_refuses_a_newer_store_with_exit_2(command, tmp_path, capsys):
    path = a_store(tmp_path / "s.db", version="3")
    before = md5(path)
    assert main(command + ["--store", str(path)]) == 2
    assert "newer than this depthlab reads" in one_error_line(capsys.readouterr().err)
    assert md5(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_a_version_that_is_not_a_number_is_one_line(value, tmp_path):
    path = a_store(tmp_path / "s.db", version=value)
    with pytest.raises(StoreError, match="is not a version number"):
        Store(path, reading=True)


def test_an_older_store_is_migrated_after_a_backup_and_answers_as_before(tmp_path, caplog):
    path = tmp_path / "store.db"
    shutil.copy(REPO / "runs" / "phase-mlp" / "store.db", path)
    original = path.read_bytes()
    with Store(path, reading=True) as store:
        assert store.version == 1
        before = [(r.id, r.config_hash, r.status, r.config, r.result) for r in store.runs()]
    assert path.read_bytes() == original  # a read does not migrate
    with caplog.at_level(logging.INFO, logger="depthlab"), Store(path) as store:
        assert store.version == 2
        assert [(r.id, r.config_hash, r.status, r.config, r.result) for r in store.runs()] == before
        assert store.conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    backup = tmp_path / "store.db.bak-v1"
    assert version_of(backup) == "1" and version_of(path) == "2"
    with Store(backup, reading=True) as copy:  # a consistent copy (SQLite's backup bumps its change counter)
        assert copy.version == 1
        assert [(r.id, r.config_hash, r.status, r.config, r.result) for r in copy.runs()] == before
    [line] = [r.getMessage() for r in caplog.records if "migrated" in r.getMessage()]
    assert "from schema version 1 to 2" in line and str(backup) in line
    with Store(path) as store:  # once migrated, no second backup
        assert store.version == 2
    assert sorted(p.name for p in tmp_path.iterdir() if "bak" in p.name) == ["store.db.bak-v1"]


def test_a_second_migration_keeps_the_first_backup(tmp_path):
    path = a_store(tmp_path / "s.db", version="1")
    (tmp_path / "s.db.bak-v1").write_text("an earlier backup")
    Store(path).close()
    assert (tmp_path / "s.db.bak-v1").read_text() == "an earlier backup"
    assert version_of(tmp_path / "s.db.bak-v1.2") == "1" and version_of(path) == "2"


def test_a_migration_that_fails_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    path = a_store(tmp_path / "s.db", version="1")
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE claims")  # as version 1 had it
    conn.close()
    monkeypatch.setitem(schema.MIGRATIONS, 1, (schema.CLAIMS_TABLE, "CREATE TABLE broken (x"))
    with pytest.raises(StoreError, match="not a usable depthlab store"):
        Store(path)
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert "claims" not in tables and version_of(path) == "1"  # the transaction rolled back
    monkeypatch.undo()
    with Store(path) as store:  # and the next open migrates it
        assert store.version == 2 and [r.config_hash for r in store.runs()] == ["h1"]


@pytest.mark.parametrize("name", CARRIED)
def test_carried_stores_answer_as_before_and_reading_leaves_them_byte_for_byte(name, tmp_path, capsys):
    original = REPO / "runs" / name / "store.db"
    before = md5(original)
    carried = version_of(original)  # "1" for the stores carried before schema 2, "2" for those written since
    answers = {}
    for label, path in (("original", original), ("migrated", tmp_path / "store.db")):
        if label == "migrated":
            shutil.copy(original, path)
            Store(path).close()  # a writer migrates the copy
            assert version_of(path) == "2" and (tmp_path / "store.db.bak-v1").exists() == (carried == "1")
        assert main(["runs", "--json", "--limit", "1000", "--store", str(path)]) == 0
        answers[label] = json.loads(capsys.readouterr().out)
        assert main(["theory", "--store", str(path)]) == 0
        answers[label + "-theory"] = capsys.readouterr().out
        if name == "frontier-full":
            assert main(FRONTIER_FULL_STATUS + ["--store", str(path)]) == 0
            out = capsys.readouterr().out
            for model, depth in FRONTIER_FULL_DEPTHS.items():
                row = next(line for line in out.splitlines() if line.startswith(model + " "))
                assert row[len(model) :].lstrip().startswith(depth + " "), (model, row)
            answers[label + "-status"] = out.replace(str(path), "STORE")
    assert len(answers["original"]) > 100
    assert answers["original"] == answers["migrated"]
    assert answers["original-theory"] == answers["migrated-theory"]
    if name == "frontier-full":
        assert answers["original-status"] == answers["migrated-status"]
    assert md5(original) == before  # read by `runs --json`, `theory` (and `frontier --status`): not rewritten
    assert not Path(str(original) + "-wal").exists() and version_of(original) == carried
