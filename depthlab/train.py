"""The training engine: a config dataclass, optimisers, learning-rate schedules and one loop.

``train(TrainConfig(model="cnn-tanh", model_args={"depth": 9}, epochs=3))`` returns a
`RunResult` with per-epoch train error (counted on the fly, train mode), evaluation error
(eval mode, after each epoch) and loss. A NaN/inf loss stops the run as ``diverged``.
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import Batches, Dataset, check_dataset_name, kfold_indices, load_dataset, subset_indices, train_val_split
from .errors import ConfigError, DataError
from .models import FAMILIES, count_parameters, create_model, model_config, resolve_model

OPTIMIZERS = ("sgd", "adam", "adamw")
EVAL_SPLITS = ("test", "val")


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule as a function of fractional epoch.

    Grammar (parts joined with ``+``; an optional ``warmup:E`` or ``hold:E@LR`` part comes first):
    ``constant`` | ``E@LR,E@LR,...`` (piecewise, absolute lrs) | ``multistep:M1,M2[:GAMMA]`` |
    ``cosine`` | ``warmup:E`` (linear warm-up from 0 over E epochs) | ``hold:E@LR`` (a constant
    warm-up lr for the first E epochs, fractions allowed: He et al.'s resnet110 recipe)."""

    kind: str = "constant"
    segments: tuple[tuple[float, float], ...] = ()  # piecewise (epochs, lr)
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup: float = 0.0
    hold: float = 0.0       # hold:E@LR: lr `hold_lr` for the first `hold` epochs
    hold_lr: float = 0.0
    text: str = "constant"

    def lr_at(self, epoch: float, base_lr: float, total_epochs: int) -> float:
        if epoch < self.hold:
            return self.hold_lr
        if self.kind == "piecewise":
            lr, end = self.segments[-1][1], 0.0
            for length, seg_lr in self.segments:
                end += length
                if epoch < end:
                    lr = seg_lr
                    break
        elif self.kind == "multistep":
            lr = base_lr * self.gamma ** sum(epoch >= m for m in self.milestones)
        elif self.kind == "cosine":
            lr = 0.5 * base_lr * (1 + math.cos(math.pi * min(epoch / max(total_epochs, 1e-12), 1.0)))
        else:
            lr = base_lr
        if self.warmup > 0 and epoch < self.warmup:
            lr *= epoch / self.warmup
        return lr


_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


def _positive(text: str, what: str, schedule: str) -> float:
    if not re.fullmatch(_NUM, text):
        raise ConfigError(f"malformed schedule {schedule!r}: {what} {text!r} is not a number")
    value = float(text)
    if not value > 0 or not math.isfinite(value):
        raise ConfigError(f"malformed schedule {schedule!r}: {what} must be positive")
    return value


def parse_schedule(text: str) -> Schedule:
    """Parse a schedule string; a malformed one raises `ConfigError` naming the problem."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("malformed schedule '': expected e.g. constant, 2@0.07,3@0.01, multistep:100,150, cosine")
    parts = text.strip().split("+")
    warmup, hold = 0.0, {}
    if parts[0].startswith("warmup:"):
        warmup = _positive(parts[0][len("warmup:"):], "warm-up epochs", text)
        parts = parts[1:] or ["constant"]
    elif parts[0].startswith("hold:"):
        epochs, at, lr = parts[0][len("hold:"):].partition("@")
        if not at:
            raise ConfigError(f"malformed schedule {text!r}: expected hold:EPOCHS@LR, e.g. hold:1@0.01")
        hold = dict(hold=_positive(epochs, "hold epochs", text), hold_lr=_positive(lr, "hold learning rate", text))
        parts = parts[1:] or ["constant"]
    if len(parts) != 1:
        raise ConfigError(f"malformed schedule {text!r}: at most one warm-up and one schedule")
    body = parts[0]
    if body == "constant":
        return Schedule("constant", warmup=warmup, text=text, **hold)
    if body == "cosine":
        return Schedule("cosine", warmup=warmup, text=text, **hold)
    if body.startswith("multistep:"):
        milestones, _, gamma = body[len("multistep:"):].partition(":")
        try:
            stones = tuple(int(m) for m in milestones.split(","))
        except ValueError:
            raise ConfigError(f"malformed schedule {text!r}: milestones must be whole epochs") from None
        if any(m <= 0 for m in stones) or list(stones) != sorted(set(stones)):
            raise ConfigError(f"malformed schedule {text!r}: milestones must be increasing positive epochs")
        g = _positive(gamma, "gamma", text) if gamma else 0.1
        return Schedule("multistep", milestones=stones, gamma=g, warmup=warmup, text=text, **hold)
    body = body[len("piecewise:"):] if body.startswith("piecewise:") else body
    segments = []
    for seg in body.split(","):
        epochs, at, lr = seg.partition("@")
        if not at:
            raise ConfigError(f"malformed schedule {text!r}: expected constant, cosine, multistep:M1,M2 "
                              "or EPOCHS@LR,EPOCHS@LR (e.g. 2@0.07,3@0.01)")
        segments.append((_positive(epochs, "epoch count", text), _positive(lr, "learning rate", text)))
    return Schedule("piecewise", segments=tuple(segments), warmup=warmup, text=text, **hold)


# ---------------------------------------------------------------------------------------------
# Config and results


@dataclass
class TrainConfig:
    """Everything that defines a training run. ``model_args`` override the preset's spec."""

    model: str = "cnn-tanh"
    model_args: dict = field(default_factory=dict)
    dataset: str = "mnist"
    train_size: int | None = None
    test_size: int | None = None
    eval_split: str = "test"   # "test": evaluate on the test set; "val": on a held-out part of train
    val_fraction: float = 0.1
    folds: int | None = None   # with eval_split "val": K folds, validation = fold `fold`
    fold: int = 0
    epochs: int = 3
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    augment: bool = False
    patience: int | None = None  # early stopping on the evaluation error, best weights restored
    evals_per_epoch: int = 1
    seed: int = 0
    device: str = "auto"
    compile: bool = False      # torch.compile the model (CUDA: reduce-overhead, i.e. CUDA graphs)

    def validate(self) -> None:
        resolve_model(self.model, **self.model_args)
        check_dataset_name(self.dataset)
        family = FAMILIES[resolve_model(self.model, **self.model_args)[0].name]
        if self.dataset not in family.datasets:
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
        resolve_device(self.device)

    def canonical(self) -> dict:
        """The config with the model's full parameters filled in: what is stored and hashed."""
        d = dataclasses.asdict(self)
        d["model_args"] = model_config(self.model, **self.model_args)
        return d

    def hash(self) -> str:
        """A stable hash of everything that defines the result (the device is not part of it)."""
        d = self.canonical()
        d.pop("device")
        d.pop("compile")  # how the forward runs, not what it computes
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class EpochMetrics:
    epoch: int
    train_error: float
    test_error: float
    loss: float
    lr: float
    seconds: float
    head_errors: list[float] | None = None  # with several heads: the eval error of each head

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["head_errors"] is None:
            d.pop("head_errors")
        return d


@dataclass
class Checkpoint:
    """What a mid-epoch or end-of-epoch monitor sees."""

    epoch: float            # fractional epochs completed
    train_error: float      # error over this epoch's batches so far (train mode)
    eval_error: float       # evaluation error now (eval mode)


@dataclass
class RunResult:
    config: dict
    status: str                          # done | diverged | failed (| cancelled: fused only)
    epochs: list[EpochMetrics]
    seconds: float
    reason: str | None = None
    stopped_early: bool = False
    test_error: float | None = None      # final test error (after restoring best weights if any)
    parameters: int = 0
    device: str = "cpu"
    # torch intra-op threads when the run was made: CPU results depend on it bitwise
    threads: int = field(default_factory=torch.get_num_threads)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)  # the trained network, for notebooks

    def to_dict(self) -> dict:
        return {"config": self.config, "status": self.status,
                "epochs": [e.to_dict() for e in self.epochs], "seconds": round(self.seconds, 3),
                "reason": self.reason, "stopped_early": self.stopped_early,
                "test_error": self.test_error, "parameters": self.parameters, "device": self.device,
                "threads": self.threads}


# ---------------------------------------------------------------------------------------------
# Engine


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but CUDA is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {name!r}")
    return device


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def multi_head_loss(outputs, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over heads; returns (loss, final-head logits)."""
    if isinstance(outputs, (list, tuple)):
        loss = sum(F.cross_entropy(o.float(), y) for o in outputs) / len(outputs)
        return loss, outputs[-1]
    return F.cross_entropy(outputs.float(), y), outputs


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, amp: bool = False) -> tuple[float, list[float] | None]:
    """Error of the final head (and of every head when there are several), model in eval mode."""
    was_training = model.training
    model.eval()
    wrong: torch.Tensor | None = None
    n = 0
    for xb, yb in batches:
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=amp):
            outputs = model(xb)
        outs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        w = torch.stack([(o.argmax(1) != yb).sum() for o in outs])
        wrong = w if wrong is None else wrong + w
        n += len(yb)
    model.train(was_training)
    errors = (wrong.double() / max(n, 1)).tolist()
    return errors[-1], (errors if len(errors) > 1 else None)


def _select(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    return x if idx is None else x[idx]


def prepare_splits(config: TrainConfig, data: Dataset):
    """(train_x, train_y, eval_x, eval_y, test_x, test_y) on the CPU for a config."""
    train_idx = subset_indices(len(data.train_x), config.train_size, seed=0)
    tx, ty = data.train_x[train_idx], data.train_y[train_idx]
    test_idx = subset_indices(len(data.test_x), config.test_size, seed=0)
    test_x, test_y = data.test_x[test_idx], data.test_y[test_idx]
    if config.eval_split == "test":
        return tx, ty, test_x, test_y, test_x, test_y
    if config.folds:
        fit_idx, val_idx = kfold_indices(len(tx), config.folds, seed=0)[config.fold]
    else:
        fit_idx, val_idx = train_val_split(len(tx), config.val_fraction, seed=0)
    return tx[fit_idx], ty[fit_idx], tx[val_idx], ty[val_idx], test_x, test_y


Monitor = Callable[[Checkpoint], bool]

# ---------------------------------------------------------------------------------------------
# Resumable checkpoints (every epoch and evaluation point, atomic; loaded with weights_only=True)

# Version 2 added saves inside an epoch ("mid_epoch"). Version-1 files (epoch ends only) still
# load; code that only knows version 1 discards version-2 files instead of resuming them wrongly.
CHECKPOINT_FORMAT = "depthlab-train-state-2"


def _readable_format(found, fmt: str) -> bool:
    """Whether a checkpoint of format ``found`` loads as ``fmt`` ("name-version"): the same
    name at the same or an earlier version (each version only adds keys)."""
    if not isinstance(found, str):
        return False
    name, _, version = fmt.rpartition("-")
    found_name, _, found_version = found.rpartition("-")
    return (found_name == name and found_version.isdigit() and version.isdigit()
            and int(found_version) <= int(version))


def save_checkpoint(path, state: dict, *, required: bool = True) -> None:
    """Write ``state`` with ``torch.save`` to a temp file in the same folder, then rename it over
    ``path``: a run killed mid-write leaves the previous checkpoint intact, never half a file.
    Not ``required`` (a sweep's checkpoints, which only save time), a write that fails (disk
    full, folder not writable) prints a warning and the run goes on."""
    tmp = None
    try:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if required or not isinstance(exc, (OSError, RuntimeError)):
            raise
        print(f"depthlab: warning: checkpoint {path} not written ({type(exc).__name__}: {exc}); "
              "the run goes on without it", file=sys.stderr)


def discard_checkpoint(path) -> None:
    """Delete a checkpoint and any temp file a run killed mid-write left beside it."""
    for name in [path, *glob.glob(glob.escape(os.fspath(path)) + "*.tmp")]:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


def load_checkpoint(path, fmt: str = CHECKPOINT_FORMAT) -> dict:
    """Load a training checkpoint of format ``fmt`` (tensors and plain containers only:
    ``weights_only=True``); an unreadable or foreign file raises `DataError` with one clear line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"checkpoint {path} is corrupted or not a depthlab checkpoint "
                        f"({type(exc).__name__}); delete it or run without --resume") from None
    if not isinstance(state, dict) or not _readable_format(state.get("format"), fmt):
        raise DataError(f"checkpoint {path} is not a depthlab training checkpoint; "
                        "delete it or run without --resume")
    return state


MONITOR_STOP = "monitor stopped the run"
# A fused member stopped because a member ranked before it answered (`depthlab.fused.train_fused`
# ``ranks``): its verdict cannot matter, and it is not a result (never recorded in a store).
CANCELLED = "cancelled"


def checkpoint_resumable(path, fmt: str, config_hashes: Sequence[str], monitors: Sequence[Monitor | None]) -> bool:
    """Whether a sweep may continue from ``path``: a readable checkpoint of format ``fmt``, of
    exactly these configs, whose runs' stopping decisions ``monitors`` (one per config) would
    all have made too. Criteria are not part of a config's hash, so a checkpoint made under
    another threshold (a run it stopped, or one it let go on) must not be continued."""
    try:
        state = load_checkpoint(path, fmt)
    except DataError:
        return False
    if list(state.get("config_hashes", [state.get("config_hash")])) != list(config_hashes):
        return False
    runs = state["members"] if "members" in state else [state]
    for run, monitor in zip(runs, monitors):
        points = [Checkpoint(**c) for c in run.get("checkpoints", [])]
        decisions = [bool(monitor(p)) if monitor is not None else False for p in points]
        stopped = run.get("reason") == MONITOR_STOP
        if decisions != [False] * (len(points) - stopped) + [True] * stopped:
            return False
    return True


def saved_epochs(folder) -> dict[str, float]:
    """For each config hash with a checkpoint in ``folder`` (a sweep's trials in flight: the
    ``checkpoint_dir`` of `depthlab.executors.TrialRunner`), the epochs it has saved (1.4: one
    epoch and 40% of the next, saved at an evaluation point); files that cannot be read are
    skipped. Read-only: safe while the sweep runs."""
    found: dict[str, float] = {}
    if not os.path.isdir(folder):
        return found
    for name in sorted(os.listdir(folder)):
        if name.endswith(".pt"):
            progress = checkpoint_progress(os.path.join(folder, name))
            if progress is not None:
                for key in progress[1]:
                    found[key] = progress[0]
    return found


def checkpoint_progress(path) -> tuple[float, list[str]] | None:
    """The epochs a checkpoint has saved (1.4: one epoch and 40% of the next) and the config
    hashes it is of; None for a file that cannot be read (being replaced, or not ours)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if not (isinstance(state, dict) and isinstance(state.get("epoch"), int)):
        return None
    epochs: float = state["epoch"]
    mid = state.get("mid_epoch")
    if isinstance(mid, dict) and isinstance(mid.get("step"), int) and isinstance(mid.get("steps"), int):
        epochs = math.floor(100 * (epochs + mid["step"] / max(mid["steps"], 1))) / 100  # never a whole epoch early
    return epochs, [k for k in state.get("config_hashes") or [state.get("config_hash")] if isinstance(k, str)]


def train(config: TrainConfig, data: Dataset | None = None, *, data_dir=None,
          monitor: Monitor | None = None, on_epoch: Callable[[EpochMetrics], None] | None = None,
          on_step: Callable[[int, int], None] | None = None, checkpoint_path=None, resume: bool = False,
          checkpoint_required: bool = True,
          compile_model: bool = False, channels_last: bool | None = None) -> RunResult:
    """Train one configuration.

    ``monitor`` is called at each evaluation (``evals_per_epoch`` times per epoch) and may stop
    the run early by returning True (the frontier stops as soon as its criterion is met).
    ``on_epoch`` receives each epoch's metrics as soon as they exist (the store writes them).
    With ``checkpoint_path`` the full training state (model, optimizer, epoch, early-stopping
    state, RNG states of the batcher and of torch) is saved there after every epoch and at every
    evaluation point inside one (with the epoch's sample order and running sums); with
    ``resume`` an existing checkpoint of the same config is continued, giving the same result
    as an uninterrupted run (the restored epochs are passed to ``on_epoch`` again; the
    checkpoint records the monitor's decisions, so resume under the same monitor). Not
    ``checkpoint_required`` (a sweep's checkpoints), a failed write is a warning, not an error.
    ``compile_model`` wraps the model in ``torch.compile`` (a speed option on CUDA).
    ``channels_last`` (default: on for CPU and CUDA) is exposed for benchmarks: NHWC convs are
    about twice as fast on CPU for these few-channel networks (see BENCHMARKS.md).
    """
    config.validate()
    device = resolve_device(config.device)
    if data is None:
        data = load_dataset(config.dataset, data_dir)
    canonical = config.canonical()
    started = time.perf_counter()
    schedule = parse_schedule(config.schedule)
    amp = device.type == "cuda"
    if channels_last is None:
        channels_last = device.type in ("cpu", "cuda")

    torch.manual_seed(config.seed)
    model = create_model(config.model, data.input_shape, data.num_classes, **config.model_args).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model.parameters())
    # Deep thin nets are launch-bound on a GPU: CUDA graphs (reduce-overhead) remove that cost.
    net = (torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else "default")
           if compile_model or config.compile else model)  # state dicts are taken from `model`

    tx, ty, ex, ey, test_x, test_y = (t.to(device) for t in prepare_splits(config, data))
    train_batches = Batches(tx, ty, config.batch_size, data.mean, data.std, seed=config.seed,
                            augment=config.augment, channels_last=channels_last)
    eval_batches = Batches(ex, ey, 1024, data.mean, data.std, shuffle=False, channels_last=channels_last)
    steps_per_epoch = len(train_batches)
    eval_at = {round(steps_per_epoch * (i + 1) / config.evals_per_epoch) for i in range(config.evals_per_epoch)}
    check_every = 1 if device.type == "cpu" else 20  # a finiteness check syncs an accelerator

    result = RunResult(canonical, "done", [], 0.0, parameters=count_parameters(model), device=str(device))
    best_error, best_state, since_best = math.inf, None, 0
    first_epoch, elapsed_before = 0, 0.0
    mid_epoch: dict | None = None  # where a checkpoint saved in the middle of an epoch stands
    if resume and checkpoint_path is not None and os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path)
        if state.get("config_hash") != config.hash():
            raise ConfigError(f"checkpoint {checkpoint_path} belongs to a different configuration; "
                              "delete it or run without --resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        train_batches.generator.set_state(state["batches_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        best_error, since_best = state["best_error"], state["since_best"]
        best_state = ({k: v.to(device) for k, v in state["best_state"].items()}
                      if state["best_state"] is not None else None)
        result.checkpoints = [Checkpoint(**c) for c in state["checkpoints"]]
        result.stopped_early, result.reason = state["stopped_early"], state["reason"]
        first_epoch, elapsed_before = state["epoch"], state["seconds"]
        mid_epoch = state.get("mid_epoch")
        for d in state["epochs"]:
            metrics = EpochMetrics(**d)
            result.epochs.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics)

    def save_state(epochs_done: int, mid: dict | None = None) -> None:
        """Save after ``epochs_done`` whole epochs, plus ``mid`` (the running epoch's order,
        steps and sums) when saving at an evaluation point inside an epoch."""
        if checkpoint_path is None:
            return
        save_checkpoint(checkpoint_path, {
            "format": CHECKPOINT_FORMAT, "config_hash": config.hash(), "epoch": epochs_done, "mid_epoch": mid,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "batches_rng": train_batches.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            "best_error": best_error, "since_best": since_best, "best_state": best_state,
            "epochs": [e.to_dict() for e in result.epochs], "checkpoints": [vars(c) for c in result.checkpoints],
            "stopped_early": result.stopped_early, "reason": result.reason,
            "seconds": elapsed_before + time.perf_counter() - started}, required=checkpoint_required)

    try:
        for epoch in range(first_epoch, config.epochs):
            if result.stopped_early:  # a resumed run that had already stopped
                break
            epoch_start = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), device=device)
            wrong = torch.zeros((), dtype=torch.long, device=device)
            seen, start_step = 0, 0
            lr = config.lr
            eval_error, head_errors = math.nan, None
            if mid_epoch is not None:  # resumed inside this epoch: continue its order and sums
                order = mid_epoch["order"].to(device) if mid_epoch["order"] is not None else None
                start_step, seen = mid_epoch["step"], mid_epoch["seen"]
                loss_sum, wrong = mid_epoch["loss_sum"].to(device), mid_epoch["wrong"].to(device)
                eval_error, head_errors = mid_epoch["eval_error"], mid_epoch["head_errors"]
                epoch_start -= mid_epoch["seconds"]
                mid_epoch = None
            else:
                order = train_batches.epoch_order()
            for step, (xb, yb) in enumerate(train_batches.batches(order, start_step), start=start_step + 1):
                lr = schedule.lr_at(epoch + (step - 1) / steps_per_epoch, config.lr, config.epochs)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    outputs = net(xb)
                loss, logits = multi_head_loss(outputs, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * len(yb)
                wrong += (logits.detach().argmax(1) != yb).sum()
                seen += len(yb)
                if on_step is not None:
                    on_step(step, steps_per_epoch)
                if step % check_every == 0 or step == steps_per_epoch:
                    if not torch.isfinite(loss_sum):
                        raise _Diverged(epoch, step)
                if step in eval_at:
                    eval_error, head_errors = evaluate(net, eval_batches, amp)
                    checkpoint = Checkpoint(epoch + step / steps_per_epoch, wrong.item() / seen, eval_error)
                    result.checkpoints.append(checkpoint)
                    if monitor is not None and monitor(checkpoint):
                        result.stopped_early = True
                        if step != steps_per_epoch:
                            break
                    elif step != steps_per_epoch and checkpoint_path is not None:
                        # A killed run then loses at most the steps since the last evaluation.
                        save_state(epoch, {
                            "step": step, "steps": steps_per_epoch, "order": order.cpu() if order is not None else None, "seen": seen,
                            "loss_sum": loss_sum.cpu(), "wrong": wrong.cpu(), "eval_error": eval_error,
                            "head_errors": head_errors, "seconds": time.perf_counter() - epoch_start})
            metrics = EpochMetrics(epoch, wrong.item() / max(seen, 1), eval_error, loss_sum.item() / max(seen, 1),
                                   lr, time.perf_counter() - epoch_start, head_errors)
            result.epochs.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics)
            if result.stopped_early:
                result.reason = MONITOR_STOP
            elif config.patience is not None:
                if eval_error < best_error:
                    best_error, since_best = eval_error, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    since_best += 1
                    if since_best > config.patience:
                        result.stopped_early, result.reason = True, f"early stopping after epoch {epoch}"
            save_state(epoch + 1)
            if result.stopped_early:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        if config.eval_split == "test" and best_state is None and result.epochs:
            result.test_error = result.epochs[-1].test_error
        else:
            result.test_error, _ = evaluate(
                net, Batches(test_x, test_y, 1024, data.mean, data.std, shuffle=False,
                               channels_last=channels_last), amp)
    except _Diverged as exc:
        result.status, result.reason = "diverged", f"non-finite loss at epoch {exc.epoch}, step {exc.step}"
    result.seconds = elapsed_before + time.perf_counter() - started
    result.model = model
    return result


class _Diverged(Exception):
    def __init__(self, epoch: int, step: int):
        super().__init__(f"diverged at epoch {epoch}, step {step}")
        self.epoch, self.step = epoch, step
