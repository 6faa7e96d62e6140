"""Models: plain ``nn.Module`` families built from small spec dataclasses, and a registry of
named presets (``create_model(name, **overrides)``). One module per family; importing this
package registers them all."""

from .factory import FactoryError, ModelFactory, as_model
from .registry import (ACTIVATIONS, FAMILIES, PRESETS, Family, Preset, check_builds, count_parameters, create_model,
                       default_dataset, depth_unit, layer_summary, make_activation, model_config, register_family,
                       register_preset, resolve_model)
# isort: off
# The families register in import order, which is the order of FAMILIES and PRESETS (`--models all`,
# listings): not sorted.
from . import stages  # noqa: F401  (registers the family)
from . import cifar  # noqa: F401  (registers resnet-cifar, resnet18, cifar-cnn)
from . import skipfc, strided  # noqa: F401  (register the families)
from . import mlp  # noqa: F401  (registers the mlp family)
# isort: on
from .stages import CLASSIC_PRESETS, ConvUnit, StagesNet, StagesSpec


__all__ = ["ACTIVATIONS", "depth_unit", "CLASSIC_PRESETS", "ConvUnit", "FAMILIES", "FactoryError", "Family", "ModelFactory", "as_model",
           "PRESETS", "Preset", "StagesNet",
           "StagesSpec", "check_builds", "count_parameters", "create_model", "default_dataset", "layer_summary", "make_activation",
           "model_config", "register_family", "register_preset", "resolve_model"]
