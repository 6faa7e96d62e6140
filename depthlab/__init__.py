"""depthlab: a laboratory for how depth interacts with trainability.

The Python API mirrors the CLI (`depthlab.api`)::

    import depthlab
    result = depthlab.train(depthlab.TrainConfig(model="cnn-tanh", model_args={"depth": 9}, epochs=1))
    found = depthlab.frontier(build, store="runs.db", max_depth=12, epochs=1)   # your own factory
    result.to_frame(), found.to_frame(), depthlab.Store("runs.db").frame()

``depthlab.frontier`` is the function (`depthlab.api.frontier`); the package of the same name
stays importable as a module path (``from depthlab.frontier.search import find_frontier``).
"""

from .data.batches import Batches
from .data.dataset import Dataset
from .data.registry import load_dataset
from .errors import ConfigError, DataError, StoreError, UserError
from .models import PRESETS, FactoryError, ModelFactory, create_model, model_config
from .store.sqlite import Store
from .records.record import RunResult, RunStatus
from .engine.config import TrainConfig
from .engine.schedule import parse_schedule
from .frontier.protocol import FrontierConfig
from .frontier.search import FrontierResult
from . import frontier as _frontier_package  # noqa: F401  (imported before the name is rebound)
from .api import frontier, train  # noqa: E402,F811  (the functions replace the subpackage's name)


__version__ = "0.1.0"
__all__ = ["Batches", "ConfigError", "DataError", "Dataset", "FactoryError", "FrontierConfig", "FrontierResult",
           "ModelFactory", "PRESETS", "RunResult", "RunStatus", "Store", "StoreError", "TrainConfig", "UserError",
           "create_model", "frontier", "load_dataset", "model_config", "parse_schedule", "train"]
