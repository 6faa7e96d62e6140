"""What a run produces: per-epoch metrics, evaluation points and the run's result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

import torch
from torch import nn


class RunStatus(str, Enum):
    """A run's status. A str enum: stored values, JSON and comparisons with plain strings stay
    the strings they always were (``RunStatus.DONE == "done"``, ``f"{RunStatus.DONE}" == "done"``)."""

    DONE = "done"            # trained to its end (or stopped early by its monitor or patience)
    DIVERGED = "diverged"    # its loss went non-finite
    FAILED = "failed"        # it raised (out of memory, a bug): not a result, tried again
    RUNNING = "running"      # in the store: started, not finished
    CANCELLED = "cancelled"  # a fused member outranked by one that met its criterion: not a result

    __str__ = str.__str__
    __format__ = str.__format__


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
