"""What a run produces: its metrics at each epoch and evaluation point, and its result."""

from .record import MONITOR_STOP, Checkpoint, EpochMetrics, Monitor, RunResult, RunStatus


__all__ = ["MONITOR_STOP", "Checkpoint", "EpochMetrics", "Monitor", "RunResult", "RunStatus"]
