"""Executors: where jobs run (in this process, in worker processes, as Ray tasks), built from an
`ExecutorSpec` (the CLI flags)."""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import torch

from ..data.dataset import Dataset
from ..engine.config import SWEEP_THREADS
from ..engine.device import MAX_THREADS, resolve_device
from ..errors import ConfigError
from .jobs import Job, _init_process_worker, _ray_run_group, run_group

# The depthlab package folder, shipped to Ray workers (found from here: this module is depthlab/sweep/).
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXECUTORS = ("local", "ray")
MAX_WORKERS = 256  # local worker processes
MAX_FUSE = 256  # members of one fused network
MAX_CPUS_PER_TRIAL = 1024  # Ray resources one trial may ask for
MAX_GPUS_PER_TRIAL = 64


class Executor:
    """Runs groups of trials somewhere; `submit` returns a future of the group's result list."""

    name = "executor"
    slots = 1  # groups that run at once
    checkpoints = False  # whether `submit` takes ``checkpoint=`` (a path its workers can write)
    # torch threads every trial computes on, whatever the executor (`TrialRunner` pins each
    # trial's config to it): the executor decides only how many trials run at once
    trial_threads = SWEEP_THREADS

    @property
    def dispatch_limit(self) -> int | None:
        """Groups a `TrialRunner` hands over at once (it keeps the rest, cheapest first); None:
        everything at once, for an executor that should see the whole demand."""
        return self.slots

    def submit(self, trials: Sequence[Job], data: Dataset, checkpoint: str | None = None) -> Future:
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
        self.trial_threads = threads or SWEEP_THREADS
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

    def __init__(self, workers: int, threads: int = SWEEP_THREADS):
        self.slots, self.threads = workers, threads
        self.trial_threads = threads
        self._pool: ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.slots,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_process_worker,
                initargs=(self.threads, os.getpid()),
            )
        return self._pool

    def submit(self, trials, data, checkpoint=None):
        data.share_memory_()  # here, not in the pool's feeder thread (see Dataset.share_memory_)
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

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        num_cpus: int | None = None,
    ):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'depthlab[ray]'") from None
        self.ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            runtime_env = {"py_modules": [PACKAGE_DIR]}
            kwargs = dict(
                address=address, runtime_env=runtime_env, log_to_driver=False, include_dashboard=False
            )
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
        self._task = ray.remote(_ray_run_group).options(
            num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0
        )
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
    workers: int | None = None  # local: None = `default_workers`
    threads: int | None = None  # torch threads per trial, whatever the executor: None = 1 (SWEEP_THREADS)
    ray_address: str | None = None  # ray: None = a private local instance
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    fuse: int | None = 1  # > 1: fuse up to this many lr/seed variants; None = `fuse_for`

    def validate(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.kind!r}; choose one of: {', '.join(EXECUTORS)}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ConfigError(f"--workers must be a positive integer or auto, got {self.workers}")
        if self.threads is not None and (
            not isinstance(self.threads, int) or not 1 <= self.threads <= MAX_THREADS
        ):
            raise ConfigError(f"--threads must be an integer from 1 to {MAX_THREADS}, got {self.threads}")
        if self.workers is not None and self.workers > MAX_WORKERS:
            raise ConfigError(f"--workers must be at most {MAX_WORKERS}, got {self.workers}")
        if self.fuse is not None and self.fuse > MAX_FUSE:
            raise ConfigError(f"--fuse must be at most {MAX_FUSE}, got {self.fuse}")
        if self.fuse is not None and (not isinstance(self.fuse, int) or self.fuse < 1):
            raise ConfigError(f"--fuse must be a positive integer or auto, got {self.fuse}")
        for name in ("cpus_per_trial", "gpus_per_trial"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be a non-negative number, got {value}")
        if self.cpus_per_trial <= 0:
            raise ConfigError("--cpus-per-trial must be positive")
        if self.cpus_per_trial > MAX_CPUS_PER_TRIAL or self.gpus_per_trial > MAX_GPUS_PER_TRIAL:
            raise ConfigError(
                f"--cpus-per-trial must be at most {MAX_CPUS_PER_TRIAL} and --gpus-per-trial at most "
                f"{MAX_GPUS_PER_TRIAL}, got {self.cpus_per_trial:g} and {self.gpus_per_trial:g}"
            )
        if self.kind == "local":
            if self.ray_address is not None:
                raise ConfigError("--ray-address needs --executor ray")
            if self.gpus_per_trial:
                raise ConfigError("--gpus-per-trial needs --executor ray (locally every worker sees the GPU)")
        else:
            if self.workers is not None:
                raise ConfigError(
                    "--workers is for --executor local; Ray sizes itself from the cluster "
                    "(use --cpus-per-trial / --gpus-per-trial)"
                )
            if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
                raise ConfigError("--gpus-per-trial above 1 must be a whole number")
            address = self.ray_address
            if (
                address is not None
                and address != "auto"
                and not (address.startswith("ray://") or ":" in address)
            ):
                raise ConfigError(
                    f"bad --ray-address {address!r}: expected auto, ray://HOST:PORT or HOST:PORT"
                )
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
        threads = self.threads or SWEEP_THREADS
        if self.kind == "ray":
            executor: Executor = RayExecutor(
                self.ray_address, cpus_per_trial=self.cpus_per_trial, gpus_per_trial=self.gpus_per_trial
            )
            executor.trial_threads = threads
            return executor
        workers = self.workers or default_workers(device)
        if workers == 1:
            return InProcessExecutor(threads)
        return ProcessExecutor(workers, threads)


def describe(spec: ExecutorSpec, executor: Executor) -> str:
    """One line for logs: where trials run."""
    if isinstance(executor, RayExecutor):
        return (
            f"ray ({spec.ray_address or 'a local instance'}): {executor.slots} trial(s) at once, "
            f"{spec.cpus_per_trial:g} CPU"
            f"{f' + {spec.gpus_per_trial:g} GPU' if spec.gpus_per_trial else ''} each"
        )
    if isinstance(executor, ProcessExecutor):
        return f"local: {executor.slots} worker processes x {executor.threads} thread(s)"
    return f"local: in this process, {executor.trial_threads} thread(s)"
