"""depthlab: a laboratory for how depth interacts with trainability.

The Python API mirrors the CLI (`depthlab.api`)::

    import depthlab
    result = depthlab.train(depthlab.TrainConfig(model="cnn-tanh", model_args={"depth": 9}, epochs=1))
    found = depthlab.frontier(build, store="runs.db", max_depth=12, epochs=1)   # your own factory
    result.to_frame(), found.to_frame(), depthlab.Store("runs.db").frame()

``depthlab.frontier`` is the function (`depthlab.api.frontier`); the depth frontier's package
is `depthlab.depth_frontier` (``import depthlab.depth_frontier.search as search``). Its modules
also answer to the path ``depthlab.frontier.<module>`` in ``from`` imports (``from
depthlab.frontier.search import find_frontier``): the same module objects, for code written
against that path.
"""

import importlib as _importlib
import sys as _sys

from .data.batches import Batches
from .data.dataset import Dataset
from .data.registry import load_dataset
from .errors import ConfigError, DataError, StoreError, UserError
from .models import PRESETS, FactoryError, ModelFactory, create_model, model_config
from .store.sqlite import Store
from .records.record import RunResult, RunStatus
from .engine.config import TrainConfig
from .engine.schedule import parse_schedule
from .depth_frontier.protocol import FrontierConfig
from .depth_frontier.search import FrontierResult
from .api import frontier, train

_sys.modules.setdefault(f"{__name__}.frontier", _sys.modules[f"{__name__}.depth_frontier"])
for _module in ("bisection", "criterion", "outputs", "points", "protocol", "search", "seeds"):
    _sys.modules.setdefault(f"{__name__}.frontier.{_module}",
                            _importlib.import_module(f".depth_frontier.{_module}", __name__))


__version__ = "0.1.0"
__all__ = ["Batches", "ConfigError", "DataError", "Dataset", "FactoryError", "FrontierConfig", "FrontierResult",
           "ModelFactory", "PRESETS", "RunResult", "RunStatus", "Store", "StoreError", "TrainConfig", "UserError",
           "create_model", "frontier", "load_dataset", "model_config", "parse_schedule", "train"]
