"""Depth scales: how many layers a signal survives. xi = -1 / log(chi_c) is the correlation depth
(how many layers two inputs stay distinguishable; infinite at criticality), and Schoenholz et al.
(2017) found nets train up to about 6 xi (`TRAINABLE_DEPTH_FACTOR`). `mean_field_point` gathers
everything the theory says about one (activation, sigma_w2, sigma_b2)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from .maps import activation, c_star, chi_1, chi_c, q_star

TRAINABLE_DEPTH_FACTOR = 6.0


@dataclass(frozen=True)
class MeanFieldPoint:
    """The mean-field quantities of one (activation, sigma_w2, sigma_b2).

    ``q_star`` is ``inf`` when the length map has no finite fixed point (phase ``unbounded``),
    where c*, chi_c, xi and the predicted depth are undefined (``None``). ``xi`` and
    ``max_depth`` are ``inf`` at criticality."""

    sigma_w2: float
    sigma_b2: float
    q_star: float
    chi_1: float
    c_star: float | None
    chi_c: float | None
    xi: float | None
    max_depth: float | None
    phase: str  # ordered | critical | chaotic | unbounded

    def to_json(self) -> dict:
        """A JSON-safe dict: infinities become ``null`` (JSON has no infinity)."""
        out = {}
        for key, value in dataclasses.asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        return out


def correlation_depth(chi: float) -> float:
    """xi = -1 / log(chi) for chi in (0, 1]; inf within 1e-9 of chi = 1 (the quadrature cannot tell)."""
    if chi >= 1.0 - 1e-9:
        return math.inf
    if chi <= 0.0:
        return 0.0
    return -1.0 / math.log(chi)


def mean_field_point(
    act: str, sigma_w2: float, sigma_b2: float, *, critical_tol: float = 1e-9
) -> MeanFieldPoint:
    """Everything the theory says about one (act, sigma_w2, sigma_b2)."""
    activation(act)
    q = q_star(act, sigma_w2, sigma_b2)
    slope = chi_1(act, sigma_w2, sigma_b2, q)
    if math.isinf(q):
        return MeanFieldPoint(sigma_w2, sigma_b2, q, slope, None, None, None, None, "unbounded")
    c = c_star(act, sigma_w2, sigma_b2, q)
    chi = slope if c == 1.0 else chi_c(act, c, q, sigma_w2)
    xi = correlation_depth(chi)
    if abs(slope - 1.0) <= critical_tol:
        phase = "critical"
    else:
        phase = "ordered" if slope < 1.0 else "chaotic"
    return MeanFieldPoint(sigma_w2, sigma_b2, q, slope, c, chi, xi, TRAINABLE_DEPTH_FACTOR * xi, phase)


def correlation_depths(act: str, sigma_b2: float, sigma_w2s: Sequence[float]) -> list[float | None]:
    """xi_c per sigma_w2 (inf at criticality, None where the theory has no fixed point)."""
    return [mean_field_point(act, float(s), sigma_b2).xi for s in sigma_w2s]
