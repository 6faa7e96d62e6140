"""`TrainConfig`: everything that defines a training run, validated, with the hash that identifies its result."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..data.registry import check_dataset_name
from ..errors import ConfigError
from ..models import FAMILIES, ModelFactory, model_config, resolve_model
from .device import DEFAULT_PRECISION, PRECISIONS, check_precision, resolve_device
from .schedule import parse_schedule


OPTIMIZERS = ("sgd", "adam", "adamw")


EVAL_SPLITS = ("test", "val")


@dataclass
class TrainConfig:
    """Everything that defines a training run, validated when built. ``model`` is a preset name or
    your own factory ``build(depth, **params)`` (a `ModelFactory`, or a function converted with
    `ModelFactory.from_callable`); ``model_args`` override the preset's spec or are the factory's
    ``depth`` and parameters."""

    model: Any = "cnn-tanh"   # str | ModelFactory
    model_args: dict = field(default_factory=dict)
    dataset: str = field(default="mnist", metadata={"help": "Dataset name."})
    train_size: int | None = field(default=None, metadata={"help": "Use a fixed random subset of N training images."})
    test_size: int | None = None
    eval_split: str = "test"   # "test": evaluate on the test set; "val": on a held-out part of train
    val_fraction: float = 0.1
    folds: int | None = None   # with eval_split "val": K folds, validation = fold `fold`
    fold: int = 0
    epochs: int = field(default=3, metadata={"help": "Training epochs."})
    batch_size: int = field(default=256, metadata={"help": "Mini-batch size."})
    optimizer: str = field(default="sgd", metadata={"help": "sgd, adam or adamw."})
    lr: float = field(default=0.1, metadata={"help": "Learning rate."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (adam and adamw ignore it)."})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum."})
    weight_decay: float = field(default=0.0, metadata={"help": "Weight decay (adam: coupled L2; adamw: decoupled)."})
    schedule: str = field(default="constant", metadata={
        "help": "constant | 2@0.07,3@0.01 | multistep:M1,M2[:gamma] | cosine, optionally warmup:E+..."})
    augment: bool = field(default=False, metadata={"help": "Random crop (pad 4) + horizontal flip."})
    patience: int | None = field(default=None, metadata={  # early stopping on the evaluation error
        "help": "Early stopping patience (epochs); restores best weights."})
    evals_per_epoch: int = 1
    seed: int = field(default=0, metadata={"help": "Random seed (init, batch order, subsets)."})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or mps."})
    compile: bool = field(default=False, metadata={  # CUDA: reduce-overhead, i.e. CUDA graphs
        "help": "torch.compile the model (CUDA graphs on a GPU)."})
    precision: str = field(default=DEFAULT_PRECISION, metadata={  # part of the result's identity
        "help": "fp32, bf16 (autocast) or tf32 (CUDA matmuls/convolutions).", "choices": PRECISIONS})

    def __post_init__(self) -> None:
        if not isinstance(self.model, (str, ModelFactory)):
            self.model = ModelFactory.from_callable(self.model)
        self.validate(device=False)   # a config may be built for a device elsewhere (a Ray GPU worker)

    @property
    def model_name(self) -> str:
        """The preset's name, or the factory's label (``nets.build``)."""
        return self.model.name if isinstance(self.model, ModelFactory) else self.model

    def validate(self, *, device: bool = True) -> None:
        """One-line `ConfigError` for anything wrong; ``device``: also whether this machine has
        the device and it supports the precision (checked where the run starts)."""
        if not isinstance(self.model_args, dict):
            raise ConfigError(f"model_args must be a dict, got {type(self.model_args).__name__}")
        if isinstance(self.model, ModelFactory):
            model_config(self.model, **self.model_args)   # a positive depth, plain parameter values
            check_dataset_name(self.dataset)
        elif not isinstance(self.model, str):
            raise ConfigError(f"a model must be a preset name or a function build(depth, **params), got {self.model!r}")
        else:
            resolve_model(self.model, **self.model_args)
            check_dataset_name(self.dataset)
            family = FAMILIES[resolve_model(self.model, **self.model_args)[0].name]
            if self.dataset not in family.datasets and not self.dataset.startswith("npz:"):
                raise ConfigError(f"model {self.model!r} runs on {', '.join(family.datasets)}, not {self.dataset!r}")
        for name in ("epochs", "batch_size", "evals_per_epoch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive integer, got {value}")
        for name in ("train_size", "test_size", "patience"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive integer, got {value}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight decay must be non-negative, got {self.weight_decay}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.eval_split not in EVAL_SPLITS:
            raise ConfigError(f"eval split must be one of {', '.join(EVAL_SPLITS)}")
        if self.folds is not None and (self.folds < 2 or not 0 <= self.fold < self.folds):
            raise ConfigError(f"folds must be >= 2 and fold in [0, folds), got {self.folds}, {self.fold}")
        parse_schedule(self.schedule)
        if device:
            check_precision(self.precision, resolve_device(self.device))

    def canonical(self) -> dict:
        """The config with the model's full parameters filled in: what is stored and hashed."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model_args"] = model_config(self.model, **self.model_args)
        if isinstance(self.model, ModelFactory):   # the store's model column: the label; the hash: the source
            d["model"], d["factory"] = self.model.name, self.model.identity()
        return d

    def hash(self) -> str:
        """A stable hash of everything that defines the result (the device is not part of it)."""
        d = self.canonical()
        d.pop("device")
        d.pop("compile")  # how the forward runs, not what it computes
        if "factory" in d:   # a factory is its function and source, wherever the file lives
            identity = d.pop("factory")
            d["model"] = {k: identity[k] for k in ("factory", "source_sha256")}
        if d["precision"] == DEFAULT_PRECISION:
            d.pop("precision")  # runs stored before precision existed were fp32 on CPU: same hash
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
