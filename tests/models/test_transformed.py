"""DKS/TAT activations (`depthlab.models.transformed`): built for the network's depth and compliant.

The kernel-map values are computed here by quadrature over q = 1 Gaussian inputs (a fine
trapezoid grid, which kinks such as leaky ReLU's and ELU's do not spoil; derivatives by autograd
on the built activation), never by the package function that solved for them. Targets are the package's documented defaults: DKS zeta = C'_f(1) = 1.5 with
C(0) = 0, Q(1) = 1, Q'(1) = 1 per layer; TAT tau = C''_f(1) = 0.3 with C'(1) = 1, Q(1) = 1,
Q'(1) = 1 per layer (smooth activations); TAT eta = C_f(0) = 0.9 (leaky ReLU). For a plain
chain of D layers the network maps are the D-fold compositions: C'_f(1) = C'(1)^D,
C''_f(1) = D * C''(1) when C'(1) = 1, and C_f(0) = C^D(0).
"""

import copy
import math
import pickle
import sys

import numpy as np
import pytest
import torch

from depthlab.engine.config import TrainConfig
from depthlab.errors import ConfigError
from depthlab.models import create_model, layer_summary, make_activation, model_config
from depthlab.models.stages import StagesSpec

pytest.importorskip("dks.pytorch", reason="the optional dks package (pip install 'depthlab[dks]')")

from depthlab.models import transformed  # noqa: E402
from depthlab.models.transformed import PerLocationNorm, TransformedActivation, suo_init_  # noqa: E402

Z = np.linspace(-12.0, 12.0, 240001)  # E over z ~ N(0, 1): trapezoid weights x density
W = np.exp(-(Z**2) / 2) / math.sqrt(2 * math.pi) * (Z[1] - Z[0])
W[[0, -1]] /= 2
THETA = np.linspace(0.0, 2 * math.pi, 20001)[:-1]  # angles of a unit 2-d Gaussian (periodic trapezoid)


def act_fn(name, depth):
    module = make_activation(name, depth)
    assert isinstance(module, TransformedActivation) and module.depth == depth
    return module


def derivatives(fn, x: np.ndarray, order: int = 2):
    """phi, phi', phi'' at the points x (float64 autograd)."""
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(t)
    (d1,) = torch.autograd.grad(y.sum(), t, create_graph=True)
    out = [y.detach().numpy(), d1.detach().numpy()]
    if order >= 2:
        (d2,) = torch.autograd.grad(d1.sum(), t)
        out.append(d2.numpy())
    return out


def E(values: np.ndarray) -> float:
    return float(np.sum(W * values))


def homogeneous_cmap(fn, c: float) -> float:
    """C(c) = E[phi(u) phi(v)] / Q(1) for unit Gaussians u, v with correlation c, for a positively
    homogeneous phi (phi(r x) = r phi(x), checked): in polar coordinates E[r^2] = 2 factors out and
    the rest is a mean over the angle."""
    t = torch.tensor(np.cos(THETA), dtype=torch.float64)
    assert torch.allclose(fn(2.5 * t), 2.5 * fn(t))
    s = torch.tensor(np.sin(THETA), dtype=torch.float64)
    cross = 2.0 * (fn(t) * fn(c * t + math.sqrt(max(0.0, 1 - c * c)) * s)).mean().item()
    q = 2.0 * (fn(t) ** 2).mean().item()
    return cross / q


def relu_chain_c0(depth: int) -> float:
    c = 0.0
    for _ in range(depth):  # the arc-cosine kernel of a (sqrt 2)-scaled ReLU
        c = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
    return c


@pytest.mark.parametrize("base", ["tanh", "softplus", "elu", "gelu", "leaky-relu"])
@pytest.mark.parametrize("depth", [9, 60])
def test_dks_conditions(base, depth):
    fn = act_fn(f"dks-{base}", depth)
    phi, d1, _ = derivatives(fn, Z)
    tol = 1e-4
    q1 = E(phi**2)
    assert q1 == pytest.approx(1.0, abs=tol)  # Q(1) = 1
    assert E(phi) ** 2 / q1 == pytest.approx(0.0, abs=tol)  # C(0) = 0
    assert E(phi * d1 * Z) == pytest.approx(1.0, abs=tol)  # Q'(1) = 1
    slope = E(d1**2) / q1  # local C'(1)
    assert slope > 1
    assert slope**depth == pytest.approx(1.5, rel=1e-3)  # C'_f(1) = zeta = 1.5
    assert slope == pytest.approx(1.5 ** (1 / depth), abs=1e-4)  # leaky ReLU: phi' jumps, O(h) error


@pytest.mark.parametrize("base", ["tanh", "softplus", "elu", "gelu"])
@pytest.mark.parametrize("depth", [9, 30])
def test_tat_smooth_conditions(base, depth):
    fn = act_fn(f"tat-{base}", depth)
    phi, d1, d2 = derivatives(fn, Z)
    q1 = E(phi**2)
    assert q1 == pytest.approx(1.0, abs=1e-4)  # Q(1) = 1
    assert E(phi * d1 * Z) == pytest.approx(1.0, abs=1e-4)  # Q'(1) = 1
    assert E(d1**2) / q1 == pytest.approx(1.0, abs=1e-4)  # C'(1) = 1
    curvature = E(d2**2) / q1  # local C''(1)
    assert depth * curvature == pytest.approx(0.3, rel=1e-3)  # C''_f(1) = tau = 0.3


@pytest.mark.parametrize("depth", [13, 24, 96])
def test_tat_leaky_relu_network_c0_is_the_packages_eta(depth):
    """The package's own eta = C_f(0) = 0.9 at every depth where a leaky-ReLU chain reaches it."""
    fn = act_fn("tat-leaky-relu", depth)
    phi, _ = derivatives(fn, Z, order=1)
    assert E(phi**2) == pytest.approx(1.0, abs=1e-4)  # Q(1) = 1
    c = 0.0
    for _ in range(depth):
        c = homogeneous_cmap(fn, c)
    assert c == pytest.approx(0.9, abs=1e-4)  # C_f(0) = eta = 0.9, never lowered


@pytest.mark.parametrize("depth", [3, 6, 9, 12])
def test_tat_leaky_relu_below_its_range_is_refused_in_one_line(depth):
    """Even a ReLU chain (the most nonlinear leaky ReLU) of 12 layers stays below C_f(0) = 0.9: such
    a net is outside TAT's range, refused where it is validated, never solved for another eta."""
    assert relu_chain_c0(12) < 0.9 < relu_chain_c0(13)
    for build in (
        lambda: make_activation("tat-leaky-relu", depth),
        lambda: model_config("cnn-tat-lrelu", depth=depth),
        lambda: TrainConfig(model="cnn-tat-lrelu", model_args={"depth": depth}),
    ):
        with pytest.raises(ConfigError) as info:
            build()
        message = str(info.value)
        assert "\n" not in message and f"at depth {depth} is outside TAT's range" in message
        assert "C_f(0) = 0.9" in message
    assert model_config("cnn-dks-tanh", depth=depth)["depth"] == depth  # DKS's target is in reach there


def test_input_norm_and_eta_are_part_of_a_transformed_nets_identity_only():
    """input_norm: "pln" (the default: the package's per-location normalisation, one more channel,
    recorded as absent so that stored runs keep their keys) or "none" (the standardised image as
    it is, recorded); a TAT leaky-ReLU net records the package's eta. Other nets record neither."""
    for name in ("cnn-tanh-delta", "mlp", "cnn-dks-tanh"):
        assert "input_norm" not in model_config(name) and "tat_eta" not in model_config(name)
    assert model_config("cnn-dks-tanh", input_norm="pln") == model_config("cnn-dks-tanh")
    assert model_config("cnn-tat-lrelu")["tat_eta"] == transformed.TAT_ETA == 0.9
    pln = TrainConfig(model="cnn-dks-tanh", model_args={"depth": 9, "input_norm": "pln"})
    none = TrainConfig(model="cnn-dks-tanh", model_args={"depth": 9, "input_norm": "none"})
    assert pln.hash() == TrainConfig(model="cnn-dks-tanh", model_args={"depth": 9}).hash() != none.hash()
    net = create_model("cnn-dks-tanh", (1, 28, 28), 10, depth=9, input_norm="none")
    assert net.pln is None and net.stages[0][0].conv.in_channels == 1
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    mlp = create_model("mlp", (1, 28, 28), 10, depth=4, width=32, act="dks-tanh", input_norm="none")
    assert mlp.pln is None and mlp.units[0].linear.in_features == 784
    with pytest.raises(ConfigError, match="input_norm is for DKS/TAT activations"):
        model_config("cnn-tanh", input_norm="none")
    with pytest.raises(ConfigError, match="unknown input_norm 'zero'; choose one of: pln, none"):
        model_config("cnn-dks-tanh", input_norm="zero")
    with pytest.raises(ConfigError, match="tat_eta is the package's C_f.0. target 0.9, got 0.8"):
        model_config("cnn-tat-lrelu", tat_eta=0.8)
    with pytest.raises(ConfigError, match="tat_eta is for the tat-leaky-relu activation"):
        model_config("cnn-dks-tanh", tat_eta=0.9)


def test_depth_changes_the_activation():
    x = torch.linspace(-3, 3, 7)
    assert not torch.allclose(act_fn("dks-tanh", 9)(x), act_fn("dks-tanh", 90)(x))
    with pytest.raises(ConfigError, match="depth"):
        make_activation("dks-tanh")  # a family that passes no depth
    with pytest.raises(ConfigError, match="stages and mlp"):
        create_model("strided", act="dks-tanh")


def test_unknown_and_bad_combinations():
    with pytest.raises(ConfigError, match="dks-tanh"):
        model_config("stages", act="dks-relu")
    with pytest.raises(ConfigError, match="choose one of"):
        model_config("stages", act="swish")
    with pytest.raises(ConfigError, match="critical"):
        model_config("stages", act="dks-tanh", init="critical")


def test_init_rule_and_record():
    assert model_config("stages", act="dks-tanh")["init"] == "suo"  # default init: the package's
    assert model_config("mlp", act="tat-tanh")["init"] == "suo"
    assert model_config("stages", act="dks-tanh", init="he")["init"] == "he"  # explicit: honoured
    assert model_config("stages", act="tanh", init="suo")["init"] == "suo"
    assert model_config("cnn-tanh")["init"] == "normal:0.05"  # plain activations unchanged
    assert StagesSpec().init == "normal:0.05"
    net = create_model("stages", depth=9, act="dks-tanh", init="he")
    centre_only = net.stages[0][1].conv.weight.clone()
    centre_only[:, :, 1, 1] = 0
    assert centre_only.abs().sum() > 0  # He: not a delta init


def test_suo_delta_conv_preserves_q():
    torch.manual_seed(0)
    for c_in, c_out in [(2, 4), (4, 8), (16, 16), (16, 8)]:
        conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1)
        suo_init_(conv, delta=True)
        w = conv.weight.detach()
        off = w.clone()
        off[:, :, 1, 1] = 0
        assert off.abs().max() == 0 and conv.bias.abs().max() == 0
        m = w[:, :, 1, 1]  # (out, in)
        if c_out >= c_in:  # tall: orthonormal columns times sqrt(out / in)
            assert torch.allclose(m.T @ m, torch.eye(c_in) * c_out / c_in, atol=1e-5)
        else:  # wide: orthonormal rows
            assert torch.allclose(m @ m.T, torch.eye(c_out), atol=1e-5)
        x = PerLocationNorm()(torch.randn(64, c_in - 1, 8, 8))  # q = 1 at every location
        assert x.pow(2).mean(1).allclose(torch.ones(64, 8, 8), atol=1e-5)
        q_out = conv(x).pow(2).mean().item()
        assert q_out == pytest.approx(1.0, abs=0.1 if c_out < c_in else 1e-4)


def test_suo_dense_preserves_q():
    torch.manual_seed(0)
    for n_in, n_out in [(785, 64), (10, 20), (64, 64)]:
        linear = torch.nn.Linear(n_in, n_out)
        suo_init_(linear, delta=False)
        x = PerLocationNorm(flatten=True)(torch.randn(512, n_in - 1))
        assert x.shape == (512, n_in) and x.pow(2).mean(1).allclose(torch.ones(512), atol=1e-5)
        assert linear(x).pow(2).mean().item() == pytest.approx(1.0, abs=0.1 if n_out < n_in else 1e-4)


def test_models_take_the_normalised_input():
    net = create_model("cnn-tat-lrelu", (1, 28, 28), 10, depth=15, input_norm="pln")
    assert net.stages[0][0].conv.in_channels == 2  # one homogeneous channel more
    mlp = create_model("mlp", (1, 28, 28), 10, depth=4, width=32, act="dks-softplus", input_norm="pln")
    assert mlp.units[0].linear.in_features == 785
    first = layer_summary(net, (1, 28, 28))[0]
    assert first[1:3] == ("PerLocationNorm", (2, 28, 28))
    for model in (net, mlp):
        assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
        clone = pickle.loads(pickle.dumps(model))
        x = torch.randn(2, 1, 28, 28)
        assert torch.allclose(clone(x), model(x)) and torch.allclose(copy.deepcopy(model)(x), model(x))


@pytest.mark.parametrize(
    "name,kw",
    [
        ("cnn-tat-lrelu", dict(depth=15)),
        ("cnn-dks-tanh", dict(depth=12)),
        ("stages", dict(depth=6, act="dks-softplus", skip="fixup")),
        ("mlp", dict(depth=20, width=32, act="tat-leaky-relu")),
        ("mlp", dict(depth=10, width=32, act="dks-tanh", norm="bn")),
    ],
)
def test_trains_a_few_steps(name, kw):
    torch.manual_seed(0)
    model = create_model(name, (1, 28, 28), 10, **kw)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert min(losses[4:]) < losses[0]


def test_missing_package_is_one_line(monkeypatch):
    for mod in [m for m in sys.modules if m == "dks" or m.startswith("dks.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "dks", None)  # import dks -> ImportError
    monkeypatch.setitem(sys.modules, "dks.pytorch", None)
    for family, kw in [("stages", dict(depth=9)), ("mlp", dict(depth=3))]:
        with pytest.raises(ConfigError) as info:
            model_config(family, act="tat-leaky-relu", **kw)
        message = str(info.value)
        assert "\n" not in message
        assert message.endswith("needs the dks package: pip install 'depthlab[dks]'")
    with pytest.raises(ConfigError, match=r"needs the dks package: pip install 'depthlab\[dks\]'"):
        TrainConfig(model="cnn-dks-tanh", model_args={"depth": 9}).validate()
    assert model_config("stages", act="tanh", depth=9)["act"] == "tanh"  # the rest still works
