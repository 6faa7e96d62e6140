"""`vanilla-1000`: its configs are the 1,000-layer vanilla nets it claims (fast, no training), and
its verdict is the test error against chance, computed from the numbers."""

import pytest
import torch

from depthlab.experiments import get_experiment
from depthlab.experiments.catalogue import plan
from depthlab.experiments.parts import PartResult
from depthlab.models import create_model, model_config

pytest.importorskip("dks.pytorch", reason="the DKS arm needs the optional dks package")


def test_the_arms_are_999_convs_without_bn_or_skips_trained_with_adam():
    configs = plan("vanilla-1000")
    assert [c.model for c in configs] == ["cnn-tanh-delta", "cnn-dks-tanh"]
    for c in configs:
        spec = model_config(c.model, **c.model_args)
        assert (
            spec["depth"] == 999 and spec["norm"] == "none" and spec["skip"] == "none" and spec["heads"] == 1
        )
        assert (c.optimizer, c.lr, c.batch_size, c.epochs, c.train_size) == ("adam", 1e-4, 64, 3, 10000)
        assert c.test_size is None and c.threads == 1  # the full test set, on one core
    assert model_config("cnn-tanh-delta")["init"] == "delta-orthogonal:critical"


def test_a_999_conv_net_has_999_convolutions_and_one_readout():
    net = create_model("cnn-tanh-delta", (1, 28, 28), 10, depth=999)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 999 and len(linears) == 1
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


def test_the_train_commands_of_the_docs_are_the_experiments_runs():
    """The long runs are started with `depthlab train` (it checkpoints every epoch); reproduce must
    read them back, so both build the same identity."""
    from depthlab.engine.config import TrainConfig

    for config, model in zip(plan("vanilla-1000"), ("cnn-tanh-delta", "cnn-dks-tanh")):
        by_cli = TrainConfig(
            model=model,
            model_args={"depth": 999},
            train_size=10000,
            epochs=3,
            lr=1e-4,
            batch_size=64,
            optimizer="adam",
            threads=1,
        )
        assert config.hash() == by_cli.hash()


def _part(rows):
    runs = [
        {"config": {"model": m, "model_args": {"depth": 999}}} for m in ("cnn-tanh-delta", "cnn-dks-tanh")
    ]
    return {"vanilla-1000": PartResult("vanilla-1000", "", [], rows, [], runs[: len(rows)])}


def test_the_verdict_is_test_error_against_chance_not_the_20_percent_line():
    exp = get_experiment("vanilla-1000")
    rows = [
        {"arm": "delta-orthogonal", "status": "done", "test_error": 0.285, "epochs": 3},
        {"arm": "DKS", "status": "done", "test_error": 0.4123, "epochs": 2},
    ]
    text = exp.conclude(_part(rows))
    assert text == (
        "A 1,000-layer vanilla CNN (no BN, no skips) trained with Adam: delta-orthogonal 28.5% test error "
        "after 3 epoch(s) (chance: 90%); DKS 41.2% test error after 2 epoch(s) (chance: 90%)."
    )
    assert "20%" not in text and "did not train" not in text
    rows[1] = {"arm": "DKS", "status": "diverged", "test_error": None, "epochs": 1}
    assert exp.conclude(_part(rows)).endswith("DKS no result (diverged).")


def test_quick_is_a_shallow_smoke_run_of_the_same_arms():
    configs = plan("vanilla-1000", quick=True)
    assert [c.model for c in configs] == ["cnn-tanh-delta", "cnn-dks-tanh"]
    assert all(c.model_args["depth"] == 12 and c.epochs == 1 and c.optimizer == "adam" for c in configs)
