"""The points a frontier search tries at a depth: lrs, or (optimizer, lr) pairs when the optimizer
is an axis of the search (`OptimizerLr`), their order and how they are named."""

from __future__ import annotations

import itertools
from collections.abc import Sequence


class OptimizerLr(float):
    """A learning rate of a named optimizer: one point of a search over several optimizers.

    The search is written over lrs (an order, waves, neighbours, votes, formatting); this value
    is its lr wherever the search treats it as a number, and equal only to the same optimizer's
    same lr, so that sgd 0.01 and adam 0.01 are two cells. A search with SGD alone uses plain
    floats (`FrontierConfig.points`), which keeps its cells and outputs as they were before the
    optimizer became an axis (stored trials keep their hash either way: `trial_config`)."""

    __slots__ = ("optimizer",)

    def __new__(cls, optimizer: str, lr: float) -> OptimizerLr:  # noqa: PYI034 (a float subclass)
        point = super().__new__(cls, lr)
        point.optimizer = optimizer
        return point

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, OptimizerLr)
            and other.optimizer == self.optimizer
            and float(self) == float(other)
        )

    def __ne__(self, other) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((self.optimizer, float(self)))

    def __repr__(self) -> str:
        return f"{self.optimizer}={float(self)!r}"

    def __reduce__(self):
        return OptimizerLr, (self.optimizer, float(self))


def optimizer_of(lr, default: str | None = None) -> str | None:
    """The optimizer of a search point (an `OptimizerLr`), or ``default`` for a plain lr."""
    return getattr(lr, "optimizer", default)


def lr_words(lr) -> str:
    """A search point as the answer names it: ``lr 0.01``, or ``adam lr 0.0001``."""
    name = optimizer_of(lr)
    return f"{name + ' ' if name else ''}lr {lr:g}"


def lr_cell(lr):
    """A search point in a table cell: the lr itself, or ``adam 0.0001``."""
    name = optimizer_of(lr)
    return lr if name is None else f"{name} {lr:g}"


def plain_lr(lr):
    """A search point's lr as files and JSON hold it (its optimizer goes in its own field)."""
    return float(lr) if isinstance(lr, OptimizerLr) else lr


def point_key(lr) -> str:
    """A search point as a JSON key: ``0.01`` (SGD alone), else ``adam 0.0001``."""
    name = optimizer_of(lr)
    return f"{name + ' ' if name else ''}{lr:g}"


def lr_order(lrs: Sequence[float], start: float | None) -> list[float]:
    """``start`` (or the middle of the sorted grid), then its neighbours outward, smaller first.

    With several optimizers (``lrs`` are `OptimizerLr` points) each optimizer's grid is one block
    in that order: ``start``'s optimizer first, from ``start``, then the others as listed, each
    from the middle of its grid."""
    blocks: dict[str | None, list[float]] = {}
    for lr in lrs:
        blocks.setdefault(optimizer_of(lr), []).append(lr)
    if len(blocks) > 1:
        first = optimizer_of(start) if start in lrs else None
        names = sorted(blocks, key=lambda name: name != first)  # stable: the others keep their order
        return [lr for name in names for lr in _grid_order(blocks[name], start if name == first else None)]
    return _grid_order(lrs, start)


def _grid_order(lrs: Sequence[float], start: float | None) -> list[float]:
    """One grid's order (`lr_order`)."""
    lrs = sorted(lrs)
    i = len(lrs) // 2 if start is None or start not in lrs else lrs.index(start)
    order = [lrs[i]]
    for step in range(1, len(lrs)):
        for j in (i - step, i + step):
            if 0 <= j < len(lrs):
                order.append(lrs[j])
    return order


def one_optimizer(wave: list[float]) -> list[float]:
    """The head of ``wave`` that shares its first point's optimizer: a wave (a fused group when
    the runner fuses) never mixes optimizers."""
    name = optimizer_of(wave[0])
    return [lr for lr in itertools.takewhile(lambda lr: optimizer_of(lr) == name, wave)]
