"""The training engine's one epoch loop, and `train`: one configuration.

``train(TrainConfig(model="cnn-tanh", model_args={"depth": 9}, epochs=3))`` returns a
`RunResult` with per-epoch train error (counted on the fly, train mode), evaluation error
(eval mode, after each epoch) and loss. A NaN/inf loss stops the run as ``diverged``.

`run_epochs` is the loop of every trainer: single runs (`SingleStepper`) and fused groups
(`depthlab.engine.fused`). Read top to bottom, `EpochLoop` is: for each epoch, for each step,
take the step; at a check step look for divergence; at an evaluation point evaluate and
record the point; close the epoch. Everything else is a `LoopCallback` (Lightning's
callbacks, in miniature), the one protocol for what steers a run and what follows it: the
loop's own `DivergenceStop`, `MonitorStop` (each member's monitor), `RankCancellation` of
fused groups and `Checkpointing` (saving, and resuming mid-epoch); then the caller's
(`depthlab.engine.callbacks`: progress, TensorBoard; the store's epoch rows). The stepper owns
the network(s), the steps and the checkpoint's contents.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..data.dataset import Dataset
from ..records.record import (
    EpochMetrics,
    EvaluationPoint,
    Monitor,
    RunResult,
    RunStatus,
    StopReason,
    stop_reason,
)
from .checkpoints import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .device import precision_scope, thread_scope
from .setup import set_up
from .stepper import Member, SingleStepper, Stepper


def train(
    config: TrainConfig,
    data: Dataset | None = None,
    *,
    data_dir=None,
    monitor: Monitor | None = None,
    callbacks: Sequence[LoopCallback] = (),
    checkpoint_path=None,
    resume: bool = False,
    checkpoint_required: bool = True,
    compile_model: bool = False,
    channels_last: bool | None = None,
) -> RunResult:
    """Train one configuration.

    ``monitor`` is called at each evaluation (``evals_per_epoch`` times per epoch) and may stop
    the run early by returning True (the frontier stops as soon as its criterion is met).
    ``callbacks`` (`LoopCallback`s, e.g. `depthlab.engine.callbacks.LambdaCallback`) follow the
    run: each epoch's metrics as soon as they exist (the store writes them), every step (a
    progress bar), the evaluation points.
    With ``checkpoint_path`` the full training state (model, optimizer, epoch, early-stopping
    state, RNG states of the batcher and of torch) is saved there after every epoch and at every
    evaluation point inside one (with the epoch's sample order and running sums); with
    ``resume`` an existing checkpoint of the same config is continued, giving the same result
    as an uninterrupted run (the restored epochs are passed to ``on_epoch_metrics`` again; the
    checkpoint records the monitor's decisions, so resume under the same monitor). Not
    ``checkpoint_required`` (a sweep's checkpoints), a failed write is a warning, not an error.
    ``compile_model`` wraps the model in ``torch.compile`` (a speed option on CUDA).
    ``channels_last`` (default: on for CPU and CUDA) is exposed for benchmarks: NHWC convs are
    about twice as fast on CPU for these few-channel networks (see BENCHMARKS.md).
    """
    config.validate()
    with thread_scope(config.threads):
        setup = set_up(config, data, data_dir=data_dir, channels_last=channels_last)
        started = time.perf_counter()
        with precision_scope(setup.device, config.precision):
            stepper = SingleStepper(setup, monitor, compile_model=compile_model)
            seconds = run_epochs(
                stepper,
                callbacks=callbacks,
                checkpoint_path=checkpoint_path,
                checkpoint_required=checkpoint_required,
                resume=resume,
                started=started,
            )
    result = stepper.members[0].result
    result.seconds, result.model = seconds, stepper.model
    return result


def run_epochs(
    stepper: Stepper,
    *,
    callbacks: Sequence[LoopCallback] = (),
    checkpoint_path=None,
    checkpoint_required: bool = True,
    resume: bool = True,
    started: float | None = None,
) -> float:
    """Train ``stepper``'s members to their ends; returns the wall seconds (those of the runs a
    checkpoint restored included). With ``checkpoint_path`` the state is saved there after every
    epoch and at every evaluation point inside one; with ``resume`` a checkpoint found there is
    continued. ``callbacks`` run after the loop's own (divergence, monitors, rank cancellation,
    checkpointing), in order."""
    saver = Checkpointing(checkpoint_path, checkpoint_required, started)
    loop = EpochLoop(stepper, [DivergenceStop(), MonitorStop(), RankCancellation(), saver, *callbacks])
    loop.call("on_train_start")
    first_epoch, mid_epoch = saver.restore(loop) if resume else (0, None)
    loop.run(first_epoch, mid_epoch)
    loop.call("on_train_end")
    return saver.elapsed()


@dataclass
class EpochState:
    """Where the running epoch stands: what a mid-epoch checkpoint saves and restores."""

    epoch: int
    orders: dict  # each seed's sample order for this epoch
    started: float  # perf_counter at its start (moved back by the seconds a resumed epoch had run)
    share: int  # members sharing its wall time
    seen: int = 0  # training examples seen so far
    start_step: int = 0  # the last step already taken (a resumed epoch)

    def seconds(self) -> float:
        return time.perf_counter() - self.started


class LoopCallback:
    """The one callback protocol of the engine (Lightning's ``Callback``, in miniature): what
    follows a run (progress bars, TensorBoard, the store's epoch rows) and what steers it
    (divergence, each member's monitor, rank cancellation, checkpoints) are `LoopCallback`s
    given to `run_epochs`. Every method does nothing unless overridden; callbacks run in list
    order, the loop's own first. A callback may end live members (`EpochLoop.end_members`, then
    `Stepper.drop_finished`); the loop stops when none is left. An exception raised in a hook
    ends the run there (a test's simulated kill does)."""

    def on_train_start(self, loop: EpochLoop) -> None:
        """Before the first epoch, before a checkpoint is restored."""

    def on_step_end(self, loop: EpochLoop, step: int) -> None:
        """After every training step (``loop.stepper.step_losses``: the live members' losses, on
        the device: reading them syncs)."""

    def on_check(self, loop: EpochLoop, step: int) -> None:
        """After a step the loop checks (every ``check_every`` steps, the last, evaluation points)."""

    def on_evaluation(self, loop: EpochLoop, step: int) -> None:
        """After an evaluation point was recorded (``member.result.evaluation_points[-1]``); the loop's
        `MonitorStop` comes first, so later callbacks see the monitors' decisions."""

    def on_epoch_metrics(self, loop: EpochLoop, index: int, metrics: EpochMetrics) -> None:
        """Member ``index`` (its place in the group; 0 for a single run) recorded an epoch's
        metrics. On resume the restored epochs come first, once more."""

    def on_epoch_end(self, loop: EpochLoop) -> None:
        """After an epoch's metrics were recorded."""

    def on_train_end(self, loop: EpochLoop) -> None:
        """After the last epoch: every member has ended (a run that raised does not get here)."""


def _overrides(callback: LoopCallback, hook: str) -> bool:
    """Whether ``callback`` does something at ``hook`` (a method of its class, or one set on it)."""
    return hook in vars(callback) or getattr(type(callback), hook) is not getattr(LoopCallback, hook)


HOOKS = tuple(name for name in vars(LoopCallback) if name.startswith("on_"))


class EpochLoop:
    """The loop every trainer shares: epochs, steps, evaluation points and monitors, epoch metrics."""

    def __init__(self, stepper: Stepper, callbacks: Sequence[LoopCallback]):
        self.stepper, self.setup, self.callbacks = stepper, stepper.setup, list(callbacks)
        self.state: EpochState | None = None
        # per hook, the callbacks that use it: a step calls none when no callback watches steps
        self.hooks = {
            hook: [getattr(c, hook) for c in self.callbacks if _overrides(c, hook)] for hook in HOOKS
        }

    def run(self, first_epoch: int, mid_epoch: dict | None) -> None:
        stepper, epochs = self.stepper, self.setup.config.epochs
        for epoch in range(first_epoch, epochs):
            if all(
                m.result.stopped_early for m in stepper.live
            ):  # none left, or a resumed run that had stopped
                break
            self.state = self._start_epoch(epoch, mid_epoch)
            mid_epoch = None
            self._train_epoch()
            if not stepper.live:
                break
            self.close_epoch(list(range(len(stepper.live))), epoch == epochs - 1)
            stepper.drop_finished()
            self.call("on_epoch_end")
        self.finish(list(range(len(stepper.live))))  # a resumed run that had already stopped or ended
        stepper.drop_finished()

    def _start_epoch(self, epoch: int, mid: dict | None) -> EpochState:
        self.stepper.train_mode()
        if mid is None:
            self.stepper.zero_sums()
            self.stepper.errors = None
            orders = {s: b.epoch_order() for s, b in self.setup.train_batches.items()}
            return EpochState(epoch, orders, time.perf_counter(), len(self.stepper.live))
        # resumed inside this epoch: continue its orders and sums
        device = self.setup.device
        orders = {s: o.to(device) if o is not None else None for s, o in mid["orders"].items()}
        return EpochState(
            epoch, orders, time.perf_counter() - mid["seconds"], mid["share"], mid["seen"], mid["step"]
        )

    def _train_epoch(self) -> None:
        setup, stepper, state = self.setup, self.stepper, self.state
        steps = setup.steps_per_epoch
        iterators = {s: b.batches(state.orders[s], state.start_step) for s, b in setup.train_batches.items()}
        for step in range(state.start_step + 1, steps + 1):
            state.seen += stepper.step({s: next(it) for s, it in iterators.items()}, state.epoch, step)
            self.call("on_step_end", step)
            if step % setup.check_every == 0 or step == steps or step in setup.eval_at:
                self.call("on_check", step)
                if not stepper.live:
                    return
            if step in setup.eval_at:
                self._evaluation_point(step)
                self.call("on_evaluation", step)
                if not stepper.live:
                    return

    def _evaluation_point(self, step: int) -> None:
        """Evaluate and record the point of each live member (its monitor is asked next, by `MonitorStop`)."""
        stepper, state, steps = self.stepper, self.state, self.setup.steps_per_epoch
        stepper.errors = stepper.evaluate(self.setup.eval_batches)  # heads, live
        wrong = stepper.sums()[0]
        for i, m in enumerate(stepper.live):
            m.result.evaluation_points.append(
                EvaluationPoint(
                    state.epoch + step / steps, wrong[i] / state.seen, stepper.errors[-1, i].item()
                )
            )

    def close_epoch(self, ids: list[int], last: bool) -> None:
        """Append the epoch's metrics of live members ``ids``; finish those whose run ends."""
        stepper, state = self.stepper, self.state
        wrong, loss = stepper.sums()
        seconds = state.seconds() / state.share
        ending = []
        for i in ids:
            m = stepper.live[i]
            errs = stepper.errors[:, i].tolist() if stepper.errors is not None else [math.nan]
            metrics = EpochMetrics(
                state.epoch,
                wrong[i] / max(state.seen, 1),
                errs[-1],
                loss[i] / max(state.seen, 1),
                m.lr,
                seconds,
                errs if len(errs) > 1 else None,
            )
            m.result.epochs.append(metrics)
            self.call("on_epoch_metrics", m.index, metrics)
            stepper.end_epoch(m, metrics)
            if last or m.result.stopped_early:
                ending.append(i)
        self.finish(ending)

    def finish(self, ids: list[int]) -> None:
        """Members ``ids`` (indices into ``live``) end: their final test errors."""
        if not ids:
            return
        tests = self.stepper.final_test_errors()
        for i in ids:
            m = self.stepper.live[i]
            m.finished = True
            m.result.test_error = m.result.epochs[-1].test_error if tests is None else tests[i]

    def end_members(self, ids: list[int], status: RunStatus, reason: str) -> None:
        """Members ``ids`` (indices into ``live``) end now, with ``status``. They stay in ``live``
        (the indices of the others hold) until the caller's `Stepper.drop_finished`."""
        for i in ids:
            m = self.stepper.live[i]
            m.result.status, m.result.reason, m.finished = status, reason, True

    def call(self, hook: str, *args) -> None:
        """Call ``hook`` of every callback that has one, in order."""
        for method in self.hooks[hook]:
            method(self, *args)


class DivergenceStop(LoopCallback):
    """A member whose loss went non-finite ends as diverged (no metrics for the unfinished epoch)."""

    def on_check(self, loop: EpochLoop, step: int) -> None:
        bad_steps = loop.stepper.first_bad(step)
        for i, bad in enumerate(bad_steps):
            if bad >= 0:
                loop.end_members(
                    [i], RunStatus.DIVERGED, f"non-finite loss at epoch {loop.state.epoch}, step {bad}"
                )
        loop.stepper.drop_finished()


class MonitorStop(LoopCallback):
    """At each evaluation point, each live member's monitor (`records.Monitor`, part of its trial:
    picklable, described in the store) sees the new point and may stop it: at the epoch's end
    after that epoch's metrics, or inside an epoch at once, its partial epoch recorded."""

    def on_evaluation(self, loop: EpochLoop, step: int) -> None:
        stepper = loop.stepper
        stopped = []
        for i, m in enumerate(stepper.live):
            reason = stop_reason(m.monitor(m.result.evaluation_points[-1])) if m.monitor is not None else None
            if reason is not None:
                m.result.stopped_early, m.result.reason = True, reason.value  # plain text: checkpoints, JSON
                stopped.append(i)
        if step == loop.setup.steps_per_epoch:
            for i in stopped:
                stepper.live[i].stop_at_epoch_end = True
        elif stopped:  # a run stopped inside an epoch records the partial epoch
            loop.close_epoch(stopped, False)
            stepper.drop_finished()


def _outranked(m: Member, members: list[Member]) -> bool:
    """Whether live member ``m`` is moot: a member of a smaller rank met its monitor's criterion
    (`StopReason.CRITERION`; one its monitor stopped on a plateau did not train, so it decides nothing)."""
    return (
        m.rank is not None
        and not m.result.stopped_early
        and any(
            o.rank is not None
            and o.rank < m.rank
            and o.result.stopped_early
            and o.result.reason == StopReason.CRITERION
            for o in members
        )
    )


class RankCancellation(LoopCallback):
    """Once a ranked member met its criterion the members ranked after it are moot (the search
    reads verdicts in rank order): stop paying for them."""

    def on_evaluation(self, loop: EpochLoop, step: int) -> None:
        live, members = loop.stepper.live, loop.stepper.members
        loop.end_members(
            [i for i, m in enumerate(live) if _outranked(m, members)],
            RunStatus.CANCELLED,
            "cancelled: a member ranked before it met its monitor's criterion",
        )
        loop.stepper.drop_finished()


class Checkpointing(LoopCallback):
    """Saves the state after every epoch and at every evaluation point inside one (a killed run
    then loses at most the steps since the last evaluation), and restores it on resume. Keeps the
    run's wall clock, the seconds before a resume included."""

    def __init__(self, path, required: bool, started: float | None):
        self.path, self.required = path, required
        self.started = time.perf_counter() if started is None else started
        self.elapsed_before = 0.0

    def restore(self, loop: EpochLoop) -> tuple[int, dict | None]:
        """(epochs done, the running epoch's state) of the checkpoint at ``path``, if any; the
        restored epochs of every member go to the callbacks' ``on_epoch_metrics`` again."""
        stepper = loop.stepper
        if self.path is None or not os.path.exists(self.path):
            return 0, None
        state = load_checkpoint(self.path, stepper.format)
        first_epoch, self.elapsed_before, mid_epoch = stepper.unpack(state, self.path)
        for member in stepper.members:
            for metrics in member.result.epochs:
                loop.call("on_epoch_metrics", member.index, metrics)
        return first_epoch, mid_epoch

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def on_evaluation(self, loop: EpochLoop, step: int) -> None:
        state, steps = loop.state, loop.setup.steps_per_epoch
        if step == steps or self.path is None or not loop.stepper.live:
            return
        orders = {s: o.cpu() if o is not None else None for s, o in state.orders.items()}
        self._save(
            loop.stepper,
            state.epoch,
            {
                "step": step,
                "steps": steps,
                "seen": state.seen,
                "share": state.share,
                "seconds": state.seconds(),
                "orders": orders,
            },
        )

    def on_epoch_end(self, loop: EpochLoop) -> None:
        self._save(loop.stepper, loop.state.epoch + 1)

    def _save(self, stepper: Stepper, epochs_done: int, mid: dict | None = None) -> None:
        if self.path is not None:
            save_checkpoint(self.path, stepper.pack(epochs_done, mid, self.elapsed()), required=self.required)
