"""The bookkeeping of the driver's requests (`depthlab.sweep.driver.TrialRunner`): a request's
result slots, futures forwarded between threads, and the words and cost estimates it logs and
orders trials by, and whether an executor takes checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future

from ..engine.config import TrainConfig
from ..records.record import RunResult
from .executors import Executor


class Request:
    """The trials of one `TrialRunner.run` call and the slots their results go to."""

    def __init__(self, n: int, on_result: Callable[[int, RunResult], None] | None = None):
        self.results: list[RunResult | None] = [None] * n
        self.missing = n
        self.future: Future = Future()
        self.on_result = on_result

    def fill(self, index: int, result: RunResult) -> None:
        self.results[index] = result
        self.missing -= 1
        if self.on_result is not None:
            self.on_result(index, result)
        if self.missing == 0 and not self.future.done():
            self.future.set_result(self.results)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def describe_args(model_args: dict | None) -> str:
    return "".join(f"{k} {v} " for k, v in (model_args or {}).items())


def training_cost(configs: Sequence[TrainConfig]) -> float:
    """A rough cost of training ``configs`` (epochs x images x depth), for dispatch order only."""

    def depth(c: TrainConfig) -> int:
        d = (c.model_args or {}).get("depth")
        return d if isinstance(d, int) and d > 0 else 1

    return float(sum(c.epochs * (c.train_size or 60_000) * depth(c) for c in configs))


def forward(source: Future, target: Future) -> None:
    if source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


def takes_checkpoints(executor: Executor) -> bool:
    """Whether ``executor`` says its workers can write checkpoints and its ``submit`` (possibly
    overridden by a subclass written before checkpoints existed) takes them."""
    import inspect

    try:
        takes = "checkpoint" in inspect.signature(executor.submit).parameters
    except (TypeError, ValueError):
        takes = False
    return bool(executor.checkpoints) and takes
