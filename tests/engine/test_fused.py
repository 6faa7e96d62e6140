"""Fused multi-model training (depthlab.engine.fused): G members trained as one network follow, step by
step, the trajectories of G separate runs with the same seeds and data order."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from depthlab.data.batches import Batches
from depthlab.engine.callbacks import LambdaCallback
from depthlab.engine.config import TrainConfig
from depthlab.engine.fused import train_fused
from depthlab.engine.fused_layers import NotFusable, fuse_models, fusion_key
from depthlab.engine.loop import train
from depthlab.engine.schedule import parse_schedule
from depthlab.engine.setup import make_optimizer, multi_head_loss, prepare_splits
from depthlab.errors import ConfigError, UserError
from depthlab.models import create_model
from depthlab.records.record import RunResult

SMALL = dict(train_size=1024, test_size=500, epochs=2, batch_size=256)  # 4 steps per epoch


def reference_losses(config: TrainConfig, data) -> list[float]:
    """The loss at every step of a separate run: the loop of `depthlab.engine.train`, built from
    its components, on the same batches (same seed, same order)."""
    torch.manual_seed(config.seed)
    model = create_model(config.model, data.input_shape, data.num_classes, **config.model_args)
    model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model.parameters())
    schedule = parse_schedule(config.schedule)
    tx, ty, *_ = prepare_splits(config, data)
    batches = Batches(tx, ty, config.batch_size, data.mean, data.std, seed=config.seed, channels_last=True)
    losses = []
    for epoch in range(config.epochs):
        for step, (xb, yb) in enumerate(batches, start=1):
            for group in optimizer.param_groups:
                group["lr"] = schedule.lr_at(epoch + (step - 1) / len(batches), config.lr, config.epochs)
            loss, _ = multi_head_loss(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def fused_losses(configs, data, **kwargs) -> tuple[list[list[float]], list[RunResult]]:
    per_member: list[list[float]] = [[] for _ in configs]

    def on_step(loop, step):
        for m, value in zip(loop.stepper.live, loop.stepper.step_losses.tolist()):
            per_member[m.index].append(value)

    results = train_fused(configs, data, callbacks=[LambdaCallback(on_step_end=on_step)], **kwargs)
    return per_member, results


@pytest.mark.parametrize(
    "model,nesterov", [("cnn-elu-bn", False), ("cnn-tanh", True), ("cnn-elu-multihead", False)]
)
def test_fused_losses_equal_separate_runs_step_by_step(mnist, model, nesterov):
    base = dict(model=model, model_args={"depth": 6}, nesterov=nesterov, **SMALL)
    configs = [
        TrainConfig(**base, lr=0.05),
        TrainConfig(**base, lr=0.1, momentum=0.5),
        TrainConfig(**base, lr=0.02, seed=1, weight_decay=5e-3),  # its own data order and init
        TrainConfig(**base, lr=0.1, schedule="warmup:1+cosine"),
    ]  # its own schedule
    got, results = fused_losses(configs, mnist)
    for config, losses, result in zip(configs, got, results):
        want = reference_losses(config, mnist)
        assert len(losses) == len(want) == 8
        assert losses == pytest.approx(want, abs=1e-5, rel=0), config
        assert result.status == "done" and result.fused["members"] == 4


def test_fused_results_match_train(mnist):
    """Whole results (epoch metrics, checkpoints, test error) are those of `train`."""
    base = dict(model="cnn-elu-multihead", model_args={"depth": 6}, evals_per_epoch=2, **SMALL)
    configs = [TrainConfig(**base, lr=0.05), TrainConfig(**base, lr=0.1, seed=3)]
    fused = train_fused(configs, mnist)
    for config, got in zip(configs, fused):
        want = train(config, mnist).to_dict()
        assert got.status == want["status"] and got.config == want["config"]
        assert len(got.epochs) == len(want["epochs"]) == 2
        for g, w in zip(got.epochs, want["epochs"]):
            assert g.loss == pytest.approx(w["loss"], abs=1e-5)
            assert g.train_error == pytest.approx(w["train_error"], abs=2 / 1024)
            assert g.test_error == pytest.approx(w["test_error"], abs=2 / 500)
            assert g.head_errors == pytest.approx(w["head_errors"], abs=2 / 500)
            assert g.lr == w["lr"]
        assert len(got.evaluation_points) == 4
        assert got.test_error == pytest.approx(want["test_error"], abs=2 / 500)
        assert set(want) <= set(got.to_dict())  # the schema of run_recorded (plus "fused")


def test_diverging_member_does_not_touch_the_others(mnist):
    base = dict(model="cnn-elu", model_args={"depth": 6}, **SMALL)
    healthy = [TrainConfig(**base, lr=0.05), TrainConfig(**base, lr=0.1)]
    wild = TrainConfig(**base, lr=50.0)  # a separate run diverges at step 3
    alone, alone_results = fused_losses(healthy, mnist)
    mixed, mixed_results = fused_losses([healthy[0], wild, healthy[1]], mnist)
    assert mixed[0] == pytest.approx(alone[0], abs=1e-5)
    assert mixed[2] == pytest.approx(alone[1], abs=1e-5)
    assert all(v == v and abs(v) < 10 for v in mixed[0] + mixed[2])  # finite, sane
    separate = train(wild, mnist)
    assert separate.status == "diverged"
    assert mixed_results[1].status == "diverged"
    assert mixed_results[1].reason == separate.reason
    assert mixed_results[1].epochs == [] and mixed_results[1].test_error is None
    assert len(mixed[1]) == 3  # it left the fused net at the step its loss went non-finite
    for r, a in zip((mixed_results[0], mixed_results[2]), alone_results):
        assert r.status == "done"
        assert r.test_error == pytest.approx(a.test_error, abs=2 / 500)


@dataclass
class StopBelow:
    """A monitor: stop once the train error is below ``threshold``."""

    threshold: float

    def __call__(self, checkpoint) -> bool:
        return checkpoint.train_error < self.threshold


def test_monitor_stops_members_as_train_does(mnist):
    base = dict(model="cnn-elu-bn", model_args={"depth": 6}, evals_per_epoch=4, **SMALL)
    configs = [TrainConfig(**base, lr=lr) for lr in (0.01, 0.1, 0.3)]
    monitor = StopBelow(0.6)
    fused = train_fused(configs, mnist, monitors=monitor)
    stopped = 0
    for config, got in zip(configs, fused):
        want = train(config, mnist, monitor=monitor)
        stopped += want.stopped_early
        assert got.stopped_early == want.stopped_early and got.reason == want.reason
        assert [c.epoch for c in got.evaluation_points] == [c.epoch for c in want.evaluation_points]
        assert len(got.epochs) == len(want.epochs)
        for g, w in zip(got.epochs, want.epochs):
            assert g.train_error == pytest.approx(w.train_error, abs=2 / 1024)
            assert g.loss == pytest.approx(w.loss, abs=1e-5)
        assert got.test_error == pytest.approx(want.test_error, abs=2 / 500)
    assert stopped >= 1  # the test exercises a mid-run stop


def test_fusion_key_groups_only_what_fuses():
    base = dict(model="cnn-elu-bn", model_args={"depth": 6}, train_size=1000)
    key = fusion_key(TrainConfig(**base))
    assert key is not None
    assert (
        fusion_key(TrainConfig(**base, lr=0.3, seed=2, momentum=0.5, weight_decay=1e-4, schedule="cosine"))
        == key
    )
    assert fusion_key(TrainConfig(**{**base, "model_args": {"depth": 9}})) != key
    assert fusion_key(TrainConfig(**base, batch_size=128)) != key
    assert fusion_key(TrainConfig(**base, optimizer="adam")) is None
    assert fusion_key(TrainConfig(**base, patience=2)) is None
    assert (
        fusion_key(TrainConfig(model="cnn-elu", model_args={"depth": 6, "skip": "rezero"})) is None
    )  # own alpha


def test_fusion_key_leaves_the_global_rng_alone():
    """The driver asks for keys while a worker thread of the same process seeds the global RNG
    and builds its model: drawing weights here once gave fused members another init."""
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for model, depth in [("cnn-tanh-delta", 33), ("cnn-elu-bn", 12), ("resnet-elu-bn", 15)]:
        assert fusion_key(TrainConfig(model=model, model_args={"depth": depth})) is not None
    assert torch.equal(torch.get_rng_state(), state)


def test_models_whose_fused_forward_breaks_do_not_fuse(mnist):
    """resnet20's option-A shortcut pads channels: fused, its shapes no longer add up. It gets
    no key (no crash), and `fuse_models` calls it NotFusable rather than raising."""
    cifar_like = TrainConfig(model="resnet20", dataset="cifar10")
    assert fusion_key(cifar_like) is None
    with pytest.raises(NotFusable, match="fused forward fails"):
        fuse_models([create_model("resnet20", (3, 32, 32), 10) for _ in range(2)], (3, 32, 32))


def test_train_fused_refuses_unfusable_groups(mnist):
    with pytest.raises(ConfigError, match="differ only in"):
        train_fused(
            [
                TrainConfig(model="cnn-tanh", model_args={"depth": 3}),
                TrainConfig(model="cnn-tanh", model_args={"depth": 6}),
            ],
            mnist,
        )
    with pytest.raises(ConfigError, match="cannot fuse"):
        train_fused([TrainConfig(model="cnn-tanh", optimizer="adam")] * 2, mnist)


class _Net(nn.Module):
    def __init__(self, mix: bool):
        super().__init__()
        self.mix = mix
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        h = torch.tanh(self.norm(self.conv(x)))
        if self.mix:  # a mean over channels: across members once fused
            h = h - h.mean(1, keepdim=True)
        return self.fc(h.flatten(1))


def test_probe_catches_forward_code_that_mixes_members():
    members = [_Net(mix=False) for _ in range(3)]
    fused = fuse_models(members, (1, 8, 8))
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        got = fused.eval()(x.repeat(1, 3, 1, 1)).view(5, 3, 10)
        for i, m in enumerate(members):
            assert torch.allclose(got[:, i], m.eval()(x), atol=1e-5)
    with pytest.raises(NotFusable):
        fuse_models([_Net(mix=True) for _ in range(3)], (1, 8, 8))


def _without_times(result: RunResult) -> dict:
    """A result with its wall-clock fields dropped: everything else must match exactly."""
    d = result.to_dict()
    out = {k: v for k, v in d.items() if k not in ("seconds", "fused")}
    out["epochs"] = [{k: v for k, v in e.items() if k != "seconds"} for e in d["epochs"]]
    return out


def assert_same_run(got: RunResult, want: RunResult) -> None:
    """``got`` is ``want`` up to the order in which float sums were taken: a group that narrows
    (members cut out) runs its kernels at other widths, and oneDNN may block those reductions
    differently. Wall-clock fields are skipped (`_without_times`); every other field matches
    exactly, except losses (1e-5) and error rates (two test examples out of 500)."""
    _assert_close(_without_times(got), _without_times(want), "result")


def _assert_close(got, want, path: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), path
        for key in want:
            _assert_close(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_close(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        tolerance = 2 / 500 if "error" in path.rsplit(".", 1)[-1] else 1e-5
        assert got == pytest.approx(want, abs=tolerance), path
    else:
        assert got == want, path


@pytest.mark.parametrize("interrupt_in_epoch", [1, 2])
def test_a_fused_group_killed_mid_run_resumes_from_its_checkpoint_to_the_same_results(
    mnist, tmp_path, interrupt_in_epoch
):
    """Members that diverge (in epochs 0 and 2), that their monitor stops mid-epoch (in epochs 1
    and 2, one with its own seed, hence its own batches) and one that runs to the end: after a
    kill in epoch ``interrupt_in_epoch`` the resumed group ends exactly where an uninterrupted
    one does, and the restored epochs are passed to ``on_epoch_metrics`` again."""
    base = dict(model="cnn-elu", model_args={"depth": 6}, evals_per_epoch=4, **{**SMALL, "epochs": 3})
    configs = [
        TrainConfig(**base, lr=lr, seed=seed)
        for lr, seed in ((0.01, 0), (0.1, 0), (0.3, 0), (50.0, 0), (0.05, 1))
    ]
    monitor = StopBelow(0.6)
    seen_whole: list = []
    whole = train_fused(
        configs,
        mnist,
        monitors=monitor,
        callbacks=[LambdaCallback(on_epoch_metrics=lambda loop, i, m: seen_whole.append((i, m.epoch)))],
    )
    assert [r.status for r in whole] == ["done", "done", "diverged", "diverged", "done"]
    assert [r.stopped_early for r in whole] == [False, True, False, False, True]

    path = tmp_path / "group.pt"

    def kill(loop, i, metrics):
        if metrics.epoch == interrupt_in_epoch:  # before that epoch's checkpoint is written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fused(
            configs,
            mnist,
            monitors=monitor,
            callbacks=[LambdaCallback(on_epoch_metrics=kill)],
            checkpoint_path=path,
        )
    assert path.exists()
    seen_resumed: list = []
    resumed = train_fused(
        configs,
        mnist,
        monitors=monitor,
        checkpoint_path=path,
        callbacks=[LambdaCallback(on_epoch_metrics=lambda loop, i, m: seen_resumed.append((i, m.epoch)))],
    )
    assert [_without_times(r) for r in resumed] == [_without_times(r) for r in whole]
    assert sorted(seen_resumed) == sorted(seen_whole)
    # Killed after the last epoch's checkpoint, before the results were stored: nothing to train.
    again = train_fused(configs, mnist, monitors=monitor, checkpoint_path=path)
    assert [_without_times(r) for r in again] == [_without_times(r) for r in whole]


def test_a_fused_group_killed_inside_an_epoch_resumes_from_its_last_evaluation_point(mnist, tmp_path):
    """The group also saves at the evaluation points inside an epoch: killed at epoch 1's third
    step (after a member stopped at its first), it continues from epoch 1's second step to the
    uninterrupted results, members of two seeds (two sample orders) included."""
    base = dict(model="cnn-elu", model_args={"depth": 6}, evals_per_epoch=2, **{**SMALL, "epochs": 3})
    configs = [
        TrainConfig(**base, lr=lr, seed=seed) for lr, seed in ((0.01, 0), (0.1, 0), (50.0, 0), (0.05, 1))
    ]
    monitor = StopBelow(0.6)
    whole = train_fused(configs, mnist, monitors=monitor)
    path = tmp_path / "group.pt"

    def kill(loop, step):
        if (loop.state.epoch, step) == (1, 3):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fused(
            configs,
            mnist,
            monitors=monitor,
            callbacks=[LambdaCallback(on_step_end=kill)],
            checkpoint_path=path,
        )
    saved = torch.load(path, weights_only=True)
    assert (saved["epoch"], saved["mid_epoch"]["step"]) == (1, 2)
    resumed = train_fused(configs, mnist, monitors=monitor, checkpoint_path=path)
    assert [_without_times(r) for r in resumed] == [_without_times(r) for r in whole]


def test_a_fused_checkpoint_of_other_configs_is_refused(mnist, tmp_path):
    base = dict(model="cnn-elu", model_args={"depth": 3}, **{**SMALL, "epochs": 1})
    path = tmp_path / "group.pt"
    train_fused([TrainConfig(**base, lr=0.01), TrainConfig(**base, lr=0.1)], mnist, checkpoint_path=path)
    with pytest.raises(ConfigError, match="belongs to other configurations"):
        train_fused([TrainConfig(**base, lr=0.01), TrainConfig(**base, lr=0.2)], mnist, checkpoint_path=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupted or not a depthlab checkpoint"):
        train_fused([TrainConfig(**base, lr=0.01), TrainConfig(**base, lr=0.2)], mnist, checkpoint_path=path)


def test_the_fused_probe_passes_deep_chaotic_nets():
    """The probe runs in float64: float32 rounding between a grouped conv and separate convs,
    amplified through 96 tanh + batch-norm layers on a 3-image batch, once failed it."""
    torch.manual_seed(0)
    fuse_models([create_model("cnn-tanh-bn", (1, 28, 28), 10, depth=96) for _ in range(2)], (1, 28, 28))


@dataclass
class StopFrom:
    """A monitor: stop at the first evaluation point at or after ``epoch``."""

    epoch: float

    def __call__(self, checkpoint) -> bool:
        return checkpoint.epoch >= self.epoch - 1e-9


@pytest.mark.parametrize("stop_at", [0.5, 1.0])  # inside an epoch, and at its last step
def test_ranked_members_after_one_its_monitor_stops_are_cancelled(mnist, tmp_path, stop_at):
    """Ranks 0..3 are alternatives in order: when rank 1 is stopped by its monitor, ranks 2 and 3
    are cancelled at that evaluation point; rank 0 (before it) and an unranked member go on, to
    the results they reach in a group without ranks (up to float summation order). Killed after
    the cancellation, the group resumes from its checkpoint to exactly the same results."""
    base = dict(model="cnn-elu", model_args={"depth": 3}, evals_per_epoch=2, **SMALL)
    configs = [TrainConfig(**base, lr=lr) for lr in (0.01, 0.02, 0.05, 0.1, 0.2)]
    monitors = [None, StopFrom(stop_at), None, None, None]
    ranks = [0, 1, 2, 3, None]
    plain = train_fused(configs, mnist, monitors=monitors)
    ranked = train_fused(configs, mnist, monitors=monitors, ranks=ranks)
    assert [r.status for r in plain] == ["done"] * 5
    assert [r.status for r in ranked] == ["done", "done", "cancelled", "cancelled", "done"]
    for i in (0, 1, 4):  # the ranked group is narrower after the cancellation: equal to float sums
        assert_same_run(ranked[i], plain[i])
    for r in ranked[2:4]:
        assert [c.epoch for c in r.evaluation_points] == ([0.5] if stop_at == 0.5 else [0.5, 1.0])
        assert r.epochs == [] and "ranked before it" in r.reason
    assert ranked[1].stopped_early and not ranked[2].stopped_early

    path = tmp_path / "group.pt"

    def kill(loop, step):
        if (loop.state.epoch, step) == (1, 3):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fused(
            configs,
            mnist,
            monitors=monitors,
            ranks=ranks,
            callbacks=[LambdaCallback(on_step_end=kill)],
            checkpoint_path=path,
        )
    resumed = train_fused(configs, mnist, monitors=monitors, ranks=ranks, checkpoint_path=path)
    assert [_without_times(r) for r in resumed] == [_without_times(r) for r in ranked]


def test_ranks_must_match_the_configs(mnist):
    configs = [TrainConfig(model="cnn-elu", model_args={"depth": 3}, lr=lr, **SMALL) for lr in (0.01, 0.1)]
    with pytest.raises(ConfigError, match="2 ranks|1 ranks"):
        train_fused(configs, mnist, ranks=[0])
