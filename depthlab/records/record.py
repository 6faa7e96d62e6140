"""What a run produces: per-epoch metrics, evaluation points and the run's result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn


@dataclass
class EpochMetrics:
    epoch: int
    train_error: float
    test_error: float
    loss: float
    lr: float
    seconds: float
    head_errors: list[float] | None = None  # with several heads: the eval error of each head

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["head_errors"] is None:
            d.pop("head_errors")
        return d


@dataclass
class Checkpoint:
    """What a mid-epoch or end-of-epoch monitor sees."""

    epoch: float            # fractional epochs completed
    train_error: float      # error over this epoch's batches so far (train mode)
    eval_error: float       # evaluation error now (eval mode)


@dataclass
class RunResult:
    config: dict
    status: str                          # done | diverged | failed (| cancelled: fused only)
    epochs: list[EpochMetrics]
    seconds: float
    reason: str | None = None
    stopped_early: bool = False
    test_error: float | None = None      # final test error (after restoring best weights if any)
    parameters: int = 0
    device: str = "cpu"
    # torch intra-op threads when the run was made: CPU results depend on it bitwise
    threads: int = field(default_factory=torch.get_num_threads)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)  # the trained network, for notebooks

    def to_dict(self) -> dict:
        return {"config": self.config, "status": self.status,
                "epochs": [e.to_dict() for e in self.epochs], "seconds": round(self.seconds, 3),
                "reason": self.reason, "stopped_early": self.stopped_early,
                "test_error": self.test_error, "parameters": self.parameters, "device": self.device,
                "threads": self.threads}


Monitor = Callable[[Checkpoint], bool]


MONITOR_STOP = "monitor stopped the run"


# A fused member stopped because a member ranked before it answered (`depthlab.engine.fused.train_fused`
# ``ranks``): its verdict cannot matter, and it is not a result (never recorded in a store).
CANCELLED = "cancelled"
