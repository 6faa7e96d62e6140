"""The training engine on synthetic data: learning, divergence, repeatability, schedules,
early stopping, the monitor hook and multi-head losses."""

import math

import pytest
import torch
import torch.nn.functional as F
from fakedata import synthetic_dataset

from depthlab.data.batches import Batches
from depthlab.engine.callbacks import LambdaCallback
from depthlab.engine.config import TrainConfig
from depthlab.engine.device import resolve_device
from depthlab.engine.loop import train
from depthlab.engine.schedule import parse_schedule
from depthlab.engine.setup import evaluate, multi_head_loss, prepare_splits
from depthlab.errors import ConfigError
from depthlab.records.record import EvaluationPoint


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(1024, 256)


def config(**kw):
    base = dict(model="cnn-tanh", model_args={"depth": 3}, epochs=3, batch_size=64, lr=0.1, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_loss_decreases_and_it_learns(data):
    result = train(config(), data)
    assert result.status == "done" and len(result.epochs) == 3
    losses = [e.loss for e in result.epochs]
    assert losses[0] > 2.0 and losses[-1] < 0.5 * losses[0]
    assert result.epochs[-1].train_error < result.epochs[0].train_error
    assert result.epochs[-1].test_error < 0.2  # chance is 0.9
    assert result.test_error == result.epochs[-1].test_error
    assert result.parameters == sum(p.numel() for p in result.model.parameters())
    assert all(0 <= e.train_error <= 1 and 0 <= e.test_error <= 1 for e in result.epochs)


def test_test_error_is_measured_in_eval_mode(data):
    # With BN, train-mode and eval-mode outputs differ: the reported error must be eval mode's.
    result = train(config(model="cnn-elu-bn", epochs=1, lr=0.05), data)
    model = result.model
    batches = Batches(data.test_x, data.test_y, 1024, data.mean, data.std, shuffle=False, channels_last=True)
    error, _ = evaluate(model, batches)
    assert error == result.epochs[0].test_error
    assert model.training  # evaluate restores the mode it found
    xb, _ = next(iter(batches))
    with torch.no_grad():
        train_mode = model(xb)
        model.eval()
        eval_mode = model(xb)
    assert not torch.allclose(train_mode, eval_mode)  # so the check above can tell the modes apart


def test_divergence_is_detected(data):
    result = train(config(model="cnn-elu", lr=100.0), data)
    assert result.status == "diverged"
    assert "non-finite loss" in result.reason
    assert result.test_error is None


def test_same_seed_is_bit_for_bit_repeatable(data):
    a = train(config(epochs=2, seed=5), data)
    b = train(config(epochs=2, seed=5), data)
    c = train(config(epochs=2, seed=6), data)
    key = lambda r: [(e.train_error, e.test_error, e.loss) for e in r.epochs]  # noqa: E731
    assert key(a) == key(b)
    assert key(a) != key(c)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_config_hash_is_stable_and_ignores_device():
    a, b = config(), config(device="auto")
    assert a.hash() == b.hash() and len(a.hash()) == 16
    assert a.hash() != config(lr=0.2).hash()
    assert config(model_args={"depth": 3, "act": "tanh"}).hash() == a.hash()  # preset values filled in


# ---------------------------------------------------------------------------------------------
# Schedules


def test_piecewise_schedule():
    s = parse_schedule("2@0.07,3@0.01")
    assert s.kind == "piecewise"
    assert [s.lr_at(e, 99.0, 5) for e in (0, 1.5, 1.99, 2, 4.9)] == [0.07, 0.07, 0.07, 0.01, 0.01]
    assert s.lr_at(7, 99.0, 5) == 0.01  # past the end: the last value
    assert parse_schedule("piecewise:1@0.5").lr_at(0, 1.0, 1) == 0.5


def test_multistep_cosine_constant_warmup():
    m = parse_schedule("multistep:100,150")
    assert [m.lr_at(e, 0.1, 200) for e in (0, 99.9, 100, 150, 199)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.001, 0.001]
    )
    assert parse_schedule("multistep:2:0.5").lr_at(3, 1.0, 5) == 0.5
    c = parse_schedule("cosine")
    assert c.lr_at(0, 0.2, 10) == pytest.approx(0.2)
    assert c.lr_at(5, 0.2, 10) == pytest.approx(0.1)
    assert c.lr_at(10, 0.2, 10) == pytest.approx(0.0, abs=1e-12)
    assert parse_schedule("constant").lr_at(3.3, 0.3, 5) == 0.3
    w = parse_schedule("warmup:2+cosine")
    assert w.lr_at(0.5, 1.0, 10) == pytest.approx(0.25 * (0.5 * (1 + math.cos(math.pi * 0.05))))
    assert w.lr_at(3, 1.0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))
    assert parse_schedule("warmup:1").lr_at(0.5, 0.4, 3) == pytest.approx(0.2)
    assert parse_schedule("warmup:1+2@0.07,3@0.01").lr_at(0.5, 9.0, 5) == pytest.approx(0.035)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "2@",
        "@0.1",
        "2@0.1,",
        "2@-1",
        "0@0.1",
        "2@abc",
        "x@0.1",
        "multistep:",
        "multistep:a,b",
        "multistep:5,3",
        "multistep:0,3",
        "multistep:3:0",
        "warmup:0+cosine",
        "warmup:x",
        "cosine+warmup:1",
        "warmup:1+cosine+constant",
        "linear",
        "2@0.1;3@0.01",
        "2@nan",
        "2@inf",
    ],
)
def test_malformed_schedules_are_rejected(text):
    with pytest.raises(ConfigError, match="malformed schedule"):
        parse_schedule(text)


def test_schedule_drives_the_optimizer(data):
    result = train(config(epochs=3, schedule="1@0.05,2@0.01"), data)
    assert [e.lr for e in result.epochs] == [0.05, 0.01, 0.01]


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(model="nope"), "unknown model"),
        (dict(dataset="nope"), "unknown dataset"),
        (dict(model_args={"depth": 4}), "multiple of 3"),
        (dict(model_args={"depth": 0}), "multiple of 3"),
        (dict(lr=0.0), "learning rate"),
        (dict(lr=-0.1), "learning rate"),
        (dict(lr=float("nan")), "learning rate"),
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch size"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(momentum=1.0), "momentum"),
        (dict(weight_decay=-1.0), "weight decay"),
        (dict(weight_decay=float("nan")), "weight decay"),
        (dict(schedule="2@"), "schedule"),
        (dict(device="tpu"), "device"),
        (dict(train_size=0), "train size"),
        (dict(eval_split="holdout"), "eval split"),
        (dict(dataset="cifar10"), "runs on"),
    ],
)
def test_bad_configs_are_rejected(kw, message):
    with pytest.raises(ConfigError, match=message):
        config(**kw).validate()


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


# ---------------------------------------------------------------------------------------------
# Early stopping, the monitor, evaluation splits


def test_early_stopping_restores_best_weights(data):
    # Two good epochs, then an lr that wrecks the network: patience 2 stops after two bad
    # epochs and the final test error is the best epoch's, measured again on restored weights.
    result = train(config(epochs=6, schedule="2@0.1,1@50,3@1e-9", patience=2), data)
    errors = [e.test_error for e in result.epochs]
    assert result.stopped_early and "early stopping" in result.reason
    assert len(errors) == 4 and errors[1] < 0.2 and min(errors[2:]) > 0.5
    assert result.test_error == errors[1]
    batches = Batches(data.test_x, data.test_y, 512, data.mean, data.std, shuffle=False, channels_last=True)
    assert evaluate(result.model, batches)[0] == errors[1]


def test_monitor_can_stop_mid_epoch(data):
    seen: list[EvaluationPoint] = []

    def monitor(cp):
        seen.append(cp)
        return len(seen) == 2

    result = train(config(epochs=3, evals_per_epoch=4), data, monitor=monitor)
    assert result.stopped_early and result.reason == "monitor stopped the run"
    assert [cp.epoch for cp in seen] == [0.25, 0.5]
    assert len(result.epochs) == 1 and result.epochs[0].test_error == seen[-1].eval_error
    assert all(0 <= cp.train_error <= 1 for cp in seen)


def test_monitor_sees_every_evaluation(data):
    seen = []
    result = train(
        config(epochs=2, evals_per_epoch=2), data, monitor=lambda cp: seen.append(cp.epoch) and False
    )
    assert seen == [0.5, 1.0, 1.5, 2.0] and not result.stopped_early
    assert len(result.evaluation_points) == 4


def test_on_epoch_and_on_step_callbacks(data):
    epochs, steps = [], []
    train(
        config(epochs=2),
        data,
        callbacks=[
            LambdaCallback(
                on_epoch_metrics=lambda loop, i, m: epochs.append(m),
                on_step_end=lambda loop, s: steps.append((s, loop.setup.steps_per_epoch)),
            )
        ],
    )
    assert [m.epoch for m in epochs] == [0, 1]
    assert steps[:2] == [(1, 16), (2, 16)] and len(steps) == 32


def test_validation_split_and_final_test(data):
    result = train(config(epochs=1, eval_split="val", val_fraction=0.25), data)
    tx, ty, ex, ey, test_x, _ = prepare_splits(config(eval_split="val", val_fraction=0.25), data)
    assert len(tx) == 768 and len(ex) == 256 and len(test_x) == 256
    assert result.test_error is not None  # measured once on the test set at the end
    folds = [prepare_splits(config(eval_split="val", folds=4, fold=k), data)[3] for k in range(4)]
    assert sum(len(f) for f in folds) == 1024


def test_train_size_subset(data):
    tx, *_ = prepare_splits(config(train_size=100), data)
    assert len(tx) == 100


def test_adam_and_weight_decay_run(data):
    result = train(config(epochs=2, optimizer="adam", lr=3e-3, weight_decay=1e-4), data)
    assert result.status == "done" and result.epochs[-1].loss < result.epochs[0].loss


# ---------------------------------------------------------------------------------------------
# Multi-head loss


def test_multi_head_loss_is_the_mean_of_the_heads():
    torch.manual_seed(0)
    heads = [torch.randn(8, 10) for _ in range(3)]
    y = torch.randint(0, 10, (8,))
    loss, logits = multi_head_loss(heads, y)
    assert torch.allclose(loss, sum(F.cross_entropy(h, y) for h in heads) / 3)
    assert logits is heads[-1]
    single, same = multi_head_loss(heads[0], y)
    assert torch.allclose(single, F.cross_entropy(heads[0], y)) and same is heads[0]


def test_multihead_model_reports_every_head(data):
    result = train(config(model="cnn-elu-multihead", epochs=2, lr=0.05), data)
    assert result.status == "done"
    heads = result.epochs[-1].head_errors
    assert len(heads) == 3 and heads[-1] == result.epochs[-1].test_error
    assert result.epochs[-1].loss < result.epochs[0].loss


def test_channels_last_changes_speed_not_results(data):
    # The NHWC fast path must compute the same network: same losses up to float rounding.
    fast = train(config(epochs=1), data)
    plain = train(config(epochs=1), data, channels_last=False)
    assert next(fast.model.parameters()).is_contiguous(memory_format=torch.channels_last)
    assert fast.epochs[0].loss == pytest.approx(plain.epochs[0].loss, rel=1e-4)
    assert abs(fast.epochs[0].test_error - plain.epochs[0].test_error) <= 2 / 256
    assert fast.threads == torch.get_num_threads()


def test_checkpoints_of_an_earlier_format_version_load_and_later_or_foreign_ones_do_not(tmp_path):
    """Version 1 (epoch ends only) is what a search started before mid-epoch saves left on disk:
    it must still resume. A newer version (or another format) is refused, not misread."""
    from depthlab.engine.checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
    from depthlab.errors import DataError

    name, _, version = CHECKPOINT_FORMAT.rpartition("-")
    assert int(version) >= 2
    for fmt, ok in (
        (f"{name}-1", True),
        (CHECKPOINT_FORMAT, True),
        (f"{name}-{int(version) + 1}", False),
        ("depthlab-fused-state-1", False),
        (None, False),
    ):
        path = tmp_path / "c.pt"
        save_checkpoint(path, {"format": fmt, "epoch": 1})
        if ok:
            assert load_checkpoint(path)["epoch"] == 1
        else:
            with pytest.raises(DataError):
                load_checkpoint(path)
