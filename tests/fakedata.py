"""Small generated datasets for fast tests: learnable synthetic images and idx/CIFAR files."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from depthlab.data.dataset import Dataset


def synthetic_images(n: int, seed: int, size: int = 28, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images whose class is where a bright 6x6 block sits (10 positions), plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    x = rng.integers(0, 60, (n, channels, size, size)).astype(np.uint8)
    for i, c in enumerate(labels):
        r, q = divmod(int(c), 5)
        top, left = 4 + 12 * r, 1 + 5 * q
        x[i, :, top : top + 6, left : left + 6] = 230
    return x, labels.astype(np.int64)


def synthetic_dataset(n_train: int = 1024, n_test: int = 256, seed: int = 0) -> Dataset:
    """A learnable in-memory dataset shaped like MNIST (1x28x28, 10 classes)."""
    tx, ty = synthetic_images(n_train, seed)
    ex, ey = synthetic_images(n_test, seed + 1)
    return Dataset(
        "synthetic",
        torch.from_numpy(tx),
        torch.from_numpy(ty),
        torch.from_numpy(ex),
        torch.from_numpy(ey),
        (0.1307,),
        (0.3081,),
    )


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of a uint8 array (magic 0x0000 08 NDIM, big-endian dims, data)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return (
        struct.pack(">HBB", 0, 0x08, array.ndim)
        + struct.pack(">" + "I" * array.ndim, *array.shape)
        + array.tobytes()
    )


def write_idx_folder(
    folder: Path, n_train: int = 512, n_test: int = 256, *, gz: bool = False, seed: int = 0
) -> dict:
    """Write the four MNIST-style idx files of a learnable synthetic set; returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    tx, ty = synthetic_images(n_train, seed)
    ex, ey = synthetic_images(n_test, seed + 1)
    arrays = {
        "train-images-idx3-ubyte": tx[:, 0],
        "train-labels-idx1-ubyte": ty.astype(np.uint8),
        "t10k-images-idx3-ubyte": ex[:, 0],
        "t10k-labels-idx1-ubyte": ey.astype(np.uint8),
    }
    for stem, array in arrays.items():
        payload = idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / stem).write_bytes(payload)
    return arrays


def cifar_batch_bytes(images: np.ndarray, labels: np.ndarray, name: str) -> bytes:
    """A batch in the exact format of the official files: a protocol-2 pickle of a dict with
    bytes keys (they were written by Python 2), data as uint8 (N, 3072), labels as a list."""
    batch = {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(images.reshape(len(images), 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }
    return pickle.dumps(batch, protocol=2)


def write_cifar_folder(
    folder: Path, per_batch: int = 20, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Six small batches (data_batch_1..5, test_batch) in ``folder``; returns (images, labels) per batch."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        (folder / name).write_bytes(cifar_batch_bytes(images, labels, name))
        out.append((images, labels))
    return out


def tiny_cifar(n_train=64, n_test=32, seed=0) -> Dataset:
    """A CIFAR-shaped set whose label is learnable: the class sets the mean brightness."""
    g = torch.Generator().manual_seed(seed)

    def make(n):
        y = torch.randint(0, 10, (n,), generator=g)
        x = (y.view(n, 1, 1, 1) * 20 + torch.randint(0, 60, (n, 3, 32, 32), generator=g)).clamp(0, 255)
        return x.to(torch.uint8), y

    tx, ty = make(n_train)
    ex, ey = make(n_test)
    return Dataset("cifar10", tx, ty, ex, ey, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
