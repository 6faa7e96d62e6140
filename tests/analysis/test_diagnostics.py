"""Gradient-flow diagnostics on real MNIST: the verdict separates a deep naive-init tanh net
(vanishing) from a batch-norm one (healthy) and an un-normalised residual one (exploding);
statistics have the right shapes and meaning; the CLI writes its plots and JSON and rejects
bad input with exit 2."""

import json
import math

import numpy as np
import pytest
import torch

from depthlab.analysis import diagnostics
from depthlab.cli import main
from depthlab.errors import ConfigError
from depthlab.models import create_model


def quick(mnist, model, **overrides):
    return diagnostics.diagnose(
        model, overrides, steps=2, every=1, lr=0.05, train_size=2000, data=mnist, device="cpu"
    )


def test_deep_naive_tanh_is_flagged_vanishing(mnist):
    diag = quick(mnist, "cnn-tanh", depth=12)
    assert diag.verdict.label == "vanishing"
    assert diag.verdict.signal_ratio < 1e-3
    assert diag.act_std[0, -1] < 1e-3 * diag.act_std[0, 0]  # the forward signal has collapsed


def test_batch_norm_tanh_is_healthy(mnist):
    diag = quick(mnist, "cnn-tanh-bn", depth=12)
    assert diag.verdict.label == "healthy", diag.verdict.line()
    assert 1e-3 < diag.verdict.signal_ratio < 1e3


def test_unnormalised_residual_elu_is_flagged_exploding(mnist):
    diag = quick(mnist, "resnet-elu", depth=30)
    assert diag.verdict.label == "exploding", diag.verdict.line()


def test_statistics_shapes_steps_and_update_ratio(mnist):
    diag = diagnostics.diagnose(
        "cnn-elu-bn", {"depth": 6}, steps=5, every=2, lr=0.05, train_size=2000, data=mnist, device="cpu"
    )
    assert list(diag.steps) == [0, 2, 4, 5]
    assert diag.layers == [f"stages.{s}.{u}" for s in range(3) for u in range(2)]
    for name in ("act_mean", "act_std", "grad_norm", "signal_norm", "weight_norm", "update_ratio"):
        assert getattr(diag, name).shape == (4, 6), name
    assert np.all(diag.grad_norm > 0) and np.all(diag.act_std > 0)
    # the update ratio is the real change of the weights: SGD's first step is lr * grad
    assert diag.update_ratio[0] == pytest.approx(0.05 * diag.grad_norm[0] / diag.weight_norm[0], rel=1e-4)
    assert math.isnan(diag.update_ratio[-1, 0])  # no step after the last record
    assert diag.loss.shape == (4,)
    json.dumps(diag.to_json())


def test_gradient_profile_matches_autograd(mnist):
    from depthlab.data.batches import Batches

    torch.manual_seed(0)
    net = create_model("cnn-tanh", depth=6)
    xb, yb = next(
        iter(Batches(mnist.train_x[:64], mnist.train_y[:64], 64, mnist.mean, mnist.std, shuffle=False))
    )
    prof = diagnostics.gradient_profile(net, xb, yb)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert prof["grad_norm"] == pytest.approx([c.weight.grad.norm().item() for c in convs], rel=1e-6)
    # the activation the probe sees is the unit's output (after tanh), so its mean/std are those of tanh(conv(x))
    with torch.no_grad():
        first = torch.tanh(convs[0](xb))
    assert prof["act_std"][0] == pytest.approx(first.std().item(), rel=1e-5)
    # backprop signal at the last conv unit: the gradient of the loss wrt its output, by autograd
    h = {}
    unit = net.stages[2][1]
    handle = unit.register_forward_hook(lambda m, i, o: h.setdefault("out", o))
    net.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(xb), yb)
    (g,) = torch.autograd.grad(loss, h["out"])
    handle.remove()
    assert prof["signal_norm"][-1] == pytest.approx(g.norm().item(), rel=1e-5)


def test_judge_on_synthetic_profiles():
    flat = [1.0] * 5
    assert diagnostics.judge(flat, flat, flat, flat).label == "healthy"
    shrinking = [10.0**-k for k in range(5, 0, -1)]  # first layer 1e-5, last 0.1
    assert diagnostics.judge(flat, shrinking, flat, flat).label == "vanishing"
    assert diagnostics.judge(flat, shrinking[::-1], flat, flat).label == "exploding"
    assert diagnostics.judge(flat, flat, [1.0, 1e-2, 1e-4], flat).label == "vanishing"
    assert diagnostics.judge(flat, flat, flat, flat, diverged=True).label == "exploding"
    assert diagnostics.judge([1.0, 1.0, 1.0, 1.0, float("nan")], flat, flat, flat).label == "exploding"
    v = diagnostics.judge([2.0, 1.0], [1e-6, 1.0], [1.0, 1.0], [1.0, 1.0])
    assert v.grad_ratio == 2.0 and "gradient norm first/last layer 2" in v.line()


def test_nearby_depths_are_valid_for_the_family():
    assert diagnostics.nearby_depths("cnn-tanh", 30) == [6, 15, 30, 60]
    assert diagnostics.nearby_depths("cnn-tanh", 3) == [3, 6]


def test_diagnose_cli_json_and_plots(tmp_path, capsys, data_root, monkeypatch):
    monkeypatch.setenv("DEPTHLAB_DATA", str(data_root))
    out = tmp_path / "diag"
    code = main(
        [
            "diagnose",
            "cnn-tanh",
            "--depth",
            "9",
            "--steps",
            "2",
            "--every",
            "1",
            "--train-size",
            "1000",
            "--compare-depths",
            "3,9",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["verdict"]["label"] in diagnostics.LABELS
    assert summary["steps"] == [0, 1, 2] and len(summary["layers"]) == 9
    assert len(summary["grad_norm"]) == 3 and len(summary["grad_norm"][0]) == 9
    assert set(summary["depth_profiles"]) == {"3", "9"}
    assert (out / "diagnose-cnn-tanh-d9-heatmap.png").stat().st_size > 1000
    assert (out / "diagnose-cnn-tanh-d9-depths.png").stat().st_size > 1000


def test_diagnose_cli_text_has_a_verdict_line(tmp_path, capsys, data_root, monkeypatch):
    monkeypatch.setenv("DEPTHLAB_DATA", str(data_root))
    assert (
        main(
            [
                "diagnose",
                "cnn-tanh",
                "--depth",
                "12",
                "--steps",
                "1",
                "--train-size",
                "1000",
                "--compare-depths",
                "12",
                "--device",
                "cpu",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    verdict = [line for line in lines if line.startswith("verdict: ")]
    assert len(verdict) == 1 and verdict[0].startswith("verdict: vanishing")
    assert "gradient norm first/last layer" in verdict[0]


@pytest.mark.parametrize(
    "args",
    [
        ["diagnose", "no-such-model"],
        ["diagnose", "cnn-tanh", "--depth", "10"],
        ["diagnose", "cnn-tanh", "--steps", "-1"],
        ["diagnose", "cnn-tanh", "--every", "0"],
        ["diagnose", "cnn-tanh", "--compare-depths", "3,x"],
        ["diagnose", "cnn-tanh", "--compare-depths", "4"],
        ["diagnose", "cnn-tanh", "--init", "normal:abc"],
        ["diagnose", "cnn-tanh", "--train-size", "0"],
    ],
)
def test_diagnose_cli_bad_input_exits_2(args, capsys, tmp_path):
    out = tmp_path / "never"
    assert main(args + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("depthlab: error: ")
    assert not out.exists()


def test_conv_layers_requires_convs():
    with pytest.raises(ConfigError):
        diagnostics.conv_layers(torch.nn.Linear(3, 3))
