"""The dataset registry: names, input shapes and loaders (`load_dataset`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from . import readers
from .dataset import Dataset, resolve_data_root
from .npz import load_npz, npz_input_shape, npz_path
from .readers import FASHION_MIRRORS, MNIST_MD5, _idx_dataset, load_cifar10


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, int, int]
    loader: Callable[[Path, bool], Dataset]
    description: str


MNIST_STATS = ((0.1307,), (0.3081,))


FASHION_STATS = ((0.2860,), (0.3530,))


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist",
        (1, 28, 28),
        lambda root, dl: _idx_dataset(
            "mnist", root / "MNIST" / "raw", MNIST_MD5, readers.MNIST_MIRRORS, *MNIST_STATS, dl
        ),
        "MNIST 28x28, 60k/10k",
    ),
    "mnist32": DatasetInfo(
        "mnist32",
        (1, 32, 32),
        lambda root, dl: _idx_dataset(
            "mnist32", root / "MNIST" / "raw", MNIST_MD5, readers.MNIST_MIRRORS, *MNIST_STATS, dl, pad=2
        ),
        "MNIST zero-padded to 32x32",
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        (1, 28, 28),
        lambda root, dl: _idx_dataset(
            "fashion-mnist", root / "FashionMNIST" / "raw", None, FASHION_MIRRORS, *FASHION_STATS, dl
        ),
        "Fashion-MNIST 28x28, 60k/10k",
    ),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), load_cifar10, "CIFAR-10 python batches, 50k/10k"),
}


def register_dataset(info: DatasetInfo) -> None:
    """Add a dataset to the registry (used by optional readers such as the CIFAR-10 JPEG one)."""
    DATASETS[info.name] = info


def check_dataset_name(name: str) -> DatasetInfo:
    """The registered dataset ``name``, or for ``npz:PATH`` one whose input shape is read from the
    file's header (`depthlab.data.npz`; the arrays are read by `load_dataset`)."""
    path = npz_path(name) if isinstance(name, str) else None
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"dataset {name!r}: no such file {path}")
        return DatasetInfo(
            name, npz_input_shape(path), lambda root, dl: load_npz(path), f"your own data from {path}"
        )
    if name not in DATASETS:
        raise ConfigError(
            f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))} or npz:PATH"
        )
    return DATASETS[name]


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Dataset:
    """Load a dataset by name into memory (uint8 tensors on the CPU).

    Missing files are downloaded unless ``download`` is False or ``DEPTHLAB_OFFLINE`` is set
    (for air-gapped machines and tests, which must never touch the network). What is loaded
    is validated (`Dataset.validate`): an empty split, images of the wrong size or labels
    that do not match them are a `DataError`, never a run that trains on nothing."""
    info = check_dataset_name(name)
    if npz_path(name) is not None:
        return load_npz(npz_path(name))  # checked by its reader (float images allowed)
    if os.environ.get("DEPTHLAB_OFFLINE", "") not in ("", "0"):
        download = False
    return info.loader(resolve_data_root(data_dir), download).validate(info.input_shape)
