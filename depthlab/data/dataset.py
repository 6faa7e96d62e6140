"""`Dataset`: a dataset in memory (uint8 images, labels, normalisation), and where data lives."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


@dataclass
class Dataset:
    """A dataset held in memory: uint8 images ``(N, C, H, W)`` and int64 labels per split."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int = 10

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]


def resolve_data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """``--data-dir`` wins over ``DEPTHLAB_DATA``, which wins over ``./data``."""
    if data_dir:
        return Path(data_dir)
    env = os.environ.get("DEPTHLAB_DATA")
    return Path(env) if env else Path("data")
