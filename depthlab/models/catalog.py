"""The model families and the named presets, as data that needs no torch: ``depthlab models``
lists this table alone, and the registry (`depthlab.models.registry`) builds its families and
presets from it. A family is its spec (`depthlab.models.specs`), the datasets it runs on (the
first is its default), a description, what ``depth`` counts and where its builder lives (a torch
module of this package, imported when a model is built). A preset is a family and the spec
values that differ from the family's defaults; every family is also a preset of its own name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .specs import CifarCnnSpec, MLPSpec, ResNet18Spec, ResNetCifarSpec, SkipFCSpec, StagesSpec, StridedSpec


@dataclass(frozen=True)
class FamilyInfo:
    """A family as data. ``builder`` is ``"module:Class"`` under `depthlab.models`: the
    ``nn.Module`` built as ``Class(spec, input_shape, num_classes)``."""

    name: str
    spec_cls: type
    builder: str
    datasets: tuple[str, ...]
    description: str
    depth_unit: str = "conv layers"  # what ``depth`` counts, as plots label the depth axis


@dataclass(frozen=True)
class Preset:
    """A named model: a family and the spec values that differ from its defaults."""

    name: str
    family: str
    values: dict = field(default_factory=dict)
    description: str = ""


CIFAR_DATASETS = ("cifar10", "cifar10-jpeg")
RESNET_CIFAR_DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}

# Each entry: the families, then the presets built on them, in the order `depthlab models` lists them.
CATALOG: tuple[tuple[tuple[FamilyInfo, ...], tuple[Preset, ...]], ...] = (
    (
        (
            FamilyInfo(
                "stages",
                StagesSpec,
                "stages:StagesNet",
                ("mnist", "mnist32", "fashion-mnist"),
                "three stages of 3x3 convs (4/8/16 ch), avg-pool, linear (SPEC 2.1)",
            ),
        ),
        (
            Preset("cnn-tanh", "stages", dict(act="tanh", init="normal:0.05"), "naive-init tanh CNN"),
            Preset(
                "cnn-tanh-lecun", "stages", dict(act="tanh", init="lecun-in"), "tanh CNN, LeCun fan-in init"
            ),
            Preset("cnn-elu", "stages", dict(act="elu", init="lecun-in"), "ELU CNN, LeCun fan-in init"),
            Preset(
                "cnn-elu-bn", "stages", dict(act="elu", init="lecun-in", norm="bn"), "ELU CNN with batch norm"
            ),
            Preset(
                "resnet-elu-bn",
                "stages",
                dict(act="elu", init="lecun-in", norm="bn", skip="post"),
                "residual ELU CNN with BN",
            ),
            Preset(
                "cnn-tanh-bn",
                "stages",
                dict(act="tanh", init="normal:0.05", norm="bn"),
                "naive-init tanh CNN with BN",
            ),
            Preset(
                "resnet-elu",
                "stages",
                dict(act="elu", init="lecun-in", skip="post"),
                "residual ELU CNN without BN",
            ),
            Preset(
                "cnn-elu-multihead",
                "stages",
                dict(act="elu", init="lecun-in", heads=3),
                "ELU CNN with 3 loss heads",
            ),
            # Very deep without normalisation: critical delta-orthogonal tanh, and residual
            # ELU nets whose branches start as the identity (ReZero) or follow Fixup.
            Preset(
                "cnn-tanh-delta",
                "stages",
                dict(act="tanh", init="delta-orthogonal:critical"),
                "tanh CNN, critical delta-orthogonal init",
            ),
            Preset(
                "resnet-elu-rezero",
                "stages",
                dict(act="elu", init="lecun-in", skip="rezero"),
                "residual ELU CNN, ReZero, no BN",
            ),
            Preset(
                "resnet-elu-fixup",
                "stages",
                dict(act="elu", init="lecun-in", skip="fixup"),
                "residual ELU CNN, Fixup, no BN",
            ),
            # Every known fix on the same CNN (the `trainability-fixes` experiment): critical Gaussian init,
            # ReLU with He init, and the DKS/TAT activations of `depthlab.models.transformed` (these need the
            # optional dks package; init left at the default gives them the package's delta-orthogonal sampling).
            Preset(
                "cnn-tanh-critical",
                "stages",
                dict(act="tanh", init="critical"),
                "tanh CNN, critical Gaussian init (q* = 1/depth)",
            ),
            Preset("cnn-relu-he", "stages", dict(act="relu", init="he"), "ReLU CNN, He init"),
            # depth 24 by default: TAT's target is out of reach below 13 (`depthlab.models.transformed`)
            Preset(
                "cnn-tat-lrelu",
                "stages",
                dict(act="tat-leaky-relu", init="suo", depth=24),
                "TAT leaky-ReLU CNN, delta-orthogonal, input PLN (dks)",
            ),
            Preset(
                "cnn-dks-tanh",
                "stages",
                dict(act="dks-tanh", init="suo"),
                "DKS tanh CNN, delta-orthogonal, input PLN (dks)",
            ),
        ),
    ),
    (
        (
            FamilyInfo(
                "resnet-cifar",
                ResNetCifarSpec,
                "cifar:ResNetCifar",
                CIFAR_DATASETS,
                "He et al. CIFAR ResNet, depth 6n+2, shortcut A or B (SPEC 2.4)",
            ),
            FamilyInfo(
                "resnet18",
                ResNet18Spec,
                "cifar:ResNet18",
                CIFAR_DATASETS,
                "CIFAR ResNet-18 (64-512 ch, option-B shortcuts) (SPEC 2.4)",
            ),
            FamilyInfo(
                "cifar-cnn",
                CifarCnnSpec,
                "cifar:CifarCnn",
                CIFAR_DATASETS,
                "two-conv CIFAR CNN for the lr/momentum/BN lessons (SPEC 2.4)",
            ),
        ),
        (
            *(
                Preset(f"resnet{depth}", "resnet-cifar", {"n": n}, f"resnet-cifar with n={n}")
                for depth, n in RESNET_CIFAR_DEPTHS.items()
            ),
            Preset("plain18", "resnet18", {"skip": False}, "resnet18 without any shortcut"),
            Preset("cifar-cnn-bn", "cifar-cnn", {"bn": True}, "cifar-cnn with BN after each conv"),
        ),
    ),
    (
        (
            FamilyInfo(
                "skipfc",
                SkipFCSpec,
                "skipfc:SkipFCNet",
                ("mnist32",),
                "1x1 conv, avgpool 5, 2x2 conv, linear 300->300 with a skip, linear (SPEC 2.3)",
            ),
        ),
        (),
    ),
    (
        (
            FamilyInfo(
                "strided",
                StridedSpec,
                "strided:StridedNet",
                ("mnist", "fashion-mnist"),
                "stride-2 conv stacks 4/8/16/32 ch, plain / residual / gated (SPEC 2.2)",
            ),
        ),
        (
            Preset(
                "strided-res",
                "strided",
                {"skip": "res"},
                "strided stacks with a residual shortcut around every conv",
            ),
            Preset(
                "strided-gated",
                "strided",
                {"skip": "gated"},
                "strided stacks with a trainable convex gate a*conv + (1-a)*shortcut",
            ),
        ),
    ),
    (
        (
            FamilyInfo(
                "mlp",
                MLPSpec,
                "mlp:MLP",
                ("mnist", "fashion-mnist", "mnist32", "cifar10"),
                "fully connected: depth hidden layers of width units, linear readout",
                depth_unit="hidden layers",
            ),
        ),
        (),
    ),
)

FAMILIES: dict[str, FamilyInfo] = {info.name: info for infos, _ in CATALOG for info in infos}


def family_preset(info) -> Preset:
    """The preset of a family's own name (a `FamilyInfo` or a registry `Family`): its defaults."""
    return Preset(info.name, info.name, {}, info.description)


PRESETS: dict[str, Preset] = {
    preset.name: preset for infos, presets in CATALOG for preset in (*map(family_preset, infos), *presets)
}

CLASSIC_PRESETS = (
    "cnn-tanh",
    "cnn-tanh-lecun",
    "cnn-elu",
    "cnn-elu-bn",
    "resnet-elu-bn",
    "cnn-tanh-bn",
    "resnet-elu",
    "cnn-elu-multihead",
)
