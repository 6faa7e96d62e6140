"""The loop's one callback protocol: which hooks run when, and the callbacks built on it."""

import math

import pytest
from fakedata import synthetic_dataset

from depthlab.engine.callbacks import LambdaCallback, StepProgress, TensorBoardLog
from depthlab.engine.config import TrainConfig
from depthlab.engine.loop import HOOKS, LoopCallback, train
from depthlab.records.record import EpochMetrics, RunStatus


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(256, 64)


def config(**kw):  # 4 steps per epoch
    return TrainConfig(
        **{
            **dict(
                model="cnn-tanh",
                model_args={"depth": 3},
                epochs=2,
                batch_size=64,
                lr=0.1,
                device="cpu",
                evals_per_epoch=2,
            ),
            **kw,
        }
    )


class Recorder(LoopCallback):
    """Every hook's call, in order."""

    def __init__(self):
        self.calls = []

    def on_train_start(self, loop):
        self.calls.append(("train_start",))

    def on_step_end(self, loop, step):
        self.calls.append(("step", loop.state.epoch, step, tuple(loop.stepper.step_losses.shape)))

    def on_evaluation(self, loop, step):
        self.calls.append(("evaluation", loop.stepper.live[0].result.evaluation_points[-1].epoch))

    def on_epoch_metrics(self, loop, index, metrics):
        self.calls.append(("epoch_metrics", index, metrics.epoch))

    def on_epoch_end(self, loop):
        self.calls.append(("epoch_end", loop.state.epoch))

    def on_train_end(self, loop):
        self.calls.append(("train_end",))


def test_hooks_run_in_the_loops_order(data):
    recorder = Recorder()
    result = train(config(), data, callbacks=[recorder])
    assert result.status == RunStatus.DONE

    def epoch(e):
        return [
            ("step", e, 1, (1,)),
            ("step", e, 2, (1,)),
            ("evaluation", e + 0.5),
            ("step", e, 3, (1,)),
            ("step", e, 4, (1,)),
            ("evaluation", e + 1.0),
            ("epoch_metrics", 0, e),
            ("epoch_end", e),
        ]

    assert recorder.calls == [("train_start",), *epoch(0), *epoch(1), ("train_end",)]


def test_a_callback_that_ends_the_run_stops_the_loop(data):
    def cancel(loop, step):
        loop.end_members([0], RunStatus.CANCELLED, "cancelled by a callback")
        loop.stepper.drop_finished()

    steps = []
    result = train(
        config(),
        data,
        callbacks=[
            LambdaCallback(on_evaluation=cancel),
            LambdaCallback(on_step_end=lambda loop, step: steps.append(step)),
        ],
    )
    assert result.status == RunStatus.CANCELLED and result.reason == "cancelled by a callback"
    assert steps == [1, 2] and result.epochs == []  # ended at the first evaluation point, after step 2


def test_lambda_callback_refuses_a_hook_that_does_not_exist():
    with pytest.raises(TypeError, match="on_epoch"):
        LambdaCallback(on_epoch=print)
    assert set(HOOKS) == {
        "on_train_start",
        "on_step_end",
        "on_check",
        "on_evaluation",
        "on_epoch_metrics",
        "on_epoch_end",
        "on_train_end",
    }


class FakeWriter:
    def __init__(self):
        self.scalars, self.flushes, self.closed = [], 0, False

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        self.flushes += 1

    def close(self):
        self.closed = True


def test_tensorboard_log_tags_a_runs_epochs_and_skips_missing_values():
    writer = FakeWriter()
    board = TensorBoardLog("unused", writer=writer)
    board.on_epoch_metrics(None, 0, EpochMetrics(0, 0.5, 0.4, 1.2, 0.1, 3.0))
    board.for_run("sgd lr 0.1").write_epoch(
        {"epoch": 1, "train_error": 0.3, "test_error": None, "loss": 0.9, "lr": 0.1}
    )
    assert writer.scalars == [
        ("train_error", 0.5, 0),
        ("test_error", 0.4, 0),
        ("loss", 1.2, 0),
        ("lr", 0.1, 0),
        ("sgd lr 0.1/train_error", 0.3, 1),
        ("sgd lr 0.1/loss", 0.9, 1),
        ("sgd lr 0.1/lr", 0.1, 1),
    ]
    assert writer.flushes == 2  # each epoch visible at once
    board.close()
    assert writer.closed


def test_step_progress_counts_every_step_of_the_run(data):
    class Bar:
        total, n = None, 0

        def update(self, k):
            self.n += k

    bar = Bar()
    train(config(epochs=3), data, callbacks=[StepProgress(bar)])
    assert (bar.total, bar.n) == (12, 12)


def test_step_losses_are_the_steps_losses(data):
    losses = []
    result = train(
        config(epochs=1, evals_per_epoch=1),
        data,
        callbacks=[
            LambdaCallback(on_step_end=lambda loop, step: losses.append(loop.stepper.step_losses.item()))
        ],
    )
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert sum(losses) / 4 == pytest.approx(
        result.epochs[0].loss, rel=1e-5
    )  # equal batches: the epoch's mean
