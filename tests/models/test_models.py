"""The stages family (SPEC 2.1): architecture, parameter counts, heads, axes and every init."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from depthlab.cli import main
from depthlab.engine.setup import multi_head_loss
from depthlab.errors import ConfigError
from depthlab.models import CLASSIC_PRESETS, PRESETS, ConvUnit, count_parameters, create_model, layer_summary
from depthlab.models.init import expected_std, init_conv_
from depthlab.theory import critical_init

SHAPE = (1, 28, 28)


def conv_units(model):
    return [m for m in model.modules() if isinstance(m, ConvUnit)]


# ---------------------------------------------------------------------------------------------
# Architecture


def test_cnn_tanh_depth9_has_exactly_9058_parameters():
    assert count_parameters(create_model("cnn-tanh", depth=9)) == 9058


def test_depth3_architecture_layer_by_layer():
    rows = [
        (kind, list(shape), n)
        for _, kind, shape, n in layer_summary(create_model("cnn-tanh", depth=3), SHAPE)
    ]
    assert rows == [
        ("Conv2d", [4, 28, 28], 1 * 4 * 9 + 4),
        ("Tanh", [4, 28, 28], 0),
        ("AvgPool2d", [4, 14, 14], 0),
        ("Conv2d", [8, 14, 14], 4 * 8 * 9 + 8),
        ("Tanh", [8, 14, 14], 0),
        ("AvgPool2d", [8, 7, 7], 0),
        ("Conv2d", [16, 7, 7], 8 * 16 * 9 + 16),
        ("Tanh", [16, 7, 7], 0),
        ("AvgPool2d", [16, 3, 3], 0),
        ("Linear", [10], 144 * 10 + 10),
    ]


def test_depth6_architecture_layer_by_layer():
    rows = [
        (kind, list(shape), n)
        for _, kind, shape, n in layer_summary(create_model("cnn-tanh", depth=6), SHAPE)
    ]
    convs = [(shape, n) for kind, shape, n in rows if kind == "Conv2d"]
    assert convs == [
        ([4, 28, 28], 40),
        ([4, 28, 28], 148),
        ([8, 14, 14], 296),
        ([8, 14, 14], 584),
        ([16, 7, 7], 1168),
        ([16, 7, 7], 2320),
    ]
    assert [k for k, _, _ in rows] == (["Conv2d", "Tanh"] * 2 + ["AvgPool2d"]) * 3 + ["Linear"]
    assert [s for k, s, _ in rows if k == "AvgPool2d"] == [[4, 14, 14], [8, 7, 7], [16, 3, 3]]
    assert count_parameters(create_model("cnn-tanh", depth=6)) == 40 + 148 + 296 + 584 + 1168 + 2320 + 1450
    conv = create_model("cnn-tanh", depth=6).stages[0][0].conv
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (1, 1))


@pytest.mark.parametrize("depth", [1, 2, 4, 10, 0, -3])
def test_depth_must_be_a_positive_multiple_of_3(depth):
    with pytest.raises(ConfigError, match="multiple of 3"):
        create_model("cnn-tanh", depth=depth)


def test_eight_presets_from_one_spec():
    expected = {
        "cnn-tanh": ("tanh", "normal:0.05", "none", "none", 1),
        "cnn-tanh-lecun": ("tanh", "lecun-in", "none", "none", 1),
        "cnn-elu": ("elu", "lecun-in", "none", "none", 1),
        "cnn-elu-bn": ("elu", "lecun-in", "bn", "none", 1),
        "resnet-elu-bn": ("elu", "lecun-in", "bn", "post", 1),
        "cnn-tanh-bn": ("tanh", "normal:0.05", "bn", "none", 1),
        "resnet-elu": ("elu", "lecun-in", "none", "post", 1),
        "cnn-elu-multihead": ("elu", "lecun-in", "none", "none", 3),
    }
    assert set(CLASSIC_PRESETS) == set(expected)
    for name, (act, init, norm, skip, heads) in expected.items():
        net = create_model(name, depth=6)
        spec = net.spec
        assert (spec.act, spec.init, spec.norm, spec.skip, spec.heads) == (act, init, norm, skip, heads), name
        assert type(net).__name__ == "StagesNet" and PRESETS[name].family == "stages"
        acts = {type(u.act).__name__ for u in conv_units(net)}
        assert acts == {"Tanh" if act == "tanh" else "ELU"}
        assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == (6 if norm == "bn" else 0)


def test_axis_overrides_change_the_network():
    net = create_model("cnn-tanh", depth=9, act="elu", norm="bn", skip="post", heads=3, init="lecun-in")
    units = conv_units(net)
    assert all(isinstance(u.act, nn.ELU) and isinstance(u.norm, nn.BatchNorm2d) for u in units)
    # skips only where shapes match: all but the first conv of each stage
    assert [u.skip for u in units] == ["none", "post", "post"] * 3
    assert len(net.heads) == 2 and [h.in_features for h in net.heads] == [4 * 14 * 14, 8 * 7 * 7]
    assert count_parameters(create_model("cnn-tanh", depth=9, width=2)) > 9058
    assert [u.conv.out_channels for u in conv_units(create_model("cnn-tanh", depth=3, width=2))] == [
        8,
        16,
        32,
    ]


@pytest.mark.parametrize(
    "override",
    [
        dict(act="gelu"),
        dict(norm="ln"),
        dict(skip="pre"),
        dict(heads=2),
        dict(init="xavier"),
        dict(init="normal:abc"),
        dict(width=0.0),
        dict(colour="red"),
    ],
)
def test_bad_axis_values_are_config_errors(override):
    with pytest.raises(ConfigError):
        create_model("cnn-tanh", depth=3, **override)


def test_post_skip_adds_the_input_after_the_activation():
    torch.manual_seed(0)
    unit = ConvUnit(4, 4, "elu", "bn", "post").eval()
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(unit(x), unit.act(unit.norm(unit.conv(x))) + x)
    assert ConvUnit(4, 8, "elu", "bn", "post").skip == "none"  # shapes differ: no skip


def test_multihead_loss_is_the_mean_of_the_three_cross_entropies():
    torch.manual_seed(0)
    net = create_model("cnn-elu-multihead", depth=6)
    x, y = torch.randn(5, *SHAPE), torch.randint(0, 10, (5,))
    outputs = net(x)
    assert isinstance(outputs, list) and len(outputs) == 3 and all(o.shape == (5, 10) for o in outputs)
    loss, final = multi_head_loss(outputs, y)
    manual = sum(F.cross_entropy(o, y) for o in outputs) / 3
    assert torch.allclose(loss, manual) and final is outputs[-1]
    assert not torch.allclose(loss, F.cross_entropy(outputs[-1], y))  # the heads do count
    loss.backward()
    assert all(h.weight.grad is not None and h.weight.grad.abs().sum() > 0 for h in net.heads)
    assert isinstance(create_model("cnn-elu", depth=6)(x), torch.Tensor)  # one head: plain logits


# ---------------------------------------------------------------------------------------------
# Initialisation: every scheme's standard deviation, pinned to its formula


def _conv(c_in, c_out):
    return nn.Conv2d(c_in, c_out, 3, padding=1)


FORMULAS = {  # scheme -> std of a 3x3 conv's weights with C_in, C_out channels
    "normal:0.05": lambda ci, co: 0.05,
    "scaled:1.76,0.05": lambda ci, co: math.sqrt(1.76 / (9 * ci)),
    "lecun-in": lambda ci, co: math.sqrt(1 / (9 * ci)),
    "lecun-out": lambda ci, co: math.sqrt(1 / (9 * co)),
    "glorot": lambda ci, co: math.sqrt(2 / (9 * ci + 9 * co)),
    "he": lambda ci, co: math.sqrt(2 / (9 * ci)),
    "torch-default": lambda ci, co: (
        1 / math.sqrt(3 * 9 * ci)
    ),  # kaiming-uniform(a=sqrt 5): U(+-1/sqrt(fan_in))
    "orthogonal": lambda ci, co: 1 / math.sqrt(max(co, 9 * ci)),
}


@pytest.mark.parametrize("scheme", sorted(FORMULAS))
@pytest.mark.parametrize("c_in,c_out", [(64, 64), (32, 96)])
def test_init_standard_deviation(scheme, c_in, c_out):
    torch.manual_seed(1)
    conv = _conv(c_in, c_out)
    init_conv_(conv, scheme)
    std = conv.weight.std().item()
    assert std == pytest.approx(FORMULAS[scheme](c_in, c_out), rel=0.03)
    assert conv.weight.mean().item() == pytest.approx(0, abs=0.05 * std)
    if scheme in FORMULAS and scheme not in ("torch-default", "orthogonal"):
        assert expected_std(scheme, tuple(conv.weight.shape)) == pytest.approx(FORMULAS[scheme](c_in, c_out))
    if scheme == "scaled:1.76,0.05":
        assert conv.bias.std().item() == pytest.approx(math.sqrt(0.05), rel=0.25)
    elif scheme != "torch-default":
        assert torch.count_nonzero(conv.bias) == 0


@pytest.mark.parametrize("preset", ["cnn-tanh-lecun", "cnn-elu", "cnn-elu-bn", "resnet-elu"])
def test_lecun_in_is_one_over_sqrt_9_cin_not_3_over_sqrt_cin(preset):
    """The classic bug computed sqrt(1 / C_in * 9) = 3 / sqrt(C_in): 9 times too large."""
    torch.manual_seed(0)
    net = create_model(preset, depth=6, width=8)  # channels 32/64/128: enough weights for a tight std
    for unit in conv_units(net):
        c_in = unit.conv.in_channels
        right, buggy = math.sqrt(1 / (9 * c_in)), 3 / math.sqrt(c_in)
        std = unit.conv.weight.std().item()
        tol = 0.06 if unit.conv.weight.numel() > 2000 else 0.3
        assert std == pytest.approx(right, rel=tol), (c_in, std, right)
        assert abs(math.log(std / buggy)) > 1.5  # nowhere near the buggy value
        assert torch.count_nonzero(unit.conv.bias) == 0
    assert expected_std("lecun-in", (16, 8, 3, 3)) == pytest.approx(1 / math.sqrt(72))


def test_naive_preset_uses_std_005_and_linear_keeps_torch_default():
    torch.manual_seed(0)
    net = create_model("cnn-tanh", depth=6, width=8)
    for unit in conv_units(net):
        assert unit.conv.weight.std().item() == pytest.approx(0.05, rel=0.1)
    bound = 1 / math.sqrt(net.classifier.in_features)  # nn.Linear default: U(+-1/sqrt(fan_in))
    assert net.classifier.weight.abs().max().item() <= bound
    assert net.classifier.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


@pytest.mark.parametrize("c_in,c_out", [(16, 16), (4, 8), (32, 8)])
def test_delta_orthogonal_centre_tap_is_orthogonal_and_zero_elsewhere(c_in, c_out):
    torch.manual_seed(0)
    conv = _conv(c_in, c_out)
    init_conv_(conv, "delta-orthogonal")
    w = conv.weight.detach()
    centre = w[:, :, 1, 1]
    rest = w.clone()
    rest[:, :, 1, 1] = 0
    assert torch.count_nonzero(rest) == 0
    gram = centre @ centre.T if c_out <= c_in else centre.T @ centre
    assert torch.allclose(gram, torch.eye(min(c_in, c_out)), atol=1e-5)
    init_conv_(conv, "delta-orthogonal:2.0,0.0")
    c = conv.weight.detach()[:, :, 1, 1]
    gram = c @ c.T if c_out <= c_in else c.T @ c
    assert torch.allclose(gram, 2.0 * torch.eye(min(c_in, c_out)), atol=1e-4)
    assert c.std().item() == pytest.approx(expected_std("delta-orthogonal:2.0,0.0", tuple(w.shape)), rel=0.15)


def test_orthogonal_rows_are_orthonormal():
    torch.manual_seed(0)
    conv = _conv(8, 16)
    init_conv_(conv, "orthogonal")
    m = conv.weight.detach().view(16, -1)
    assert torch.allclose(m @ m.T, torch.eye(16), atol=1e-5)


@pytest.mark.parametrize("act", ["tanh", "elu"])
@pytest.mark.parametrize("depth", [9, 60])
def test_critical_init_is_at_chi_1_and_pins_its_std(act, depth):
    sigma_w2, sigma_b2 = critical_init(act, depth)
    # independent Monte-Carlo check of chi_1 = sigma_w2 * E[phi'(sqrt(q*) z)^2] = 1 with q* = 1/depth
    z = np.random.default_rng(0).standard_normal(2_000_000) * math.sqrt(1 / depth)
    dphi = 1 / np.cosh(z) ** 2 if act == "tanh" else np.where(z > 0, 1.0, np.exp(np.minimum(z, 0)))
    assert sigma_w2 * np.mean(dphi**2) == pytest.approx(1.0, rel=5e-3)
    torch.manual_seed(0)
    conv = _conv(64, 64)
    init_conv_(conv, "critical", act=act, depth=depth)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(sigma_w2 / (9 * 64)), rel=0.03)
    if sigma_b2 > 0:
        assert conv.bias.std().item() == pytest.approx(math.sqrt(sigma_b2), rel=0.3)
    net = create_model("cnn-tanh", depth=depth, act=act, init="critical", width=8)
    unit = conv_units(net)[-1]
    assert unit.conv.weight.std().item() == pytest.approx(math.sqrt(sigma_w2 / (9 * 128)), rel=0.03)


# ---------------------------------------------------------------------------------------------
# CLI: models and summary


def test_models_lists_presets_and_axes(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in CLASSIC_PRESETS:
        assert name in out
    for axis in ("act", "init", "norm", "skip", "heads", "width", "delta-orthogonal", "critical"):
        assert axis in out


def test_summary_takes_presets_and_axis_overrides(capsys):
    assert main(["summary", "cnn-tanh", "--depth", "9"]) == 0
    assert "Total parameters: 9,058" in capsys.readouterr().out
    assert (
        main(
            [
                "summary",
                "cnn-tanh",
                "--depth",
                "6",
                "--act",
                "elu",
                "--init",
                "lecun-in",
                "--norm",
                "bn",
                "--skip",
                "post",
                "--heads",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "BatchNorm2d" in out and "ELU" in out and out.count("Linear") == 3


@pytest.mark.parametrize(
    "args",
    [
        ["summary", "cnn-nope"],
        ["summary", "cnn-tanh", "--act", "swish"],
        ["summary", "cnn-tanh", "--depth", "10"],
        ["summary", "cnn-tanh", "--init", "lecun"],
    ],
)
def test_summary_bad_input_is_one_line_exit_2(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("depthlab: error: ") and err.count("\n") == 1
