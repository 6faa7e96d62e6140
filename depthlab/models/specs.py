"""What each model family takes, as frozen dataclasses that need no torch: a spec's fields are the
family's parameters and defaults (what ``depthlab models`` lists, what the store records and
hashes), and its ``validate()`` says in one line what is wrong with a value.

A spec is made and validated only on the way to building a model, so the checks that need torch
(an init scheme's parse, a DKS/TAT activation's solve: `depthlab.models.init`,
`depthlab.models.transformed`) are imported when they run; importing this module imports neither.
The families and presets built on these specs are listed in `depthlab.models.catalog`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ConfigError

# A spec field with this metadata is left out of the parameters (and so of the hash) while it
# is None: a field added for some models only leaves every other model's stored runs replaying.
OMIT_WHEN_NONE = {"omit_when_none": True}

# The plain activations by name, each the name of its ``torch.nn`` class (`depthlab.models.registry.ACTIVATIONS`
# holds the classes); the DKS/TAT ones are `depthlab.models.transformed.TRANSFORMED`.
PLAIN_ACTIVATIONS = {"tanh": "Tanh", "elu": "ELU", "relu": "ReLU"}

BN_IMPLS = ("torch", "scratch")  # nn.BatchNorm2d or the from-scratch `depthlab.models.layers.BatchNorm`


def check_choice(what: str, value, choices, where: str = "") -> None:
    """A spec field that must be one of ``choices``: else one line naming them."""
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}{where}; choose one of: {', '.join(choices)}")


def check_activation(name: str, init: str | None = None, depth: int | None = None) -> None:
    """validate() of ``act`` in a family whose builder passes the depth (`make_activation`): a
    plain activation or a DKS/TAT one (`depthlab.models.transformed`, needs the dks package; with
    ``depth``, refused where the method's targets are out of reach for that depth)."""
    from . import transformed

    if transformed.is_transformed(name):
        transformed.check_transformed(name, init, depth)
        return
    check_choice("activation", name, tuple(PLAIN_ACTIVATIONS) + transformed.TRANSFORMED)


def check_plain_activation(name: str) -> None:
    """validate() of ``act`` in a family whose builder passes no depth: a plain activation only
    (a DKS/TAT one is built for the network's depth)."""
    from . import transformed

    if transformed.is_transformed(name):
        raise ConfigError(
            f"activation {name!r} is built for the network's depth: only the stages and mlp families take it"
        )
    check_choice("activation", name, PLAIN_ACTIVATIONS)


def check_init(init: str) -> None:
    """``init`` parses (`depthlab.models.init.parse_init`), unless it is the DKS/TAT sampling ``suo``."""
    from .init import parse_init
    from .transformed import SUO

    if init != SUO:
        parse_init(init)


def resolve_transformed_fields(spec, default_init: str) -> None:
    """The DKS/TAT rules of a spec taking ``act``, applied in ``__post_init__``: the default init
    means the package's sampling (``suo``), the default input_norm and tat_eta are recorded as the
    module `depthlab.models.transformed` says."""
    from .transformed import resolve_init, resolve_input_norm, resolve_tat_eta

    object.__setattr__(spec, "init", resolve_init(spec.init, spec.act, default_init))
    object.__setattr__(spec, "input_norm", resolve_input_norm(spec.input_norm))
    object.__setattr__(spec, "tat_eta", resolve_tat_eta(spec.tat_eta, spec.act))


def check_transformed_fields(spec) -> None:
    """validate() of ``act``, ``input_norm``, ``tat_eta`` and ``init`` of a spec built for its depth."""
    from .transformed import check_input_norm, check_tat_eta

    check_activation(spec.act, spec.init, spec.depth)
    check_input_norm(spec.input_norm, spec.act)
    check_tat_eta(spec.tat_eta, spec.act)
    check_init(spec.init)


# ---------------------------------------------------------------------------------------------
# stages (SPEC 2.1)

STAGE_CHANNELS = (4, 8, 16)
STAGES_NORMS = ("none", "bn")
STAGES_SKIPS = ("none", "post", "rezero", "fixup")

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

    def __post_init__(self):
        resolve_transformed_fields(self, StagesSpec.init)

    def validate(self) -> None:
        if not isinstance(self.depth, int) or self.depth <= 0 or self.depth % 3:
            raise ConfigError(
                f"depth must be a positive multiple of 3 for the stages family, got {self.depth}"
            )
        check_transformed_fields(self)
        check_choice("norm", self.norm, STAGES_NORMS)
        check_choice("skip", self.skip, STAGES_SKIPS)
        if self.heads not in (1, 3):
            raise ConfigError(f"heads must be 1 or 3, got {self.heads}")
        if not (isinstance(self.width, (int, float)) and math.isfinite(self.width) and self.width > 0):
            raise ConfigError(f"width multiplier must be a positive number, got {self.width}")
        if self.width > MAX_WIDTH:
            raise ConfigError(f"width multiplier must be at most {MAX_WIDTH:g}, got {self.width:g}")

    def channels(self) -> tuple[int, ...]:
        return tuple(max(1, round(c * self.width)) for c in STAGE_CHANNELS)


# ---------------------------------------------------------------------------------------------
# CIFAR (SPEC 2.4): resnet-cifar, resnet18, cifar-cnn

CIFAR_SHORTCUTS = ("A", "B")


@dataclass(frozen=True)
class ResNetCifarSpec:
    """Depth 6n+2: a 3x3 conv to 16 channels, three stacks of n basic blocks (16, 32, 64
    channels, stride 2 at the start of stacks 2 and 3), global average pool, linear."""

    n: int = 3
    shortcut: str = "A"
    bn_impl: str = "torch"

    def validate(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"resnet-cifar needs n >= 1 (depth 6n+2), got {self.n}")
        if self.shortcut not in CIFAR_SHORTCUTS:
            raise ConfigError(
                f"unknown shortcut option {self.shortcut!r}; choose A (zero-pad) or B (1x1 conv)"
            )
        check_choice("bn_impl", self.bn_impl, BN_IMPLS)

    @property
    def depth(self) -> int:
        return 6 * self.n + 2


@dataclass(frozen=True)
class ResNet18Spec:
    """A 3x3 stem to 64 channels, four stages of 2 basic blocks (64, 128, 256, 512; stride 2 at
    stages 2-4), option-B shortcuts where the shape changes, 4x4 average pool, linear.
    ``skip=False`` is ``plain18``: the same network without any shortcut."""

    skip: bool = True
    bn_impl: str = "torch"

    def validate(self) -> None:
        if not isinstance(self.skip, bool):
            raise ConfigError(f"skip must be true or false, got {self.skip!r}")
        check_choice("bn_impl", self.bn_impl, BN_IMPLS)


@dataclass(frozen=True)
class CifarCnnSpec:
    """conv 3->16, ReLU, max-pool 2, conv 16->32, ReLU, max-pool 2, linear (3x3 convs, padding
    1); ``bn=True`` (``cifar-cnn-bn``) adds batch norm after each conv."""

    bn: bool = False
    bn_impl: str = "torch"

    def validate(self) -> None:
        if not isinstance(self.bn, bool):
            raise ConfigError(f"bn must be true or false, got {self.bn!r}")
        check_choice("bn_impl", self.bn_impl, BN_IMPLS)


# ---------------------------------------------------------------------------------------------
# skipfc (SPEC 2.3)


@dataclass(frozen=True)
class SkipFCSpec:
    """The small CNN with a skip over its hidden linear layer; ``legacy_bn`` and ``softmax_out``
    re-create the hand-written reference's bugs (`depthlab.models.skipfc`)."""

    bn: bool = False
    skip: bool = True
    legacy_bn: bool = False
    softmax_out: bool = False

    def validate(self) -> None:
        for name in ("bn", "skip", "legacy_bn", "softmax_out"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.legacy_bn and not self.bn:
            raise ConfigError("legacy_bn re-creates the reference's untrained BN: it needs bn=true")


# ---------------------------------------------------------------------------------------------
# strided (SPEC 2.2)

STACK_CHANNELS = (4, 8, 16, 32)  # the first conv's output, then each stack's output
STRIDED_SKIPS = ("none", "res", "gated")
STRIDED_SHORTCUTS = ("conv", "pad")
GATES = ("layer", "channel")


@dataclass(frozen=True)
class StridedSpec:
    """A stride-2 first conv, three stacks of ``stack_depth`` convs, a linear layer."""

    stack_depth: int = 3
    kernel: int = 3
    act: str = "relu"
    init: str = "torch-default"
    skip: str = "none"
    shortcut: str = "conv"
    gate: str = "layer"
    a0: float = 0.5

    def validate(self) -> None:
        from .init import parse_init

        if not isinstance(self.stack_depth, int) or self.stack_depth < 1:
            raise ConfigError(f"stack_depth must be a positive integer, got {self.stack_depth}")
        # an even kernel with padding k//2 would not halve the spatial size exactly
        if not isinstance(self.kernel, int) or self.kernel < 1 or self.kernel % 2 == 0:
            raise ConfigError(f"kernel must be a positive odd integer, got {self.kernel}")
        check_plain_activation(self.act)
        parse_init(self.init)
        check_choice("skip", self.skip, STRIDED_SKIPS, " for strided")
        check_choice("shortcut", self.shortcut, STRIDED_SHORTCUTS)
        check_choice("gate", self.gate, GATES)
        if not (isinstance(self.a0, (int, float)) and 0.0 < self.a0 < 1.0):
            raise ConfigError(f"a0 (the gate's starting value) must be in (0, 1), got {self.a0}")

    @property
    def num_convs(self) -> int:
        return 1 + 3 * self.stack_depth


# ---------------------------------------------------------------------------------------------
# mlp

MLP_NORMS = ("none", "bn")
MLP_SKIPS = ("none", "post")
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
        resolve_transformed_fields(self, MLPSpec.init)

    def validate(self) -> None:
        _positive_int("depth", self.depth)
        _positive_int("width", self.width)
        if self.width > MAX_MLP_WIDTH:
            raise ConfigError(
                f"width must be at most {MAX_MLP_WIDTH:,} hidden units for the mlp family, got {self.width:,}"
            )
        check_transformed_fields(self)
        check_choice("norm", self.norm, MLP_NORMS)
        check_choice("skip", self.skip, MLP_SKIPS)
