"""Your own data: a dataset from an ``.npz`` file, ``--dataset npz:path/to/file.npz``.

The file holds ``x_train, y_train, x_test, y_test``. Images are uint8 (0-255) or floats, shaped
``N x H x W`` (one channel), ``N x H x W x C`` or ``N x C x H x W`` with C of 1, 3 or 4 (when
both the second and the last axis could be channels, ``N x C x H x W`` is assumed); labels are integers ``0 .. K-1``. Inputs are normalised per channel with the
mean and standard deviation of the training split (uint8 images are first scaled to [0, 1],
as for MNIST and CIFAR-10).

A file from elsewhere is read defensively, so that a bad one is one line (`DataError`, exit 2)
before any store is opened: it must be a zip archive; each array's ``.npy`` header (shape,
dtype) is checked before any data is read, and the arrays together may declare at most
``DEPTHLAB_NPZ_MAX_BYTES`` bytes (default 2 GiB); each array is then read in bounded chunks into
an array of exactly the declared size, so a member that holds more (a zip bomb) is refused after
reading at most one chunk beyond it. Labels are ``0 .. K-1`` with K at most `MAX_CLASSES`."""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset

PREFIX = "npz:"
KEYS = ("x_train", "y_train", "x_test", "y_test")
CHANNELS = (1, 3, 4)
MAX_BYTES_ENV = "DEPTHLAB_NPZ_MAX_BYTES"
DEFAULT_MAX_BYTES = 2 * 2**30  # every array of the file together, as declared by their headers
MAX_CLASSES = 100_000  # labels 0 .. K-1 make a K-way output layer
CHUNK = 16 * 2**20  # bytes read at a time
# What reading a broken archive raises: zipfile and zlib errors, a truncated or encrypted member
# (EOFError, RuntimeError), an unknown compression (NotImplementedError), a bad .npy header.
READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    NotImplementedError,
    zipfile.BadZipFile,
    zlib.error,
)


def npz_path(name: str) -> Path | None:
    """The file of an ``npz:PATH`` dataset name, None for any other name."""
    return Path(name[len(PREFIX) :]) if name.startswith(PREFIX) else None


def _layout(shape: tuple[int, ...]) -> str | None:
    """How images of array ``shape`` are laid out: ``"nhw"``, ``"nhwc"``, ``"nchw"``, or None."""
    if len(shape) == 3:
        return "nhw"
    if len(shape) == 4 and shape[-1] in CHANNELS and shape[1] not in CHANNELS:
        return "nhwc"
    return "nchw" if len(shape) == 4 and shape[1] in CHANNELS else None


def _images(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` (checked by `_check_headers`) as N x C x H x W: uint8 as it is, other numbers as
    finite float32."""
    layout = _layout(x.shape)
    x = x[:, None] if layout == "nhw" else x.transpose(0, 3, 1, 2) if layout == "nhwc" else x
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{what}: images contain NaN or infinite values")
    return np.ascontiguousarray(x)


def _labels(y: np.ndarray, what: str) -> np.ndarray:
    """``y`` (a vector, checked by `_check_headers`) as int64 labels in 0 .. `MAX_CLASSES` - 1."""
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
            raise DataError(f"{what}: labels must be integers, got {y.dtype}")
    if len(y) and y.min() < 0:
        raise DataError(f"{what}: labels must be 0 .. K-1, found {int(y.min())}")
    if len(y) and y.max() >= MAX_CLASSES:
        raise DataError(
            f"{what}: labels must be 0 .. K-1 with at most {MAX_CLASSES:,} classes, found {y.max():.0f}"
        )
    return y.astype(np.int64)


@dataclass(frozen=True)
class _Member:
    """One array of the archive as its ``.npy`` header declares it."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def max_bytes() -> int:
    """How many bytes the arrays of one npz file may declare in all (``DEPTHLAB_NPZ_MAX_BYTES``)."""
    value = os.environ.get(MAX_BYTES_ENV, "")
    try:
        return int(value) if value else DEFAULT_MAX_BYTES
    except ValueError:
        raise DataError(f"{MAX_BYTES_ENV}={value!r}: expected a number of bytes") from None


def _open_archive(path: Path) -> zipfile.ZipFile:
    """The file as a zip archive (what ``np.savez`` writes); one line for anything else."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes), not an .npz file")
    try:
        return zipfile.ZipFile(path)
    except READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})"[:300]) from None


def _read_header(stream, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy header at the start of ``stream``."""
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        raise DataError(f"{what}: .npy format version {version} is not supported (1.0 and 2.0 are)")
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(stream)


def _member(archive: zipfile.ZipFile, key: str, path: Path) -> _Member | None:
    """The header of array ``key`` (nothing after it is read; None if absent); its dtype must be
    plain numbers."""
    what = f"{path} {key}"
    try:
        with archive.open(f"{key}.npy") as stream:
            shape, fortran_order, dtype = _read_header(stream, what)
    except KeyError:
        return None
    except READ_ERRORS as exc:
        raise DataError(f"{what}: not a readable .npy array ({type(exc).__name__}: {exc})"[:300]) from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "uif":
        raise DataError(
            f"{path}: not a readable .npz file ({key} holds dtype {dtype}; an npz dataset's arrays "
            "hold plain numbers: integers or floats)"
        )
    return _Member(key, tuple(int(n) for n in shape), dtype, bool(fortran_order))


def _check_headers(members: dict[str, _Member], path: Path) -> None:
    """Shapes and sizes from the headers alone: image layouts, one label per image, equal image
    sizes in both splits, and a bounded total."""
    missing = [k for k in KEYS if k not in members]
    if missing:
        raise DataError(
            f"{path}: missing array(s) {', '.join(missing)}; an npz dataset holds {', '.join(KEYS)}"
        )
    for split in ("train", "test"):
        x, y = members[f"x_{split}"], members[f"y_{split}"]
        if _layout(x.shape) is None or 0 in x.shape[1:]:
            raise DataError(
                f"{path} x_{split}: images must be N x H x W, N x H x W x C or N x C x H x W "
                f"(C in 1, 3, 4; H, W > 0), got shape {x.shape}"
            )
        if len(y.shape) != 1 or y.shape[0] != x.shape[0]:
            raise DataError(
                f"{path} y_{split}: labels must be a vector of {x.shape[0]} integers (one per image), "
                f"got shape {y.shape}"
            )
    train, test = (_chw(members[k].shape) for k in ("x_train", "x_test"))
    if not members["x_train"].shape[0] or not members["x_test"].shape[0]:
        raise DataError(
            f"{path}: the training and test splits must not be empty (got "
            f"{members['x_train'].shape[0]} and {members['x_test'].shape[0]} images)"
        )
    if train != test:
        raise DataError(f"{path}: train images are {train} but test images {test}")
    total, limit = sum(m.nbytes for m in members.values()), max_bytes()
    if total > limit:
        raise DataError(
            f"{path}: its arrays declare {total / 2**30:,.2f} GiB, more than the {limit / 2**30:.2f} GiB "
            f"an npz dataset may hold (set {MAX_BYTES_ENV} to allow more); nothing was read"
        )


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of images of array ``shape`` (a valid layout)."""
    layout = _layout(shape)
    return (
        (1, *shape[1:])
        if layout == "nhw"
        else (shape[3], shape[1], shape[2])
        if layout == "nhwc"
        else shape[1:]
    )


def _headers(archive: zipfile.ZipFile, path: Path) -> dict[str, _Member]:
    members = {key: member for key in KEYS if (member := _member(archive, key, path)) is not None}
    _check_headers(members, path)
    return members


def _read_array(archive: zipfile.ZipFile, member: _Member, path: Path) -> np.ndarray:
    """The data of ``member``: exactly its declared bytes, read in chunks of `CHUNK` into an array
    allocated from its (checked) header; a member that holds more or less is refused."""
    what = f"{path} {member.key}"
    flat = np.empty(math.prod(member.shape), dtype=member.dtype)
    buffer = memoryview(flat.view(np.uint8).reshape(-1))
    try:
        with archive.open(f"{member.key}.npy") as stream:
            _read_header(stream, what)
            done = 0
            while done < len(buffer):
                got = stream.readinto(buffer[done : done + CHUNK])
                if not got:
                    raise DataError(
                        f"{what}: truncated: {done:,} of the {len(buffer):,} bytes its header declares"
                    )
                done += got
            if stream.read(1):
                raise DataError(
                    f"{what}: holds more data than its header declares ({len(buffer):,} bytes); "
                    "refused unread"
                )
    except READ_ERRORS as exc:
        raise DataError(f"{what}: not a readable .npy array ({type(exc).__name__}: {exc})"[:300]) from None
    return flat.reshape(member.shape, order="F" if member.fortran_order else "C")


def load_npz(path: str | Path) -> Dataset:
    """Read an ``.npz`` dataset (see the module docstring); one-line `DataError` for a bad file."""
    path = Path(path)
    with _open_archive(path) as archive:
        members = _headers(archive, path)
        y_train = _labels(_read_array(archive, members["y_train"], path), f"{path} y_train")
        y_test = _labels(_read_array(archive, members["y_test"], path), f"{path} y_test")
        x_train = _images(_read_array(archive, members["x_train"], path), f"{path} x_train")
        x_test = _images(_read_array(archive, members["x_test"], path), f"{path} x_test")
    classes = int(max(y_train.max(), y_test.max())) + 1
    if classes < 2:
        raise DataError(f"{path}: labels must name at least two classes")
    # `Batches` computes (x / 255 - mean) / std, so statistics are given in units of x / 255.
    axes = (0, 2, 3)
    mean = tuple(float(v) / 255 for v in x_train.mean(axis=axes, dtype=np.float64))
    std = tuple(max(float(v), 1e-12) / 255 for v in x_train.std(axis=axes, dtype=np.float64))
    return Dataset(
        f"{PREFIX}{path}",
        torch.from_numpy(x_train),
        torch.from_numpy(y_train),
        torch.from_numpy(x_test),
        torch.from_numpy(y_test),
        mean,
        std,
        num_classes=classes,
    )


def npz_input_shape(path: Path) -> tuple[int, int, int]:
    """(C, H, W) of an npz dataset's images, from the arrays' headers alone (no data read): a
    file whose headers are bad is refused here, with the one-line `DataError` of `load_npz`."""
    path = Path(path)
    with _open_archive(path) as archive:
        return _chw(_headers(archive, path)["x_train"].shape)
