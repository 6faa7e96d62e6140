"""The CLI's options: defaults and help from the config dataclasses, grouped option objects,
--precision on every training command, the quick frontier protocol, messages through logging."""

import inspect
import json
import logging

import click
import pytest
from fakedata import write_idx_folder

from depthlab.cli import cli, main
from depthlab.cli.options import ModelOptions, option_from_field
from depthlab.depth_frontier.protocol import FrontierConfig
from depthlab.engine.config import TrainConfig
from depthlab.store.sqlite import Store

TRAINING_COMMANDS = ("train", "frontier", "lr-sweep", "lr-find", "ablate", "reproduce", "diagnose", "phase")


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_idx_folder(root / "FashionMNIST" / "raw", 256, 128, gz=True)
    return root


def _option(command: str, name: str) -> click.Option:
    [option] = [p for p in cli.commands[command].params if isinstance(p, click.Option) and p.name == name]
    return option


# ---------------------------------------------------------------------------------------------
# Defaults in one place


@pytest.mark.parametrize(
    "command, name",
    [
        ("train", "epochs"),
        ("train", "lr"),
        ("train", "momentum"),
        ("train", "batch_size"),
        ("train", "optimizer"),
        ("train", "weight_decay"),
        ("train", "schedule"),
        ("train", "seed"),
        ("train", "device"),
        ("lr-sweep", "epochs"),
        ("ablate", "lr"),
        ("lr-find", "batch_size"),
        ("diagnose", "lr"),
        *[(c, "precision") for c in TRAINING_COMMANDS],
    ],
)
def test_defaults_come_from_train_config(command, name):
    assert _option(command, name).default == getattr(TrainConfig(), name)


def test_help_texts_come_from_field_metadata():
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert _option("train", "lr").help == fields["lr"].metadata["help"]
    assert _option("train", "precision").help == fields["precision"].metadata["help"]
    assert list(_option("train", "precision").type.choices) == ["fp32", "bf16", "tf32", "fp32-ftz"]
    assert _option("frontier", "threshold").default == FrontierConfig().threshold
    assert _option("frontier", "criterion").default == FrontierConfig().criterion
    assert _option("frontier", "bisection").default == FrontierConfig().bisection
    # the options the quick protocol changes say both defaults, from the two constructors
    assert "(default 3; --quick 1)" in _option("frontier", "epochs").help
    assert "(default 300; --quick 9)" in _option("frontier", "max_depth").help


def test_option_from_field_types_flags_and_overrides():
    @click.command()
    @option_from_field(TrainConfig, "lr")
    @option_from_field(TrainConfig, "nesterov")
    @option_from_field(TrainConfig, "patience")
    @option_from_field(TrainConfig, "dataset", default=None, help="mine")
    def cmd(lr, nesterov, patience, dataset):
        click.echo(json.dumps([lr, nesterov, patience, dataset]))

    from click.testing import CliRunner

    runner = CliRunner()
    assert json.loads(runner.invoke(cmd, []).output) == [0.1, False, None, None]
    assert json.loads(runner.invoke(cmd, ["--lr", "0.5", "--nesterov", "--patience", "2"]).output) == [
        0.5,
        True,
        2,
        None,
    ]
    assert runner.invoke(cmd, ["--lr", "x"]).exit_code == 2
    assert [p.help for p in cmd.params if p.name == "dataset"] == ["mine"]


# ---------------------------------------------------------------------------------------------
# A handful of option objects per command


@pytest.mark.parametrize("command", [*TRAINING_COMMANDS, "summary"])
def test_commands_take_a_handful_of_option_objects(command):
    function = inspect.unwrap(cli.commands[command].callback)
    assert len(inspect.signature(function).parameters) <= 8, inspect.signature(function)


def test_the_flags_are_still_all_there():
    """Grouping changed the command functions, not the command lines."""
    names = {p.opts[0] for p in cli.commands["train"].params if isinstance(p, click.Option)}
    for flag in (
        "--depth",
        "--act",
        "--init",
        "--norm",
        "--skip",
        "--heads",
        "--width",
        "--param",
        "--dataset",
        "--data-dir",
        "--train-size",
        "--seed",
        "--device",
        "--precision",
        "--store",
        "--out",
        "--json",
        "--tensorboard",
        "--epochs",
        "--lr",
        "--momentum",
        "--nesterov",
        "--batch-size",
        "--optimizer",
        "--weight-decay",
        "--schedule",
        "--patience",
        "--val",
        "--augment",
        "--rerun",
        "--compile",
        "--threads",
    ):
        assert flag in names, flag
    # 36 flags before --precision; then --model-file, --dry-run, --force, --threads, --depth-step, --optimizers
    # and --plateau-stop, and --depth no longer offered
    assert len(cli.commands["frontier"].params) == 43
    assert "--plateau-stop" in {o for p in cli.commands["frontier"].params for o in p.opts}


def test_model_options_overrides():
    assert ModelOptions(depth=6, act="elu", params=("stack_depth=3",)).overrides() == {
        "depth": 6,
        "act": "elu",
        "stack_depth": "3",
    }
    assert ModelOptions(depth=6, act="elu").overrides(depth=False) == {"act": "elu"}


# ---------------------------------------------------------------------------------------------
# --precision


def _train(root, db, *extra):
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
        "--epochs",
        "1",
        "--store",
        str(db),
        *extra,
    ]


def test_precision_reaches_the_config_and_the_runs_table(small_root, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert main(_train(small_root, db, "--precision", "bf16", "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["precision"] == "bf16"
    assert main(_train(small_root, db, "--json")) == 0
    assert json.loads(capsys.readouterr().out)["config"]["precision"] == "fp32"
    assert main(["runs", "--store", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "precision" in lines[0].split()
    column = lines[0].split().index("precision")
    assert sorted(line.split()[column] for line in lines[2:4]) == [
        "bf16",
        "fp32",
    ]  # under the header and its rule
    with Store(db, reading=True) as store:
        assert sorted(r.config["precision"] for r in store.runs()) == ["bf16", "fp32"]


def test_precision_reaches_the_experiment_commands(small_root, tmp_path, capsys):
    db = tmp_path / "s.db"
    code = main(
        [
            "lr-sweep",
            "cnn-tanh",
            "--depth",
            "3",
            "--lrs",
            "0.05,0.1",
            "--epochs",
            "1",
            "--dataset",
            "fashion-mnist",
            "--data-dir",
            str(small_root),
            "--device",
            "cpu",
            "--batch-size",
            "64",
            "--store",
            str(db),
            "--out",
            str(tmp_path / "o"),
            "--precision",
            "bf16",
            "--json",
        ]
    )
    assert code == 0, capsys.readouterr().err
    with Store(db, reading=True) as store:
        assert [r.config["precision"] for r in store.runs()] == ["bf16", "bf16"]


def test_precision_reaches_the_frontier_and_reproduce_plans():
    from depthlab.experiments.catalogue import plan

    assert {c.precision for c in plan("depth-frontier", quick=True, precision="bf16")} == {"bf16"}
    assert {c.precision for c in plan("lr-momentum", quick=True, precision="bf16")} == {"bf16"}
    assert {c.precision for c in plan("lr-momentum", quick=True)} == {"fp32"}


def test_precision_reaches_the_phase_sweep():
    from depthlab.analysis.phase import phase_configs

    configs = phase_configs("tanh", 0.05, [1.0, 2.0], [6, 12], [0.1], precision="bf16")
    assert {fc.trial_config("stages", 6, 0.1, 0).precision for fc in configs.values()} == {"bf16"}


# ---------------------------------------------------------------------------------------------
# The quick frontier protocol


def test_quick_protocol_is_the_old_one():
    quick = FrontierConfig.quick()
    assert (
        quick.train_size,
        quick.epochs,
        quick.lrs,
        quick.max_depth,
        quick.eval_size,
        quick.evals_per_epoch,
    ) == (10000, 1, (0.01, 0.1, 1.0), 9, 1000, 4)
    assert quick.changes() == dict(
        train_size=10000, epochs=1, lrs=(0.01, 0.1, 1.0), max_depth=9, eval_size=1000, evals_per_epoch=4
    )
    # the same trials as before FrontierConfig.quick() (hashes computed with QUICK_PROTOCOL)
    assert quick.trial_config("cnn-tanh", 3, 0.1, 0).hash() == "d99893126a26d562"
    assert quick.trial_config("cnn-elu-bn", 9, 1.0, 0).hash() == "455caba806cce3fb"
    assert FrontierConfig.quick(epochs=2).epochs == 2


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--quick"], FrontierConfig.quick()),
        ([], FrontierConfig()),
        (
            ["--quick", "--epochs", "2", "--eval-size", "all", "--lrs", "0.1,1"],
            FrontierConfig.quick(epochs=2, eval_size=None, lrs=(0.1, 1.0)),
        ),
        (
            [
                "--max-depth",
                "12",
                "--train-size",
                "500",
                "--act",
                "elu",
                "--precision",
                "bf16",
                "--seeds",
                "2",
            ],
            FrontierConfig(
                max_depth=12, train_size=500, model_args={"act": "elu"}, precision="bf16", seeds=2
            ),
        ),
    ],
)
def test_frontier_flags_build_the_protocol(args, expected, monkeypatch, tmp_path):
    import depthlab.cli.frontier as module

    seen = []
    monkeypatch.setattr(module, "show_status", lambda names, config, *rest: seen.append(config))
    assert (
        main(["frontier", "--models", "cnn-tanh", "--status", "--store", str(tmp_path / "s.db"), *args]) == 0
    )
    assert seen == [expected]


# ---------------------------------------------------------------------------------------------
# Messages through logging


def test_messages_go_through_the_depthlab_logger(capsys):
    from depthlab.cli.app import EchoHandler, log, progress, progress_to_stderr, terminal_logging

    with terminal_logging():
        assert any(isinstance(h, EchoHandler) for h in logging.getLogger("depthlab").handlers)
        log.info("a notice")
        progress.info("Epoch 000/001")
        assert capsys.readouterr() == ("Epoch 000/001\n", "a notice\n")
        progress_to_stderr(True)
        progress.info("Epoch 000/001")
        assert capsys.readouterr() == ("", "Epoch 000/001\n")
        with terminal_logging():  # nested: the same handler
            assert sum(isinstance(h, EchoHandler) for h in log.handlers) == 1
    # outside a command line, library use is quiet (as the old default echo was)
    assert not any(isinstance(h, EchoHandler) for h in log.handlers)
    progress.info("quiet")
    log.info("quiet")
    assert capsys.readouterr() == ("", "")
    assert main(["models", "--json"]) == 0
    capsys.readouterr()
    progress.info("still quiet")
    assert capsys.readouterr() == ("", "")


def test_experiment_progress_lines_go_through_the_logger(small_root, tmp_path, capsys):
    """lr-sweep passes no echo callable: its per-epoch lines come from the progress logger,
    on stdout, or on stderr under --json."""
    args = [
        "lr-sweep",
        "cnn-tanh",
        "--depth",
        "3",
        "--lrs",
        "0.1",
        "--epochs",
        "1",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(small_root),
        "--device",
        "cpu",
        "--batch-size",
        "64",
        "--store",
        str(tmp_path / "s.db"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "Epoch 000/001" in out and "Epoch" not in err
    assert main([*args, "--json", "--store", str(tmp_path / "t.db")]) == 0
    out, err = capsys.readouterr()
    assert "Epoch 000/001" in err and "Epoch" not in out
    json.loads(out)
