"""Learning-rate schedules parsed from strings (`constant`, `2@0.07,3@0.01`, `multistep:...`, `cosine`, `warmup:E+...`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule as a function of fractional epoch.

    Grammar (parts joined with ``+``; an optional ``warmup:E`` or ``hold:E@LR`` part comes first):
    ``constant`` | ``E@LR,E@LR,...`` (piecewise, absolute lrs) | ``multistep:M1,M2[:GAMMA]`` |
    ``cosine`` | ``warmup:E`` (linear warm-up from 0 over E epochs) | ``hold:E@LR`` (a constant
    warm-up lr for the first E epochs, fractions allowed: He et al.'s resnet110 recipe)."""

    kind: str = "constant"
    segments: tuple[tuple[float, float], ...] = ()  # piecewise (epochs, lr)
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup: float = 0.0
    hold: float = 0.0  # hold:E@LR: lr `hold_lr` for the first `hold` epochs
    hold_lr: float = 0.0
    text: str = "constant"

    def lr_at(self, epoch: float, base_lr: float, total_epochs: int) -> float:
        if epoch < self.hold:
            return self.hold_lr
        if self.kind == "piecewise":
            lr, end = self.segments[-1][1], 0.0
            for length, seg_lr in self.segments:
                end += length
                if epoch < end:
                    lr = seg_lr
                    break
        elif self.kind == "multistep":
            lr = base_lr * self.gamma ** sum(epoch >= m for m in self.milestones)
        elif self.kind == "cosine":
            lr = 0.5 * base_lr * (1 + math.cos(math.pi * min(epoch / max(total_epochs, 1e-12), 1.0)))
        else:
            lr = base_lr
        if self.warmup > 0 and epoch < self.warmup:
            lr *= epoch / self.warmup
        return lr


_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


def _positive(text: str, what: str, schedule: str) -> float:
    if not re.fullmatch(_NUM, text):
        raise ConfigError(f"malformed schedule {schedule!r}: {what} {text!r} is not a number")
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise ConfigError(f"malformed schedule {schedule!r}: {what} must be positive")
    return value


def parse_schedule(text: str) -> Schedule:
    """Parse a schedule string; a malformed one raises `ConfigError` naming the problem."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(
            "malformed schedule '': expected e.g. constant, 2@0.07,3@0.01, multistep:100,150, cosine"
        )
    parts = text.strip().split("+")
    warmup, hold = 0.0, {}
    if parts[0].startswith("warmup:"):
        warmup = _positive(parts[0][len("warmup:") :], "warm-up epochs", text)
        parts = parts[1:] or ["constant"]
    elif parts[0].startswith("hold:"):
        epochs, at, lr = parts[0][len("hold:") :].partition("@")
        if not at:
            raise ConfigError(f"malformed schedule {text!r}: expected hold:EPOCHS@LR, e.g. hold:1@0.01")
        hold = dict(
            hold=_positive(epochs, "hold epochs", text), hold_lr=_positive(lr, "hold learning rate", text)
        )
        parts = parts[1:] or ["constant"]
    if len(parts) != 1:
        raise ConfigError(f"malformed schedule {text!r}: at most one warm-up and one schedule")
    body = parts[0]
    if body == "constant":
        return Schedule("constant", warmup=warmup, text=text, **hold)
    if body == "cosine":
        return Schedule("cosine", warmup=warmup, text=text, **hold)
    if body.startswith("multistep:"):
        milestones, _, gamma = body[len("multistep:") :].partition(":")
        try:
            stones = tuple(int(m) for m in milestones.split(","))
        except ValueError:
            raise ConfigError(f"malformed schedule {text!r}: milestones must be whole epochs") from None
        if any(m <= 0 for m in stones) or list(stones) != sorted(set(stones)):
            raise ConfigError(f"malformed schedule {text!r}: milestones must be increasing positive epochs")
        g = _positive(gamma, "gamma", text) if gamma else 0.1
        return Schedule("multistep", milestones=stones, gamma=g, warmup=warmup, text=text, **hold)
    body = body[len("piecewise:") :] if body.startswith("piecewise:") else body
    segments = []
    for seg in body.split(","):
        epochs, at, lr = seg.partition("@")
        if not at:
            raise ConfigError(
                f"malformed schedule {text!r}: expected constant, cosine, multistep:M1,M2 "
                "or EPOCHS@LR,EPOCHS@LR (e.g. 2@0.07,3@0.01)"
            )
        segments.append((_positive(epochs, "epoch count", text), _positive(lr, "learning rate", text)))
    return Schedule("piecewise", segments=tuple(segments), warmup=warmup, text=text, **hold)
