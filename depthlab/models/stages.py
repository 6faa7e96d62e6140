"""The `stages` family (SPEC 2.1): the depth-vs-trainability CNN (its spec is `depthlab.models.specs.StagesSpec`,
its presets are in `depthlab.models.catalog`)."""

from __future__ import annotations

import torch
from torch import nn

from .activations import make_activation
from .init import init_conv_
from .specs import StagesSpec
from .transformed import SUO, input_layer, suo_init_


class ConvUnit(nn.Module):
    """``act(norm(conv(x)))``, plus ``x`` when ``skip`` is post, or ``x + alpha * ...`` (alpha
    trainable, 0 at start) when it is rezero, or the Fixup form when it is fixup. Skips apply
    only where shapes match.

    Fixup (Zhang, Dauphin & Ma 2019) adapted to a residual branch of a single conv::

        u = x + scale * act(conv(x + bias_in)) + bias_out

    Fixup's rules are: (1) zero-initialise the last layer of every residual branch, (2) scale
    the other layers of an m-layer branch by L^(-1/(2m-2)), (3) add a scalar multiplier
    (init 1) per branch and scalar biases (init 0) before each conv, linear and activation,
    and (4) zero-initialise the classification layer. Here m = 1, so the branch's only conv is
    its last layer: it starts at zero (weights and bias) and rule (2) has nothing to rescale.
    ``bias_in`` is the scalar bias before the conv, the conv's own (zero) bias is the one before
    the activation, ``bias_out`` the one after the branch. Every activation here has act(0) = 0,
    so each residual unit is exactly the identity at start, yet its conv still receives a
    gradient (scale * act'(0) * upstream gradient times the input), unlike an all-zero product.
    `StagesNet` does (1) and (4) after the usual init; the channel-changing first conv of each
    stage has no skip and keeps the model's init.

    Fixup's reference code trains the scalars at a tenth of the learning rate: each one is
    shared by every pixel and channel, so its gradient is a sum over all of them, and at the
    full rate they blow up (scales of -50 within two epochs here, and no learning). The engine
    has one learning rate, so the scalars are parametrised as ``1 + k * p`` and ``k * p`` with
    stored ``p`` starting at 0 and k = sqrt(0.1): plain or momentum SGD then moves the
    effective scalar exactly as at lr / 10."""

    FIXUP_SCALAR = 0.1**0.5

    def __init__(self, c_in: int, c_out: int, act: str, norm: str, skip: str, depth: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=True)
        self.norm = nn.BatchNorm2d(c_out) if norm == "bn" else nn.Identity()
        self.act = make_activation(act, depth)  # depth: the network's, for DKS/TAT activations
        self.skip = skip if c_in == c_out else "none"
        if self.skip == "rezero":
            self.alpha = nn.Parameter(torch.zeros(()))
        if self.skip == "fixup":  # stored at 0; effective values: k * bias_in, 1 + k * scale, k * bias_out
            self.bias_in = nn.Parameter(torch.zeros(()))
            self.scale = nn.Parameter(torch.zeros(()))
            self.bias_out = nn.Parameter(torch.zeros(()))

    def zero_branch_(self) -> None:
        """Fixup rule (1): the residual branch's last (here: only) conv starts at zero."""
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.skip == "fixup":
            k = self.FIXUP_SCALAR
            branch = self.act(self.norm(self.conv(x + k * self.bias_in)))
            return x + (1.0 + k * self.scale) * branch + k * self.bias_out
        u = self.act(self.norm(self.conv(x)))
        if self.skip == "post":
            return u + x
        if self.skip == "rezero":
            return x + self.alpha * u
        return u


class StagesNet(nn.Module):
    """The depth-vs-trainability CNN. Returns the logits, or with 3 heads a list
    ``[stage-1 head, stage-2 head, final head]`` (the engine averages their losses)."""

    def __init__(self, spec: StagesSpec, input_shape=(1, 28, 28), num_classes: int = 10):
        super().__init__()
        spec.validate()
        self.spec = spec
        c, h, w = input_shape
        per_stage = spec.depth // 3
        self.pln, extra = input_layer(spec)  # DKS/TAT: the per-location normalisation of the input
        c += extra
        self.stages = nn.ModuleList()
        self.heads = nn.ModuleList()
        for i, c_out in enumerate(spec.channels()):
            units = [
                ConvUnit(c if j == 0 else c_out, c_out, spec.act, spec.norm, spec.skip, spec.depth)
                for j in range(per_stage)
            ]
            self.stages.append(nn.Sequential(*units, nn.AvgPool2d(2)))
            c, h, w = c_out, h // 2, w // 2
            if spec.heads == 3 and i < 2:
                self.heads.append(nn.Linear(c * h * w, num_classes))
        self.classifier = nn.Linear(c * h * w, num_classes)
        init = spec.init
        if init == SUO:
            for head in [*self.heads, self.classifier]:
                suo_init_(head, delta=False)
        for unit in (m for m in self.modules() if isinstance(m, ConvUnit)):
            if init == SUO:
                suo_init_(unit.conv, delta=True)
            else:
                init_conv_(unit.conv, init, act=spec.act, depth=spec.depth)
            if unit.skip == "fixup":
                unit.zero_branch_()
        if spec.skip == "fixup":  # Fixup rule (4): the classifier starts at zero
            nn.init.zeros_(self.classifier.weight)
            nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor):
        if self.pln is not None:
            x = self.pln(x)
        outputs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.heads):
                outputs.append(self.heads[i](x.flatten(1)))
        logits = self.classifier(x.flatten(1))
        return outputs + [logits] if outputs else logits
