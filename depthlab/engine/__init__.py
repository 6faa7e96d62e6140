"""The training engine: the run config, its set-up, the training loop and its checkpoints."""

from .config import TrainConfig
from .fused import train_fused
from .loop import train
from .schedule import Schedule, parse_schedule
from .device import resolve_device


__all__ = ["Schedule", "TrainConfig", "parse_schedule", "resolve_device", "train", "train_fused"]
