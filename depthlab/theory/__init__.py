"""Mean-field theory of signal propagation in deep random networks (Poole et al. 2016;
Schoenholz et al. 2017; Xiao et al. 2018): the pure maths, numpy only, at the bottom floor so
that `depthlab.models.init` can use it. The measured side (training nets over a sigma_w2 grid and
comparing them with this) is `depthlab.analysis.phase` and `depthlab.analysis.mlp_phase`.

For a plain network with weight variance sigma_w2 / fan_in and bias variance sigma_b2, in the
limit of infinite width, the pre-activations of a layer are Gaussian and:

- length map       q <- sigma_w2 * E[phi(sqrt(q) z)^2] + sigma_b2, with fixed point q*;
- slope            chi_1 = sigma_w2 * E[phi'(sqrt(q*) z)^2]: chi_1 < 1 ordered (gradients
                   vanish), chi_1 > 1 chaotic (gradients explode), chi_1 = 1 critical;
- correlation map  c <- (sigma_w2 * E[phi(u1) phi(u2)] + sigma_b2) / q*, with
                   u1 = sqrt(q*) z1, u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2), fixed point c*;
                   c* = 1 in the ordered phase, c* < 1 in the chaotic phase;
- chi_c            = sigma_w2 * E[phi'(u1) phi'(u2)] at c* (equals chi_1 when c* = 1);
- depth scale      xi = -1 / log(chi_c): how many layers two inputs stay distinguishable;
                   infinite at criticality; Schoenholz et al. found nets train up to ~6 xi.

Modules: `maps` (the maps, their fixed points and slopes), `depth_scales` (xi, 6 xi,
`MeanFieldPoint`), `phase_diagram` (`phase_grid`: points over a sigma_w2 grid; the critical
sigma_w2 and init). Every public name is importable from ``depthlab.theory`` itself.
"""

from .depth_scales import (
    TRAINABLE_DEPTH_FACTOR,
    MeanFieldPoint,
    correlation_depth,
    correlation_depths,
    mean_field_point,
)
from .maps import (
    ACTIVATIONS,
    MAX_VARIANCE,
    activation,
    c_star,
    check_variances,
    chi_1,
    chi_c,
    correlation_map,
    gaussian_expectation,
    gaussian_expectation_2d,
    length_map,
    q_star,
)
from .phase_diagram import critical_init, critical_sigma_w2, default_sigma_w2_grid, phase_grid

__all__ = [
    "ACTIVATIONS",
    "MAX_VARIANCE",
    "TRAINABLE_DEPTH_FACTOR",
    "MeanFieldPoint",
    "activation",
    "c_star",
    "check_variances",
    "chi_1",
    "chi_c",
    "correlation_depth",
    "correlation_depths",
    "correlation_map",
    "critical_init",
    "critical_sigma_w2",
    "default_sigma_w2_grid",
    "gaussian_expectation",
    "gaussian_expectation_2d",
    "length_map",
    "mean_field_point",
    "phase_grid",
    "q_star",
]
