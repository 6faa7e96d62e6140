"""The `mlp` family: a plain fully connected network, the model of the mean-field phase diagram
(Schoenholz et al. 2017, "Deep Information Propagation").

::

    flatten -> [linear -> norm -> act (+ x when skip is post)] x depth -> linear -> logits

The first hidden layer maps the flattened input to ``width`` units, the other ``depth - 1`` map
``width`` to ``width``; the post skip applies where shapes match (every hidden layer but the
first). Every linear layer, the readout included, is initialised by ``init`` (`depthlab.models.init`):
the mean-field analysis assumes ``scaled:W2,B2`` on all of them. Activations are looked up in
the model registry's ``ACTIVATIONS`` table, so an activation added there (and, for the theory,
to ``depthlab.theory.ACTIVATIONS``) is available here with no change to this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from .init import init_conv_, parse_init
from .registry import OMIT_WHEN_NONE, Family, check_activation, check_choice, make_activation, register_family
from .transformed import (SUO, check_input_norm, check_tat_eta, input_layer, resolve_init, resolve_input_norm,
                          resolve_tat_eta, suo_init_)

NORMS = ("none", "bn")
SKIPS = ("none", "post")


MAX_MLP_WIDTH = 16_384  # hidden units: one hidden layer is then 268 million weights (1 GiB)


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer for the mlp family, got {value!r}")


@dataclass(frozen=True)
class MLPSpec:
    """``depth`` hidden layers of ``width`` units with activation ``act``, then a linear readout.

    ``act`` may be a DKS/TAT activation (``dks-tanh``, ``tat-leaky-relu``, ...: see
    `depthlab.models.transformed`): it is built for ``depth`` nonlinear layers, the net then starts
    with the per-example normalisation of the flattened input (one more input feature), and with
    ``init`` left at this default (``lecun-in``, recorded as ``suo``) every linear layer, the readout included, gets
    the package's scaled-uniform-orthogonal sampling (``init="suo"`` asks for it explicitly)."""

    depth: int = 10
    width: int = 300
    act: str = "tanh"
    init: str = "lecun-in"
    norm: str = "none"
    skip: str = "none"
    input_norm: str | None = field(default=None, metadata=OMIT_WHEN_NONE)  # DKS/TAT: "pln" (None) or "none"
    tat_eta: float | None = field(default=None, metadata=OMIT_WHEN_NONE)  # TAT leaky ReLU: the package's 0.9

    def __post_init__(self):  # the CLI's --width is a float (the stages family's multiplier)
        for name in ("depth", "width"):
            value = getattr(self, name)
            if isinstance(value, float) and value.is_integer():
                object.__setattr__(self, name, int(value))
        # the init rule of DKS/TAT: the default init means the package's sampling
        object.__setattr__(self, "init", resolve_init(self.init, self.act, MLPSpec.init))
        object.__setattr__(self, "input_norm", resolve_input_norm(self.input_norm))
        object.__setattr__(self, "tat_eta", resolve_tat_eta(self.tat_eta, self.act))

    def validate(self) -> None:
        _positive_int("depth", self.depth)
        _positive_int("width", self.width)
        if self.width > MAX_MLP_WIDTH:
            raise ConfigError(f"width must be at most {MAX_MLP_WIDTH:,} hidden units for the mlp family, got "
                              f"{self.width:,}")
        check_activation(self.act, self.init, self.depth)
        check_input_norm(self.input_norm, self.act)
        check_tat_eta(self.tat_eta, self.act)
        if self.init != SUO:
            parse_init(self.init)
        check_choice("norm", self.norm, NORMS)
        check_choice("skip", self.skip, SKIPS)


class DenseUnit(nn.Module):
    """``act(norm(linear(x)))``, plus ``x`` when ``skip`` is post and the shapes match."""

    def __init__(self, n_in: int, n_out: int, act: str, norm: str, skip: str, depth: int | None = None):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.norm = nn.BatchNorm1d(n_out) if norm == "bn" else nn.Identity()
        self.act = make_activation(act, depth)  # depth: the network's, for DKS/TAT activations
        self.skip = skip if n_in == n_out else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.act(self.norm(self.linear(x)))
        return u + x if self.skip == "post" else u


class MLP(nn.Module):
    """The fully connected network of an `MLPSpec`; returns the logits."""

    def __init__(self, spec: MLPSpec, input_shape=(1, 28, 28), num_classes: int = 10):
        super().__init__()
        spec.validate()
        self.spec = spec
        n_in = math.prod(input_shape)
        self.pln, extra = input_layer(spec, flatten=True)  # DKS/TAT: the per-example normalisation
        n_in += extra
        self.units = nn.ModuleList(
            DenseUnit(n_in if i == 0 else spec.width, spec.width, spec.act, spec.norm, spec.skip, spec.depth)
            for i in range(spec.depth))
        self.classifier = nn.Linear(spec.width, num_classes)
        init = spec.init
        for linear in self.linears():
            if init == SUO:
                suo_init_(linear, delta=False)
            else:
                init_conv_(linear, init, act=spec.act, depth=spec.depth)

    def linears(self) -> list[nn.Linear]:
        """The linear layers in order, the readout last (``depth + 1`` of them)."""
        return [u.linear for u in self.units] + [self.classifier]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1) if self.pln is None else self.pln(x)
        for unit in self.units:
            x = unit(x)
        return self.classifier(x)


register_family(Family("mlp", MLPSpec, lambda spec, shape, k: MLP(spec, shape, k),
                       ("mnist", "fashion-mnist", "mnist32", "cifar10"),
                       "fully connected: depth hidden layers of width units, linear readout",
                       depth_unit="hidden layers"))
