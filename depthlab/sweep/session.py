"""The one place that opens a sweep: executor, store and `TrialRunner` together.

`depthlab.frontier(...)` (the Python API), every CLI command that runs many trials
(`depthlab.cli.app.trial_runner`) and `run_trials` open their runner here, so a trial computes
the same bits whichever entry point asked for it: the runner pins every trial whose config
leaves ``threads`` unset to the spec's thread count (``--threads``; default `SWEEP_THREADS`,
which the config hash leaves out), and the store key is the config's hash either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence

from ..data.dataset import Dataset
from ..engine.config import SWEEP_THREADS
from ..engine.device import thread_scope
from ..records.record import RunResult
from ..store.sqlite import Store, checkpoint_dir_for, remove_if_empty
from .driver import TrialRunner
from .executors import ExecutorSpec, default_workers, describe
from .jobs import Job

log = logging.getLogger("depthlab")


@contextlib.contextmanager
def open_runner(
    spec: ExecutorSpec,
    device: str,
    store: str | os.PathLike | Store | None,
    group: int,
    *,
    data: Dataset | None = None,
    data_dir=None,
    sequential: bool = False,
    log_line: Callable[[str], None] | None = None,
) -> Iterator[tuple[Store | None, TrialRunner | None]]:
    """Open the executor of ``spec`` (first: a cluster that cannot be reached leaves no store
    behind), then the store (a path, opened and closed here; an open `Store`, left open; or
    None: nothing recorded); yield ``(store, runner)``, the runner recording into the store and
    keeping its trials' checkpoints beside it (``<store>-checkpoints``, removed when empty).

    ``group``: how many trials one fused group could hold (1: none fuse). With ``sequential``
    (commands whose classic output streams each epoch) the runner is None when the spec asks
    for one local worker, nothing fuses and the threads are the sweep's: the caller runs its
    trials itself, on `SWEEP_THREADS` threads as a runner would. ``log_line`` (default: the
    ``depthlab`` logger) hears where trials run and the runner's own lines."""
    spec.validate()
    say = log_line or log.info
    fuse = spec.fuse_for(device, group)
    if sequential and _runs_here_unfused(spec, device, fuse):
        with opened_store(store) as opened, thread_scope(SWEEP_THREADS):
            yield opened, None
        return
    with spec.create(device) as pool, opened_store(store) as opened:
        checkpoints = checkpoint_dir_for(opened.path) if opened is not None else None
        say(f"trials run on {describe(spec, pool)}" + (f", up to {fuse} fused" if fuse > 1 else ""))
        yield (
            opened,
            TrialRunner(
                pool, opened, data, data_dir=data_dir, fuse=fuse, log=say, checkpoint_dir=checkpoints
            ),
        )
    if checkpoints is not None:
        remove_if_empty(checkpoints)


def _runs_here_unfused(spec: ExecutorSpec, device: str, fuse: int) -> bool:
    return (
        spec.kind == "local"
        and (spec.workers or default_workers(device)) == 1
        and fuse <= 1
        and (spec.threads or SWEEP_THREADS) == SWEEP_THREADS
    )


@contextlib.contextmanager
def opened_store(store: str | os.PathLike | Store | None) -> Iterator[Store | None]:
    """``store`` as an open `Store`: a path opened here and closed on the way out, an open one
    (or None) as it is, left open for its owner."""
    if store is None or isinstance(store, Store):
        yield store
        return
    with Store(store) as opened:
        yield opened


def run_trials(
    trials: Sequence[Job],
    store: Store | None = None,
    data: Dataset | None = None,
    *,
    spec: ExecutorSpec | None = None,
    data_dir=None,
) -> list[RunResult]:
    """Run trials with an executor built from ``spec`` (default: local, automatic workers) and
    return their results in order. The convenience form of `TrialRunner.run`."""
    device = trials[0].config.device if trials else "auto"
    with open_runner(
        spec or ExecutorSpec(),
        device,
        store,
        len(trials),
        data=data,
        data_dir=data_dir,
        log_line=lambda line: None,
    ) as (_, runner):
        return runner.run(trials)
