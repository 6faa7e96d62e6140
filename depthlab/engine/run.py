"""One run as a `RunResult`: what the store, the workers and the search exchange.

A run that raises (out of memory, a bug) becomes a ``failed`` result instead of stopping a
sweep; a `UserError` (the user's to fix) and interrupts still propagate."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from ..data.dataset import Dataset
from ..errors import UserError, users_code
from ..records.record import Monitor, RunResult, RunStatus
from .config import TrainConfig
from .device import resolve_device
from .loop import LoopCallback, train


def failed_result(config: TrainConfig, seconds: float, exc: BaseException) -> RunResult:
    """The result of a run that raised ``exc`` after ``seconds``."""
    return RunResult.failed(
        config.canonical(),
        seconds,
        f"{type(exc).__name__}: {exc}",
        device=str(resolve_device(config.device)),
        threads=torch.get_num_threads(),
    )


def run_safely(
    config: TrainConfig,
    data: Dataset,
    *,
    monitor: Monitor | None = None,
    callbacks: Sequence[LoopCallback] = (),
    train_options: dict | None = None,
    extras: Callable | None = None,
    on_user_error: Callable[[RunResult], None] | None = None,
    keep_model: bool = False,
) -> RunResult:
    """Train ``config`` and return its result (for a finished run with ``extras``, with
    ``extras=extras(model)``; without the model, so that it travels light from a worker, unless
    ``keep_model``: a caller in this process that hands the trained network back). An
    exception is returned as a failed result; a `UserError` is passed to ``on_user_error`` and
    re-raised, as is user code that tries to end the process (`errors.users_code`: ``sys.exit``
    in a factory's network or a callback)."""
    started = time.perf_counter()
    try:
        with users_code(f"training {config.model_name}", interrupts=False):  # its network, or a callback
            result = train(config, data, monitor=monitor, callbacks=callbacks, **(train_options or {}))
        if extras is not None and result.status == RunStatus.DONE:
            result.extras = extras(result.model)
        if not keep_model:
            result.model = None
        return result
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        out = failed_result(config, time.perf_counter() - started, exc)
        if isinstance(exc, UserError):
            if on_user_error is not None:
                on_user_error(out)
            raise
        return out
