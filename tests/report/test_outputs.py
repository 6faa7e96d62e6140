"""Outputs are atomic (issue 24, item 9): every table, JSON and figure is written through a temp
file renamed over its path, so a full or read-only disk leaves the previous file intact and no
temp file behind, and the CLI says so on one line (exit 2), the store's state included."""

from __future__ import annotations

import builtins
import errno
import io
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from fakedata import write_idx_folder

from depthlab.cli import main
from depthlab.report import figures, outputs, tables
from depthlab.store.sqlite import Store

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")


class _FullFile:
    """A file open for writing on a full disk: every write fails with ENOSPC (after the open,
    which has already truncated a file opened in place)."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()

    def __iter__(self):
        return iter(self._fh)


def _full_disk(monkeypatch, folder: Path, target: str) -> None:
    """From now on, files opened for writing in ``folder`` whose name contains ``target`` (the
    file itself, or a temp file named after it) are on a full disk: through `open`, `io.open`,
    `os.fdopen` (which calls `io.open`), `Path.write_text` and matplotlib's `savefig`."""
    real_open = io.open
    folder = os.path.realpath(folder)

    def name_of(file) -> str:
        if isinstance(file, int):
            try:
                return os.readlink(f"/proc/self/fd/{file}")
            except OSError:
                return ""
        return os.path.realpath(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else ""

    def fake_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        name = name_of(file)
        if (
            any(c in mode for c in "wax+")
            and os.path.dirname(name) == folder
            and target in os.path.basename(name)
        ):
            return _FullFile(fh)
        return fh

    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(builtins, "open", fake_open)


def _tree(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------------------------------------
# The writers


@pytest.mark.parametrize("kind", ["text", "csv", "figure"])
@pytest.mark.parametrize("failure", ["write", "rename-read-only"])
def test_every_writer_keeps_the_previous_file_on_a_full_or_read_only_disk(
    kind, failure, tmp_path, monkeypatch
):
    path = tmp_path / {"text": "out.json", "csv": "out.csv", "figure": "out.png"}[kind]

    def write(version: int) -> None:
        if kind == "text":
            outputs.write_text_atomic(path, f'{{"version": {version}}}')
        elif kind == "csv":
            tables.write_csv(path, ["version"], [[version]])
        else:
            fig, ax = figures.new_axes()
            ax.plot([0, version])
            figures.save_figure(fig, path, dpi=40)

    write(1)
    before = path.read_bytes()
    assert before and oct(path.stat().st_mode & 0o777) == oct(0o666 & ~outputs._UMASK)
    if failure == "write":
        _full_disk(monkeypatch, tmp_path, path.name)
        expected = errno.ENOSPC
    else:

        def read_only(src, dst):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(outputs.os, "replace", read_only)
        expected = errno.EROFS
    with pytest.raises(OSError) as info:
        write(2)
    assert info.value.errno == expected and info.value.filename == str(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temp file left
    line = outputs.disk_problem(info.value)
    assert line.startswith("the disk is full" if failure == "write" else "the file system is read-only")
    assert str(path) in line and "\n" not in line


def test_atomic_write_removes_its_temp_file_when_the_writer_raises(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("old")

    def broken(fh):
        fh.write("half")
        raise ValueError("a bug in the writer")

    with pytest.raises(ValueError):
        outputs.atomic_write(path, broken)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["x.txt"]


def test_disk_problems_are_recognised_and_nothing_else():
    assert "the disk is full" in outputs.disk_problem(sqlite3.OperationalError("database or disk is full"))
    assert "read-only" in outputs.disk_problem(
        sqlite3.OperationalError("attempt to write a readonly database")
    )
    assert "quota" in outputs.disk_problem(OSError(errno.EDQUOT, "Disk quota exceeded", "/x"))
    assert outputs.disk_problem(OSError(errno.ENOENT, "No such file", "/x")) is None
    assert outputs.disk_problem(sqlite3.OperationalError("no such table: runs")) is None
    assert outputs.disk_problem(ValueError("database or disk is full")) is None


def test_no_output_is_written_in_place():
    """Every file depthlab writes goes through report.outputs.atomic_write (or a module's own temp
    file and rename: checkpoints, downloads, the JPEG cache, the store snapshot)."""
    repo = Path(__file__).resolve().parents[2]
    offenders = []
    for path in sorted((repo / "depthlab").rglob("*.py")):
        if (
            path == repo / "depthlab" / "report" / "figures.py"
        ):  # save_figure: savefig into atomic_write's file
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if "os.fdopen(fd," in code:  # the fd of a temp file from tempfile.mkstemp, renamed into place
                continue
            if (
                ".write_text(" in code
                or ".write_bytes(" in code
                or ".savefig(" in code
                or ("open(" in code and ('"w' in code or "'w" in code))
            ):
                offenders.append(f"{path.relative_to(repo)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# ---------------------------------------------------------------------------------------------
# The CLI: frontier outputs on a full disk, a store on a full disk


@pytest.fixture(scope="module")
def frontier_run(tmp_path_factory):
    """A finished frontier search (one trial on generated data) and the outputs of its last run."""
    root = tmp_path_factory.mktemp("frontier-out")
    write_idx_folder(root / "data" / "FashionMNIST" / "raw", 128, 64)
    args = [
        "frontier",
        "--models",
        "cnn-tanh",
        "--depths",
        "3",
        "--lrs",
        "0.1",
        "--epochs",
        "1",
        "--train-size",
        "128",
        "--eval-size",
        "64",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(root / "data"),
        "--workers",
        "1",
        "--device",
        "cpu",
    ]
    assert main(args + ["--store", str(root / "store.db"), "--out", str(root / "out")]) == 0
    return root, args


@pytest.mark.parametrize(
    "target",
    ["frontier.csv", "frontier-depths.csv", "frontier.json", "frontier-error.png", "frontier-depth.png"],
)
def test_frontier_outputs_of_the_previous_run_survive_a_full_disk(
    target, frontier_run, tmp_path, monkeypatch, capsys
):
    root, args = frontier_run
    out = tmp_path / "out"
    out.mkdir()
    for name, content in _tree(root / "out").items():
        (out / name).write_bytes(content)
    before = _tree(out)
    empty = tmp_path / "other.db"
    Store(empty).close()  # another search state: every output would change
    capsys.readouterr()
    _full_disk(monkeypatch, out, target)
    code = main(args + ["--status", "--store", str(empty), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(
        f"depthlab: error: the disk is full writing {out / target} "
    )
    assert "kept in the store" in err and "internal error" not in err
    assert (out / target).read_bytes() == before[target]
    assert sorted(os.listdir(out)) == sorted(before)  # no temp file left


def test_a_store_on_a_full_disk_is_one_line_and_keeps_its_finished_runs(tmp_path, capsys, monkeypatch):
    write_idx_folder(tmp_path / "data" / "FashionMNIST" / "raw", 128, 64)
    store = tmp_path / "s.db"
    base = [
        "train",
        "cnn-tanh",
        "--depth",
        "3",
        "--epochs",
        "1",
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
    ]
    assert main(base + ["--seed", "1"]) == 0
    capsys.readouterr()

    def full(self, *args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "start_run", full)  # the run's first write
    assert main(base + ["--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("depthlab: error: the disk is full: the store could not be written")
    )
    assert "every run finished before it is kept" in err and "internal error" not in err
    monkeypatch.undo()
    with Store(store, reading=True) as s:
        assert [r.status for r in s.runs() if r.config["seed"] == 1] == ["done"]
