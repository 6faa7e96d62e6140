"""A job: one trial (a `TrainConfig` plus how to record and monitor it), and the worker-side code that
trains a group of jobs (alone or fused) and returns their `RunResult`s."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from ..data.dataset import Dataset
from ..engine.checkpoints import CHECKPOINT_FORMAT, checkpoint_resumable, discard_checkpoint
from ..engine.config import TrainConfig
from ..records.record import Monitor, RunResult
from .runner import run_recorded

T = TypeVar("T")


@dataclass
class Job:
    """One training run of a sweep. ``monitor`` may stop it early; for process and Ray
    executors it must be picklable (a module-level function or a small dataclass).

    ``rank`` marks trials that are alternatives in an order (the lrs of one frontier wave):
    when ranked trials train as one fused group and a member's monitor stops it, the members
    of a larger rank are cancelled (`depthlab.engine.fused.train_fused`), their result's
    status `RunStatus.CANCELLED`, and not recorded in the store."""

    config: TrainConfig
    kind: str = "train"
    experiment: str | None = None
    monitor: Monitor | None = None
    reuse: bool = True  # return the stored result of a finished identical config
    extras: str | None = None  # a measure of the trained network, by name (`depthlab.experiments.EXTRAS`)
    rank: int | None = None


def run_group(trials: Sequence[Job], data: Dataset, checkpoint: str | None = None) -> list[RunResult]:
    """Train ``trials`` on ``data`` without a store and return their results: one trial
    through `run_recorded`, several as one fused network (`depthlab.engine.fused.train_fused`).

    With ``checkpoint`` (a file path) the group saves its state there at every evaluation point (best
    effort: a failed write is a warning) and continues from a checkpoint it finds there, so a
    killed sweep loses at most the steps since each trial's last evaluation. A file there that cannot be
    read, belongs to other configs or was made under other stopping criteria is discarded."""
    from ..engine.fused import FUSED_CHECKPOINT_FORMAT, train_fused

    fmt = CHECKPOINT_FORMAT if len(trials) == 1 else FUSED_CHECKPOINT_FORMAT
    if (
        checkpoint is not None
        and os.path.exists(checkpoint)
        and not checkpoint_resumable(
            checkpoint, fmt, [t.config.hash() for t in trials], [t.monitor for t in trials]
        )
    ):
        discard_checkpoint(checkpoint)
    if len(trials) == 1:
        from ..engine.extras import extras_for

        t = trials[0]
        options = (
            dict(checkpoint_path=checkpoint, resume=True, checkpoint_required=False)
            if checkpoint is not None
            else None
        )
        return [
            run_recorded(
                t.config,
                None,
                data,
                kind=t.kind,
                experiment=t.experiment,
                monitor=t.monitor,
                reuse=False,
                train_options=options,
                extras=extras_for(t.extras, t.config, data),
            )
        ]
    # With a checkpoint a group whose fused net fails its probe is handed back (NotFusable): run
    # member by member here it would save nothing, and a kill would lose every member's work.
    return train_fused(
        [t.config for t in trials],
        data,
        monitors=[t.monitor for t in trials],
        checkpoint_path=checkpoint,
        checkpoint_required=False,
        member_by_member=checkpoint is None,
        ranks=[t.rank for t in trials],
    )


def _init_process_worker(threads: int, driver_pid: int) -> None:
    torch.set_num_threads(threads)
    _exit_with_driver(driver_pid)


def _exit_with_driver(driver_pid: int, poll_seconds: float = 0.5) -> None:
    """Exit this worker as soon as its driver is gone (even killed by kill -9), so that no
    orphan trains on for a driver that will never read its result, nor holds its stdout open.

    A watcher thread polls the parent pid. Not PR_SET_PDEATHSIG: the kernel sends that signal
    when the *thread* that spawned the worker ends, and the pool spawns its workers from
    whichever search thread submits first, so a finished model search killed live workers."""
    import time

    if os.getppid() != driver_pid:  # the driver died while this worker was starting
        os._exit(1)

    def watch() -> None:
        while os.getppid() == driver_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-driver", daemon=True).start()


_RAY_DATA: dict[str, Dataset] = {}  # per Ray worker process: datasets already fetched, by object id


def _ray_run_group(trials: Sequence[Job], data_ref: list, checkpoint: str | None = None) -> list[RunResult]:
    """A Ray task: fetch the dataset once per worker process (the ref is nested in a list so
    Ray does not fetch it for every task), then train on this task's CPU share."""
    import ray

    key = data_ref[0].hex()
    if key not in _RAY_DATA:
        _RAY_DATA.clear()  # keep one dataset per worker: a sweep uses one
        _RAY_DATA[key] = ray.get(data_ref[0])
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    return run_group(trials, _RAY_DATA[key], checkpoint)
