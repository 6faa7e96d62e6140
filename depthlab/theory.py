"""Mean-field theory of signal propagation in deep random networks (Poole et al. 2016;
Schoenholz et al. 2017; Xiao et al. 2018). Gaussian expectations use Gauss-Hermite quadrature.

For a plain network with weight variance sigma_w2 / fan_in and bias variance sigma_b2:
- length map      q <- sigma_w2 * E[phi(sqrt(q) z)^2] + sigma_b2, fixed point q*;
- slope           chi_1 = sigma_w2 * E[phi'(sqrt(q*) z)^2] (chi_1 = 1 is criticality);
- depth scale     xi = -1 / log(chi_1) away from criticality; trainable depth ~ 6 xi.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import numpy as np

from .errors import ConfigError

Array = np.ndarray


@lru_cache(maxsize=8)
def _hermite(n: int) -> tuple[Array, Array]:
    x, w = np.polynomial.hermite.hermgauss(n)
    return x * math.sqrt(2.0), w / math.sqrt(math.pi)


def gaussian_expectation(f: Callable[[Array], Array], n: int = 101) -> float:
    """E[f(z)] for z ~ N(0, 1) by ``n``-point Gauss-Hermite quadrature."""
    z, w = _hermite(n)
    return float(np.sum(w * f(z)))


def _elu(x: Array) -> Array:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "tanh": (np.tanh, lambda x: 1.0 / np.cosh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "elu": (_elu, lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0)))),
}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ConfigError(f"no mean-field theory for activation {name!r}; choose one of: "
                          f"{', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


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
