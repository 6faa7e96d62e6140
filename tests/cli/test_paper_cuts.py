"""The first hour's paper cuts (issue 32), each pinned: lr-find takes --model-file; help texts
say what the commands do; diagnose numbers layers 1..N; a finished frontier with no trainable
depth says `none` in its table as --status does; an interrupted command without a store does
not claim one; the depth axis counts the model's own unit; a factory without source says how."""

from __future__ import annotations

import json

import pytest

from depthlab import ConfigError, ModelFactory
from depthlab.cli import cli, main
from depthlab.cli.app import _kept_note
from depthlab.depth_frontier.outputs import depth_axis_unit, printed_rows
from depthlab.depth_frontier.protocol import FrontierConfig
from depthlab.depth_frontier.results import FrontierResult, ModelFrontier

NETS = """
def build(depth, width=8):
    from torch import nn
    layers = [nn.Flatten(), nn.Linear(784, width), nn.Tanh()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 10))
"""


def _help(command: str) -> str:
    return " ".join(
        cli.commands[command].get_help(__import__("click").Context(cli.commands[command])).split()
    )


def test_lr_find_takes_a_model_file_and_its_parameters(tmp_path, data_root, capsys):
    (tmp_path / "nets.py").write_text(NETS)
    code = main(
        [
            "lr-find",
            "--model-file",
            f"{tmp_path / 'nets.py'}:build",
            "--depth",
            "2",
            "-p",
            "width=4",
            "--steps",
            "10",
            "--train-size",
            "256",
            "--batch-size",
            "32",
            "--device",
            "cpu",
            "--data-dir",
            str(data_root),
            "--out",
            str(tmp_path / "out"),
            "--json",
        ]
    )
    assert code == 0
    found = json.loads(capsys.readouterr().out)
    assert found["steps_run"] <= 10
    saved = json.loads((tmp_path / "out" / "lr-find.json").read_text())
    assert saved["config"]["model_args"] == {"depth": 2, "width": 4}


def test_help_texts_name_what_the_commands_take_and_use():
    assert "--toggle" not in _help("lr-find") and "--no-skip" in _help("lr-find")
    assert "default: depthlab-out/depthlab/diagnose" in _help("diagnose")


def test_diagnose_numbers_a_factorys_layers_one_to_n(tmp_path, data_root, capsys):
    (tmp_path / "nets.py").write_text(NETS)
    code = main(
        [
            "diagnose",
            "--model-file",
            str(tmp_path / "nets.py"),
            "--depth",
            "6",
            "--steps",
            "2",
            "--every",
            "1",
            "--train-size",
            "256",
            "--batch-size",
            "32",
            "--device",
            "cpu",
            "--compare-depths",
            "2",
            "--data-dir",
            str(data_root),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("layer"))
    numbers = [
        int(line.split()[0]) for line in lines[start + 2 :] if line.split() and line.split()[0].isdigit()
    ]
    assert numbers == list(range(1, 8))  # 7 Linear layers: 6 hidden and the readout


def _model(name: str, depth: int | None, next_trial=None) -> ModelFrontier:
    return ModelFrontier(
        name,
        depth,
        None,
        None,
        3 if depth is None else None,
        None,
        {},
        True,
        0.0,
        1,
        0,
        next_trial=next_trial,
    )


def test_a_frontier_table_says_none_where_status_does():
    result = FrontierResult(
        FrontierConfig(), [_model("cnn-tanh", None), _model("mlp", None, (3, 0.1, 0))], 1.0
    )
    assert [row[1] for row in printed_rows(result)] == [
        "none",
        None,
    ]  # finished: none; still searching: blank


def test_the_depth_axis_counts_the_models_own_unit():
    def result(*names):
        return FrontierResult(FrontierConfig(), [_model(n, 3) for n in names], 1.0)

    assert depth_axis_unit(result("cnn-tanh", "cnn-elu-bn")) == "conv layers"
    assert depth_axis_unit(result("mlp")) == "hidden layers"
    assert depth_axis_unit(result("cnn-tanh", "mlp")) == "layers"


@pytest.mark.parametrize(
    "argv, stored",
    [
        (["diagnose", "cnn-tanh"], False),
        (["lr-find", "cnn-tanh"], False),
        (["train", "cnn-tanh"], True),
        (["frontier"], True),
    ],
)
def test_an_interrupted_command_says_whether_it_keeps_a_store(argv, stored):
    note = _kept_note(argv)
    assert ("finished runs are kept in the store" in note) is stored
    assert stored or "this command keeps no store" in note


def test_a_factory_without_source_says_how_to_give_one():
    namespace: dict = {}
    exec(compile("def build(depth):\n    return None\n", "<stdin>", "exec"), namespace)
    with pytest.raises(ConfigError, match="piped to stdin.*save the script as a file"):
        ModelFactory.from_callable(namespace["build"])


def test_train_on_a_terminal_shows_the_apis_tqdm_bar_not_its_own(tmp_path, data_root, monkeypatch, capsys):
    import sys

    import depthlab.api
    import depthlab.cli.core as core

    assert not hasattr(core, "_Progress")  # one progress bar: the API's (tqdm)
    asked = {}
    real = depthlab.api.train

    def spy(*args, **kwargs):
        from depthlab.engine.callbacks import StepProgress

        callbacks = kwargs.get("callbacks") or ()
        asked.update(
            progress=kwargs.get("progress"),
            own_bars=sum(isinstance(c, StepProgress) for c in callbacks),
        )
        return real(*args, **kwargs)

    monkeypatch.setattr(depthlab.api, "train", spy)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code = main(
        [
            "train",
            "cnn-tanh",
            "--depth",
            "3",
            "--epochs",
            "1",
            "--train-size",
            "256",
            "--batch-size",
            "64",
            "--device",
            "cpu",
            "--data-dir",
            str(data_root),
            "--store",
            str(tmp_path / "s.db"),
        ]
    )
    assert code == 0 and asked == {"progress": True, "own_bars": 0}
    assert "Epoch 000/001" in capsys.readouterr().out
