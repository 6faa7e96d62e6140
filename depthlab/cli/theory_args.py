"""The arguments ``depthlab theory`` and ``depthlab phase`` (its MLP grid in `depthlab.cli.phase_mlp`
too) share: the activation, sigma_b2, and the sigma_w2, width and depth lists, each checked to
one line."""

from __future__ import annotations

import math

from ..grids import parse_grid
from ..errors import ConfigError
from ..theory import MAX_VARIANCE


ACTS = ("tanh", "relu", "elu")
MAX_GRID = 100_000  # a sigma_w2 range with more points is a typo (and would not fit in memory)


def parse_float_grid(text: str, what: str = "--sigma-w2", noun: str = "sigma_w2 value", *,
                     upper: float = MAX_VARIANCE) -> list[float]:
    """A sigma_w2 (or width) grid (`parse_grid`), in the order given, each value at most ``upper``."""
    return list(parse_grid(text, what, noun, max_count=MAX_GRID, upper=upper))


def parse_int_list(text: str, what: str) -> list[int]:
    """Positive whole numbers (`parse_grid`: ``--depths 6,12,24``), sorted, each once."""
    return sorted(set(parse_grid(text, what, "depth", whole=True)))


def check_theory_args(act: str, sigma_b2: float) -> None:
    """The mean-field activation and bias variance, refused in one line when they have no theory."""
    if act not in ACTS:
        raise ConfigError(f"unknown activation {act!r}; choose one of: {', '.join(ACTS)}")
    if not math.isfinite(sigma_b2) or sigma_b2 < 0:
        raise ConfigError(f"--sigma-b2 must be a finite non-negative number, got {sigma_b2}")
    if sigma_b2 > MAX_VARIANCE:
        raise ConfigError(f"--sigma-b2 must be at most {MAX_VARIANCE:g}, got {sigma_b2:g}")
