"""The `mlp` family: a plain fully connected network, the model of the mean-field phase diagram
(Schoenholz et al. 2017, "Deep Information Propagation").

::

    flatten -> [linear -> norm -> act (+ x when skip is post)] x depth -> linear -> logits

The first hidden layer maps the flattened input to ``width`` units, the other ``depth - 1`` map
``width`` to ``width``; the post skip applies where shapes match (every hidden layer but the
first). Every linear layer, the readout included, is initialised by ``init`` (`depthlab.models.init`):
the mean-field analysis assumes ``scaled:W2,B2`` on all of them. Activations are looked up in
``depthlab.models.specs.PLAIN_ACTIVATIONS``, so an activation added there (and, for the theory,
to ``depthlab.theory.ACTIVATIONS``) is available here with no change to this module. The spec is
`depthlab.models.specs.MLPSpec`; the family's entry is in `depthlab.models.catalog`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .activations import make_activation
from .init import init_conv_
from .specs import MLPSpec
from .transformed import SUO, input_layer, suo_init_


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
            for i in range(spec.depth)
        )
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
