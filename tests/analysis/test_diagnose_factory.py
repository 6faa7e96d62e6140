"""``depthlab diagnose`` on your own model (issue 21): any factory-built network, its Linear and
conv layers watched the way a preset's conv layers are, from Python and from the command line,
and a factory that fails is one line, exit 2."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from depthlab.analysis import diagnostics
from depthlab.cli import main
from depthlab.models import ModelFactory, create_model

NETS = textwrap.dedent("""
    from torch import nn


    def build(depth, width=16):
        layers = [nn.Flatten(), nn.Linear(784, width), nn.Tanh()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.Tanh()]
        return nn.Sequential(*layers, nn.Linear(width, 10))


    def convnet(depth, channels=4):
        layers = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


    def broken(depth):
        raise ValueError("no such net")


    def upto3(depth):
        if depth > 3:
            raise ValueError("too deep")
        return build(depth)
""")


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return path


def mlp(depth, width=8):  # a function here: it travels as this file's source
    from torch import nn

    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, width),
        nn.Tanh(),
        *[m for _ in range(depth - 1) for m in (nn.Linear(width, width), nn.Tanh())],
        nn.Linear(width, 10),
    )


def test_a_factory_mlp_is_diagnosed_over_its_linear_layers_from_python(mnist):
    diag = diagnostics.diagnose(
        mlp, {"depth": 3}, steps=3, every=1, lr=0.05, train_size=1000, data=mnist, device="cpu"
    )
    assert diag.model == "test_diagnose_factory.mlp" and diag.layer_kind == "weight"
    assert diag.layers == ["1", "3", "5", "7"]  # the four Linear layers of the Sequential, input side first
    assert list(diag.steps) == [0, 1, 2, 3]
    for name in ("act_mean", "act_std", "grad_norm", "signal_norm", "weight_norm", "update_ratio"):
        assert getattr(diag, name).shape == (4, 4), name
    assert np.all(diag.grad_norm > 0) and np.all(np.isfinite(diag.signal_norm))
    # SGD's first step is lr * grad, whatever the layer type
    assert diag.update_ratio[0] == pytest.approx(0.05 * diag.grad_norm[0] / diag.weight_norm[0], rel=1e-4)
    assert diag.verdict.label in diagnostics.LABELS
    assert diag.to_json()["layer_kind"] == "weight" and len(diag.to_frame()) == 16


def test_a_factory_conv_net_watches_its_convs_and_its_linear_head(mnist, nets):
    factory = ModelFactory.from_file(f"{nets}:convnet")
    diag = diagnostics.diagnose(
        factory,
        {"depth": 2, "channels": "3"},
        steps=1,
        every=1,
        lr=0.05,
        train_size=500,
        data=mnist,
        device="cpu",
    )
    assert diag.layers == ["0", "2", "6"] and diag.model == "nets.convnet"
    profiles = diagnostics.depth_profiles(factory, [1, 3], {"channels": 3}, data=mnist, batch_size=32)
    assert {d: len(p["grad_norm"]) for d, p in profiles.items()} == {1: 2, 3: 4}


def test_the_gradient_profile_of_linear_layers_matches_autograd(mnist):
    from depthlab.data.batches import Batches

    torch.manual_seed(0)
    net = create_model(ModelFactory.from_callable(mlp), depth=3)
    xb, yb = next(
        iter(Batches(mnist.train_x[:64], mnist.train_y[:64], 64, mnist.mean, mnist.std, shuffle=False))
    )
    layers = diagnostics.layers_for(ModelFactory.from_callable(mlp), net)
    prof = diagnostics.gradient_profile(net, xb, yb, layers)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert prof["grad_norm"] == pytest.approx([m.weight.grad.norm().item() for m in linears], rel=1e-6)


def test_presets_keep_their_conv_layers_and_a_convless_preset_gets_its_linear_ones():
    net = create_model("cnn-tanh", depth=6)
    assert [layer.name for layer in diagnostics.layers_for("cnn-tanh", net)] == [
        layer.name for layer in diagnostics.conv_layers(net)
    ]
    assert diagnostics.layer_kind(diagnostics.layers_for("cnn-tanh", net)) == "conv"
    with pytest.raises(Exception, match="no Linear or conv layers"):
        diagnostics.weight_layers(torch.nn.Tanh())


def test_nearby_depths_of_a_factory_are_multiples_of_its_step(nets):
    assert diagnostics.nearby_depths(ModelFactory.from_file(f"{nets}:build"), 8) == [2, 4, 8, 16]
    assert diagnostics.nearby_depths(ModelFactory.from_file(f"{nets}:build"), 1) == [1, 2]


def test_diagnose_cli_takes_a_model_file_with_parameters(tmp_path, capsys, data_root, monkeypatch, nets):
    monkeypatch.setenv("DEPTHLAB_DATA", str(data_root))
    out = tmp_path / "diag"
    code = main(
        [
            "diagnose",
            "--model-file",
            f"{nets}:convnet",
            "--depth",
            "2",
            "-p",
            "channels=3",
            "--steps",
            "2",
            "--every",
            "1",
            "--train-size",
            "500",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["model"] == "nets.convnet" and summary["config"] == {"depth": 2, "channels": 3}
    assert summary["layers"] == ["0", "2", "6"] and summary["steps"] == [0, 1, 2]
    assert set(summary["depth_profiles"]) == {"1", "2", "4"}  # about /4, /2, x1, x2 of depth 2
    assert (out / "diagnose-nets.convnet-d2-heatmap.png").stat().st_size > 1000
    assert (out / "diagnose-nets.convnet-d2-depths.png").stat().st_size > 1000


def test_diagnose_cli_text_for_an_mlp_factory_keeps_only_depths_it_builds(
    tmp_path, capsys, data_root, monkeypatch, nets
):
    monkeypatch.setenv("DEPTHLAB_DATA", str(data_root))
    assert (
        main(
            [
                "diagnose",
                "--model-file",
                f"{nets}:upto3",
                "--depth",
                "3",
                "--steps",
                "1",
                "--train-size",
                "500",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "o"),
                "--json",
            ]
        )
        == 0
    )
    assert set(json.loads(capsys.readouterr().out)["depth_profiles"]) == {"1", "3"}  # 6 does not build
    assert (
        main(
            [
                "diagnose",
                "--model-file",
                str(nets),
                "--steps",
                "1",
                "--train-size",
                "500",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "t"),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("nets.build depth 1: 2 Linear/conv layers, 1 steps")
    assert sum(line.startswith("verdict: ") for line in lines) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model-file", "{nets}:broken"], "nets.broken(depth=1) raised ValueError: no such net"),
        (["--model-file", "{nets}:upto3", "--depth", "4"], "nets.upto3(depth=4) raised ValueError: too deep"),
        (
            ["--model-file", "{nets}:upto3", "--compare-depths", "2,5"],
            "--compare-depths 5: nets.upto3(depth=5) raised",
        ),
        (["--model-file", "{nets}", "--depth", "0"], "positive integer depth"),
        (["--model-file", "{nets}:absent"], "defines no function 'absent'"),
    ],
)
def test_a_failing_factory_is_one_line_exit_2(args, message, nets, tmp_path, capsys):
    out = tmp_path / "never"
    code = main(
        [
            "diagnose",
            *[a.format(nets=nets) for a in args],
            "--steps",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("depthlab: error: ") and message in err[0], err
    assert not out.exists()
