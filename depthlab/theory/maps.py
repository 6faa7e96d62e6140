"""The mean-field maps of one layer and their fixed points (Poole et al. 2016; Schoenholz et al.
2017): the length map and q*, its slope chi_1, the correlation map and c*, its slope chi_c, with
Gaussian expectations by Gauss-Hermite quadrature. Pure functions of plain floats (numpy only),
so `depthlab.models.init` can take its critical init from here."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from ..errors import ConfigError

MAX_VARIANCE = 100.0  # sigma_w^2 and sigma_b^2: beyond it tanh's Gaussian integrals overflow


Array = np.ndarray

# An even number of nodes keeps z = 0 off the grid: ReLU's derivative jumps there, and with
# symmetric nodes and none at 0 the quadrature of step functions like 1[z > 0] is exact.
QUADRATURE_POINTS = 100
CORRELATION_POINTS = 64
# Fixed-point iteration: q above Q_UNBOUNDED means the length map has no finite fixed point
# (ReLU/ELU with sigma_w2 past 2); below Q_ZERO it has collapsed to q* = 0.
Q_UNBOUNDED = 1e12
Q_ZERO = 1e-30


@lru_cache(maxsize=8)
def _hermite(n: int) -> tuple[Array, Array]:
    x, w = np.polynomial.hermite.hermgauss(n)
    return x * math.sqrt(2.0), w / math.sqrt(math.pi)


def gaussian_expectation(f: Callable[[Array], Array], n: int = QUADRATURE_POINTS) -> float:
    """E[f(z)] for z ~ N(0, 1) by ``n``-point Gauss-Hermite quadrature."""
    z, w = _hermite(n)
    return float(np.sum(w * f(z)))


def gaussian_expectation_2d(f: Callable[[Array, Array], Array], n: int = CORRELATION_POINTS) -> float:
    """E[f(z1, z2)] for independent standard normals by a tensor-product Gauss-Hermite rule."""
    z, w = _hermite(n)
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    return float(np.sum(np.outer(w, w) * f(z1, z2)))


def _elu(x: Array) -> Array:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "tanh": (np.tanh, lambda x: 1.0 / np.cosh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "elu": (_elu, lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0)))),
}


def activation(name: str):
    """(phi, phi') as numpy functions for an activation name."""
    if name not in ACTIVATIONS:
        raise ConfigError(
            f"no mean-field theory for activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]


def check_variances(sigma_w2: float, sigma_b2: float) -> None:
    """Refuse (one `ConfigError` line) variances the maps are not defined for."""
    for name, value in (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite non-negative number, got {value}")
    if sigma_w2 <= 0:
        raise ConfigError(f"sigma_w2 must be positive, got {sigma_w2}")


# ---------------------------------------------------------------------------------------------
# Length map and its fixed point


def length_map(act: str, q: float, sigma_w2: float, sigma_b2: float) -> float:
    """One layer of the length map: sigma_w2 * E[phi(sqrt(q) z)^2] + sigma_b2."""
    phi, _ = activation(act)
    s = math.sqrt(q)
    return sigma_w2 * gaussian_expectation(lambda z: phi(s * z) ** 2) + sigma_b2


def q_star(
    act: str, sigma_w2: float, sigma_b2: float, *, q0: float = 1.0, tol: float = 1e-13, max_iter: int = 5000
) -> float:
    """The fixed point of the length map reached from ``q0``: ``0.0`` when q collapses,
    ``math.inf`` when it grows without bound (no finite fixed point).

    Away from criticality q converges geometrically. Still moving after ``max_iter`` layers
    means a power-law drift, which only happens towards 0 (tanh with sigma_b2 = 0 at
    sigma_w2 <= 1: q ~ 1/l) or without bound (ReLU at sigma_w2 = 2 with a bias: q grows by
    sigma_b2 per layer), so the direction of the last step decides between the two."""
    check_variances(sigma_w2, sigma_b2)
    q = q0
    for _ in range(max_iter):
        nxt = length_map(act, q, sigma_w2, sigma_b2)
        if nxt > Q_UNBOUNDED:
            return math.inf
        if nxt < Q_ZERO:
            return 0.0
        if abs(nxt - q) <= tol * q:
            return nxt
        q, previous = nxt, q
    return math.inf if q > previous else 0.0


def _q_eval(q: float) -> float:
    """q at which to evaluate slopes: the limits q* = 0 and q* = inf are taken at small/large q."""
    if q == 0.0:
        return 1e-12
    if math.isinf(q):
        return Q_UNBOUNDED
    return q


def chi_1(act: str, sigma_w2: float, sigma_b2: float, q: float | None = None) -> float:
    """sigma_w2 * E[phi'(sqrt(q) z)^2] at ``q`` (default: the fixed point q*). The factor by
    which the squared norm of a back-propagated gradient changes per layer."""
    _, dphi = activation(act)
    q = _q_eval(q_star(act, sigma_w2, sigma_b2) if q is None else q)
    s = math.sqrt(q)
    return sigma_w2 * gaussian_expectation(lambda z: dphi(s * z) ** 2)


# ---------------------------------------------------------------------------------------------
# Correlation map


def correlation_map(act: str, c: float, q: float, sigma_w2: float, sigma_b2: float) -> float:
    """One layer of the correlation map between two inputs of length q (= q*) and correlation c."""
    phi, _ = activation(act)
    s, r = math.sqrt(q), math.sqrt(max(1.0 - c * c, 0.0))
    cov = (
        sigma_w2 * gaussian_expectation_2d(lambda z1, z2: phi(s * z1) * phi(s * (c * z1 + r * z2))) + sigma_b2
    )
    return cov / q


def chi_c(act: str, c: float, q: float, sigma_w2: float) -> float:
    """Slope of the correlation map at c: sigma_w2 * E[phi'(u1) phi'(u2)]."""
    _, dphi = activation(act)
    s, r = math.sqrt(q), math.sqrt(max(1.0 - c * c, 0.0))
    return sigma_w2 * gaussian_expectation_2d(lambda z1, z2: dphi(s * z1) * dphi(s * (c * z1 + r * z2)))


def c_star(act: str, sigma_w2: float, sigma_b2: float, q: float | None = None) -> float:
    """The stable fixed point of the correlation map: 1 in the ordered phase (chi_1 <= 1),
    the root below 1 in the chaotic phase, found by bisection (the map crosses the diagonal
    from above at c*: it lies above it at c = 0 and below it just under c = 1)."""
    q = q_star(act, sigma_w2, sigma_b2) if q is None else q
    if q == 0.0 or math.isinf(q) or chi_1(act, sigma_w2, sigma_b2, q) <= 1.0:
        return 1.0
    lo, hi = 0.0, 1.0 - 1e-9
    if correlation_map(act, lo, q, sigma_w2, sigma_b2) - lo <= 0.0:
        return 0.0  # odd phi without bias: c = 0 is the fixed point
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if correlation_map(act, mid, q, sigma_w2, sigma_b2) > mid:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
