"""The training engine's one epoch loop, and `train`: one configuration.

``train(TrainConfig(model="cnn-tanh", model_args={"depth": 9}, epochs=3))`` returns a
`RunResult` with per-epoch train error (counted on the fly, train mode), evaluation error
(eval mode, after each epoch) and loss. A NaN/inf loss stops the run as ``diverged``.

`run_epochs` is the loop of every trainer: single runs (`SingleStepper`) and fused groups
(`depthlab.engine.fused`). It owns the epochs and their sample orders, the evaluation points
and the members' monitors, rank cancellation, divergence, epoch metrics, and mid-epoch
checkpoints and their resumption; the stepper owns the network(s), the steps and the
checkpoint's contents.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable

from ..data.dataset import Dataset
from ..records.record import (
    MONITOR_STOP,
    Checkpoint,
    EpochMetrics,
    Monitor,
    RunResult,
    RunStatus,
)
from .checkpoints import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .device import precision_scope, thread_scope
from .setup import set_up
from .stepper import Member, SingleStepper, Stepper


def train(config: TrainConfig, data: Dataset | None = None, *, data_dir=None,
          monitor: Monitor | None = None, on_epoch: Callable[[EpochMetrics], None] | None = None,
          on_step: Callable[[int, int], None] | None = None, checkpoint_path=None, resume: bool = False,
          checkpoint_required: bool = True,
          compile_model: bool = False, channels_last: bool | None = None) -> RunResult:
    """Train one configuration.

    ``monitor`` is called at each evaluation (``evals_per_epoch`` times per epoch) and may stop
    the run early by returning True (the frontier stops as soon as its criterion is met).
    ``on_epoch`` receives each epoch's metrics as soon as they exist (the store writes them).
    With ``checkpoint_path`` the full training state (model, optimizer, epoch, early-stopping
    state, RNG states of the batcher and of torch) is saved there after every epoch and at every
    evaluation point inside one (with the epoch's sample order and running sums); with
    ``resume`` an existing checkpoint of the same config is continued, giving the same result
    as an uninterrupted run (the restored epochs are passed to ``on_epoch`` again; the
    checkpoint records the monitor's decisions, so resume under the same monitor). Not
    ``checkpoint_required`` (a sweep's checkpoints), a failed write is a warning, not an error.
    ``compile_model`` wraps the model in ``torch.compile`` (a speed option on CUDA).
    ``channels_last`` (default: on for CPU and CUDA) is exposed for benchmarks: NHWC convs are
    about twice as fast on CPU for these few-channel networks (see BENCHMARKS.md).
    """
    config.validate()
    with thread_scope(config.threads):
        return _train(config, data, data_dir=data_dir, monitor=monitor, on_epoch=on_epoch, on_step=on_step,
                      checkpoint_path=checkpoint_path, resume=resume, checkpoint_required=checkpoint_required,
                      compile_model=compile_model, channels_last=channels_last)


def _train(config: TrainConfig, data, *, data_dir, monitor, on_epoch, on_step, checkpoint_path, resume,
           checkpoint_required, compile_model, channels_last) -> RunResult:
    setup = set_up(config, data, data_dir=data_dir, channels_last=channels_last)
    started = time.perf_counter()
    with precision_scope(setup.device, config.precision):
        stepper = SingleStepper(setup, monitor, on_step=on_step, compile_model=compile_model)
        seconds = run_epochs(stepper, on_epoch=(lambda _, metrics: on_epoch(metrics)) if on_epoch else None,
                             checkpoint_path=checkpoint_path, checkpoint_required=checkpoint_required,
                             resume=resume, started=started)
    result = stepper.members[0].result
    result.seconds, result.model = seconds, stepper.model
    return result


def _outranked(m: Member, members: list[Member]) -> bool:
    """Whether live member ``m`` is moot: a member of a smaller rank was stopped by its monitor."""
    return m.rank is not None and not m.result.stopped_early and any(
        o.rank is not None and o.rank < m.rank and o.result.stopped_early and o.result.reason == MONITOR_STOP
        for o in members)


def run_epochs(stepper: Stepper, *, on_epoch: Callable[[int, EpochMetrics], None] | None = None,
               checkpoint_path=None, checkpoint_required: bool = True, resume: bool = True,
               started: float | None = None) -> float:
    """Train ``stepper``'s members to their ends; returns the wall seconds (those of the runs a
    checkpoint restored included). ``on_epoch(member index, metrics)`` gets each epoch of each
    member. With ``checkpoint_path`` the state is saved there after every epoch and at every
    evaluation point inside one; with ``resume`` a checkpoint found there is continued."""
    setup = stepper.setup
    steps, device = setup.steps_per_epoch, setup.device
    started = time.perf_counter() if started is None else started
    first_epoch, elapsed_before, mid_epoch = 0, 0.0, None
    if resume and checkpoint_path is not None and os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path, stepper.format)
        first_epoch, elapsed_before, mid_epoch = stepper.unpack(state, on_epoch, checkpoint_path)

    def save(epochs_done: int, mid: dict | None = None) -> None:
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, stepper.pack(epochs_done, mid, elapsed_before + time.perf_counter() - started),
                            required=checkpoint_required)

    def finish(ids: list[int]) -> None:
        """Members ``ids`` (indices into ``live``) end: their final test errors."""
        if not ids:
            return
        tests = stepper.final_test_errors()
        for i in ids:
            m = stepper.live[i]
            m.finished = True
            m.result.test_error = m.result.epochs[-1].test_error if tests is None else tests[i]

    def close_epoch(ids: list[int], epoch: int, seen: int, seconds: float, last: bool) -> None:
        """Append the epoch's metrics of live members ``ids``; finish those whose run ends."""
        wrong, loss = stepper.sums()
        ending = []
        for i in ids:
            m = stepper.live[i]
            errs = stepper.errors[:, i].tolist() if stepper.errors is not None else [math.nan]
            metrics = EpochMetrics(epoch, wrong[i] / max(seen, 1), errs[-1], loss[i] / max(seen, 1), m.lr,
                                   seconds, errs if len(errs) > 1 else None)
            m.result.epochs.append(metrics)
            if on_epoch is not None:
                on_epoch(m.index, metrics)
            stepper.end_epoch(m, metrics)
            if last or m.result.stopped_early:
                ending.append(i)
        finish(ending)

    def end_members(ids: list[int], status: RunStatus, reason: str) -> None:
        for i in ids:
            m = stepper.live[i]
            m.result.status, m.result.reason, m.finished = status, reason, True

    for epoch in range(first_epoch, setup.config.epochs):
        if all(m.result.stopped_early for m in stepper.live):  # none left, or a resumed run that had stopped
            break
        epoch_start = time.perf_counter()
        share = len(stepper.live)  # members sharing this epoch's wall time
        stepper.train_mode()
        seen, start_step = 0, 0
        if mid_epoch is not None:  # resumed inside this epoch: continue its orders and sums
            orders = {s: o.to(device) if o is not None else None for s, o in mid_epoch["orders"].items()}
            start_step, seen, share = mid_epoch["step"], mid_epoch["seen"], mid_epoch["share"]
            epoch_start -= mid_epoch["seconds"]
            mid_epoch = None
        else:
            stepper.zero_sums()
            stepper.errors = None
            orders = {s: b.epoch_order() for s, b in setup.train_batches.items()}
        iterators = {s: b.batches(orders[s], start_step) for s, b in setup.train_batches.items()}
        for step in range(start_step + 1, steps + 1):
            seen += stepper.step({s: next(it) for s, it in iterators.items()}, epoch, step)
            if step % setup.check_every == 0 or step == steps or step in setup.eval_at:
                for i, bad in enumerate(stepper.first_bad(step)):
                    if bad >= 0:  # diverged: no metrics for the unfinished epoch, no test error
                        end_members([i], RunStatus.DIVERGED, f"non-finite loss at epoch {epoch}, step {bad}")
                stepper.drop_finished()
                if not stepper.live:
                    break
            if step not in setup.eval_at:
                continue
            stepper.errors = stepper.evaluate(setup.eval_batches)  # heads, live
            wrong = stepper.sums()[0]
            stopped = []
            for i, m in enumerate(stepper.live):
                point = Checkpoint(epoch + step / steps, wrong[i] / seen, stepper.errors[-1, i].item())
                m.result.checkpoints.append(point)
                if m.monitor is not None and m.monitor(point):
                    m.result.stopped_early, m.result.reason = True, MONITOR_STOP
                    stopped.append(i)
            if step == steps:
                for i in stopped:
                    stepper.live[i].stop_at_epoch_end = True
            elif stopped:  # a run stopped inside an epoch records the partial epoch
                close_epoch(stopped, epoch, seen, (time.perf_counter() - epoch_start) / share, False)
                stepper.drop_finished()
            # Once a ranked member met its criterion the members ranked after it are moot (the
            # search reads verdicts in rank order): stop paying for them.
            end_members([i for i, m in enumerate(stepper.live) if _outranked(m, stepper.members)],
                        RunStatus.CANCELLED, "cancelled: a member ranked before it met its monitor's criterion")
            stepper.drop_finished()
            if not stepper.live:
                break
            if step != steps and checkpoint_path is not None:
                # A killed run then loses at most the steps since the last evaluation.
                save(epoch, {"step": step, "steps": steps, "seen": seen, "share": share,
                             "seconds": time.perf_counter() - epoch_start,
                             "orders": {s: o.cpu() if o is not None else None for s, o in orders.items()}})
        if not stepper.live:
            break
        close_epoch(list(range(len(stepper.live))), epoch, seen, (time.perf_counter() - epoch_start) / share,
                    epoch == setup.config.epochs - 1)
        stepper.drop_finished()
        save(epoch + 1)
    finish(list(range(len(stepper.live))))  # a resumed run that had already stopped or ended
    stepper.drop_finished()
    return elapsed_before + time.perf_counter() - started
