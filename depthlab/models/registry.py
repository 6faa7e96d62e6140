"""The model registry: families built from small specs, and named presets.

``create_model("cnn-tanh", depth=12)`` builds a plain ``nn.Module``. A *family* is a spec
dataclass plus a builder; a *preset* is a family name and a dict of spec values. Presets are
data, not classes: ``cnn-elu-bn`` is ``stages`` with ``act="elu", init="lecun-in", norm="bn"``.
Both are listed in `depthlab.models.catalog` (data, no torch); this module adds the builders.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from . import catalog
from .catalog import Preset
from .factory import ModelFactory


@dataclass(frozen=True)
class Family:
    """A family with its builder: ``build(spec, input_shape, num_classes)`` makes the ``nn.Module``."""

    name: str
    spec_cls: type
    build: Callable[[Any, tuple[int, int, int], int], nn.Module]
    datasets: tuple[str, ...]
    description: str
    depth_unit: str = "conv layers"  # what ``depth`` counts, as plots label the depth axis


@dataclass(frozen=True)
class CatalogBuilder:
    """The builder of a `depthlab.models.catalog` family, ``"module:Class"`` under this package:
    the module (and with it torch's layers) is imported when the first model is built."""

    path: str

    def __call__(self, spec, input_shape, num_classes: int) -> nn.Module:
        module, _, name = self.path.partition(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(
            spec, input_shape, num_classes
        )


def catalog_family(info: catalog.FamilyInfo) -> Family:
    """A catalog family with its builder."""
    return Family(
        info.name,
        info.spec_cls,
        CatalogBuilder(info.builder),
        info.datasets,
        info.description,
        info.depth_unit,
    )


# One table: the catalog's families (with their builders) and its presets, the same dict, so that a
# preset registered here is listed there too.
FAMILIES: dict[str, Family] = {name: catalog_family(info) for name, info in catalog.FAMILIES.items()}
PRESETS: dict[str, Preset] = catalog.PRESETS


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _check_name(name: str) -> None:
    # Model names become parts of file names (checkpoints, outputs): no separators, no "..".
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"bad model name {name!r}: use letters, digits, '.', '_' and '-'")


def register_family(family: Family) -> None:
    """A family from outside the catalog (its builder a callable), and the preset of its name."""
    _check_name(family.name)
    FAMILIES[family.name] = family
    PRESETS.setdefault(family.name, catalog.family_preset(family))


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


def spec_params(spec) -> dict:
    """A spec's parameters as stored and hashed: every field, except an `OMIT_WHEN_NONE` one
    (`depthlab.models.specs`) at None."""
    return {
        f.name: getattr(spec, f.name)
        for f in dataclasses.fields(spec)
        if not (f.metadata.get("omit_when_none") and getattr(spec, f.name) is None)
    }


def create_model(
    name: str | ModelFactory, input_shape=(1, 28, 28), num_classes: int = 10, **overrides: Any
) -> nn.Module:
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
            raise ConfigError(
                f"{factory.name}: parameter {key}={value!r} must be a number, string or boolean"
            )
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
            rows.append(
                (name, type(mod).__name__, shape, sum(p.numel() for p in mod.parameters(recurse=False)))
            )

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
