"""The `mlp` family: structure, spec validation, BN and skip, and the init standard deviations."""

import math

import pytest
import torch

from depthlab.errors import ConfigError
from depthlab.models import FAMILIES, count_parameters, create_model, model_config
from depthlab.theory import critical_init


def mlp(**kw):
    return create_model("mlp", (1, 28, 28), 10, **kw)


def test_registered_with_defaults():
    assert "mlp" in FAMILIES and FAMILIES["mlp"].datasets[0] == "mnist"
    assert model_config("mlp") == {
        "depth": 10,
        "width": 300,
        "act": "tanh",
        "init": "lecun-in",
        "norm": "none",
        "skip": "none",
    }


@pytest.mark.parametrize("depth", [1, 2, 7])
def test_shapes_and_parameter_count(depth):
    model = mlp(depth=depth, width=16)
    linears = model.linears()
    assert len(linears) == depth + 1
    assert [tuple(m.weight.shape) for m in linears] == [(16, 784)] + [(16, 16)] * (depth - 1) + [(10, 16)]
    assert count_parameters(model) == 784 * 16 + 16 + (depth - 1) * (16 * 16 + 16) + 16 * 10 + 10
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_forward_is_the_composition_of_its_layers():
    torch.manual_seed(0)
    x = torch.randn(5, 1, 28, 28)
    for act, fn in (("tanh", torch.tanh), ("relu", torch.relu), ("elu", torch.nn.functional.elu)):
        model = mlp(depth=3, width=8, act=act, init="scaled:2,0.1")
        h = x.flatten(1)
        for lin in model.linears()[:-1]:
            h = fn(lin(h))
        assert torch.allclose(model(x), model.linears()[-1](h), atol=1e-6)


def test_post_skip_where_shapes_match_and_bn():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 28, 28)
    model = mlp(depth=3, width=8, skip="post")
    assert [u.skip for u in model.units] == ["none", "post", "post"]  # 784 -> 8 has no skip
    h = torch.tanh(model.units[0].linear(x.flatten(1)))
    for unit in model.units[1:]:
        h = torch.tanh(unit.linear(h)) + h
    assert torch.allclose(model(x), model.classifier(h), atol=1e-6)
    bn = mlp(depth=2, width=8, norm="bn")
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in bn.modules()) == 2
    assert count_parameters(bn) == count_parameters(mlp(depth=2, width=8)) + 2 * 2 * 8


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"depth": 0}, "depth must be a positive integer"),
        ({"depth": -3}, "depth must be a positive integer"),
        ({"depth": 2.5}, "depth must be a positive integer"),
        ({"depth": True}, "depth must be a positive integer"),
        ({"width": 0}, "width must be a positive integer"),
        ({"act": "sigmoid"}, "unknown activation 'sigmoid'"),
        ({"init": "scaled:1"}, "bad init 'scaled:1'"),
        ({"norm": "ln"}, "unknown norm 'ln'"),
        ({"skip": "rezero"}, "unknown skip 'rezero'"),
    ],
)
def test_bad_specs_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        mlp(**overrides)


def test_string_and_integral_float_overrides_are_coerced():
    model = mlp(depth="4", width="12")
    assert len(model.linears()) == 5 and model.linears()[1].weight.shape == (12, 12)
    assert (
        model_config("mlp", width=20.0)["width"] == 20
        and type(model_config("mlp", width=20.0)["width"]) is int
    )
    with pytest.raises(ConfigError, match="width must be a positive integer"):
        mlp(width=20.5)


def test_cli_summary(capsys):
    from depthlab.cli import main

    assert main(["summary", "mlp", "--depth", "3", "--width", "20"]) == 0
    out = capsys.readouterr().out
    assert out.count("Linear") == 4 and f"{784 * 20 + 20 + 2 * (20 * 20 + 20) + 20 * 10 + 10:,}" in out


def _std_ok(t, expected, rel):
    assert t.std().item() == pytest.approx(expected, rel=rel)
    assert abs(t.mean().item()) < 3 * expected / math.sqrt(t.numel()) + 1e-12


@pytest.mark.parametrize("w2, b2", [(1.0, 0.05), (2.5, 0.3), (4.0, 1.0)])
def test_scaled_init_standard_deviations(w2, b2):
    torch.manual_seed(0)
    width = 2000
    model = mlp(depth=2, width=width, init=f"scaled:{w2},{b2}")
    first, hidden, readout = model.linears()
    _std_ok(first.weight, math.sqrt(w2 / 784), 0.01)
    _std_ok(hidden.weight, math.sqrt(w2 / width), 0.01)
    _std_ok(readout.weight, math.sqrt(w2 / width), 0.03)
    # 2000 draws: the sample std of a bias is within ~1.6% (one sigma) of the true one
    _std_ok(hidden.bias, math.sqrt(b2), 0.06)
    _std_ok(first.bias, math.sqrt(b2), 0.06)


@pytest.mark.parametrize(
    "init, std",
    [
        ("lecun-in", lambda fi, fo: math.sqrt(1 / fi)),
        ("he", lambda fi, fo: math.sqrt(2 / fi)),
        ("glorot", lambda fi, fo: math.sqrt(2 / (fi + fo))),
        ("lecun-out", lambda fi, fo: math.sqrt(1 / fo)),
        ("normal:0.05", lambda fi, fo: 0.05),
    ],
)
def test_other_gaussian_inits(init, std):
    torch.manual_seed(0)
    first, hidden, _ = mlp(depth=2, width=1000, init=init).linears()
    _std_ok(first.weight, std(784, 1000), 0.01)
    _std_ok(hidden.weight, std(1000, 1000), 0.01)
    assert torch.count_nonzero(hidden.bias) == 0


def test_critical_init_uses_the_depth():
    torch.manual_seed(0)
    depth = 4
    w2, b2 = critical_init("tanh", depth)
    hidden = mlp(depth=depth, width=1500, init="critical").linears()[1]
    _std_ok(hidden.weight, math.sqrt(w2 / 1500), 0.01)
    _std_ok(hidden.bias, math.sqrt(b2), 0.06)


def test_orthogonal_init_gives_orthogonal_hidden_layers():
    torch.manual_seed(0)
    hidden = mlp(depth=2, width=64, init="orthogonal").linears()[1].weight
    assert torch.allclose(hidden @ hidden.T, torch.eye(64), atol=1e-5)
