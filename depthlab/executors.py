"""Executors: run many trials (a sweep, a frontier) at once, locally or on a Ray cluster.

A `Trial` is a `TrainConfig` plus how to record it. `TrialRunner` is the driver: it looks each
trial up in the store first (a resumed sweep skips finished trials exactly as a sequential one
does), hands the rest to an executor, and records every result in the store as it comes back.
Only the driver touches SQLite; workers train and return result dicts with the schema of
`depthlab.runner.run_recorded`, so stored and fresh results look the same to callers.

Executors (`ExecutorSpec` builds them from the CLI flags):

- ``local`` with one worker: trials run one at a time in this process, on the loaded data.
- ``local`` with N workers: N spawned processes of ``threads`` torch threads each. The dataset
  goes to the workers through shared memory (torch's multiprocessing pickler), so no worker
  reads it from disk at all, let alone once per trial.
- ``ray``: every trial (or fused group) is a Ray task with its CPU/GPU share
  (``gpus_per_trial=0.25`` packs four on a GPU). The driver ships each dataset once through
  the object store, so cluster nodes need depthlab but not the data files.

With ``fuse=G`` (G > 1) the trials of one request that differ only in lr, seed, momentum,
weight decay or schedule are trained G at a time as one network (`depthlab.fused`).

Searches that run several independent sequential procedures (one per model, say) call
`TrialRunner.run_concurrently`: each procedure runs in its own thread and blocks in
`TrialRunner.run`, while the calling thread serves all of them (store reads and writes stay in
that one thread), so trials of different procedures run at the same time.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import multiprocessing
import os
import queue
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import torch

from .data import Dataset, load_dataset
from .errors import ConfigError, UserError
from .runner import run_recorded, stored_result
from .store import Store
from .train import (CANCELLED, CHECKPOINT_FORMAT, Monitor, TrainConfig, checkpoint_progress, checkpoint_resumable,
                    discard_checkpoint, resolve_device)

EXECUTORS = ("local", "ray")
T = TypeVar("T")


@dataclass
class Trial:
    """One training run of a sweep. ``monitor`` may stop it early; for process and Ray
    executors it must be picklable (a module-level function or a small dataclass).

    ``rank`` marks trials that are alternatives in an order (the lrs of one frontier wave):
    when ranked trials train as one fused group and a member's monitor stops it, the members
    of a larger rank are cancelled (`depthlab.fused.train_fused`), their result
    ``status == "cancelled"`` and not recorded in the store."""

    config: TrainConfig
    kind: str = "train"
    experiment: str | None = None
    monitor: Monitor | None = None
    reuse: bool = True   # return the stored result of a finished identical config
    extras: str | None = None  # a measure of the trained network, by name (`depthlab.experiments.EXTRAS`)
    rank: int | None = None


# ---------------------------------------------------------------------------------------------
# What a worker does (module level: process pools and Ray import it by name)


def run_group(trials: Sequence[Trial], data: Dataset, checkpoint: str | None = None) -> list[dict]:
    """Train ``trials`` on ``data`` without a store and return their result dicts: one trial
    through `run_recorded`, several as one fused network (`depthlab.fused.train_fused`).

    With ``checkpoint`` (a file path) the group saves its state there at every evaluation point (best
    effort: a failed write is a warning) and continues from a checkpoint it finds there, so a
    killed sweep loses at most the steps since each trial's last evaluation. A file there that cannot be
    read, belongs to other configs or was made under other stopping criteria is discarded."""
    from .fused import FUSED_CHECKPOINT_FORMAT, train_fused

    fmt = CHECKPOINT_FORMAT if len(trials) == 1 else FUSED_CHECKPOINT_FORMAT
    if checkpoint is not None and os.path.exists(checkpoint) and not checkpoint_resumable(
            checkpoint, fmt, [t.config.hash() for t in trials], [t.monitor for t in trials]):
        discard_checkpoint(checkpoint)
    if len(trials) == 1:
        from .experiments import extras_for

        t = trials[0]
        options = (dict(checkpoint_path=checkpoint, resume=True, checkpoint_required=False)
                   if checkpoint is not None else None)
        out = run_recorded(t.config, None, data, kind=t.kind, experiment=t.experiment, monitor=t.monitor,
                           reuse=False, train_options=options, extras=extras_for(t.extras, t.config, data))
        out.pop("reused", None)
        return [out]
    # With a checkpoint a group whose fused net fails its probe is handed back (NotFusable): run
    # member by member here it would save nothing, and a kill would lose every member's work.
    return train_fused([t.config for t in trials], data, monitors=[t.monitor for t in trials],
                       checkpoint_path=checkpoint, checkpoint_required=False,
                       member_by_member=checkpoint is None, ranks=[t.rank for t in trials])


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


def _ray_run_group(trials: Sequence[Trial], data_ref: list, checkpoint: str | None = None) -> list[dict]:
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


# ---------------------------------------------------------------------------------------------
# Executors


class Executor:
    """Runs groups of trials somewhere; `submit` returns a future of the group's result list."""

    name = "executor"
    slots = 1  # groups that run at once
    checkpoints = False  # whether `submit` takes ``checkpoint=`` (a path its workers can write)

    @property
    def dispatch_limit(self) -> int | None:
        """Groups a `TrialRunner` hands over at once (it keeps the rest, cheapest first); None:
        everything at once, for an executor that should see the whole demand."""
        return self.slots

    def submit(self, trials: Sequence[Trial], data: Dataset, checkpoint: str | None = None) -> Future:
        """Start ``trials``; with ``checkpoint`` (executors with ``checkpoints``) they save their
        state to that file at every evaluation point and resume from it (`run_group`)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcessExecutor(Executor):
    """One trial at a time in a background thread of this process, on the driver's data."""

    name = "local"
    checkpoints = True

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, trials, data, checkpoint=None):
        future: Future = Future()
        self._jobs.put((list(trials), data, checkpoint, future))
        if self._thread is None:
            # A daemon thread: Ctrl-C in the driver ends the process without waiting for a trial.
            self._thread = threading.Thread(target=self._work, name="depthlab-trials", daemon=True)
            self._thread.start()
        return future

    def _work(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            trials, data, checkpoint, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(run_group(trials, data, checkpoint))
            except BaseException as exc:  # handed to the driver, which decides
                future.set_exception(exc)

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None


class ProcessExecutor(Executor):
    """``workers`` spawned processes with ``threads`` torch threads each (spawn, not fork: a
    forked copy of a process that already ran torch's thread pool can deadlock)."""

    name = "local"
    checkpoints = True

    def __init__(self, workers: int, threads: int = 1):
        self.slots, self.threads = workers, threads
        self._pool: ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.slots, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_process_worker, initargs=(self.threads, os.getpid()))
        return self._pool

    def submit(self, trials, data, checkpoint=None):
        try:
            return self._ensure_pool().submit(run_group, list(trials), data, checkpoint)
        except BrokenProcessPool:  # a worker died (killed for memory, say): start a fresh pool
            self._pool = None
            return self._ensure_pool().submit(run_group, list(trials), data, checkpoint)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and self._pool is not None:
            # Interrupted (Ctrl-C) or failed: do not wait for the running trials to finish.
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self.close()


class RayExecutor(Executor):
    """Each group a Ray task with ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs.

    ``address`` None starts a private local Ray instance (``num_cpus`` CPUs, default all);
    ``auto`` or ``ray://host:port`` joins an existing cluster. The local depthlab package is
    shipped to the workers (Ray ``py_modules``), so the cluster runs the driver's code."""

    name = "ray"

    def __init__(self, address: str | None = None, *, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
                 num_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'depthlab[ray]'") from None
        import depthlab

        self.ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            runtime_env = {"py_modules": [os.path.dirname(depthlab.__file__)]}
            kwargs = dict(address=address, runtime_env=runtime_env, log_to_driver=False,
                          include_dashboard=False)
            if address is None and num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        self.cpus_per_trial, self.gpus_per_trial = cpus_per_trial, gpus_per_trial
        # Checkpoint files only where every worker sees the driver's disk: a private local
        # instance (with address None, ray.init joins $RAY_ADDRESS's cluster when it is set).
        self.checkpoints = self._started_here and address is None and not os.environ.get("RAY_ADDRESS")
        resources = ray.cluster_resources()
        by_cpu = int(resources.get("CPU", 1) // max(cpus_per_trial, 1e-9))
        by_gpu = int(resources.get("GPU", 0) // gpus_per_trial) if gpus_per_trial > 0 else by_cpu
        self.slots = max(1, min(by_cpu, by_gpu))
        self._task = ray.remote(_ray_run_group).options(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial,
                                                        max_retries=0)
        self._data_refs: dict[int, object] = {}

    @property
    def dispatch_limit(self) -> int | None:
        # Ray gets every group at once: its scheduler queues them, and an autoscaling cluster
        # (or one whose nodes join later) only grows when it sees the pending demand.
        return None

    def submit(self, trials, data, checkpoint=None):
        for t in trials:  # a monitor from a script or test module: ship its code, workers cannot import it
            module = sys.modules.get(getattr(t.monitor, "__module__", None) or "")
            if module is not None and not module.__name__.startswith(("depthlab", "builtins")):
                self.ray.cloudpickle.register_pickle_by_value(module)
        ref = self._data_refs.get(id(data))
        if ref is None:
            ref = self._data_refs[id(data)] = (self.ray.put(data), data)  # keep data alive: id() stays unique
        return self._task.remote(list(trials), [ref[0]], checkpoint).future()

    def close(self) -> None:
        self._data_refs.clear()
        if self._started_here and self.ray.is_initialized():
            self.ray.shutdown()


# ---------------------------------------------------------------------------------------------
# Choosing an executor from flags


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_workers(device: str = "auto") -> int:
    """Workers that pay off here. On CPU, one single-threaded process per core: the stages
    nets are narrow (4-16 channels), so a second thread speeds one trial up far less than a
    second trial running beside it (BENCHMARKS.md, "Scaling out"). On an accelerator one
    process feeds it; fused training (``fuse``) is the way to fill it."""
    return usable_cores() if resolve_device(device).type == "cpu" else 1


@dataclass(frozen=True)
class ExecutorSpec:
    """The executor flags, validated before anything is opened; `create` builds the executor."""

    kind: str = "local"
    workers: int | None = None        # local: None = `default_workers`
    threads: int | None = None        # torch threads per local worker: None = cores // workers
    ray_address: str | None = None    # ray: None = a private local instance
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    fuse: int | None = 1              # > 1: fuse up to this many lr/seed variants; None = `fuse_for`

    def validate(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.kind!r}; choose one of: {', '.join(EXECUTORS)}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ConfigError(f"--workers must be a positive integer or auto, got {self.workers}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"--threads must be a positive integer, got {self.threads}")
        if self.fuse is not None and (not isinstance(self.fuse, int) or self.fuse < 1):
            raise ConfigError(f"--fuse must be a positive integer or auto, got {self.fuse}")
        for name in ("cpus_per_trial", "gpus_per_trial"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be a non-negative number, got {value}")
        if self.cpus_per_trial <= 0:
            raise ConfigError("--cpus-per-trial must be positive")
        if self.kind == "local":
            if self.ray_address is not None:
                raise ConfigError("--ray-address needs --executor ray")
            if self.gpus_per_trial:
                raise ConfigError("--gpus-per-trial needs --executor ray (locally every worker sees the GPU)")
        else:
            if self.workers is not None:
                raise ConfigError("--workers is for --executor local; Ray sizes itself from the cluster "
                                  "(use --cpus-per-trial / --gpus-per-trial)")
            if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
                raise ConfigError("--gpus-per-trial above 1 must be a whole number")
            address = self.ray_address
            if address is not None and address != "auto" and not (address.startswith("ray://") or ":" in address):
                raise ConfigError(f"bad --ray-address {address!r}: expected auto, ray://HOST:PORT or HOST:PORT")
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                raise ConfigError("--executor ray needs Ray: pip install 'depthlab[ray]'")

    def fuse_for(self, device: str, group: int) -> int:
        """The fused group size: as given, or with ``auto`` (None) the whole ``group`` (say an lr
        grid) where trials run on a GPU, whose one small net leaves it mostly idle, and 1 on CPU,
        where fusing a grid that the search would mostly cut short does not pay (BENCHMARKS.md)."""
        if self.fuse is not None:
            return self.fuse
        on_gpu = self.gpus_per_trial > 0 if self.kind == "ray" else resolve_device(device).type == "cuda"
        return max(1, group) if on_gpu else 1

    def create(self, device: str = "auto") -> Executor:
        self.validate()
        if self.kind == "ray":
            return RayExecutor(self.ray_address, cpus_per_trial=self.cpus_per_trial,
                               gpus_per_trial=self.gpus_per_trial)
        workers = self.workers or default_workers(device)
        if workers == 1:
            return InProcessExecutor(self.threads)
        return ProcessExecutor(workers, self.threads or max(1, usable_cores() // workers))


# ---------------------------------------------------------------------------------------------
# The driver


class _Request:
    """The trials of one `TrialRunner.run` call and the slots their results go to."""

    def __init__(self, n: int, on_result: Callable[[int, dict], None] | None = None):
        self.results: list[dict | None] = [None] * n
        self.missing = n
        self.future: Future = Future()
        self.on_result = on_result

    def fill(self, index: int, result: dict) -> None:
        self.results[index] = result
        self.missing -= 1
        if self.on_result is not None:
            self.on_result(index, result)
        if self.missing == 0 and not self.future.done():
            self.future.set_result(self.results)


class TrialRunner:
    """The driver: store look-ups and writes, dispatch to an executor, results in trial order.

    ``data`` is used for trials on its dataset; other datasets are loaded once (from
    ``data_dir``) when a trial needs them. The runner does not close the executor or store.

    With ``checkpoint_dir`` (and an executor whose workers can write there) every group in
    flight saves its state to a file in that folder at each evaluation point, named from its trials'
    config hashes; the same group dispatched again (a resumed sweep) continues from it, and the
    file is deleted once the group's results are in the store. A sweep killed at any moment
    then loses at most the steps since the last evaluation of each trial that was running."""

    def __init__(self, executor: Executor, store: Store | None = None, data: Dataset | None = None, *,
                 data_dir=None, fuse: int = 1, log: Callable[[str], None] | None = None,
                 checkpoint_dir: str | os.PathLike | None = None):
        self.executor, self.store, self.data_dir, self.fuse, self.log = executor, store, data_dir, fuse, log
        self.checkpoint_dir = (os.path.abspath(checkpoint_dir)
                               if checkpoint_dir is not None and _takes_checkpoints(executor) else None)
        self._datasets: dict[str, Dataset] = {data.name: data} if data is not None else {}
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._inflight: dict[str, list[tuple[_Request, int, Trial]]] = {}
        self._waiting: list[tuple[float, int, list[tuple[Trial, str]], int]] = []  # a heap: cheapest first
        self._tiebreak = itertools.count()  # equal costs go first come, first served
        self._running = 0  # groups handed to the executor and not back yet
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

    def run(self, trials: Sequence[Trial], on_result: Callable[[int, dict], None] | None = None) -> list[dict]:
        """Run ``trials`` (concurrently, as far as the executor allows) and return their result
        dicts in the order given, each with ``"reused"`` telling whether it came from the store.
        ``on_result(index, result)`` is called (in the driver thread) as each one is in."""
        trials = list(trials)
        if not trials:
            return []
        if threading.get_ident() != self._driver:  # called from a `run_concurrently` task
            return self._ask_driver("request", (trials, on_result))
        request = self._start(trials, on_result)
        self._serve(request.future.done)
        return request.future.result()

    def stored(self, configs: Sequence[TrainConfig]) -> list[dict | None]:
        """The stored results of ``configs`` (None where not finished), without training any:
        a search asks before a wave to avoid launching trials that can no longer matter."""
        configs = list(configs)
        if threading.get_ident() != self._driver:  # only the driver thread touches the store
            return self._ask_driver("lookup", configs)
        return [stored_result(self.store, c.hash()) for c in configs]

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
            kind, payload, extra = self._events.get()
            if kind == "request":
                try:
                    request = self._start(*payload)
                except BaseException as exc:  # a bad config: the asking task raises it
                    extra.set_exception(exc)
                    continue
                request.future.add_done_callback(lambda f, reply=extra: _forward(f, reply))
            elif kind == "lookup":
                try:
                    extra.set_result(self.stored(payload))
                except BaseException as exc:
                    extra.set_exception(exc)
            elif kind == "done":
                self._running -= 1
                self._finish(payload, extra)
                self._dispatch()

    def _dataset(self, name: str) -> Dataset:
        if name not in self._datasets:
            self._datasets[name] = load_dataset(name, self.data_dir)
        return self._datasets[name]

    def _start(self, trials: list[Trial], on_result: Callable[[int, dict], None] | None = None) -> _Request:
        request = _Request(len(trials), on_result)
        # Everything that can fail (a bad config, missing data) before any trial is in flight,
        # so that a failure strands none of them.
        for trial in trials:
            trial.config.validate()
        keys = [t.config.hash() for t in trials]
        stored = [stored_result(self.store, key) if t.reuse else None for t, key in zip(trials, keys)]
        for trial, found in zip(trials, stored):
            if found is None:
                self._dataset(trial.config.dataset)  # loaded once per dataset, only if something trains
        fresh: list[tuple[int, Trial, str]] = []
        for i, (trial, key, found) in enumerate(zip(trials, keys, stored)):
            if found is not None:
                self.trials_reused += 1
                request.fill(i, found)
                continue
            if key in self._inflight:  # the same config is already running: share its result
                self._inflight[key].append((request, i, trial))
                continue
            self._inflight[key] = [(request, i, trial)]
            fresh.append((i, trial, key))
        for group in self._groups(fresh):
            self._enqueue([(t, k) for _, t, k in group], attempt=1)
        self._dispatch()
        return request

    def _groups(self, fresh: list[tuple[int, Trial, str]]) -> list[list[tuple[int, Trial, str]]]:
        """Single trials, or with ``fuse`` > 1 chunks of up to ``fuse`` fusable trials."""
        if self.fuse <= 1:
            return [[item] for item in fresh]
        from .fused import fusion_key

        by_key: dict[str, list] = {}
        singles = []
        for item in fresh:
            # extras measure one trained network: a fused group has none to hand them
            key = fusion_key(item[1].config) if item[1].extras is None else None
            if key is None:
                singles.append([item])
            else:
                by_key.setdefault(key, []).append(item)
        groups = []
        for items in by_key.values():
            groups += [items[j:j + self.fuse] for j in range(0, len(items), self.fuse)]
        return groups + singles

    def _enqueue(self, group: list[tuple[Trial, str]], attempt: int) -> None:
        """Queue a group for `_dispatch`."""
        heapq.heappush(self._waiting, (training_cost([t.config for t, _ in group]), next(self._tiebreak), group, attempt))

    def _dispatch(self) -> None:
        """Hand the cheapest waiting groups to the executor while it has free slots. Holding the
        rest back here (not in the executor's own first-come queue) lets a short search, or a
        shallow depth, overtake the deep trials of another search: every search's answer is
        the same in any order, and the short ones are not left waiting behind the long ones."""
        limit = self.executor.dispatch_limit
        while self._waiting and (limit is None or self._running < limit):
            _, _, group, attempt = heapq.heappop(self._waiting)
            if limit is not None and self._split(group, idle=limit - self._running - len(self._waiting) - 1):
                half = (len(group) + 1) // 2
                self._enqueue(group[:half], attempt)
                self._enqueue(group[half:], attempt)
                continue
            data = self._datasets[group[0][0].config.dataset]  # loaded by `_start`
            checkpoint = self._checkpoint_path(group)
            if checkpoint is not None and self.log is not None and os.path.exists(checkpoint):
                progress = checkpoint_progress(checkpoint)
                if progress is not None:
                    head = group[0][0].config
                    self.log(f"resuming {head.model} {_describe_args(head.model_args)}({len(group)} trial(s)) from its "
                             f"checkpoint: {progress[0]:g} of {head.epochs} epochs saved")
            try:
                future = (self.executor.submit([t for t, _ in group], data, checkpoint=checkpoint)
                          if checkpoint is not None else self.executor.submit([t for t, _ in group], data))
            except Exception as exc:  # it could not even be handed over: an executor error like any other
                future = Future()
                future.set_exception(exc)
            self._running += 1
            future.add_done_callback(lambda f, g=group, a=attempt: self._events.put(("done", (g, a), f)))

    def _split(self, group: list[tuple[Trial, str]], idle: int) -> bool:
        """Whether to run ``group`` as two halves: when slots would otherwise stay idle (the last
        search of a sweep, say), two half groups side by side finish long before one fused
        group on one slot (on CPU a fused group of 8 costs about 4.4 lone members: BENCHMARKS.md). A
        group with a checkpoint of its own is resumed whole; one whose halves have checkpoints
        (an earlier run split it) is split again so they are resumed."""
        if len(group) < 2:
            return False
        whole = self._checkpoint_path(group)
        if whole is not None:
            if os.path.exists(whole):
                return False
            half = (len(group) + 1) // 2
            if any(os.path.exists(self._checkpoint_path(part) or "") for part in (group[:half], group[half:])):
                return True
        return idle > 0

    def _checkpoint_path(self, group: list[tuple[Trial, str]]) -> str | None:
        """The group's checkpoint file: the same trials in the same order, the same file."""
        if self.checkpoint_dir is None:
            return None
        name = hashlib.sha256("\n".join(key for _, key in group).encode()).hexdigest()[:20]
        return os.path.join(self.checkpoint_dir, f"{name}.pt")

    def _finish(self, submitted: tuple[list[tuple[Trial, str]], int], future: Future) -> None:
        group, attempt = submitted
        from .fused import NotFusable

        try:
            results = future.result()
        except NotFusable as exc:  # its fused net failed the probe: the members go as single trials
            if self.log is not None:
                self.log(f"{group[0][0].config.model}: {len(group)} trial(s) do not fuse ({exc}); "
                         "they run one by one")
            for item in group:
                self._enqueue([item], attempt)
            return
        except UserError as exc:  # bad input found by a worker: stop, as a sequential run would
            for _, key in group:
                for request, _, _ in self._inflight.pop(key, []):
                    if not request.future.done():
                        request.future.set_exception(exc)
            raise
        except Exception as exc:
            # Training errors come back as failed results; an exception here comes from the
            # executor (a worker killed for memory, a node gone, a trial that cannot be shipped).
            # Try once more, then record the trials as failed (a later run tries them again).
            if attempt == 1:
                if self.log is not None:
                    self.log(f"executor error ({type(exc).__name__}: {exc}); retrying {len(group)} trial(s)")
                self._enqueue(group, attempt=2)  # dispatched by the event loop
                return
            reason = f"executor error: {type(exc).__name__}: {exc}"[:500]
            results = [{"config": t.config.canonical(), "status": "failed", "epochs": [], "checkpoints": [],
                        "seconds": 0.0, "reason": reason, "stopped_early": False, "test_error": None,
                        "parameters": 0, "device": t.config.device, "threads": None} for t, _ in group]
        for (trial, key), result in zip(group, results):
            result = {k: v for k, v in result.items() if k != "reused"}
            if result["status"] == CANCELLED:  # moot, cut short: no verdict to keep (a later run retrains it)
                self.trials_cancelled += 1
            else:
                if self.store is not None:
                    self.store.record(trial.config.canonical(), key, result, kind=trial.kind,
                                      experiment=trial.experiment)
                self.trials_run += 1
            for request, index, _ in self._inflight.pop(key):
                request.fill(index, {**result, "reused": False})
        checkpoint = self._checkpoint_path(group)
        if checkpoint is not None:  # the results are stored: it has served
            try:
                discard_checkpoint(checkpoint)
            except OSError as exc:  # a checkpoint is only ever a saving of time
                if self.log is not None:
                    self.log(f"could not delete checkpoint {checkpoint}: {exc}")


def _describe_args(model_args: dict | None) -> str:
    return "".join(f"{k} {v} " for k, v in (model_args or {}).items())


def _takes_checkpoints(executor: Executor) -> bool:
    """Whether ``executor`` says its workers can write checkpoints and its ``submit`` (possibly
    overridden by a subclass written before checkpoints existed) takes them."""
    import inspect

    try:
        takes = "checkpoint" in inspect.signature(executor.submit).parameters
    except (TypeError, ValueError):
        takes = False
    return bool(executor.checkpoints) and takes


def training_cost(configs: Sequence[TrainConfig]) -> float:
    """A rough cost of training ``configs`` (epochs x images x depth), for dispatch order only."""
    def depth(c: TrainConfig) -> int:
        d = (c.model_args or {}).get("depth")
        return d if isinstance(d, int) and d > 0 else 1

    return float(sum(c.epochs * (c.train_size or 60_000) * depth(c) for c in configs))


def _forward(source: Future, target: Future) -> None:
    if source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


def run_trials(trials: Sequence[Trial], store: Store | None = None, data: Dataset | None = None, *,
               spec: ExecutorSpec | None = None, data_dir=None) -> list[dict]:
    """Run trials with an executor built from ``spec`` (default: local, automatic workers) and
    return their result dicts in order. The convenience form of `TrialRunner.run`."""
    spec = spec or ExecutorSpec()
    device = trials[0].config.device if trials else "auto"
    with spec.create(device) as executor:
        return TrialRunner(executor, store, data, data_dir=data_dir, fuse=spec.fuse_for(device, len(trials))).run(trials)


def describe(spec: ExecutorSpec, executor: Executor) -> str:
    """One line for logs: where trials run."""
    if isinstance(executor, RayExecutor):
        return (f"ray ({spec.ray_address or 'a local instance'}): {executor.slots} trial(s) at once, "
                f"{spec.cpus_per_trial:g} CPU"
                f"{f' + {spec.gpus_per_trial:g} GPU' if spec.gpus_per_trial else ''} each")
    if isinstance(executor, ProcessExecutor):
        return f"local: {executor.slots} worker processes x {executor.threads} thread(s)"
    return f"local: in this process, {torch.get_num_threads()} thread(s)"


__all__ = ["EXECUTORS", "Executor", "ExecutorSpec", "InProcessExecutor", "ProcessExecutor", "RayExecutor",
           "Trial", "TrialRunner", "default_workers", "describe", "run_group", "run_trials", "usable_cores"]
