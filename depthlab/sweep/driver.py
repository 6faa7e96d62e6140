"""Executors: run many trials (a sweep, a frontier) at once, locally or on a Ray cluster.

A `Job` is a `TrainConfig` plus how to record it. `TrialRunner` is the driver: it looks each
trial up in the store first (a resumed sweep skips finished trials exactly as a sequential one
does), hands the rest to an executor, and records every result in the store as it comes back.
Only the driver touches SQLite; workers train and return `RunResult`s, as
`depthlab.sweep.runner.run_recorded`, so stored and fresh results look the same to callers.

Executors (`ExecutorSpec` builds them from the CLI flags):

- ``local`` with one worker: trials run one at a time in this process, on the loaded data.
- ``local`` with N workers: N spawned processes of ``threads`` torch threads each. The dataset
  goes to the workers through shared memory (torch's multiprocessing pickler), so no worker
  reads it from disk at all, let alone once per trial.
- ``ray``: every trial (or fused group) is a Ray task with its CPU/GPU share
  (``gpus_per_trial=0.25`` packs four on a GPU). The driver ships each dataset once through
  the object store, so cluster nodes need depthlab but not the data files.

With ``fuse=G`` (G > 1) the trials of one request that differ only in lr, seed, momentum,
weight decay or schedule are trained G at a time as one network (`depthlab.engine.fused`).

Searches that run several independent sequential procedures (one per model, say) call
`TrialRunner.run_concurrently`: each procedure runs in its own thread and blocks in
`TrialRunner.run`, while the calling thread serves all of them (store reads and writes stay in
that one thread), so trials of different procedures run at the same time.

Processes that share a store share its trials: a trial another live process is training is
waited for and read back, never trained twice (`depthlab.sweep.sharing.SharedWork`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import heapq
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from ..data.dataset import Dataset
from ..data.registry import load_dataset
from ..engine.checkpoints import checkpoint_progress, discard_checkpoint
from ..engine.config import SWEEP_THREADS, TrainConfig
from ..errors import InfrastructureError, UserError
from ..records.record import RunResult, RunStatus
from ..store.sqlite import Store
from .executors import Executor
from .jobs import Job, T
from .requests import Request, describe_args, forward, one_line, takes_checkpoints, training_cost
from .runner import stored_config, stored_result
from .sharing import SharedWork


class TrialRunner(SharedWork):
    """The driver: store look-ups and writes, dispatch to an executor, results in trial order.

    ``data`` is used for trials on its dataset; other datasets are loaded once (from
    ``data_dir``) when a trial needs them. The runner does not close the executor or store.

    With ``checkpoint_dir`` (and an executor whose workers can write there) every group in
    flight saves its state to a file in that folder at each evaluation point, named from its trials'
    config hashes; the same group dispatched again (a resumed sweep) continues from it, and the
    file is deleted once the group's results are in the store. A sweep killed at any moment
    then loses at most the steps since the last evaluation of each trial that was running.

    Every trial computes on ``threads`` torch threads (default: the executor's
    ``trial_threads``, 1): a config that does not pin its threads is pinned to it, so the
    stored numbers do not depend on the executor or the number of workers.

    An executor error (a worker killed, a node gone) is not a verdict: the group is tried again
    ``retries`` times, ``backoff`` seconds after the first failure and twice as long after each
    next one, then the run stops with an `InfrastructureError` and the group's trials stay
    unrecorded (the next run of the same command trains them)."""

    retries = 2
    backoff = 1.0

    def __init__(
        self,
        executor: Executor,
        store: Store | None = None,
        data: Dataset | None = None,
        *,
        data_dir=None,
        fuse: int = 1,
        log: Callable[[str], None] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        threads: int | None = None,
    ):
        self.threads = threads or getattr(executor, "trial_threads", None) or SWEEP_THREADS
        self.executor, self.store, self.data_dir, self.fuse, self.log = executor, store, data_dir, fuse, log
        self.checkpoint_dir = (
            os.path.abspath(checkpoint_dir)
            if checkpoint_dir is not None and takes_checkpoints(executor)
            else None
        )
        self._datasets: dict[str, Dataset] = {data.name: data} if data is not None else {}
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._inflight: dict[str, list[tuple[Request, int, Job]]] = {}
        self._waiting: list[tuple[float, int, list[tuple[Job, str]], int]] = []  # a heap: cheapest first
        self._tiebreak = itertools.count()  # equal costs go first come, first served
        self._running = 0  # groups handed to the executor and not back yet
        self._elsewhere: dict[str, Job] = {}  # trials another live process has claimed: awaited
        self._looked = 0.0  # when `_elsewhere` was last looked at
        self._driver = threading.get_ident()
        self.trials_run = 0
        self.trials_reused = 0
        self.trials_cancelled = 0

    def use_dataset(self, data: Dataset) -> None:
        """Train trials on ``data`` (already loaded) whenever they ask for its name."""
        self._datasets[data.name] = data

    @property
    def parallelism(self) -> int:
        """How many trials can usefully run at once (for searches that speculate)."""
        return self.executor.slots * self.fuse

    # -- the public API ---------------------------------------------------------------------

    def run(
        self, trials: Sequence[Job], on_result: Callable[[int, RunResult], None] | None = None
    ) -> list[RunResult]:
        """Run ``trials`` (concurrently, as far as the executor allows) and return their results
        in the order given, each with ``reused`` telling whether it came from the store.
        ``on_result(index, result)`` is called (in the driver thread) as each one is in."""
        trials = [self._pinned(t) for t in trials]
        if not trials:
            return []
        if threading.get_ident() != self._driver:  # called from a `run_concurrently` task
            return self._ask_driver("request", (trials, on_result))
        request = self._start(trials, on_result)
        self._serve(request.future.done)
        return request.future.result()

    def stored(self, configs: Sequence[TrainConfig]) -> list[RunResult | None]:
        """The stored results of ``configs`` (None where not finished), without training any:
        a search asks before a wave to avoid launching trials that can no longer matter."""
        configs = [self._pinned_config(c) for c in configs]
        if threading.get_ident() != self._driver:  # only the driver thread touches the store
            return self._ask_driver("lookup", configs)
        return [self._stored(c) for c in configs]

    def _pinned_config(self, config: TrainConfig) -> TrainConfig:
        return config if config.threads is not None else dataclasses.replace(config, threads=self.threads)

    def _pinned(self, job: Job) -> Job:
        config = self._pinned_config(job.config)
        return job if config is job.config else dataclasses.replace(job, config=config)

    def _ask_driver(self, kind: str, payload):
        """From a `run_concurrently` task: have the driver thread's event loop serve ``kind``."""
        reply: Future = Future()
        self._events.put((kind, payload, reply))
        return reply.result()

    def run_concurrently(self, tasks: Sequence[Callable[[], T]]) -> list[T]:
        """Run each task (a sequential procedure that calls `run`) in its own thread and serve
        their trials from this thread; return the tasks' results in order."""
        if threading.get_ident() != self._driver:
            raise RuntimeError("run_concurrently must be called from the driver thread")
        outcomes: list[tuple[bool, object] | None] = [None] * len(tasks)

        def body(i: int, task: Callable[[], T]) -> None:
            try:
                outcomes[i] = (True, task())
            except BaseException as exc:
                outcomes[i] = (False, exc)
            self._events.put(("task-done", i, None))

        for i, task in enumerate(tasks):
            threading.Thread(target=body, args=(i, task), name=f"depthlab-search-{i}", daemon=True).start()
        self._serve(lambda: all(o is not None for o in outcomes))
        for ok, value in outcomes:  # type: ignore[misc]
            if not ok:
                raise value  # type: ignore[misc]
        return [value for _, value in outcomes]  # type: ignore[misc]

    # -- the event loop (driver thread only) ------------------------------------------------

    def _serve(self, finished: Callable[[], bool]) -> None:
        while not finished():
            if self._elsewhere and time.monotonic() - self._looked >= self.claim_poll:
                self._look_elsewhere()
                continue
            try:
                kind, payload, extra = self._events.get(timeout=self.claim_poll if self._elsewhere else None)
            except queue.Empty:
                continue
            if kind == "request":
                try:
                    request = self._start(*payload)
                except BaseException as exc:  # a bad config: the asking task raises it
                    extra.set_exception(exc)
                    continue
                request.future.add_done_callback(lambda f, reply=extra: forward(f, reply))
            elif kind == "lookup":
                try:
                    extra.set_result(self.stored(payload))
                except BaseException as exc:
                    extra.set_exception(exc)
            elif kind == "done":
                self._running -= 1
                self._finish(payload, extra)
                self._dispatch()
            elif kind == "retry":
                self._enqueue(*payload)
                self._dispatch()

    def _stored(self, config: TrainConfig) -> RunResult | None:
        """The stored result of ``config`` if it was made on the data it would train on now."""
        return stored_result(
            self.store,
            config.hash(),
            dataset=config.dataset,
            fingerprint=lambda: self._dataset(config.dataset).fingerprint(),
        )

    def _dataset(self, name: str) -> Dataset:
        if name not in self._datasets:
            self._datasets[name] = load_dataset(name, self.data_dir)
        return self._datasets[name]

    def _start(self, trials: list[Job], on_result: Callable[[int, RunResult], None] | None = None) -> Request:
        request = Request(len(trials), on_result)
        # Everything that can fail (a bad config, missing data) before any trial is in flight,
        # so that a failure strands none of them.
        for trial in trials:
            trial.config.validate()
        keys = [t.config.hash() for t in trials]
        stored = [self._stored(t.config) if t.reuse else None for t in trials]
        for trial, found in zip(trials, stored):
            if found is None:
                self._dataset(trial.config.dataset)  # loaded once per dataset, only if something trains
        # Groups are formed from every trial of the request, stored ones included, and only
        # then thinned to what must train: a function of the request alone, never of which
        # other requests arrived first, nor of what a killed run already stored.
        for group in self._pieces(self._groups([(i, t, k) for i, (t, k) in enumerate(zip(trials, keys))])):
            fresh: list[tuple[Job, str]] = []
            for i, trial, key in group:
                found = stored[i]
                if found is not None:
                    self.trials_reused += 1
                    request.fill(i, found)
                    continue
                if key in self._inflight:  # the same config is already running: share its result
                    self._inflight[key].append((request, i, trial))
                    continue
                self._inflight[key] = [(request, i, trial)]
                fresh.append((trial, key))
            if fresh:
                self._enqueue(fresh, attempt=1)
        self._dispatch()
        return request

    def _groups(self, items: list[tuple[int, Job, str]]) -> list[list[tuple[int, Job, str]]]:
        """Single trials, or with ``fuse`` > 1 chunks of up to ``fuse`` fusable trials."""
        if self.fuse <= 1:
            return [[item] for item in items]
        from ..engine.fused_layers import fusion_key

        by_key: dict[str, list] = {}
        singles = []
        for item in items:
            # extras measure one trained network: a fused group has none to hand them
            key = fusion_key(item[1].config) if item[1].extras is None else None
            if key is None:
                singles.append([item])
            else:
                by_key.setdefault(key, []).append(item)
        groups = []
        for members in by_key.values():
            groups += [members[j : j + self.fuse] for j in range(0, len(members), self.fuse)]
        return groups + singles

    def _pieces(self, groups: list[list]) -> list[list]:
        """Halve the largest group (the first of equals) while the request has fewer groups than
        the executor has slots: a request that alone would leave slots idle (one search's wave,
        the last search of a sweep) runs as half groups side by side, which on CPU finish long
        before one fused group on one slot (BENCHMARKS.md). It depends on the request and the
        number of slots, never on timing (a fused group's members are cancelled by rank and
        computed as one net, so another split would store other trials and other bits). A group
        with a checkpoint is resumed as it was: never split, and halves with checkpoints of
        their own (a run with more slots split it) are split again."""

        def saved(g: list) -> bool:
            return os.path.exists(self._checkpoint_path([(t, k) for _, t, k in g]) or "")

        def resumed(g: list) -> list[list]:
            half = (len(g) + 1) // 2
            if len(g) < 2 or saved(g) or not (saved(g[:half]) or saved(g[half:])):
                return [g]
            return resumed(g[:half]) + resumed(g[half:])

        pieces = [p for g in groups for p in resumed(list(g))]
        while self.executor.dispatch_limit is not None and len(pieces) < self.executor.slots:
            # Ray (no dispatch limit) sees every group and queues them itself
            splittable = [j for j, g in enumerate(pieces) if len(g) >= 2 and not saved(g)]
            if not splittable:
                break
            j = max(splittable, key=lambda j: (len(pieces[j]), -j))
            half = (len(pieces[j]) + 1) // 2
            pieces[j : j + 1] = [pieces[j][:half], pieces[j][half:]]
        return pieces

    def _enqueue(self, group: list[tuple[Job, str]], attempt: int) -> None:
        """Queue a group for `_dispatch`."""
        heapq.heappush(
            self._waiting, (training_cost([t.config for t, _ in group]), next(self._tiebreak), group, attempt)
        )

    def _dispatch(self) -> None:
        """Hand the cheapest waiting groups to the executor while it has free slots. Holding the
        rest back here (not in the executor's own first-come queue) lets a short search, or a
        shallow depth, overtake the deep trials of another search: every search's answer is
        the same in any order, and the short ones are not left waiting behind the long ones."""
        limit = self.executor.dispatch_limit
        while self._waiting and (limit is None or self._running < limit):
            _, _, group, attempt = heapq.heappop(self._waiting)
            group = self._claimed(
                group
            )  # what another process trains meanwhile is awaited, not trained twice
            if not group:
                continue
            data = self._datasets[group[0][0].config.dataset]  # loaded by `_start`
            checkpoint = self._checkpoint_path(group)
            if checkpoint is not None and self.log is not None and os.path.exists(checkpoint):
                progress = checkpoint_progress(checkpoint)
                if progress is not None:
                    head = group[0][0].config
                    self.log(
                        f"resuming {head.model} {describe_args(head.model_args)}({len(group)} trial(s)) from its "
                        f"checkpoint: {progress[0]:g} of {head.epochs} epochs saved"
                    )
            try:
                future = (
                    self.executor.submit([t for t, _ in group], data, checkpoint=checkpoint)
                    if checkpoint is not None
                    else self.executor.submit([t for t, _ in group], data)
                )
            except Exception as exc:  # it could not even be handed over: an executor error like any other
                future = Future()
                future.set_exception(exc)
            self._running += 1
            future.add_done_callback(lambda f, g=group, a=attempt: self._events.put(("done", (g, a), f)))

    def _checkpoint_path(self, group: list[tuple[Job, str]]) -> str | None:
        """The group's checkpoint file: the same trials in the same order, the same file."""
        if self.checkpoint_dir is None:
            return None
        name = hashlib.sha256("\n".join(key for _, key in group).encode()).hexdigest()[:20]
        return os.path.join(self.checkpoint_dir, f"{name}.pt")

    def _finish(self, submitted: tuple[list[tuple[Job, str]], int], future: Future) -> None:
        group, attempt = submitted
        from ..engine.fused_layers import NotFusable

        try:
            results = future.result()
        except NotFusable as exc:  # its fused net failed the probe: the members go as single trials
            if self.log is not None:
                self.log(
                    f"{group[0][0].config.model}: {len(group)} trial(s) do not fuse ({exc}); "
                    "they run one by one"
                )
            for item in group:
                self._enqueue([item], attempt)
            return
        except UserError as exc:  # bad input found by a worker: stop, as a sequential run would
            if self.store is not None:
                self.store.release([key for _, key in group])
            for _, key in group:
                for request, _, _ in self._inflight.pop(key, []):
                    if not request.future.done():
                        request.future.set_exception(exc)
            raise
        except Exception as exc:
            # Training errors come back as failed results; an exception here comes from the
            # executor (a worker killed for memory, a node gone, a trial that cannot be shipped):
            # never a verdict. Try again after a pause, then stop with the trials unrecorded.
            if attempt <= self.retries:
                delay = self.backoff * 2 ** (attempt - 1)
                if self.log is not None:
                    self.log(
                        f"executor error ({one_line(exc)}); retrying {len(group)} trial(s) in {delay:g} s"
                    )
                timer = threading.Timer(
                    delay, self._events.put, args=(("retry", (group, attempt + 1), None),)
                )
                timer.daemon = True
                timer.start()
                return
            head = group[0][0].config
            error = InfrastructureError(
                f"the executor failed {attempt} times running {head.model} {describe_args(head.model_args)}"
                f"({len(group)} trial(s)): {one_line(exc)}; nothing was recorded for them, and finished trials "
                "are kept: run the same command again to continue"
            )
            self._abandon(error)
            raise error from exc
        self._keep_results(group, results)

    def _keep_results(self, group: list[tuple[Job, str]], results: list) -> None:
        """A finished group's results: each verdict recorded in the store (a cancelled trial, moot,
        is released instead, for a later run to retrain), each waiting request given its own copy,
        and the group's checkpoint, which has served, deleted."""
        for (trial, key), result in zip(group, results):
            result.reused = False
            if (
                result.status == RunStatus.CANCELLED
            ):  # moot, cut short: no verdict to keep (a later run retrains it)
                self.trials_cancelled += 1
                if self.store is not None:
                    self.store.release([key])
            else:
                if self.store is not None:
                    data = self._datasets[trial.config.dataset]
                    self.store.record(
                        stored_config(trial.config, data, trial.monitor),
                        key,
                        result.to_dict(),
                        kind=trial.kind,
                        experiment=trial.experiment,
                    )
                self.trials_run += 1
            for request, index, _ in self._inflight.pop(key):
                request.fill(index, copy.copy(result))  # each request its own record
        checkpoint = self._checkpoint_path(group)
        if checkpoint is not None:  # the results are stored: it has served
            try:
                discard_checkpoint(checkpoint)
            except OSError as exc:  # a checkpoint is only ever a saving of time
                if self.log is not None:
                    self.log(f"could not delete checkpoint {checkpoint}: {exc}")

    def _abandon(self, error: BaseException) -> None:
        """Stop: every request still waiting gets ``error`` (its search thread raises it), and
        the claims of trials that will not be trained are given up."""
        if self.store is not None:
            self.store.release(list(self._inflight))
        self._waiting.clear()
        self._elsewhere.clear()
        for entries in self._inflight.values():
            for request, _, _ in entries:
                if not request.future.done():
                    request.future.set_exception(error)
        self._inflight.clear()
