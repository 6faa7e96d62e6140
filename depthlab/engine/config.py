"""`TrainConfig`: everything that defines a training run, validated, with the hash that identifies its result."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from ..data.registry import check_dataset_name
from ..errors import ConfigError
from ..models import FAMILIES, ModelFactory, as_model, model_config, resolve_model
from .device import (
    DEFAULT_PRECISION,
    MAX_THREADS,
    PRECISION_HELP,
    PRECISIONS,
    check_precision,
    resolve_device,
)
from .memory import check_depth, check_memory
from .schedule import parse_schedule

OPTIMIZERS = ("sgd", "adam", "adamw")


EVAL_SPLITS = ("test", "val")

# A sweep's trials run on this many threads unless told otherwise; at this value (and None,
# runs made before threads were recorded) the thread count is left out of the hash.
SWEEP_THREADS = 1

# Upper bounds of the numeric fields (docs/RELIABILITY.md, "Bounds"), checked by validate().
BOUNDS = {
    "epochs": 10_000,
    "batch_size": 1 << 20,
    "evals_per_epoch": 1_000,
    "train_size": 10_000_000,
    "test_size": 10_000_000,
    "patience": 10_000,
    "threads": MAX_THREADS,
}
MAX_SEED = 2**63 - 1
# In the hash of a run with patience: N means stop after N epochs without improvement (as Keras
# and Lightning). A stored run hashed without it stopped after N+1: another run, not reused.
PATIENCE_RULE = "stop-after-n"
MAX_LR = 1e6
MAX_WEIGHT_DECAY = 1e3
MAX_STEPS = 100_000  # mini-batches of a step-counted measurement (diagnose, lr-find, phase --family mlp)
MAX_FOLDS = 1_000
MAX_SEEDS = 1_000  # seeds per cell of a sweep (frontier --seeds, ablate --seeds)


@dataclass
class TrainConfig:
    """Everything that defines a training run, validated when built. ``model`` is a preset name or
    your own factory ``build(depth, **params)`` (a `ModelFactory`, or a function converted with
    `ModelFactory.from_callable`); ``model_args`` override the preset's spec or are the factory's
    ``depth`` and parameters."""

    model: Any = "cnn-tanh"  # str | ModelFactory
    model_args: dict = field(default_factory=dict)
    dataset: str = field(default="mnist", metadata={"help": "Dataset name."})
    train_size: int | None = field(
        default=None, metadata={"help": "Use a fixed random subset of N training images."}
    )
    test_size: int | None = None
    eval_split: str = "test"  # "test": evaluate on the test set; "val": on a held-out part of train
    val_fraction: float = 0.1
    folds: int | None = None  # with eval_split "val": K folds, validation = fold `fold`
    fold: int = 0
    epochs: int = field(default=3, metadata={"help": "Training epochs."})
    batch_size: int = field(default=256, metadata={"help": "Mini-batch size."})
    optimizer: str = field(default="sgd", metadata={"help": "sgd, adam or adamw."})
    lr: float = field(default=0.1, metadata={"help": "Learning rate."})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (adam and adamw ignore it)."})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum."})
    weight_decay: float = field(
        default=0.0, metadata={"help": "Weight decay (adam: coupled L2; adamw: decoupled)."}
    )
    schedule: str = field(
        default="constant",
        metadata={
            "help": "constant | 2@0.07,3@0.01 | multistep:M1,M2[:gamma] | cosine, optionally warmup:E+..."
        },
    )
    augment: bool = field(default=False, metadata={"help": "Random crop (pad 4) + horizontal flip."})
    patience: int | None = field(
        default=None,
        metadata={  # early stopping on the evaluation error
            "help": "Early stopping: stop after N epochs without improvement of the evaluation error (as Keras "
            "and Lightning count); the best epoch's weights are restored."
        },
    )
    evals_per_epoch: int = 1
    seed: int = field(default=0, metadata={"help": "Random seed (init, batch order, subsets)."})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or mps."})
    compile: bool = field(
        default=False,
        metadata={  # CUDA: reduce-overhead, i.e. CUDA graphs
            "help": "torch.compile the model (CUDA graphs on a GPU)."
        },
    )
    precision: str = field(
        default=DEFAULT_PRECISION,
        metadata={  # part of the result's identity
            "help": PRECISION_HELP,
            "choices": PRECISIONS,
        },
    )
    # torch intra-op threads the run computes on (None: not pinned, whatever the process has).
    # CPU results depend on it bitwise, so it is part of the hash, except at SWEEP_THREADS.
    threads: int | None = None

    def __post_init__(self) -> None:
        self.model = as_model(self.model)
        self.validate(device=False)  # a config may be built for a device elsewhere (a Ray GPU worker)

    @property
    def model_name(self) -> str:
        """The preset's name, or the factory's label (``nets.build``)."""
        return self.model.name if isinstance(self.model, ModelFactory) else self.model

    def validate(self, *, device: bool = True) -> None:
        """One-line `ConfigError` for anything wrong; ``device``: also whether this machine has
        the device and it supports the precision (checked where the run starts)."""
        spec, info = self._validate_model()
        self._validate_sizes()
        self._validate_optimization()
        self._validate_evaluation()
        parse_schedule(self.schedule)
        resolved = resolve_device(self.device, available=device)
        if device or self.device != "auto":  # "auto" on another machine may well be a GPU
            check_precision(self.precision, resolved)
        if device and spec is not None:
            check_memory(self.model, spec, tuple(info.input_shape), self.batch_size, resolved)

    def _validate_model(self) -> tuple:
        """Check the model, its arguments and depth, and the dataset it runs on; return the
        preset's resolved spec (None for a model factory) and the dataset's info."""
        if not isinstance(self.model_args, dict):
            raise ConfigError(f"model_args must be a dict, got {type(self.model_args).__name__}")
        spec = None
        if isinstance(self.model, ModelFactory):
            params = model_config(self.model, **self.model_args)  # a positive depth, plain parameter values
            check_depth(SimpleNamespace(depth=params["depth"]))
            info = check_dataset_name(self.dataset)
        elif not isinstance(self.model, str):
            raise ConfigError(
                f"a model must be a preset name or a function build(depth, **params), got {self.model!r}"
            )
        else:
            family, spec = resolve_model(self.model, **self.model_args)
            check_depth(spec)
            info = check_dataset_name(self.dataset)
            family = FAMILIES[family.name]
            if self.dataset not in family.datasets and not self.dataset.startswith("npz:"):
                raise ConfigError(
                    f"model {self.model!r} runs on {', '.join(family.datasets)}, not {self.dataset!r}"
                )
        return spec, info

    def _validate_sizes(self) -> None:
        """Check the counts (epochs, batch size, sizes, patience, threads): positive integers
        within their `BOUNDS`, the optional ones may be None."""
        for name in (
            "epochs",
            "batch_size",
            "evals_per_epoch",
            "train_size",
            "test_size",
            "patience",
            "threads",
        ):
            value = getattr(self, name)
            if value is None and name not in ("epochs", "batch_size", "evals_per_epoch"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be a positive integer, got {value}")
            if value > BOUNDS[name]:
                raise ConfigError(f"{name.replace('_', ' ')} must be at most {BOUNDS[name]:,}, got {value:,}")

    def _validate_optimization(self) -> None:
        """Check the seed, the learning rate, momentum, weight decay and the optimizer's name."""
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be an integer in [0, 2**63 - 1], got {self.seed}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if self.lr > MAX_LR:
            raise ConfigError(f"learning rate must be at most {MAX_LR:g}, got {self.lr:g}")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight decay must be non-negative, got {self.weight_decay}")
        if self.weight_decay > MAX_WEIGHT_DECAY:
            raise ConfigError(f"weight decay must be at most {MAX_WEIGHT_DECAY:g}, got {self.weight_decay:g}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")

    def _validate_evaluation(self) -> None:
        """Check the split evaluated on, the validation fraction and the cross-validation folds."""
        if self.eval_split not in EVAL_SPLITS:
            raise ConfigError(f"eval split must be one of {', '.join(EVAL_SPLITS)}")
        if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
            raise ConfigError(f"validation fraction must be in (0, 1), got {self.val_fraction}")
        if self.folds is not None and (
            self.folds < 2 or self.folds > MAX_FOLDS or not 0 <= self.fold < self.folds
        ):
            raise ConfigError(f"folds must be >= 2 and fold in [0, folds), got {self.folds}, {self.fold}")

    def canonical(self) -> dict:
        """The config with the model's full parameters filled in: what is stored and hashed."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model_args"] = model_config(self.model, **self.model_args)
        if isinstance(self.model, ModelFactory):  # the store's model column: the label; the hash: the source
            d["model"], d["factory"] = self.model.name, self.model.identity()
        return d

    def hash(self) -> str:
        """A stable hash of everything that defines the result (the device is not part of it)."""
        d = self.canonical()
        d.pop("device")
        d.pop("compile")  # how the forward runs, not what it computes
        if "factory" in d:  # a factory is its function and source, wherever the file lives
            identity = d.pop("factory")
            d["model"] = {k: identity[k] for k in ("factory", "source_sha256")}
        if d["precision"] == DEFAULT_PRECISION:
            d.pop("precision")  # runs stored before precision existed were fp32 on CPU: same hash
        if d["threads"] in (None, SWEEP_THREADS):
            d.pop("threads")  # stores made before threads existed keep replaying
        if d.get("patience") is not None:
            d["patience_rule"] = PATIENCE_RULE  # N epochs without improvement, not N+1
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
