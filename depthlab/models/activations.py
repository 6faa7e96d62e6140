"""The activation modules a family's ``act`` names: the plain ones (`depthlab.models.specs.PLAIN_ACTIVATIONS`,
``torch.nn`` classes) and the DKS/TAT ones of `depthlab.models.transformed`, built for the network's depth."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from . import transformed
from .specs import PLAIN_ACTIVATIONS, check_plain_activation

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    name: getattr(nn, cls) for name, cls in PLAIN_ACTIVATIONS.items()
}


def make_activation(name: str, depth: int | None = None) -> nn.Module:
    """An activation module. DKS/TAT activations (``dks-tanh``, ``tat-leaky-relu``, ...) are built
    for a network of ``depth`` nonlinear layers: only families that pass it can take them."""
    if transformed.is_transformed(name) and depth is not None:
        return transformed.TransformedActivation(name, depth)
    check_plain_activation(name)
    return ACTIVATIONS[name]()
