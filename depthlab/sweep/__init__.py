"""Running many trials: jobs, executors (in-process, worker processes, Ray) and the driver that
alone reads and writes the store."""

from .driver import TrialRunner
from .executors import ExecutorSpec, default_workers
from .jobs import Job
from .runner import run_recorded, stored_result
from .session import open_runner, run_trials

__all__ = [
    "ExecutorSpec",
    "Job",
    "TrialRunner",
    "default_workers",
    "open_runner",
    "run_recorded",
    "run_trials",
    "stored_result",
]
