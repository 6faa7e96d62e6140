"""Building run configs for experiments: dict overrides of `TrainConfig`, lr grids and model toggles
(``bn``, ``skip``) by family."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ..depth_frontier.protocol import parse_lrs as search_parse_lrs
from ..engine.config import TrainConfig
from ..errors import ConfigError
from ..models import ModelFactory, resolve_model

CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


def make_config(base: Mapping | TrainConfig, *overrides: Mapping) -> TrainConfig:
    """A validated `TrainConfig` from a base and overrides; ``model_args`` dicts are merged."""
    values = dataclasses.asdict(base) if isinstance(base, TrainConfig) else dict(base)
    values["model_args"] = dict(values.get("model_args") or {})
    for extra in overrides:
        for key, value in extra.items():
            if key not in CONFIG_FIELDS:
                raise ConfigError(
                    f"unknown training setting {key!r}; settings are: {', '.join(CONFIG_FIELDS)}"
                )
            if key == "model_args":
                values["model_args"].update(value)
            else:
                values[key] = value
    unknown = set(values) - set(CONFIG_FIELDS)
    if unknown:
        raise ConfigError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    if "dataset" not in values and "model" in values:
        family, _ = resolve_model(values["model"], **values["model_args"])
        values["dataset"] = family.datasets[0]
    config = TrainConfig(**values)
    config.validate()
    return config


def parse_lrs(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"0.01,0.03,0.1"`` -> (0.01, 0.03, 0.1): the frontier's ``--lrs`` grammar (also
    ``log:LOW:HIGH:COUNT``); every lr positive and finite, none listed twice."""
    lrs = search_parse_lrs(text if isinstance(text, str) else ",".join(str(x) for x in text))
    if len(set(lrs)) != len(lrs):
        raise ConfigError("--lrs lists a learning rate twice")
    return lrs


TOGGLES: dict[tuple[str, str], tuple[str, Any, Any]] = {}


def register_toggle(family: str, name: str, key: str, off: Any, on: Any) -> None:
    """``--toggle NAME`` on a model of ``family`` switches spec field ``key`` between off and on."""
    TOGGLES[(family, name)] = (key, off, on)


register_toggle("stages", "bn", "norm", "none", "bn")


register_toggle("stages", "skip", "skip", "none", "post")


register_toggle("strided", "skip", "skip", "none", "res")


register_toggle("skipfc", "bn", "bn", False, True)


register_toggle("skipfc", "skip", "skip", False, True)


def model_toggles(model: str) -> dict[str, tuple[str, Any, Any]]:
    """The toggles a model takes: the registered ones plus every boolean field of its spec (of a
    model factory: its keyword parameters with a boolean default)."""
    if isinstance(model, ModelFactory):
        return {name: (name, False, True) for name in model.boolean_params()}
    family, _ = resolve_model(model)
    toggles = {
        f.name: (f.name, False, True) for f in dataclasses.fields(family.spec_cls) if f.type in ("bool", bool)
    }
    toggles.update({name: spec for (fam, name), spec in TOGGLES.items() if fam == family.name})
    return toggles


def toggle_override(model: str, name: str, on: bool) -> dict:
    """The model_args that switch toggle ``name`` on or off for ``model``."""
    toggles = model_toggles(model)
    if name not in toggles:
        choices = ", ".join(sorted(toggles)) or "none"
        raise ConfigError(f"unknown toggle {name!r} for model {model!r}; it takes: {choices}")
    key, off, on_value = toggles[name]
    return {key: on_value if on else off}
