"""Wording: one convention in everything a person reads. Errors are percentages (JSON and CSV
keep fractions, and say so); epochs are zero-based epoch numbers in the classic line and
"after 0.75 epochs" (epochs of training done) for fractional evaluation points."""

from __future__ import annotations


def classic_line(epoch: int, epochs: int, train_error: float, test_error: float, label: str = "Test") -> str:
    """The epoch line ``train``, the experiments and the CIFAR recipes print:
    ``Epoch 003/010, Train Error 1.23% || Test Error 2.34%`` (errors as percentages)."""
    return f"Epoch {epoch:03d}/{epochs:03d}, Train Error {100 * train_error:.2f}% || {label} Error {100 * test_error:.2f}%"


def percent(fraction: float | None, digits: int = 1) -> str:
    """``0.185`` -> ``18.5%``; None (or NaN) -> ``-``."""
    if fraction is None or fraction != fraction:
        return "-"
    return f"{100 * fraction:.{digits}f}%"


def epochs_words(epochs: float, preposition: str = "after") -> str:
    """``after 0.75 epochs``, ``after 1 epoch``, ``in 3 epochs``: training done, as a count."""
    value = f"{epochs:.2f}".rstrip("0").rstrip(".") if epochs != int(epochs) else f"{int(epochs)}"
    return f"{preposition} {value} epoch{'' if value == '1' else 's'}"
