"""Models: plain ``nn.Module`` families built from small spec dataclasses, and a registry of
named presets (``create_model(name, **overrides)``). The families and presets are data in
`depthlab.models.catalog` (their specs in `depthlab.models.specs`), importable without torch, as
``depthlab models`` reads them; one torch module per family builds its networks.

The names below are imported on first use (PEP 562), so that importing a torch-free submodule
(``depthlab.models.catalog``) does not import the registry and torch with this package.
"""

import importlib

# Every public name and the module that defines it.
_EXPORTS = {
    "FactoryError": "factory",
    "ModelFactory": "factory",
    "as_model": "factory",
    "ACTIVATIONS": "activations",
    "make_activation": "activations",
    "CLASSIC_PRESETS": "catalog",
    "Preset": "catalog",
    **{
        name: "registry"
        for name in (
            "FAMILIES",
            "PRESETS",
            "Family",
            "check_builds",
            "count_parameters",
            "create_model",
            "default_dataset",
            "depth_unit",
            "layer_summary",
            "model_config",
            "register_family",
            "register_preset",
            "resolve_model",
        )
    },
    "ConvUnit": "stages",
    "StagesNet": "stages",
    "StagesSpec": "specs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
