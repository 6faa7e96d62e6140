"""``depthlab --help``, ``--version``, ``models``, ``runs`` and ``info`` start without importing torch
(issue 32: they took 3-4 s idle, torch's import), and the group's command table says what the
commands themselves say."""

import subprocess
import sys

import pytest

from depthlab.cli import cli
from depthlab.cli.commands import COMMANDS

PROBE = """
import sys
from depthlab.cli import main
code = main({argv!r})
print("TORCH" if "torch" in sys.modules else "NO-TORCH", code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["-h"]])
def test_help_and_version_do_not_import_torch(argv):
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "NO-TORCH 0"
    if argv != ["--version"]:
        assert "lr-find" in done.stdout and "Train one MODEL and record it in the store." in done.stdout


def test_importing_depthlab_does_not_import_torch_until_a_name_is_used():
    probe = (
        "import sys, depthlab; a = 'torch' in sys.modules; depthlab.TrainConfig; "
        "print(a, 'torch' in sys.modules, callable(depthlab.frontier), depthlab.__version__)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "True", "True", "0.1.0"], done.stderr


def test_the_command_table_matches_the_commands():
    assert set(COMMANDS) == set(cli.commands)
    for name, (module, summary) in COMMANDS.items():
        command = cli.commands[name]
        assert command.callback.__module__ == f"depthlab.cli.{module}", name
        assert command.get_short_help_str(1000) == summary, name


def test_the_frontier_subpackage_stays_importable_beside_the_function():
    import depthlab
    from depthlab.depth_frontier.results import FrontierResult

    assert callable(depthlab.frontier) and depthlab.FrontierResult is FrontierResult


def test_listing_a_store_of_trained_runs_does_not_import_torch(tmp_path):
    from depthlab.store.sqlite import Store

    with Store(tmp_path / "s.db") as store:
        run_id = store.start_run(
            {"model": "cnn-tanh", "model_args": {"depth": 9}, "lr": 0.1, "epochs": 1, "precision": "fp32"},
            "h1",
        )
        store.log_epoch(
            run_id,
            {"epoch": 0, "train_error": 0.5, "test_error": 0.4, "loss": 1.0, "lr": 0.1, "seconds": 1.0},
        )
        store.finish_run(run_id, "done", seconds=1.0, result={"test_error": 0.4})
    for argv in (["runs", "--store", str(tmp_path / "s.db")], ["runs", "--help"]):
        done = subprocess.run(
            [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "NO-TORCH 0", done.stdout
        assert ("cnn-tanh" in done.stdout) is (argv[-1] != "--help")  # the listing holds the run


@pytest.mark.parametrize(
    "argv", [["models"], ["models", "--json"], ["info"], ["info", "--json"], ["info", "--help"]]
)
def test_models_and_info_do_not_import_torch(argv):
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "NO-TORCH 0", done.stdout
    if argv[0] == "models":
        assert "cnn-tat-lrelu" in done.stdout and "resnet110" in done.stdout
    elif argv[-1] != "--help":
        assert "fp32" in done.stdout and "data" in done.stdout


def test_info_devices_is_the_one_that_imports_torch():
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=["info", "--devices"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "TORCH 0" and "--device auto picks" in done.stdout
