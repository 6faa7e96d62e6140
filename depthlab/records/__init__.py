"""What a run produces: its metrics at each epoch and evaluation point, and its result."""

from .record import MONITOR_STOP, EpochMetrics, EvaluationPoint, Monitor, RunResult, RunStatus


__all__ = ["MONITOR_STOP", "EpochMetrics", "EvaluationPoint", "Monitor", "RunResult", "RunStatus"]
