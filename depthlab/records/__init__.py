"""What a run produces: its metrics at each epoch and evaluation point, and its result."""

from .record import CANCELLED, MONITOR_STOP, Checkpoint, EpochMetrics, Monitor, RunResult


__all__ = ["CANCELLED", "MONITOR_STOP", "Checkpoint", "EpochMetrics", "Monitor", "RunResult"]
