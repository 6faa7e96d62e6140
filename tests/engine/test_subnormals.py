"""fp32-ftz: fp32 with subnormal numbers flushed to zero on the CPU, for the steps of that run only."""

import pytest
import torch
from fakedata import synthetic_dataset

from depthlab.engine.callbacks import LambdaCallback
from depthlab.engine.config import TrainConfig
from depthlab.engine.device import check_precision, flushing_subnormals, subnormals_flushed
from depthlab.engine.fused import train_fused
from depthlab.engine.loop import train
from depthlab.errors import ConfigError


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(128, 64)


def config(**kw):
    base = dict(
        model="cnn-tanh", model_args={"depth": 3}, epochs=1, batch_size=64, lr=0.1, device="cpu", threads=1
    )
    return TrainConfig(**{**base, **kw})


def flags_seen(steps: list) -> LambdaCallback:
    """A callback noting, at every step, whether the CPU flushes subnormals."""
    return LambdaCallback(on_step_end=lambda loop, step: steps.append(flushing_subnormals()))


def test_the_scope_flushes_inside_and_restores_what_was_there():
    assert not flushing_subnormals()
    with subnormals_flushed(True):
        assert flushing_subnormals()
        assert float(torch.tensor([1e-39]) * 1.0) == 0.0
        with subnormals_flushed(False):  # an fp32 run inside keeps IEEE subnormals
            assert not flushing_subnormals() and float(torch.tensor([1e-39]) * 1.0) > 0.0
        assert flushing_subnormals()
    assert not flushing_subnormals()


@pytest.mark.parametrize("precision,flushed", [("fp32", False), ("fp32-ftz", True)])
def test_a_run_flushes_exactly_when_its_precision_says_so(data, precision, flushed):
    steps = []
    result = train(config(precision=precision), data, callbacks=[flags_seen(steps)])
    assert steps and set(steps) == {flushed}
    assert not flushing_subnormals()  # the next run starts as before
    assert result.status.value == "done"


def test_an_fp32_run_keeps_subnormals_even_where_the_process_flushes(data):
    steps = []
    with subnormals_flushed(True):
        train(config(), data, callbacks=[flags_seen(steps)])
        assert flushing_subnormals()
    assert set(steps) == {False}


def test_a_fused_group_flushes_too(data):
    steps = []
    configs = [config(precision="fp32-ftz", lr=lr) for lr in (0.01, 0.1)]
    results = train_fused(configs, data, callbacks=[flags_seen(steps)])
    assert len(results) == 2 and set(steps) == {True} and not flushing_subnormals()


def test_where_no_subnormal_arises_fp32_ftz_gives_fp32s_bits(data):
    """A shallow net's numbers stay far above 1e-38: flushing changes nothing, bit for bit."""
    ours = train(config(precision="fp32-ftz", epochs=2), data)
    ieee = train(config(epochs=2), data)
    assert [(e.loss, e.test_error) for e in ours.epochs] == [(e.loss, e.test_error) for e in ieee.epochs]
    assert all(torch.equal(a, b) for a, b in zip(ours.model.parameters(), ieee.model.parameters()))


def test_fp32_ftz_is_its_own_identity_and_cpu_only():
    assert config(precision="fp32-ftz").hash() != config().hash()
    assert config(precision="fp32").hash() == config().hash()
    for device in ("cuda", "mps"):
        with pytest.raises(ConfigError, match="fp32-ftz flushes subnormals on the CPU only"):
            check_precision("fp32-ftz", torch.device(device))
