"""What a run produces: per-epoch metrics, evaluation points and the run's result."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported on first use: `depthlab runs` reads records without it
    from torch import nn


class RunStatus(str, Enum):
    """A run's status. A str enum: stored values, JSON and comparisons with plain strings stay
    the strings they always were (``RunStatus.DONE == "done"``, ``f"{RunStatus.DONE}" == "done"``)."""

    DONE = "done"  # trained to its end (or stopped early by its monitor or patience)
    DIVERGED = "diverged"  # its loss went non-finite
    FAILED = "failed"  # it raised (out of memory, a bug): not a result, tried again
    RUNNING = "running"  # in the store: started, not finished
    # A fused member stopped because a member ranked before it met its monitor's criterion
    # (`depthlab.engine.fused.train_fused` ``ranks``): its verdict cannot matter; never stored.
    CANCELLED = "cancelled"

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
class EvaluationPoint:
    """The metrics at one evaluation point during training (a mid-epoch or end-of-epoch one):
    what a monitor sees and decides on. Training state saved to disk is a checkpoint
    (`depthlab.engine.checkpoints`); this is not one."""

    epoch: float  # fractional epochs completed
    train_error: float  # error over this epoch's batches so far (train mode)
    eval_error: float  # evaluation error now (eval mode)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


@dataclass
class RunResult:
    """The record of one run: what the trainer returns, workers send back, the driver and the
    search read, and the store keeps (as `to_dict`'s JSON; `from_dict` reads it back, records
    stored by earlier versions included). One type from the trainer to the store."""

    config: dict
    status: RunStatus
    epochs: list[EpochMetrics]
    seconds: float
    reason: str | None = None
    stopped_early: bool = False
    test_error: float | None = None  # final test error (after restoring best weights if any)
    parameters: int = 0
    device: str = "cpu"
    # torch intra-op threads when the run was made: CPU results depend on it bitwise
    threads: int | None = field(default_factory=_torch_threads)
    evaluation_points: list[EvaluationPoint] = field(
        default_factory=list
    )  # in order; stored as "checkpoints"
    extras: dict | None = None  # measures of the trained network (`depthlab.engine.extras`)
    fused: dict | None = None  # a fused group's member: {"members": G, "seconds": wall time}
    reused: bool = False  # read back from the store, not trained by this call (not stored)
    other: dict = field(default_factory=dict, repr=False)  # stored keys this version does not know, kept
    # the trained network, for notebooks: set by the call that trained it; None for a run read back from
    # the store (`reused`), which keeps metrics, not weights
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.status = RunStatus(self.status)

    @classmethod
    def failed(
        cls, config: dict, seconds: float, reason: str, *, device: str, threads: int | None
    ) -> RunResult:
        """A run that raised (or that its executor lost): no metrics, the reason."""
        return cls(config, RunStatus.FAILED, [], seconds, reason[:500], device=device, threads=threads)

    def __repr__(self) -> str:
        """One line: model, depth, status, epochs, final test error, time (``to_frame()``: every epoch)."""
        args = self.config.get("model_args") or {}
        depth = f" depth {args['depth']}" if "depth" in args else ""
        error = f", test error {100 * self.test_error:.2f}%" if self.test_error is not None else ""
        reused = ", read from the store" if self.reused else ""
        return (
            f"RunResult({self.config.get('model')}{depth}: {self.status.value}, {len(self.epochs)} epochs"
            f"{error}, {self.seconds:.1f} s{reused})"
        )

    def _repr_html_(self) -> str:
        """The epochs as a compact table, the one-line summary as its caption."""
        from ..report.tables import html_table
        from ..report.wording import percent

        rows = [
            [e.epoch, percent(e.train_error), percent(e.test_error), e.loss, e.seconds] for e in self.epochs
        ]
        return html_table(("epoch", "train error", "test error", "loss", "seconds"), rows, caption=repr(self))

    def to_frame(self):
        """One row per epoch: ``epoch``, ``train_error``, ``test_error`` (fractions), ``loss``, ``lr``, ``seconds``."""
        from ..report.tables import data_frame

        return data_frame(
            (e.to_dict() for e in self.epochs),
            ("epoch", "train_error", "test_error", "loss", "lr", "seconds"),
        )

    def to_dict(self) -> dict:
        """The JSON-able record the store keeps (``reused`` and the model are not part of it). The
        evaluation points go under the key ``checkpoints``, the key every stored record has."""
        d = {
            **self.other,
            "config": self.config,
            "status": self.status.value,
            "epochs": [e.to_dict() for e in self.epochs],
            "seconds": round(self.seconds, 3),
            "reason": self.reason,
            "stopped_early": self.stopped_early,
            "test_error": self.test_error,
            "parameters": self.parameters,
            "device": self.device,
            "threads": self.threads,
            "checkpoints": [vars(c) for c in self.evaluation_points],
        }
        if self.extras is not None:
            d["extras"] = self.extras
        if self.fused is not None:
            d["fused"] = self.fused
        return d

    @classmethod
    def from_dict(cls, d: dict, *, reused: bool | None = None) -> RunResult:
        """A record from `to_dict`'s JSON (or a stored one of an earlier version)."""
        known = {
            "config",
            "status",
            "epochs",
            "seconds",
            "reason",
            "stopped_early",
            "test_error",
            "parameters",
            "device",
            "threads",
            "checkpoints",
            "extras",
            "fused",
            "reused",
        }
        return cls(
            d.get("config") or {},
            RunStatus(d["status"]),
            [EpochMetrics(**e) for e in d.get("epochs") or []],
            float(d.get("seconds") or 0.0),
            d.get("reason"),
            bool(d.get("stopped_early", False)),
            d.get("test_error"),
            d.get("parameters") or 0,
            d.get("device") or "cpu",
            d.get("threads"),
            [EvaluationPoint(**c) for c in d.get("checkpoints") or []],
            d.get("extras"),
            d.get("fused"),
            bool(d.get("reused", False)) if reused is None else reused,
            {k: v for k, v in d.items() if k not in known},
        )


MONITOR_STOP = "monitor stopped the run"


class StopReason(str, Enum):
    """Why a monitor stopped a run, the run's stored ``reason``. A str enum, so the reason stored
    before there were several (`MONITOR_STOP`) is `StopReason.CRITERION` as it was.

    * ``CRITERION``: the run met its monitor's criterion (the frontier: it trains). A fused group
      cancels the members ranked after it (`depthlab.engine.loop.RankCancellation`).
    * ``PLATEAU``: its error was still near chance late in its budget
      (`depthlab.depth_frontier.criterion.PlateauStop`): it does not train. Nothing is cancelled:
      the members ranked after it may still train."""

    CRITERION = MONITOR_STOP
    PLATEAU = "plateau stop: the error was still near chance"

    __str__ = str.__str__
    __format__ = str.__format__


# A monitor sees each evaluation point and says whether to stop there: False/None (go on), True (stop:
# `StopReason.CRITERION`), or a `StopReason`.
Monitor = Callable[[EvaluationPoint], "bool | StopReason | None"]


def stop_reason(decision) -> StopReason | None:
    """A monitor's answer as the reason it stops the run, or None when it lets it go on."""
    if isinstance(decision, StopReason):
        return decision
    return StopReason.CRITERION if decision else None
