"""The CUDA paths (SPEC: AMP, channels_last, torch.compile with CUDA graphs, data resident on the
device, fused groups on one GPU). They run where a CUDA GPU exists and are skipped elsewhere; CI
has none, so `benchmarks/gpu_session.sh` runs them when a session is lent one.

``DEPTHLAB_TEST_DEVICE=cpu`` runs the same checks on the CPU (no AMP there): a way to check
the tests themselves on a machine without a GPU."""

import dataclasses
import math
import os

import pytest
import torch
from fakedata import tiny_cifar

from depthlab.depth_frontier.protocol import FrontierConfig
from depthlab.depth_frontier.search import find_frontiers
from depthlab.engine.config import TrainConfig
from depthlab.engine.fused import train_fused
from depthlab.engine.loop import train
from depthlab.store.sqlite import Store
from depthlab.sweep.driver import TrialRunner
from depthlab.sweep.executors import InProcessExecutor

DEVICE = os.environ.get("DEPTHLAB_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU")

SMALL = dict(train_size=2048, test_size=1000, epochs=2, batch_size=256)


def test_training_on_the_device_learns_as_on_the_cpu(mnist):
    """bf16 autocast and channels_last on CUDA: the same network reaches about the same error
    as the fp32 CPU run (not the same bits: bf16 rounds differently)."""
    config = TrainConfig(model="cnn-elu-bn", model_args={"depth": 6}, lr=0.05, device=DEVICE, **SMALL)
    on_device = train(config, mnist)
    on_cpu = train(dataclasses.replace(config, device="cpu"), mnist)
    assert on_device.status == on_cpu.status == "done"
    assert on_device.device.startswith(DEVICE)
    assert on_device.test_error < 0.3 and abs(on_device.test_error - on_cpu.test_error) < 0.05
    assert all(math.isfinite(e.loss) for e in on_device.epochs)


def test_compiled_training_matches_eager_on_the_device(mnist):
    """``compile_model`` (CUDA graphs on CUDA) changes the speed, not what is learned."""
    config = TrainConfig(model="cnn-tanh", model_args={"depth": 6}, lr=0.1, device=DEVICE, **SMALL)
    eager = train(config, mnist)
    compiled = train(config, mnist, compile_model=True)
    assert compiled.status == "done"
    assert abs(compiled.test_error - eager.test_error) < 0.03


def test_a_fused_group_on_the_device_matches_its_members_run_alone(mnist):
    base = dict(model="cnn-elu-bn", model_args={"depth": 6}, device=DEVICE, **SMALL)
    configs = [TrainConfig(**base, lr=lr) for lr in (0.01, 0.05, 0.2)]
    fused = train_fused(configs, mnist)
    for config, result in zip(configs, fused):
        alone = train(config, mnist)
        assert result.status == alone.status
        assert abs(result.test_error - alone.test_error) < 0.05
        assert result.fused["members"] == 3


def test_a_frontier_on_the_device_with_fused_lr_grids(mnist, tmp_path):
    config = FrontierConfig(
        max_depth=6,
        lrs=(0.01, 0.1, 1.0),
        epochs=1,
        train_size=2000,
        eval_size=500,
        evals_per_epoch=4,
        threshold=0.5,
        device=DEVICE,
    )
    with Store(tmp_path / "f.db") as store, InProcessExecutor() as executor:
        runner = TrialRunner(executor, store, mnist, fuse=3, checkpoint_dir=tmp_path / "f.db-checkpoints")
        result = find_frontiers(["cnn-elu-bn", "cnn-tanh"], config, store, mnist, runner=runner)
    by_model = {m.model: m for m in result.models}
    assert by_model["cnn-elu-bn"].max_trainable_depth == 6  # BN trains depth 6 at one of these lrs
    assert all(m.trials >= 1 for m in result.models)


def test_cifar_batches_augmented_on_the_device_train_a_resnet():
    data = tiny_cifar(n_train=256, n_test=64)
    result = train(
        TrainConfig(
            model="resnet20",
            dataset="cifar10",
            epochs=2,
            batch_size=64,
            lr=0.05,
            momentum=0.9,
            augment=True,
            device=DEVICE,
        ),
        data,
    )
    assert result.status == "done" and result.device.startswith(DEVICE)
    assert all(math.isfinite(e.loss) for e in result.epochs)
