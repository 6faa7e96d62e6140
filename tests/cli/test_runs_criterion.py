"""`depthlab runs` shows a frontier trial's criterion error, the number its frontier line and
tables show, under a header saying so; other runs keep their final test error (issue 22)."""

import json
import re

from depthlab.cli import main
from depthlab.depth_frontier.criterion import recorded_criterion_error


def _run(capsys, args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_runs_shows_the_frontier_criterion_error_as_the_frontier_does(data_root, tmp_path, capsys):
    store = tmp_path / "s.db"
    code, out, err = _run(
        capsys,
        [
            "frontier",
            "--models",
            "cnn-elu-bn",
            "--train-size",
            "512",
            "--epochs",
            "1",
            "--lrs",
            "0.1",
            "--max-depth",
            "3",
            "--eval-size",
            "300",
            "--threshold",
            "0.9",
            "--criterion",
            "train",
            "--device",
            "cpu",
            "--store",
            str(store),
            "--out",
            str(tmp_path / "out"),
            "--data-dir",
            str(data_root),
        ],
    )
    assert code == 0, err
    line = re.search(r"cnn-elu-bn depth 3 lr 0\.1 seed 0: trains: (\d+\.\d)%", err)
    assert line, err
    table = next(row for row in out.splitlines() if row.startswith("cnn-elu-bn"))
    assert f"{line[1]}%" in table  # the frontier's printed table
    doc = json.loads((tmp_path / "out" / "frontier.json").read_text())
    error = doc["models"][0]["error"]

    code, out, err = _run(capsys, ["runs", "--store", str(store)])
    assert code == 0, err
    header, _, row = out.splitlines()[:3]
    assert "criterion error (train)" in header and "final test error" not in header
    assert f" {line[1]}% " in row  # as the frontier shows it (one decimal)
    code, out, _ = _run(capsys, ["runs", "--store", str(store), "--json"])
    (run,) = json.loads(out)
    assert run["criterion_error"] == error  # the same number, to the bit, as frontier.json
    assert (
        run["criterion_error"] != run["result"]["test_error"]
    )  # the train criterion, not the final test error

    code, out, err = _run(
        capsys,
        [
            "train",
            "cnn-tanh",
            "--depth",
            "3",
            "--train-size",
            "512",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--store",
            str(store),
            "--data-dir",
            str(data_root),
        ],
    )
    assert code == 0, err
    code, out, err = _run(capsys, ["runs", "--store", str(store)])
    assert "error: frontier criterion error (train), else final test" in out.splitlines()[0]
    code, out, err = _run(capsys, ["runs", "--store", str(store), "--limit", "1"])
    assert "final test error" in out.splitlines()[0]  # only the train run shown


def test_a_run_stored_without_its_criterion_has_none():
    assert recorded_criterion_error({"model": "cnn-tanh"}, {"checkpoints": []}) is None
    assert recorded_criterion_error({"monitor": {"criterion": "nonsense", "threshold": 0.2}}, {}) is None
    points = [
        {"epoch": 0.5, "train_error": 0.7, "eval_error": 0.5},
        {"epoch": 1.0, "train_error": 0.1, "eval_error": 0.3},
    ]
    config = {"monitor": {"criterion": "either", "threshold": 0.4}}
    assert recorded_criterion_error(config, {"checkpoints": points}) == ("either", 0.1)
