"""depthlab: a laboratory for how depth interacts with trainability.

The Python API mirrors the CLI (`depthlab.api`)::

    import depthlab
    result = depthlab.train("cnn-tanh", depth=9, epochs=1)      # or a TrainConfig; fields named as the CLI's flags
    found = depthlab.frontier(build, store="runs.db", max_depth=12, epochs=1)   # your own factory
    depthlab.diagnose("cnn-tanh", depth=30, steps=20), depthlab.lr_find("cnn-elu-bn", depth=30)
    result.to_frame(), found.to_frame(), depthlab.Store("runs.db").to_frame()

``depthlab.frontier`` is the function (`depthlab.api.frontier`); the depth frontier's package is
`depthlab.depth_frontier` (``import depthlab.depth_frontier.search as search``).
"""

import importlib

__version__ = "0.1.0"

# Every public name and the module that defines it. They are imported on first use (PEP 562), so
# that `import depthlab.cli` (and with it `depthlab --help`, `--version`) does not import torch.
_EXPORTS = {
    "Batches": "data.batches",
    "Dataset": "data.dataset",
    "load_dataset": "data.registry",
    "ConfigError": "errors",
    "DataError": "errors",
    "StoreError": "errors",
    "UserError": "errors",
    "PRESETS": "models",
    "FactoryError": "models",
    "ModelFactory": "models",
    "create_model": "models",
    "model_config": "models",
    "Store": "store.sqlite",
    "RunResult": "records.record",
    "RunStatus": "records.record",
    "TrainConfig": "engine.config",
    "parse_schedule": "engine.schedule",
    "LoopCallback": "engine.loop",
    "LambdaCallback": "engine.callbacks",
    "FrontierConfig": "depth_frontier.protocol",
    "FrontierResult": "depth_frontier.results",
    "frontier": "api",
    "train": "api",
    "diagnose": "api",
    "lr_find": "api",
}
__all__ = [
    "Batches",
    "ConfigError",
    "DataError",
    "Dataset",
    "FactoryError",
    "FrontierConfig",
    "FrontierResult",
    "LambdaCallback",
    "LoopCallback",
    "ModelFactory",
    "PRESETS",
    "RunResult",
    "RunStatus",
    "Store",
    "StoreError",
    "TrainConfig",
    "UserError",
    "create_model",
    "diagnose",
    "frontier",
    "load_dataset",
    "lr_find",
    "model_config",
    "parse_schedule",
    "train",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'depthlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
