"""--workers defaults to auto wherever trials can run at once, with one help text; results do
not depend on it, and the experiment commands still print every run's epoch lines (issue 22)."""

import pytest

from depthlab.cli import main
from depthlab.cli.app import cli
from depthlab.store.sqlite import Store
from depthlab.sweep.executors import usable_cores

PARALLEL_COMMANDS = ("frontier", "lr-sweep", "ablate", "reproduce")


def _workers_help(command: str) -> str:
    import click

    ctx = click.Context(cli.commands[command])
    (option,) = [p for p in cli.commands[command].params if "--workers" in getattr(p, "opts", ())]
    return option.get_help_record(ctx)[1]


def test_every_parallel_command_defaults_to_auto_with_the_same_help():
    helps = {c: _workers_help(c) for c in PARALLEL_COMMANDS}
    assert len(set(helps.values())) == 1, helps
    assert (
        "[default: auto]" in helps["frontier"] and "one per CPU core on CPU, 1 on a GPU" in helps["frontier"]
    )


def _metrics(db):
    with Store(db, reading=True) as s:
        return sorted(
            (
                r.config["lr"],
                r.result["test_error"],
                tuple((e["train_error"], e["test_error"], e["loss"]) for e in s.epochs(r.id)),
            )
            for r in s.runs(status="done")
        )


@pytest.mark.skipif(usable_cores() < 2, reason="auto is one worker on a one-core machine")
def test_lr_sweep_results_and_epoch_lines_do_not_depend_on_workers(data_root, tmp_path, capsys):
    def sweep(name, *extra):
        code = main(
            [
                "lr-sweep",
                "cnn-tanh",
                "--depth",
                "3",
                "--lrs",
                "0.02,0.1",
                "--epochs",
                "2",
                "--batch-size",
                "64",
                "--train-size",
                "512",
                "--device",
                "cpu",
                "--data-dir",
                str(data_root),
                "--store",
                str(tmp_path / f"{name}.db"),
                "--out",
                str(tmp_path / name),
                *extra,
            ]
        )
        out, err = capsys.readouterr()
        assert code == 0, err
        return out, err

    out_auto, err_auto = sweep("auto")
    out_one, err_one = sweep("one", "--workers", "1")
    assert "worker processes" in err_auto and "worker processes" not in err_one
    for out in (out_auto, out_one):
        for lr in ("0.02", "0.1"):
            assert (
                sum(
                    line.startswith("[") and f"lr={lr}" in line and "Epoch 00" in line
                    for line in out.splitlines()
                )
                == 2
            ), out
    assert _metrics(tmp_path / "auto.db") == _metrics(tmp_path / "one.db")
