"""Weight initialisation schemes for conv layers, parsed from short strings.

| scheme                 | conv weights                                            | conv bias       |
|------------------------|---------------------------------------------------------|-----------------|
| normal:S               | N(0, S^2)                                               | 0               |
| scaled:W2,B2           | N(0, W2 / fan_in)   (the mean-field parametrisation)    | N(0, B2)        |
| lecun-in / lecun-out   | N(0, 1 / fan_in) / N(0, 1 / fan_out)                    | 0               |
| glorot                 | N(0, 2 / (fan_in + fan_out))                            | 0               |
| he                     | N(0, 2 / fan_in)                                        | 0               |
| orthogonal             | orthogonal (C_out, C_in*k*k) matrix                     | 0               |
| torch-default          | PyTorch's own (kaiming-uniform with a = sqrt(5))        | PyTorch's own   |
| delta-orthogonal[:W2,B2|:critical] | centre tap sqrt(W2) * orthogonal, 0 elsewhere | N(0, B2)      |
| critical               | scaled at the mean-field critical point for act, depth  | N(0, sigma_b2)  |

fan_in = C_in * k * k; for a 3x3 conv that is 9 * C_in. The classic bug computed
sqrt(1 / C_in * 9) = 3 / sqrt(C_in) instead of sqrt(1 / (9 * C_in)); `expected_std` pins it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..theory import critical_init

SCHEMES = (
    "normal:S",
    "scaled:W2,B2",
    "lecun-in",
    "lecun-out",
    "glorot",
    "he",
    "orthogonal",
    "torch-default",
    "delta-orthogonal[:W2,B2|:critical]",
    "critical",
)


@dataclass(frozen=True)
class InitSpec:
    kind: str
    weight_var: float | None = None  # the S^2 of normal:S or the W2 of scaled/delta
    bias_var: float = 0.0
    critical: bool = False


def _floats(text: str, count: int, scheme: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count or any(not math.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"bad init {scheme!r}: expected {count} non-negative number(s) after ':'")
    return values


def parse_init(scheme: str) -> InitSpec:
    """Parse an init string such as ``normal:0.05``, ``scaled:1.76,0.05`` or ``lecun-in``."""
    name, _, arg = scheme.partition(":")
    if name == "normal":
        (s,) = _floats(arg, 1, scheme)
        if not math.isfinite(s * s):
            raise ConfigError(f"bad init {scheme!r}: the standard deviation is too large")
        return InitSpec("normal", s * s)
    if name == "scaled":
        w2, b2 = _floats(arg, 2, scheme)
        return InitSpec("scaled", w2, b2)
    if name == "delta-orthogonal":
        if arg == "critical":
            return InitSpec("delta-orthogonal", critical=True)
        w2, b2 = _floats(arg, 2, scheme) if arg else (1.0, 0.0)
        return InitSpec("delta-orthogonal", w2, b2)
    if (
        name in ("lecun-in", "lecun-out", "glorot", "he", "orthogonal", "torch-default", "critical")
        and not arg
    ):
        return InitSpec(name, critical=name == "critical")
    raise ConfigError(f"unknown init {scheme!r}; choose one of: {', '.join(SCHEMES)}")


def fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = weight[0, 0].numel()
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def expected_std(scheme: str, weight_shape: tuple[int, ...], *, act: str = "tanh", depth: int = 1) -> float:
    """The standard deviation a scheme gives the conv weights of ``weight_shape`` (Gaussian
    schemes; for delta-orthogonal, that of the centre tap's entries)."""
    spec = parse_init(scheme)
    receptive = math.prod(weight_shape[2:])
    fan_in, fan_out = weight_shape[1] * receptive, weight_shape[0] * receptive
    w2 = spec.weight_var
    if spec.critical:
        w2, _ = critical_init(act, depth)
    table = {
        "normal": lambda: math.sqrt(w2),
        "scaled": lambda: math.sqrt(w2 / fan_in),
        "critical": lambda: math.sqrt(w2 / fan_in),
        "lecun-in": lambda: math.sqrt(1.0 / fan_in),
        "lecun-out": lambda: math.sqrt(1.0 / fan_out),
        "glorot": lambda: math.sqrt(2.0 / (fan_in + fan_out)),
        "he": lambda: math.sqrt(2.0 / fan_in),
        # entries of a semi-orthogonal C_out x C_in matrix have variance 1 / max(C_out, C_in)
        "delta-orthogonal": lambda: math.sqrt(w2 / max(weight_shape[0], weight_shape[1])),
    }
    if spec.kind not in table:
        raise ConfigError(f"init {scheme!r} has no single Gaussian standard deviation")
    return table[spec.kind]()


def delta_orthogonal_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Zero everywhere but the centre tap, which is gain * a (semi-)orthogonal C_out x C_in matrix."""
    with torch.no_grad():
        weight.zero_()
        centre = torch.empty(weight.shape[0], weight.shape[1])
        nn.init.orthogonal_(centre, gain=gain)
        idx = tuple(s // 2 for s in weight.shape[2:])
        weight[(slice(None), slice(None)) + idx] = centre
    return weight


def init_conv_(conv: nn.Module, scheme: str, *, act: str = "tanh", depth: int = 1) -> None:
    """Initialise ``conv`` (any module with ``weight`` and optional ``bias``) in place."""
    spec = parse_init(scheme)
    if spec.kind == "torch-default":
        conv.reset_parameters()
        return
    weight, bias = conv.weight, getattr(conv, "bias", None)
    bias_var = spec.bias_var
    w2 = spec.weight_var
    if spec.critical:
        w2, bias_var = critical_init(act, depth)
    with torch.no_grad():
        if spec.kind == "orthogonal":
            nn.init.orthogonal_(weight.view(weight.shape[0], -1))
        elif spec.kind == "delta-orthogonal":
            delta_orthogonal_(weight, gain=math.sqrt(w2))
        else:
            weight.normal_(0.0, expected_std(scheme, tuple(weight.shape), act=act, depth=depth))
        if bias is not None:
            if bias_var > 0:
                bias.normal_(0.0, math.sqrt(bias_var))
            else:
                bias.zero_()
