"""The strided family (SPEC 2.2): architecture, shortcuts, gates, parameter counts, CLI."""

import math

import pytest
import torch
import torch.nn.functional as F

from depthlab.cli import main
from depthlab.errors import ConfigError
from depthlab.models import count_parameters, create_model
from depthlab.models.strided import Shortcut, StridedUnit


def conv_weights(model):
    return [tuple(u.conv.weight.shape) for u in model.units]


def test_stack_depth_3_conv_weights_match_spec():
    model = create_model("strided", stack_depth=3)
    expected = [(4, 1), (4, 4), (4, 4), (8, 4), (8, 8), (8, 8), (16, 8), (16, 16), (16, 16), (32, 16)]
    assert conv_weights(model) == [(o, i, 3, 3) for o, i in expected]
    assert [u.conv.stride[0] for u in model.units] == [2, 1, 1, 2, 1, 1, 2, 1, 1, 2]
    assert tuple(model.classifier.weight.shape) == (10, 128)


@pytest.mark.parametrize("stack_depth", [1, 2, 3, 5])
def test_one_plus_three_stack_depth_convs(stack_depth):
    assert len(create_model("strided", stack_depth=stack_depth).units) == 1 + 3 * stack_depth


@pytest.mark.parametrize("name", ["strided", "strided-res", "strided-gated"])
@pytest.mark.parametrize("kernel", [3, 5])
def test_spatial_sizes_14_7_4_2(name, kernel):
    model = create_model(name, stack_depth=2, kernel=kernel)
    sizes = []
    hooks = [u.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:]))) for u in model.units]
    out = model(torch.randn(3, 1, 28, 28))
    for h in hooks:
        h.remove()
    assert out.shape == (3, 10)
    assert sizes == [(4, 14, 14), (4, 14, 14), (8, 7, 7), (8, 7, 7), (16, 4, 4), (16, 4, 4), (32, 2, 2)]


def test_parameter_counts():
    # conv weights 9 * (4+16+16+32+64+64+128+256+256+512) = 12132, conv biases 116, linear 1290
    assert count_parameters(create_model("strided", stack_depth=3)) == 13538
    # + 1x1 projections where the shape changes: 1*4 + 4*8 + 8*16 + 16*32 = 676
    assert count_parameters(create_model("strided-res", stack_depth=3)) == 13538 + 676
    assert count_parameters(create_model("strided-res", stack_depth=3, shortcut="pad")) == 13538
    # + one gate per conv (10), or one per output channel (4+4+4+8+8+8+16+16+16+32 = 116)
    assert count_parameters(create_model("strided-gated", stack_depth=3)) == 13538 + 676 + 10
    assert count_parameters(create_model("strided-gated", stack_depth=3, gate="channel")) == 13538 + 676 + 116
    # stack depth 1: convs 1->4, 4->8, 8->16, 16->32
    assert count_parameters(create_model("strided", stack_depth=1)) == 9 * (4 + 32 + 128 + 512) + 60 + 1290


def test_shortcut_matches_odd_sizes_7_to_4():
    x = torch.randn(2, 8, 7, 7)
    conv = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
    u = conv(x)
    assert u.shape[2:] == (4, 4)
    for kind in ("conv", "pad"):
        s = Shortcut(8, 16, 2, kind)(x, (4, 4))
        assert s.shape == u.shape
    # zero-padding: the new channels are zero, the old ones are the 2x2 means of the padded input
    s = Shortcut(8, 16, 2, "pad")(x, (4, 4))
    padded = F.pad(x, (0, 1, 0, 1))
    assert torch.allclose(s[:, :8], F.avg_pool2d(padded, 2))
    assert torch.equal(s[:, 8:], torch.zeros_like(s[:, 8:]))
    assert torch.allclose(s[:, :8, 3, 3], x[:, :, 6, 6] / 4)  # the corner window holds one real pixel


def test_identity_shortcut_where_shapes_match():
    unit = StridedUnit(8, 8, 1, create_model("strided-res").spec)
    x = torch.randn(2, 8, 7, 7)
    assert torch.allclose(unit(x), torch.relu(unit.conv(x) + x))


@pytest.mark.parametrize("gate", ["layer", "channel"])
@pytest.mark.parametrize("a0", [0.1, 0.5, 0.9])
def test_gate_starts_at_a0_and_trains(gate, a0):
    model = create_model("strided-gated", stack_depth=2, a0=a0, gate=gate)
    gates = model.gates()
    assert len(gates) == 7
    for unit, g in zip(model.units, gates):
        expected_numel = unit.conv.out_channels if gate == "channel" else 1
        assert g.numel() == expected_numel
        assert torch.allclose(g, torch.full_like(g, a0), atol=1e-6)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    assert all(u.gate_logit.grad is not None and u.gate_logit.grad.abs().sum() > 0 for u in model.units)


def test_gated_unit_is_a_convex_combination():
    spec = create_model("strided-gated", a0=0.3).spec
    unit = StridedUnit(4, 8, 2, spec)
    x = torch.randn(2, 4, 14, 14)
    u = unit.conv(x)
    s = unit.shortcut(x, (7, 7))
    assert torch.allclose(unit(x), torch.relu(0.3 * u + 0.7 * s), atol=1e-6)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(stack_depth=0), "stack_depth"),
        (dict(kernel=4), "odd"),
        (dict(a0=1.0), "a0"),
        (dict(a0=0.0), "a0"),
        (dict(skip="post"), "skip"),
        (dict(gate="pixel"), "gate"),
        (dict(act="gelu"), "activation"),
    ],
)
def test_bad_specs_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        create_model("strided", **overrides)


def test_cli_summary_counts_parameters(capsys):
    assert main(["summary", "strided-res", "-p", "stack_depth=3"]) == 0
    assert "Total parameters: 14,214" in capsys.readouterr().out


def test_cli_train_with_param_flag(data_root, tmp_path, capsys):
    store = tmp_path / "s.db"
    rc = main(
        [
            "train",
            "strided",
            "-p",
            "stack_depth=1",
            "-p",
            "kernel=5",
            "--data-dir",
            str(data_root),
            "--train-size",
            "2000",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--lr",
            "0.05",
            "--momentum",
            "0.9",
            "--store",
            str(store),
            "--json",
        ]
    )
    assert rc == 0
    import json

    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "done"
    assert out["config"]["model_args"] == {
        "stack_depth": 1,
        "kernel": 5,
        "act": "relu",
        "init": "torch-default",
        "skip": "none",
        "shortcut": "conv",
        "gate": "layer",
        "a0": 0.5,
    }
    assert 0.0 <= out["test_error"] <= 1.0 and math.isfinite(out["test_error"])
