"""The `strided` family (SPEC 2.2): stride-2 conv stacks, plain, residual or gated.

A first conv 1->4 with stride 2 (28->14), then three stacks of ``stack_depth`` convs (4->8,
8->16, 16->32). In a stack the first ``stack_depth - 1`` convs keep the shape and the last one
has stride 2 and changes channels, so the spatial sizes go 14->7->4->2; a linear layer maps
32*2*2 = 128 features to the logits. Every conv is followed by the activation.

``skip`` wraps *every* conv (the first one included):

- ``none``:  ``out = act(conv(x))``
- ``res``:   ``out = act(conv(x) + shortcut(x))``
- ``gated``: ``out = act(a * conv(x) + (1 - a) * shortcut(x))`` with ``a = sigmoid(w)``, ``w`` a
  free trainable weight (one per layer, or one per output channel with ``gate="channel"``)
  starting at ``logit(a0)`` so that ``a = a0`` at initialisation.

The shortcut is the identity where the shapes match. Where they change it is 2x2 average
pooling (after zero-padding odd sizes on the right/bottom, so 7 -> 8 -> 4 matches the conv's
7 -> 4) followed by a 1x1 conv without bias (``shortcut="conv"``) or by zero-padding of the
new channels (``shortcut="pad"``, no parameters).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .activations import make_activation
from .init import init_conv_
from .specs import STACK_CHANNELS, StridedSpec


class Shortcut(nn.Module):
    """Maps x (C_in, H, W) to the shape of a stride-``stride`` conv's output (C_out, H', W')."""

    def __init__(self, c_in: int, c_out: int, stride: int, kind: str):
        super().__init__()
        self.c_in, self.c_out, self.stride = c_in, c_out, stride
        self.proj = nn.Conv2d(c_in, c_out, 1, bias=False) if kind == "conv" and c_in != c_out else None

    def forward(self, x: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        if self.stride > 1:
            h, w = out_hw
            s = self.stride
            # zero-pad the bottom/right so that pooling gives exactly the conv's output size
            x = F.avg_pool2d(F.pad(x, (0, s * w - x.shape[3], 0, s * h - x.shape[2])), s)
        if self.c_out == self.c_in:
            return x
        if self.proj is not None:
            return self.proj(x)
        return F.pad(x, (0, 0, 0, 0, 0, self.c_out - self.c_in))


class StridedUnit(nn.Module):
    """One conv with its activation and, optionally, a residual or gated shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, spec: StridedSpec):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, spec.kernel, stride=stride, padding=spec.kernel // 2)
        self.act = make_activation(spec.act)
        self.skip = spec.skip
        self.shortcut = Shortcut(c_in, c_out, stride, spec.shortcut) if spec.skip != "none" else None
        if spec.skip == "gated":
            shape = (1, c_out, 1, 1) if spec.gate == "channel" else ()
            logit = math.log(spec.a0 / (1.0 - spec.a0))
            self.gate_logit = nn.Parameter(torch.full(shape, logit))

    def gate(self) -> torch.Tensor | None:
        """The current gate value(s) a = sigmoid(w), or None for a non-gated unit."""
        return torch.sigmoid(self.gate_logit) if self.skip == "gated" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv(x)
        if self.shortcut is None:
            return self.act(u)
        s = self.shortcut(x, (u.shape[2], u.shape[3]))
        if self.skip == "res":
            return self.act(u + s)
        a = torch.sigmoid(self.gate_logit)
        return self.act(a * u + (1.0 - a) * s)


class StridedNet(nn.Module):
    def __init__(self, spec: StridedSpec, input_shape=(1, 28, 28), num_classes: int = 10):
        super().__init__()
        spec.validate()
        self.spec = spec
        c, h, w = input_shape
        units = [StridedUnit(c, STACK_CHANNELS[0], 2, spec)]
        for c_in, c_out in zip(STACK_CHANNELS[:-1], STACK_CHANNELS[1:]):
            units += [StridedUnit(c_in, c_in, 1, spec) for _ in range(spec.stack_depth - 1)]
            units.append(StridedUnit(c_in, c_out, 2, spec))
        self.units = nn.Sequential(*units)
        for _ in range(4):  # four stride-2 convs, each ceil-halving the size
            h, w = -(-h // 2), -(-w // 2)
        self.classifier = nn.Linear(STACK_CHANNELS[-1] * h * w, num_classes)
        for unit in self.units:
            init_conv_(unit.conv, spec.init, act=spec.act, depth=spec.num_convs)

    def gates(self) -> list[torch.Tensor]:
        """The gate value(s) of every unit, input to output (empty unless skip is gated)."""
        return [g.detach() for g in (u.gate() for u in self.units) if g is not None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.units(x).flatten(1))
