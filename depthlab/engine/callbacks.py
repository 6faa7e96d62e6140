"""Callbacks that follow a run from outside the loop (`loop.LoopCallback` is the protocol; the
loop's own, which steer it, live beside it in `loop`).

`LambdaCallback` turns functions into hooks (Lightning's of the same name); `StepProgress`
moves a tqdm bar every step; `TensorBoardLog` writes each epoch's scalars for TensorBoard, the
one place its tags are chosen (``depthlab train/reproduce --tensorboard`` live,
``depthlab runs --tensorboard`` from a store). The store's own epoch rows are written by
`depthlab.sweep.runner.EpochRows`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..records.record import EpochMetrics
from .loop import HOOKS, EpochLoop, LoopCallback

# the epoch scalars TensorBoard shows, under these tags (prefixed by a run's label where several
# share a folder)
SCALARS = ("train_error", "test_error", "loss", "lr")


class LambdaCallback(LoopCallback):
    """Functions as hooks: ``LambdaCallback(on_epoch_metrics=lambda loop, i, m: seen.append(m))``;
    each keyword is a `LoopCallback` hook and takes its arguments."""

    def __init__(self, **hooks: Callable[..., Any]):
        unknown = sorted(set(hooks) - set(HOOKS))
        if unknown:
            raise TypeError(f"LambdaCallback: no hook {', '.join(unknown)} (hooks: {', '.join(HOOKS)})")
        for name, function in hooks.items():
            setattr(self, name, function)


class StepProgress(LoopCallback):
    """A tqdm bar (or anything with ``total`` and ``update``) moved one step per training step;
    its total is the run's steps, known once the data is split."""

    def __init__(self, bar):
        self.bar = bar

    def on_step_end(self, loop: EpochLoop, step: int) -> None:
        self.bar.total = loop.setup.steps_per_epoch * loop.setup.config.epochs
        self.bar.update(1)


def summary_writer_class():
    """torch's ``SummaryWriter``, imported on first use: TensorBoard is an optional extra, and a
    missing one is the user's to install (one line, exit 2)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:
        raise ConfigError(
            "--tensorboard needs the tensorboard extra: pip install 'depthlab[tensorboard]'"
        ) from None
    return SummaryWriter


class TensorBoardLog(LoopCallback):
    """Each epoch's `SCALARS` written to TensorBoard event files in ``folder`` (tags ``key``, or
    ``prefix/key`` where several runs share the folder: `for_run`), flushed at once, so that a
    TensorBoard watching the folder shows a run as it trains."""

    def __init__(self, folder: str | Path, prefix: str = "", writer=None):
        self.writer = summary_writer_class()(str(folder)) if writer is None else writer
        self.prefix = prefix

    def for_run(self, label: str) -> TensorBoardLog:
        """The same folder, this run's scalars tagged ``label/key``."""
        return TensorBoardLog("", prefix=label, writer=self.writer)

    def on_epoch_metrics(self, loop: EpochLoop, index: int, metrics: EpochMetrics) -> None:
        self.write_epoch(metrics.to_dict())

    def write_epoch(self, epoch: dict) -> None:
        """One epoch's scalars (a stored epoch row, or `EpochMetrics.to_dict`); a missing value is skipped."""
        for key in SCALARS:
            if isinstance(epoch.get(key), (int, float)):
                self.scalar(f"{self.prefix}/{key}" if self.prefix else key, epoch[key], epoch["epoch"])
        self.writer.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()
