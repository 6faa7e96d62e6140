"""Your own data: a dataset from an ``.npz`` file, ``--dataset npz:path/to/file.npz``.

The file holds ``x_train, y_train, x_test, y_test``. Images are uint8 (0-255) or floats, shaped
``N x H x W`` (one channel), ``N x H x W x C`` or ``N x C x H x W`` with C of 1, 3 or 4 (when
both the second and the last axis could be channels, ``N x C x H x W`` is assumed); labels are integers ``0 .. K-1``. Inputs are normalised per channel with the
mean and standard deviation of the training split (uint8 images are first scaled to [0, 1],
as for MNIST and CIFAR-10)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset

PREFIX = "npz:"
KEYS = ("x_train", "y_train", "x_test", "y_test")
CHANNELS = (1, 3, 4)


def npz_path(name: str) -> Path | None:
    """The file of an ``npz:PATH`` dataset name, None for any other name."""
    return Path(name[len(PREFIX):]) if name.startswith(PREFIX) else None


def _layout(shape: tuple[int, ...]) -> str | None:
    """How images of array ``shape`` are laid out: ``"nhw"``, ``"nhwc"``, ``"nchw"``, or None."""
    if len(shape) == 3:
        return "nhw"
    if len(shape) == 4 and shape[-1] in CHANNELS and shape[1] not in CHANNELS:
        return "nhwc"
    return "nchw" if len(shape) == 4 and shape[1] in CHANNELS else None


def _images(x: np.ndarray, what: str) -> np.ndarray:
    layout = _layout(x.shape)
    if layout is None:
        raise DataError(f"{what}: images must be N x H x W, N x H x W x C or N x C x H x W (C in 1, 3, 4), "
                        f"got shape {x.shape}")
    x = x[:, None] if layout == "nhw" else x.transpose(0, 3, 1, 2) if layout == "nhwc" else x
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"{what}: images must be uint8 or numbers, got {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{what}: images contain NaN or infinite values")
    return np.ascontiguousarray(x)


def _labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{what}: labels must be a vector of {n} integers (one per image), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
            raise DataError(f"{what}: labels must be integers, got {y.dtype}")
    if len(y) and y.min() < 0:
        raise DataError(f"{what}: labels must be 0 .. K-1, found {int(y.min())}")
    return y.astype(np.int64)


def load_npz(path: str | Path) -> Dataset:
    """Read an ``.npz`` dataset (see the module docstring); one-line `DataError` for a bad file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as found:
            missing = [k for k in KEYS if k not in found.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {', '.join(missing)}; an npz dataset holds "
                                f"{', '.join(KEYS)}")
            arrays = {k: found[k] for k in KEYS}
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})"[:300]) from None
    x_train, x_test = _images(arrays["x_train"], f"{path} x_train"), _images(arrays["x_test"], f"{path} x_test")
    if not len(x_train) or not len(x_test):
        raise DataError(f"{path}: the training and test splits must not be empty "
                        f"(got {len(x_train)} and {len(x_test)} images)")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path}: train images are {x_train.shape[1:]} but test images {x_test.shape[1:]}")
    y_train = _labels(arrays["y_train"], len(x_train), f"{path} y_train")
    y_test = _labels(arrays["y_test"], len(x_test), f"{path} y_test")
    classes = int(max(y_train.max(), y_test.max())) + 1
    if classes < 2:
        raise DataError(f"{path}: labels must name at least two classes")
    # `Batches` computes (x / 255 - mean) / std, so statistics are given in units of x / 255.
    axes = (0, 2, 3)
    mean = tuple(float(v) / 255 for v in x_train.mean(axis=axes, dtype=np.float64))
    std = tuple(max(float(v), 1e-12) / 255 for v in x_train.std(axis=axes, dtype=np.float64))
    return Dataset(f"{PREFIX}{path}", torch.from_numpy(x_train), torch.from_numpy(y_train),
                   torch.from_numpy(x_test), torch.from_numpy(y_test), mean, std, num_classes=classes)


def npz_input_shape(path: Path) -> tuple[int, int, int]:
    """(C, H, W) of an npz dataset's images from the ``x_train`` array's header alone (no data
    read), by the layout rule of `load_npz`; a file that cannot be read so is loaded, for its
    one-line `DataError`."""
    try:
        with zipfile.ZipFile(path) as z, z.open("x_train.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape = tuple(read(f)[0])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return load_npz(path).input_shape
    layout = _layout(shape)
    if layout is None:
        return load_npz(path).input_shape
    return (1, *shape[1:]) if layout == "nhw" else (shape[3], shape[1], shape[2]) if layout == "nhwc" else shape[1:]
