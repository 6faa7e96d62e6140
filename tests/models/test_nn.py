"""depthlab.models.layers: the from-scratch Dropout and BatchNorm against their definitions and torch's (SPEC §2.5)."""

import pytest
import torch
from torch import nn

from depthlab.models.layers import BatchNorm, Dropout, batch_norm

# --- Dropout -----------------------------------------------------------------------------------


def test_dropout_on_ten_thousand_ones_keeps_about_half_scaled_by_two():
    torch.manual_seed(0)
    out = Dropout(0.5).train()(torch.ones(10_000))
    assert 10_000 - 400 <= out.sum().item() <= 10_000 + 400
    assert 5_000 - 200 <= (out != 0).sum().item() <= 5_000 + 200
    assert set(out.unique().tolist()) <= {0.0, 2.0}  # inverted dropout: survivors scaled by 1/(1-p)


def test_dropout_is_identity_in_eval_mode_and_at_p0():
    x = torch.randn(50, 7)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_dropout_mean_is_preserved_for_other_p_and_gradient_follows_the_mask():
    torch.manual_seed(1)
    x = torch.ones(200_000, requires_grad=True)
    out = Dropout(0.2).train()(x)
    assert abs(out.mean().item() - 1.0) < 0.01
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # d(out)/dx is the scaled mask itself


def test_dropout_rejects_p_outside_unit_interval():
    with pytest.raises(ValueError):
        Dropout(1.5)


# --- BatchNorm ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, torch_cls",
    [((32, 6), nn.BatchNorm1d), ((16, 6, 9), nn.BatchNorm1d), ((8, 6, 5, 7), nn.BatchNorm2d)],
)
def test_batchnorm_matches_torch_in_train_and_eval(shape, torch_cls):
    torch.manual_seed(0)
    ours, ref = BatchNorm(6), torch_cls(6)
    with torch.no_grad():  # non-trivial affine parameters, the same in both
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    ours.load_state_dict(ref.state_dict())  # same keys: weights move between the two
    for step in range(4):
        x = torch.randn(*shape) * (step + 1) + step
        x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_ours, y_ref = ours(x_ours), ref(x_ref)
        torch.testing.assert_close(y_ours, y_ref, atol=1e-5, rtol=1e-5)
        g = torch.randn_like(y_ref)
        y_ours.backward(g)
        y_ref.backward(g)
        torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_var, ref.running_var, atol=1e-5, rtol=1e-5)
    assert ours.num_batches_tracked.item() == ref.num_batches_tracked.item() == 4
    ours.eval()
    ref.eval()
    x = torch.randn(*shape) * 3 + 1
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_batchnorm_starts_at_gamma_one_beta_zero_and_normalises_each_channel():
    bn = BatchNorm(4)
    assert torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.bias, torch.zeros(4))
    x = torch.randn(64, 4, 3, 3) * torch.tensor([1.0, 5.0, 0.1, 20.0]).view(1, 4, 1, 1) + 7
    y = bn.train()(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


def test_batchnorm_without_running_stats_uses_batch_statistics_in_eval():
    torch.manual_seed(0)
    ours, ref = BatchNorm(3, track_running_stats=False), nn.BatchNorm2d(3, track_running_stats=False)
    x = torch.randn(10, 3, 4, 4) * 2 + 3
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x), atol=1e-5, rtol=1e-5)
    assert "running_mean" not in dict(ours.named_buffers())


def test_batchnorm_keeps_bf16_inputs_in_bf16_with_float32_statistics():
    bn = BatchNorm(3)
    x = (torch.randn(16, 3, 4, 4) * 100 + 1000).to(torch.bfloat16)
    y = bn(x)
    assert y.dtype == torch.bfloat16
    ref = nn.BatchNorm2d(3)(x.float())
    torch.testing.assert_close(y.float(), ref, atol=0.05, rtol=0.02)


def test_batchnorm_rejects_a_wrong_channel_count_and_factory_picks_the_implementation():
    with pytest.raises(ValueError, match="expected input"):
        BatchNorm(3)(torch.randn(2, 4, 5, 5))
    assert isinstance(batch_norm(5, "scratch"), BatchNorm)
    assert isinstance(batch_norm(5, "torch"), nn.BatchNorm2d)
