"""The `stages` family (SPEC 2.1): the depth-vs-trainability CNN and its eight classic presets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from .init import init_conv_, parse_init
from .registry import (OMIT_WHEN_NONE, Family, Preset, check_activation, check_choice, make_activation,
                       register_family, register_preset)
from .transformed import (SUO, check_input_norm, check_tat_eta, input_layer, resolve_init, resolve_input_norm,
                          resolve_tat_eta, suo_init_)


STAGE_CHANNELS = (4, 8, 16)
NORMS = ("none", "bn")
SKIPS = ("none", "post", "rezero", "fixup")


# The width's working bound is the memory estimate (engine/memory.py), which refuses 1e6 on any machine;
# this one keeps the estimate's arithmetic finite.
MAX_WIDTH = 1e6

@dataclass(frozen=True)
class StagesSpec:
    """Three stages of depth/3 3x3 convs (4, 8, 16 channels times ``width``), 2x2 average
    pooling after each stage, one linear layer; optional BN, skips and two extra heads.

    ``act`` may be a DKS/TAT activation (``dks-tanh``, ``tat-leaky-relu``, ...: see
    `depthlab.models.transformed`): it is built for ``depth`` nonlinear layers, the net then starts
    with the per-location normalisation of the input (one more input channel), and with ``init``
    left at this default (``normal:0.05``, recorded as ``suo``) every conv gets the package's delta scaled-uniform-
    orthogonal sampling and the heads its plain one (``init="suo"`` asks for that explicitly).
    ``input_norm="none"`` drops the input normalisation (the default "pln" is recorded as None);
    ``tat_eta`` records the package's C_f(0) target of a TAT leaky-ReLU net (always 0.9)."""

    depth: int = 9
    act: str = "tanh"
    init: str = "normal:0.05"
    norm: str = "none"
    skip: str = "none"
    heads: int = 1
    width: float = 1.0
    input_norm: str | None = field(default=None, metadata=OMIT_WHEN_NONE)  # DKS/TAT: "pln" (None) or "none"
    tat_eta: float | None = field(default=None, metadata=OMIT_WHEN_NONE)  # TAT leaky ReLU: the package's 0.9

    def __post_init__(self):  # the init rule of DKS/TAT: the default init means the package's sampling
        object.__setattr__(self, "init", resolve_init(self.init, self.act, StagesSpec.init))
        object.__setattr__(self, "input_norm", resolve_input_norm(self.input_norm))
        object.__setattr__(self, "tat_eta", resolve_tat_eta(self.tat_eta, self.act))

    def validate(self) -> None:
        if not isinstance(self.depth, int) or self.depth <= 0 or self.depth % 3:
            raise ConfigError(f"depth must be a positive multiple of 3 for the stages family, got {self.depth}")
        check_activation(self.act, self.init, self.depth)
        check_input_norm(self.input_norm, self.act)
        check_tat_eta(self.tat_eta, self.act)
        if self.init != SUO:
            parse_init(self.init)
        check_choice("norm", self.norm, NORMS)
        check_choice("skip", self.skip, SKIPS)
        if self.heads not in (1, 3):
            raise ConfigError(f"heads must be 1 or 3, got {self.heads}")
        if not (isinstance(self.width, (int, float)) and math.isfinite(self.width) and self.width > 0):
            raise ConfigError(f"width multiplier must be a positive number, got {self.width}")
        if self.width > MAX_WIDTH:
            raise ConfigError(f"width multiplier must be at most {MAX_WIDTH:g}, got {self.width:g}")

    def channels(self) -> tuple[int, ...]:
        return tuple(max(1, round(c * self.width)) for c in STAGE_CHANNELS)


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

    FIXUP_SCALAR = 0.1 ** 0.5

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
            units = [ConvUnit(c if j == 0 else c_out, c_out, spec.act, spec.norm, spec.skip, spec.depth)
                     for j in range(per_stage)]
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



register_family(Family("stages", StagesSpec, lambda spec, shape, k: StagesNet(spec, shape, k),
                       ("mnist", "mnist32", "fashion-mnist"),
                       "three stages of 3x3 convs (4/8/16 ch), avg-pool, linear (SPEC 2.1)"))
for _name, _values, _desc in [
    ("cnn-tanh", dict(act="tanh", init="normal:0.05"), "naive-init tanh CNN"),
    ("cnn-tanh-lecun", dict(act="tanh", init="lecun-in"), "tanh CNN, LeCun fan-in init"),
    ("cnn-elu", dict(act="elu", init="lecun-in"), "ELU CNN, LeCun fan-in init"),
    ("cnn-elu-bn", dict(act="elu", init="lecun-in", norm="bn"), "ELU CNN with batch norm"),
    ("resnet-elu-bn", dict(act="elu", init="lecun-in", norm="bn", skip="post"), "residual ELU CNN with BN"),
    ("cnn-tanh-bn", dict(act="tanh", init="normal:0.05", norm="bn"), "naive-init tanh CNN with BN"),
    ("resnet-elu", dict(act="elu", init="lecun-in", skip="post"), "residual ELU CNN without BN"),
    ("cnn-elu-multihead", dict(act="elu", init="lecun-in", heads=3), "ELU CNN with 3 loss heads"),
]:
    register_preset(Preset(_name, "stages", _values, _desc))

# Very deep without normalisation: critical delta-orthogonal tanh, and residual
# ELU nets whose branches start as the identity (ReZero) or follow Fixup.
for _name, _values, _desc in [
    ("cnn-tanh-delta", dict(act="tanh", init="delta-orthogonal:critical"), "tanh CNN, critical delta-orthogonal init"),
    ("resnet-elu-rezero", dict(act="elu", init="lecun-in", skip="rezero"), "residual ELU CNN, ReZero, no BN"),
    ("resnet-elu-fixup", dict(act="elu", init="lecun-in", skip="fixup"), "residual ELU CNN, Fixup, no BN"),
]:
    register_preset(Preset(_name, "stages", _values, _desc))

# Every known fix on the same CNN (the `trainability-fixes` experiment): critical Gaussian init,
# ReLU with He init, and the DKS/TAT activations of `depthlab.models.transformed` (these need the
# optional dks package; init left at the default gives them the package's delta-orthogonal sampling).
for _name, _values, _desc in [
    ("cnn-tanh-critical", dict(act="tanh", init="critical"), "tanh CNN, critical Gaussian init (q* = 1/depth)"),
    ("cnn-relu-he", dict(act="relu", init="he"), "ReLU CNN, He init"),
    # depth 24 by default: TAT's target is out of reach below 13 (`depthlab.models.transformed`)
    ("cnn-tat-lrelu", dict(act="tat-leaky-relu", init="suo", depth=24), "TAT leaky-ReLU CNN, delta-orthogonal, input PLN (dks)"),
    ("cnn-dks-tanh", dict(act="dks-tanh", init="suo"), "DKS tanh CNN, delta-orthogonal, input PLN (dks)"),
]:
    register_preset(Preset(_name, "stages", _values, _desc))

CLASSIC_PRESETS = ("cnn-tanh", "cnn-tanh-lecun", "cnn-elu", "cnn-elu-bn", "resnet-elu-bn",
                   "cnn-tanh-bn", "resnet-elu", "cnn-elu-multihead")
