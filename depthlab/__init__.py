"""depthlab: a laboratory for how depth interacts with trainability.

The Python API mirrors the CLI::

    from depthlab import TrainConfig, train, create_model
    result = train(TrainConfig(model="cnn-tanh", model_args={"depth": 9}, epochs=1))
"""

from .data.batches import Batches
from .data.dataset import Dataset
from .data.registry import load_dataset
from .errors import ConfigError, DataError, StoreError, UserError
from .models import PRESETS, create_model, model_config
from .store.sqlite import Store
from .records.record import RunResult, RunStatus
from .engine.config import TrainConfig
from .engine.schedule import parse_schedule
from .engine.loop import train


__version__ = "0.1.0"
__all__ = ["Batches", "ConfigError", "DataError", "Dataset", "PRESETS", "RunResult", "RunStatus", "Store", "StoreError",
           "TrainConfig", "UserError", "create_model", "load_dataset", "model_config", "parse_schedule", "train"]
