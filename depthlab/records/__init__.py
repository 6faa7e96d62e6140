"""What a run produces: its metrics at each epoch and evaluation point, and its result."""

from .record import (
    MONITOR_STOP,
    EpochMetrics,
    EvaluationPoint,
    Monitor,
    RunResult,
    RunStatus,
    StopReason,
    stop_reason,
)

__all__ = [
    "MONITOR_STOP",
    "EpochMetrics",
    "EvaluationPoint",
    "Monitor",
    "RunResult",
    "RunStatus",
    "StopReason",
    "stop_reason",
]
