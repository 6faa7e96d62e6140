"""Very deep nets without normalisation: the Fixup and ReZero skip variants of `stages`, the
critical delta-orthogonal preset, and that they train on real MNIST where plain residual
ELU without BN does not learn at all."""

import pytest
import torch
import torch.nn.functional as F

from depthlab.engine.config import TrainConfig
from depthlab.engine.loop import train
from depthlab.models import ConvUnit, create_model


def units(net):
    return [m for m in net.modules() if isinstance(m, ConvUnit)]


@pytest.mark.parametrize("skip", ["rezero", "fixup"])
def test_residual_units_start_as_the_identity(skip):
    torch.manual_seed(0)
    net = create_model("stages", depth=12, act="elu", init="lecun-in", skip=skip)
    residual = [u for u in units(net) if u.skip == skip]
    assert len(residual) == 9  # all but the first conv of each stage
    for u in residual:
        x = torch.randn(3, u.conv.in_channels, 14, 14)
        assert torch.equal(u(x), x)
    plain = [u for u in units(net) if u.skip == "none"]
    assert all(u.conv.weight.abs().sum() > 0 for u in plain)  # channel-changing convs keep the init


def test_fixup_zero_inits_branch_convs_and_classifier_but_still_learns():
    torch.manual_seed(0)
    net = create_model("resnet-elu-fixup", depth=9)
    for u in units(net):
        if u.skip == "fixup":
            assert u.conv.weight.abs().sum() == 0 and u.conv.bias.abs().sum() == 0
            assert (
                u.scale.item() == 0.0 and u.bias_in.item() == 0.0 and u.bias_out.item() == 0.0
            )  # multiplier 1 + k*0
    assert net.classifier.weight.abs().sum() == 0
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):  # step 1 moves the classifier, after which gradients reach the branches
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    branch = next(u for u in units(net) if u.skip == "fixup")
    assert branch.conv.weight.grad.abs().sum() > 0


def test_fixup_parameter_count_adds_three_scalars_per_branch():
    base = sum(p.numel() for p in create_model("resnet-elu", depth=9).parameters())
    fixup = sum(p.numel() for p in create_model("resnet-elu-fixup", depth=9).parameters())
    rezero = sum(p.numel() for p in create_model("resnet-elu-rezero", depth=9).parameters())
    assert fixup - base == 3 * 6 and rezero - base == 6


def test_delta_preset_uses_critical_delta_orthogonal():
    net = create_model("cnn-tanh-delta", depth=12)
    conv = units(net)[1].conv
    w = conv.weight.detach()
    assert w[:, :, 0, 0].abs().sum() == 0 and w[:, :, 1, 1].abs().sum() > 0


@pytest.mark.slow
def test_fixup_and_rezero_train_where_plain_residual_elu_fails(mnist):
    """Depth 24, 2k real MNIST images, 2 epochs (16 steps). The un-normalised residual ELU
    net's activations grow ~x1000 with depth and its loss overflows; ReZero and Fixup start as
    the identity and learn. Each at a learning rate that suits it (measured: ReZero 0.1 -> 41%,
    Fixup 0.02 -> 45% test error; Fixup diverges at 0.1), plain residual at the smaller one."""
    errors = {}
    for model, lr in (("resnet-elu", 0.02), ("resnet-elu-rezero", 0.1), ("resnet-elu-fixup", 0.02)):
        cfg = TrainConfig(
            model=model,
            model_args={"depth": 24},
            train_size=2000,
            test_size=1000,
            epochs=2,
            lr=lr,
            device="cpu",
        )
        result = train(cfg, mnist)
        errors[model] = 1.0 if result.status != "done" else result.test_error
    assert errors["resnet-elu"] > 0.85, errors
    assert errors["resnet-elu-rezero"] < 0.6 and errors["resnet-elu-fixup"] < 0.6, errors
