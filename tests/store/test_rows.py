"""Stored rows are checked when read (issue 29): a config nested 50,000 deep, an epoch's
``train_error='high'``, ``status='weird'``, ``model_args.depth=-5`` and the like, written with
raw sqlite3 into a store, are one line naming the run (exit 2) in every command that reads the
row, never an internal error (a RecursionError before) nor accepted silently."""

import json
import sqlite3

import pytest

from depthlab.cli import main
from depthlab.errors import StoreError
from depthlab.store.rows import MAX_JSON_DEPTH, BadRecord, json_depth, parse_json
from depthlab.store.sqlite import Store
from depthlab.sweep.runner import stored_result

DEEP = '{"a": ' * 50_000 + "1" + "}" * 50_000


def edit(config=None, result=None):
    """A change to a row's JSON: ``config(dict)`` / ``result(dict)`` edit the decoded value in place."""

    def change(raw: sqlite3.Connection, run_id: int) -> None:
        for column, edit_ in (("config", config), ("result", result)):
            if edit_ is not None:
                value = json.loads(
                    raw.execute(f"SELECT {column} FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
                )
                edit_(value)
                raw.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (json.dumps(value), run_id))

    return change


def column(name, value):
    return lambda raw, run_id: raw.execute(f"UPDATE runs SET {name} = ? WHERE id = ?", (value, run_id))


# What each bad row holds, and the words of its one line. Every case is read by `runs`,
# `runs --json`, `frontier --status` and a resumed `frontier` (which all look the trial up).
FINISHED_ROW_CASES = {
    "config nested 50,000 deep": (
        column("config", DEEP),
        f"config nests deeper than {MAX_JSON_DEPTH} levels",
    ),
    "result nested 50,000 deep": (
        column("result", DEEP),
        f"result nests deeper than {MAX_JSON_DEPTH} levels",
    ),
    "model_args.depth -5": (
        edit(config=lambda c: c["model_args"].update(depth=-5)),
        "config model_args.depth is not a positive integer",
    ),
    "model_args.depth 3.5": (
        edit(config=lambda c: c["model_args"].update(depth=3.5)),
        "config model_args.depth is not a positive integer",
    ),
    "model_args null": (
        edit(config=lambda c: c.update(model_args=None)),
        "config model_args is not an object",
    ),
    "epochs '3'": (edit(config=lambda c: c.update(epochs="3")), "config epochs is not an integer"),
    "an epoch's train_error 'high'": (
        edit(result=lambda r: r["epochs"][0].update(train_error="high")),
        "result epoch train_error is not a number",
    ),
    "an epoch's test_error 1.5": (
        edit(result=lambda r: r["epochs"][0].update(test_error=1.5)),
        "result epoch test_error is not a fraction in [0, 1]",
    ),
    "an epoch number -1": (
        edit(result=lambda r: r["epochs"][0].update(epoch=-1)),
        "result epoch number is not an integer of at least 0",
    ),
    "result status 'weird'": (
        edit(result=lambda r: r.update(status="weird")),
        "result status 'weird' is not one of",
    ),
    "test_error -0.2": (
        edit(result=lambda r: r.update(test_error=-0.2)),
        "result test_error is not a fraction",
    ),
    "device a blob": (column("device", b"\x01"), "experiment, reason, torch_version, device are not text"),
    "created_at text": (column("created_at", "yesterday"), "seconds or created_at is not a number"),
    "a config that is bytes": (column("config", b"\x80\x04K\x01."), "config is not JSON text"),
}


def a_bad_copy(frontier_store, tmp_path, change):
    source, args = frontier_store
    store = tmp_path / "store.db"
    store.write_bytes(source.read_bytes())
    raw = sqlite3.connect(store)
    run_id, config_hash = raw.execute("SELECT id, config_hash FROM runs").fetchone()
    change(raw, run_id)
    raw.commit()
    raw.close()
    return store, args, run_id, config_hash


def one_line_exit_2(command, store, capsys) -> str:
    code = main(command + ["--store", str(store)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("depthlab:")]
    assert code == 2 and len(errors) == 1, (command, code, err)
    assert "internal error" not in err and "Traceback" not in err
    return errors[0]


@pytest.mark.parametrize("case", list(FINISHED_ROW_CASES))
def test_a_bad_finished_row_is_one_line_naming_it_in_every_reader(case, frontier_store, tmp_path, capsys):
    change, words = FINISHED_ROW_CASES[case]
    store, args, run_id, config_hash = a_bad_copy(frontier_store, tmp_path, change)
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
        line = one_line_exit_2(command, store, capsys)
        assert f"run {run_id} has a corrupted record ({words}" in line, (command, line)
    with sqlite3.connect(store) as raw:  # nothing was added: the resume stopped at the row, trained nothing
        assert raw.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    raw.close()


@pytest.mark.parametrize(
    "change, words",
    [
        (edit(result=lambda r: r.update(epochs=[{}])), "TypeError"),
        (edit(result=lambda r: r["epochs"][0].update(colour="red")), "TypeError"),
        (edit(result=lambda r: r.pop("status")), "KeyError"),
        (edit(result=lambda r: r.update(checkpoints=[5])), "TypeError"),
    ],
)
def test_a_result_that_does_not_read_as_a_run_is_named_by_its_readers(
    change, words, frontier_store, tmp_path, capsys
):
    """Fields of the right types that still do not make a `RunResult` (an epoch without its
    numbers, an unknown key, no status): the readers that rebuild the run name the row."""
    store, args, run_id, config_hash = a_bad_copy(frontier_store, tmp_path, change)
    with (
        Store(store, reading=True) as s,
        pytest.raises(StoreError, match=f"run {run_id} has a corrupted record"),
    ):
        stored_result(s, config_hash)
    for command in (args + ["--status"], args + ["--out", str(tmp_path / "out")]):
        line = one_line_exit_2(command, store, capsys)
        assert f"run {run_id} has a corrupted record (its result does not read as a run: {words}" in line, (
            line
        )


def test_a_row_with_an_unknown_status_is_named_by_runs(frontier_store, tmp_path, capsys):
    """``status='weird'`` is not a finished row: the frontier does not read it (it looks up
    finished rows only); `runs`, which lists every row, names it."""
    store, args, run_id, _ = a_bad_copy(frontier_store, tmp_path, column("status", "weird"))
    for command in (["runs"], ["runs", "--json"]):
        line = one_line_exit_2(command, store, capsys)
        assert (
            f"run {run_id} has a corrupted record (status 'weird' is not one of diverged, done, failed, running)"
            in line
        )


@pytest.mark.parametrize("value", ["high", b"\x00"])  # a REAL column keeps text that is no number as text
def test_an_epochs_table_row_of_the_wrong_type_is_named(value, frontier_store, tmp_path, capsys):
    store, _, run_id, _ = a_bad_copy(
        frontier_store,
        tmp_path,
        lambda raw, run_id: raw.execute("UPDATE epochs SET train_error = ?", (value,)),
    )
    with (
        Store(store, reading=True) as s,
        pytest.raises(StoreError, match=f"epoch 0 of run {run_id} has a corrupted"),
    ):
        s.epochs(run_id)
    for command in (["runs"], ["runs", "--json"]):
        line = one_line_exit_2(command, store, capsys)
        assert f"epoch 0 of run {run_id} has a corrupted record (epoch train_error is not a number)" in line


def test_json_depth_is_counted_without_recursion_and_ignores_brackets_in_strings():
    assert json_depth(DEEP) == 50_000
    assert json_depth('{"a": "[[[[{{{{", "b": [1, [2]], "c": "\\"[["}') == 3
    assert parse_json('{"a": [1, {"b": 2}]}', "config") == {"a": [1, {"b": 2}]}
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(nested, "result") is not None  # the bound itself is allowed
    with pytest.raises(BadRecord, match="nests deeper"):
        parse_json("[" + nested + "]", "result")
    with pytest.raises(BadRecord, match="config: JSONDecodeError"):
        parse_json("{not json", "config")


def test_the_carried_stores_rows_all_pass_the_checks():
    """The checks hold every row depthlab ever wrote: the four stores carried under runs/."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    for name in ("frontier-full", "phase-mlp", "seeds-auto", "trainability-fixes"):
        with Store(repo / "runs" / name / "store.db", reading=True) as store:
            rows = store.runs()
            assert len(rows) > 100 and all(isinstance(store.epochs(r.id), list) for r in rows)
