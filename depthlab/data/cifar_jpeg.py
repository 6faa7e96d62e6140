"""The ``cifar10-jpeg`` dataset: CIFAR-10 as quality-75 JPEG files in one zip (SPEC §1).

``ROOT/CIFAR10-JPEG/cifar10-jpeg-q75.zip`` holds ``train/<class>/NNNN.jpg`` and
``test/<class>/NNNN.jpg``. The images are decoded once with pillow (the ``jpeg`` extra) into the
same uint8 tensors as the ``cifar10`` reader, and the decoded arrays are cached as an ``.npz`` in
a user cache folder (``$DEPTHLAB_CACHE``, else ``$XDG_CACHE_HOME/depthlab``, else
``~/.cache/depthlab``), keyed by the zip's size and modification time: the data folder may be
read-only, and decoding 60k JPEGs costs seconds that a training run should not pay every time.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .dataset import CIFAR10_CLASSES, Dataset
from .registry import DatasetInfo, register_dataset

JPEG_FOLDER = "CIFAR10-JPEG"


JPEG_ZIP = "cifar10-jpeg-q75.zip"


CACHE_VERSION = 1  # bump when the decoded layout changes, so old caches are ignored


def cache_dir() -> Path:
    """Where decoded datasets are cached (never inside the data folder, which may be read-only)."""
    if os.environ.get("DEPTHLAB_CACHE"):
        return Path(os.environ["DEPTHLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "depthlab"


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError("the cifar10-jpeg dataset needs pillow: pip install 'depthlab[jpeg]'") from None
    return Image


def decode_members(archive: zipfile.ZipFile, names: list[str], zip_path) -> tuple[np.ndarray, np.ndarray]:
    """Decode the named ``<split>/<class>/NNNN.jpg`` members into uint8 images (N, 3, 32, 32)
    and int64 labels (the class folder's index in the usual CIFAR-10 order)."""
    image_cls = _pillow()
    images = np.empty((len(names), 3, 32, 32), dtype=np.uint8)
    labels = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        parts = name.split("/")
        if len(parts) != 3 or parts[1] not in CIFAR10_CLASSES:
            raise DataError(
                f"{zip_path}: unexpected member {name!r} (expected <split>/<class>/NNNN.jpg "
                f"with a class among {', '.join(CIFAR10_CLASSES)})"
            )
        try:
            with image_cls.open(io.BytesIO(archive.read(name))) as img:
                pixels = np.asarray(img.convert("RGB"))
        except Exception as exc:  # zlib, OSError, PIL's UnidentifiedImageError share no useful base
            raise DataError(
                f"{zip_path}: cannot decode {name} ({type(exc).__name__}); "
                "the archive is truncated or corrupted"
            ) from None
        if pixels.shape != (32, 32, 3):
            raise DataError(f"{zip_path}: {name} is {pixels.shape[1]}x{pixels.shape[0]}, expected 32x32 RGB")
        images[i] = pixels.transpose(2, 0, 1)
        labels[i] = CIFAR10_CLASSES.index(parts[1])
    return images, labels


def split_members(archive: zipfile.ZipFile, split: str, zip_path) -> list[str]:
    """The sorted ``.jpg`` members of a split (``train`` or ``test``)."""
    names = sorted(n for n in archive.namelist() if n.startswith(split + "/") and n.lower().endswith(".jpg"))
    if not names:
        raise DataError(f"{zip_path}: no {split}/<class>/*.jpg files (not the CIFAR-10 JPEG archive?)")
    return names


def decode_cifar10_jpeg(zip_path: Path) -> dict[str, np.ndarray]:
    """Decode the whole archive: uint8 ``train_x``/``test_x`` (N, 3, 32, 32), int64 labels."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            train_x, train_y = decode_members(archive, split_members(archive, "train", zip_path), zip_path)
            test_x, test_y = decode_members(archive, split_members(archive, "test", zip_path), zip_path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{zip_path}: cannot read ({exc}); the archive is truncated or corrupted") from None
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def _cache_path(zip_path: Path) -> Path:
    stat = zip_path.stat()
    return cache_dir() / f"cifar10-jpeg-v{CACHE_VERSION}-{stat.st_size}-{stat.st_mtime_ns}.npz"


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the cache is missing or unreadable (then we decode again)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("train_x", "train_y", "test_x", "test_y")}
    except Exception:
        return None
    if arrays["train_x"].shape[1:] != (3, 32, 32) or len(arrays["train_x"]) != len(arrays["train_y"]):
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic write (temp file + rename); a cache folder we cannot write is not an error."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except OSError:  # a full disk leaves no partial temp file behind either
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def load_cifar10_jpeg(root: Path, download_missing: bool = False, *, use_cache: bool = True) -> Dataset:
    """Load ``cifar10-jpeg`` (decoding once, then from the cache). Per-channel mean/std are
    computed from the decoded training images: JPEG shifts them a little from CIFAR-10's."""
    zip_path = Path(root) / JPEG_FOLDER / JPEG_ZIP
    if not zip_path.is_file():
        raise DataError(
            f"missing data: expected {zip_path} (the CIFAR-10 JPEG archive with "
            "train/<class>/NNNN.jpg and test/<class>/NNNN.jpg; set --data-dir or DEPTHLAB_DATA)"
        )
    cache = _cache_path(zip_path)
    arrays = _read_cache(cache) if use_cache else None
    if arrays is None:
        arrays = decode_cifar10_jpeg(zip_path)
        if use_cache:
            _write_cache(cache, arrays)
    mean, std = channel_stats(arrays["train_x"])
    return Dataset(
        "cifar10-jpeg",
        torch.from_numpy(arrays["train_x"]),
        torch.from_numpy(arrays["train_y"]),
        torch.from_numpy(arrays["test_x"]),
        torch.from_numpy(arrays["test_y"]),
        mean,
        std,
    )


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std (pixel values / 255) of uint8 images (N, C, H, W), from a
    256-bin histogram per channel: no float copy of the whole set."""
    means, stds = [], []
    values = np.arange(256, dtype=np.float64) / 255.0
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].ravel(), minlength=256).astype(np.float64)
        mean = float((counts * values).sum() / counts.sum())
        var = float((counts * (values - mean) ** 2).sum() / counts.sum())
        means.append(round(mean, 4))
        stds.append(round(var**0.5, 4))
    return tuple(means), tuple(stds)


def time_decode(root: Path) -> tuple[float, int]:
    """Seconds to decode the whole archive without the cache, and the number of images."""
    zip_path = Path(root) / JPEG_FOLDER / JPEG_ZIP
    started = time.perf_counter()
    arrays = decode_cifar10_jpeg(zip_path)
    return time.perf_counter() - started, len(arrays["train_x"]) + len(arrays["test_x"])


register_dataset(
    DatasetInfo(
        "cifar10-jpeg",
        (3, 32, 32),
        load_cifar10_jpeg,
        "CIFAR-10 as quality-75 JPEGs (a lossy stand-in), 50k/10k",
    )
)
