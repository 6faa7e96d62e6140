"""The model registry: families built from small specs, and named presets.

``create_model("cnn-tanh", depth=12)`` builds a plain ``nn.Module``. A *family* is a spec
dataclass plus a builder; a *preset* is a family name and a dict of spec values. Presets are
data, not classes: ``cnn-elu-bn`` is ``stages`` with ``act="elu", init="lecun-in", norm="bn"``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError
from . import transformed
from .factory import ModelFactory


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"tanh": nn.Tanh, "elu": nn.ELU, "relu": nn.ReLU}


def check_choice(what: str, value, choices, where: str = "") -> None:
    """A spec field that must be one of ``choices``: else one line naming them."""
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}{where}; choose one of: {', '.join(choices)}")


def check_activation(name: str, init: str | None = None, depth: int | None = None) -> None:
    """validate() of ``act`` in a family whose builder passes the depth (`make_activation`): a
    plain activation or a DKS/TAT one (`depthlab.models.transformed`, needs the dks package; with
    ``depth``, refused where the method's targets are out of reach for that depth)."""
    if transformed.is_transformed(name):
        transformed.check_transformed(name, init, depth)
        return
    check_choice("activation", name, tuple(ACTIVATIONS) + transformed.TRANSFORMED)


def make_activation(name: str, depth: int | None = None) -> nn.Module:
    """An activation module. DKS/TAT activations (``dks-tanh``, ``tat-leaky-relu``, ...) are built
    for a network of ``depth`` nonlinear layers: only families that pass it can take them."""
    if transformed.is_transformed(name):
        if depth is None:
            raise ConfigError(f"activation {name!r} is built for the network's depth: only the stages and mlp "
                              f"families take it")
        return transformed.TransformedActivation(name, depth)
    check_choice("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


# ---------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class Family:
    name: str
    spec_cls: type
    build: Callable[[Any, tuple[int, int, int], int], nn.Module]
    datasets: tuple[str, ...]
    description: str
    depth_unit: str = "conv layers"   # what ``depth`` counts, as plots label the depth axis


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    values: dict = field(default_factory=dict)
    description: str = ""


FAMILIES: dict[str, Family] = {}
PRESETS: dict[str, Preset] = {}


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _check_name(name: str) -> None:
    # Model names become parts of file names (checkpoints, outputs): no separators, no "..".
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"bad model name {name!r}: use letters, digits, '.', '_' and '-'")


def register_family(family: Family) -> None:
    _check_name(family.name)
    FAMILIES[family.name] = family
    PRESETS.setdefault(family.name, Preset(family.name, family.name, {}, family.description))


def register_preset(preset: Preset) -> None:
    _check_name(preset.name)
    PRESETS[preset.name] = preset




def _coerce(value: Any, typ: Any, key: str) -> Any:
    if not isinstance(value, str):
        return value
    typ = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if typ in ("int",):
            return int(value)
        if typ in ("float",):
            return float(value)
        if typ in ("bool",):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
    except ValueError:
        raise ConfigError(f"bad value {value!r} for {key} (expected {typ})") from None
    return value


def resolve_model(name: str, **overrides: Any) -> tuple[Family, Any]:
    """The family and the validated spec for a preset name plus overrides (None = keep)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[name]
    family = FAMILIES[preset.family]
    fields = {f.name: f for f in dataclasses.fields(family.spec_cls)}
    values = dict(preset.values)
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in fields:
            raise ConfigError(f"model {name!r} has no parameter {key!r}; it takes: {', '.join(fields)}")
        values[key] = _coerce(value, fields[key].type, key)
    spec = family.spec_cls(**values)
    spec.validate()
    return family, spec


def model_config(name: str | ModelFactory, **overrides: Any) -> dict:
    """The full, validated parameter dict of a model (what the store records and hashes); for a
    factory, its ``depth`` and keyword parameters (plain JSON values)."""
    if isinstance(name, ModelFactory):
        return factory_params(name, overrides)
    _, spec = resolve_model(name, **overrides)
    return spec_params(spec)


# A spec field with this metadata is left out of the parameters (and so of the hash) while it
# is None: a field added for some models only leaves every other model's stored runs replaying.
OMIT_WHEN_NONE = {"omit_when_none": True}


def spec_params(spec) -> dict:
    """A spec's parameters as stored and hashed: every field, except an `OMIT_WHEN_NONE` one at None."""
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)
            if not (f.metadata.get("omit_when_none") and getattr(spec, f.name) is None)}


def create_model(name: str | ModelFactory, input_shape=(1, 28, 28), num_classes: int = 10,
                 **overrides: Any) -> nn.Module:
    """Build a model by preset name, ``create_model("cnn-elu-bn", depth=30)``, or by factory."""
    if isinstance(name, ModelFactory):
        params = factory_params(name, overrides)
        return name.build(params.pop("depth"), tuple(input_shape), num_classes, **params)
    family, spec = resolve_model(name, **overrides)
    return family.build(spec, tuple(input_shape), num_classes)


def check_builds(name: str | ModelFactory, input_shape=(1, 28, 28), **overrides: Any) -> None:
    """Build ``name`` once and drop it, leaving the caller's random state as it was: the check a
    command and the Python API make before any store is opened. A factory that fails raises
    `FactoryError`; one that tries to end the process, `depthlab.errors.UserCodeExit`."""
    with torch.random.fork_rng(devices=[]):
        create_model(name, input_shape, 10, **overrides)


def depth_unit(model: str | ModelFactory) -> str:
    """What a model's ``depth`` counts, for axis labels: its family's `Family.depth_unit`
    (``conv layers``, ``hidden layers``); ``layers`` for a factory (its own ``build`` decides)."""
    if isinstance(model, str) and model in PRESETS:
        return FAMILIES[PRESETS[model].family].depth_unit
    return "layers"


def default_dataset(model: str | ModelFactory) -> str:
    """The dataset a model runs on unless told otherwise: its family's first, MNIST for a factory."""
    if isinstance(model, ModelFactory):
        return "mnist"
    family, _ = resolve_model(model)
    return FAMILIES[family.name].datasets[0]


def factory_params(factory: ModelFactory, params: dict) -> dict:
    """A factory's arguments, checked: an integer ``depth`` >= 1 and JSON-able keyword values
    (numbers, strings, booleans), numbers given as text (``-p width=2``) converted."""
    out = {k: _parse_scalar(v) for k, v in params.items() if v is not None}
    depth = out.get("depth")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ConfigError(f"{factory.name} needs a positive integer depth, got {depth!r}")
    for key, value in out.items():
        if not key.isidentifier() or not isinstance(value, (int, float, str, bool)):
            raise ConfigError(f"{factory.name}: parameter {key}={value!r} must be a number, string or boolean")
    return out


def _parse_scalar(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    for parse in (int, float):
        try:
            return parse(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def layer_summary(model: nn.Module, input_shape) -> list[tuple[str, str, tuple, int]]:
    """(name, type, output shape, own parameters) per leaf module, in call order."""
    rows: list[tuple[str, str, tuple, int]] = []
    hooks = []
    for name, module in model.named_modules():
        if list(module.children()) or isinstance(module, nn.Identity):
            continue

        def hook(mod, inp, out, name=name):
            shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()
            rows.append((name, type(mod).__name__, shape, sum(p.numel() for p in mod.parameters(recurse=False))))
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    own = sum(r[3] for r in rows)
    extra = count_parameters(model) - own  # parameters on non-leaf modules (rezero alphas)
    if extra:
        rows.append(("(scalars)", "Parameter", (), extra))
    return rows
