"""One run as a result dict: what the store, the workers and the search exchange.

A run that raises (out of memory, a bug) becomes a ``failed`` result instead of stopping a
sweep; a `UserError` (the user's to fix) and interrupts still propagate."""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..data.dataset import Dataset
from ..errors import UserError
from ..records.record import Monitor
from .config import TrainConfig
from .device import resolve_device
from .loop import train


def failed_result(config: TrainConfig, seconds: float, exc: BaseException) -> dict:
    """The result of a run that raised ``exc`` after ``seconds``."""
    return {"config": config.canonical(), "status": "failed", "epochs": [], "checkpoints": [],
            "seconds": round(seconds, 3), "reason": f"{type(exc).__name__}: {exc}"[:500],
            "stopped_early": False, "test_error": None, "parameters": 0,
            "device": str(resolve_device(config.device)), "threads": torch.get_num_threads()}


def run_safely(config: TrainConfig, data: Dataset, *, monitor: Monitor | None = None,
               on_epoch: Callable | None = None, on_step=None, train_options: dict | None = None,
               extras: Callable | None = None, on_user_error: Callable[[dict], None] | None = None) -> dict:
    """Train ``config`` and return its result dict (``RunResult.to_dict()`` plus ``"checkpoints"``
    and, for a finished run with ``extras``, ``"extras": extras(model)``). An exception is
    returned as a failed result; a `UserError` is passed to ``on_user_error`` and re-raised."""
    started = time.perf_counter()
    try:
        result = train(config, data, monitor=monitor, on_epoch=on_epoch, on_step=on_step, **(train_options or {}))
        out = result.to_dict()
        out["checkpoints"] = [vars(c) for c in result.checkpoints]
        if extras is not None and result.status == "done":
            out["extras"] = extras(result.model)
        return out
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        out = failed_result(config, time.perf_counter() - started, exc)
        if isinstance(exc, UserError):
            if on_user_error is not None:
                on_user_error(out)
            raise
        return out
