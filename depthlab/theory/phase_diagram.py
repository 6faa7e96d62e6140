"""The theory's phase diagram over sigma_w2: one `MeanFieldPoint` per grid value (`phase_grid`, for
tables, JSON and the phase-diagram plot), and its boundary, the order-to-chaos transition
chi_1 = 1 (`critical_sigma_w2`; `critical_init`: the critical point for a given depth)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from .depth_scales import MeanFieldPoint, mean_field_point
from .maps import activation, check_variances, chi_1, gaussian_expectation


def phase_grid(act: str, sigma_b2: float, sigma_w2s: Sequence[float]) -> list[MeanFieldPoint]:
    """`mean_field_point` over a grid of sigma_w2 values."""
    return [mean_field_point(act, float(w), sigma_b2) for w in sigma_w2s]


def default_sigma_w2_grid(lo: float = 0.5, hi: float = 4.0, points: int = 71) -> list[float]:
    """An evenly spaced sigma_w2 grid (default 0.5 ... 4.0 in steps of 0.05)."""
    if not (0 < lo < hi) or points < 2:
        raise ConfigError(
            f"bad sigma_w2 grid: need 0 < lo < hi and at least 2 points, got {lo}, {hi}, {points}"
        )
    return [round(v, 10) for v in np.linspace(lo, hi, points)]


def critical_sigma_w2(act: str, sigma_b2: float, *, lo: float = 1e-2, hi: float = 100.0) -> float | None:
    """The sigma_w2 at which chi_1(q*) = 1 for a given sigma_b2 (the order-to-chaos
    transition), or None when there is none in [lo, hi]. A log-spaced scan brackets the first
    crossing, then bisection refines it to ~1e-10."""
    check_variances(1.0, sigma_b2)
    activation(act)
    grid = np.geomspace(lo, hi, 60)
    f = [chi_1(act, float(w), sigma_b2) - 1.0 for w in grid]
    for i in range(len(grid) - 1):
        if f[i] == 0.0:
            return float(grid[i])
        if f[i] < 0.0 < f[i + 1]:
            a, b = float(grid[i]), float(grid[i + 1])
            for _ in range(80):
                mid = 0.5 * (a + b)
                if chi_1(act, mid, sigma_b2) < 1.0:
                    a = mid
                else:
                    b = mid
                if b - a < 1e-11:
                    break
            return 0.5 * (a + b)
    return None


def critical_init(act: str, depth: int) -> tuple[float, float]:
    """(sigma_w2, sigma_b2) at criticality with q* = 1/depth, as in Xiao et al. (2018).

    sigma_w2 = 1 / E[phi'(sqrt(q*) z)^2] makes chi_1 = 1; sigma_b2 then makes q* the fixed
    point of the length map (clipped at 0 for activations where it would be negative)."""
    if act == "relu":
        return 2.0, 0.0
    phi, dphi = activation(act)
    q = 1.0 / max(depth, 1)
    sigma_w2 = 1.0 / gaussian_expectation(lambda z: dphi(math.sqrt(q) * z) ** 2)
    sigma_b2 = q - sigma_w2 * gaussian_expectation(lambda z: phi(math.sqrt(q) * z) ** 2)
    return sigma_w2, max(sigma_b2, 0.0)
