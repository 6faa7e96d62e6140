"""File readers: MNIST-style idx files and CIFAR-10 python batches, with checksummed downloads."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset


# MD5 of the *uncompressed* official MNIST files: gzip containers differ between mirrors.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


CIFAR10_TGZ_MD5 = "c58f30108f718f92721af3b95e74349a"


CIFAR10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


# MD5 of the official python batches (the same list torchvision verifies).
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def download(urls: list[str], dest: Path, *, md5: str | None = None,
             md5_of_content: Callable[[bytes], str] | None = None, timeout: float = 30.0) -> Path:
    """Fetch the first URL that answers into ``dest``, verifying the checksum before the file
    is moved into place (a failed or corrupted download never leaves a file behind)."""
    last_error = "no mirror given"
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
        except Exception as exc:  # any network failure: try the next mirror
            last_error = f"{url}: {exc}"
            continue
        check = md5_of_content(payload) if md5_of_content else md5_of(payload)
        if md5 is not None and check != md5:
            last_error = f"{url}: checksum mismatch"
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest
    raise DataError(f"could not download {dest.name}: {last_error}")


def _gunzip_if_needed(payload: bytes) -> bytes:
    return gzip.decompress(payload) if payload[:2] == b"\x1f\x8b" else payload


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def parse_idx(payload: bytes, name: str = "idx data") -> np.ndarray:
    """Parse the bytes of an (uncompressed) idx file; a malformed file raises `DataError`."""
    if len(payload) < 4:
        raise DataError(f"{name}: truncated idx file ({len(payload)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", payload[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES or not 1 <= ndim <= 4:
        raise DataError(f"{name}: not an idx file (bad magic number)")
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise DataError(f"{name}: truncated idx header")
    dims = struct.unpack(">" + "I" * ndim, payload[4:header])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: four u32 dims can overflow int64
    if len(payload) - header != expected:
        raise DataError(f"{name}: wrong size: {len(payload) - header} data bytes, "
                        f"{expected} expected for shape {tuple(dims)} (truncated or corrupted)")
    return np.frombuffer(payload, dtype=dtype, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return _gunzip_if_needed(raw)
    except Exception as exc:  # OSError, EOFError, BadGzipFile and zlib.error share no base
        raise DataError(f"{path}: cannot read ({exc}); the file is truncated or corrupted") from None


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def load_idx_folder(folder: Path, *, checksums: dict[str, str] | None, mirrors: tuple[str, ...],
                    download_missing: bool) -> dict[str, np.ndarray]:
    """Read the four idx files of an MNIST-like set, downloading any that are missing.

    All four are located (or fetched) before any is read, so a missing file is reported as
    such, with the folder and the full list of files expected."""
    paths: dict[str, Path | None] = {}
    for stem in IDX_FILES:
        path = _find_idx(folder, stem)
        if path is None and download_missing:
            try:
                path = download([m + stem + ".gz" for m in mirrors], folder / f"{stem}.gz",
                                md5=checksums.get(stem) if checksums else None,
                                md5_of_content=lambda b: md5_of(_gunzip_if_needed(b)))
            except DataError:
                path = None
        paths[stem] = path
        if path is None:
            download_missing = False  # one failed download is enough to know the network is out
    missing = [stem for stem, path in paths.items() if path is None]
    if missing:
        raise DataError(f"missing data: {folder} needs {', '.join(s + '[.gz]' for s in IDX_FILES)} "
                        f"(missing: {', '.join(missing)}; download failed or disabled; "
                        "set --data-dir or DEPTHLAB_DATA)")
    arrays: dict[str, np.ndarray] = {}
    for stem, path in paths.items():
        payload = _read_bytes(path)
        if checksums and stem in checksums and md5_of(payload) != checksums[stem]:
            raise DataError(f"{path}: checksum mismatch (MD5 {md5_of(payload)}, expected {checksums[stem]}, "
                            f"{len(payload)} bytes uncompressed); the file is truncated, corrupted "
                            "or not the official one")
        arrays[stem] = parse_idx(payload, str(path))
    for split in ("train", "t10k"):
        images, labels = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{folder}: {split} images {images.shape} and labels {labels.shape} disagree")
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise DataError(f"{folder}: {split} files must hold unsigned bytes (idx type 0x08)")
        if labels.size and labels.max() > 9:
            raise DataError(f"{folder}: {split} labels outside 0..9 (corrupted label file)")
    return arrays


def _idx_dataset(name: str, folder: Path, checksums, mirrors, mean, std, download_missing, pad=0):
    arrays = load_idx_folder(folder, checksums=checksums, mirrors=mirrors, download_missing=download_missing)

    def images(a: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(a.astype(np.uint8, copy=True)).unsqueeze(1)
        return torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return Dataset(name, images(arrays["train-images-idx3-ubyte"]), labels(arrays["train-labels-idx1-ubyte"]),
                   images(arrays["t10k-images-idx3-ubyte"]), labels(arrays["t10k-labels-idx1-ubyte"]),
                   mean, std)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a crafted file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def parse_cifar_batch(payload: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CIFAR-10 python batch into uint8 images (N, 3, 32, 32) and int64 labels."""
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(payload), encoding="bytes").load()
        data = np.asarray(batch[b"data"] if b"data" in batch else batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"] if b"labels" in batch else batch["labels"], dtype=np.int64)
    except Exception as exc:
        raise DataError(f"{name}: not a readable CIFAR-10 batch ({type(exc).__name__}); "
                        "the file is truncated or corrupted") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{name}: wrong size: data {data.shape}, labels {labels.shape}; "
                        "expected (N, 3072) and N labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{name}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


CIFAR10_BATCH_IMAGES = 10_000


def load_cifar10(root: Path, download_missing: bool, *,
                 checksums: dict[str, str] | None = CIFAR10_MD5) -> Dataset:
    """Read the CIFAR-10 python batches from ``ROOT/cifar-10-batches-py/`` or, failing that,
    ``ROOT/cifar-10-python.tar.gz``. Each full-size (10,000-image) batch is checked against
    ``checksums`` (the official MD5s; ``None`` skips the check)."""
    folder = root / "cifar-10-batches-py"
    archive = root / "cifar-10-python.tar.gz"
    payloads: dict[str, bytes] = {}
    if folder.is_dir():
        missing = [b for b in CIFAR10_BATCHES if not (folder / b).is_file()]
        if missing:
            raise DataError(f"missing data: {folder} needs {', '.join(CIFAR10_BATCHES)} "
                            f"(missing: {', '.join(missing)})")
        for batch in CIFAR10_BATCHES:
            path = folder / batch
            try:
                payloads[str(path)] = path.read_bytes()
            except OSError as exc:
                raise DataError(f"{path}: cannot read ({exc})") from None
    else:
        if not archive.exists() and download_missing:
            try:
                download([CIFAR10_URL], archive, md5=CIFAR10_TGZ_MD5)
            except DataError:
                pass
        if not archive.exists():
            raise DataError(f"missing data: expected {folder}/ with {', '.join(CIFAR10_BATCHES)} "
                            f"or {archive} (download failed or disabled; set --data-dir or DEPTHLAB_DATA)")
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                for batch in CIFAR10_BATCHES:
                    if batch not in members:
                        raise DataError(f"{archive}: missing member {batch}")
                    payloads[f"{archive}:{batch}"] = tar.extractfile(members[batch]).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{archive}: cannot read ({exc}); the archive is truncated or corrupted") from None
    parsed = [parse_cifar_batch(p, n) for n, p in payloads.items()]
    if checksums:
        # An official batch holds 10,000 images and must match its MD5 (a same-size corruption
        # parses fine); smaller hand-made batches (tests, subsets) are checked for structure only.
        for (name, payload), batch, (images, _) in zip(payloads.items(), CIFAR10_BATCHES, parsed):
            if len(images) == CIFAR10_BATCH_IMAGES and md5_of(payload) != checksums[batch]:
                raise DataError(f"{name}: checksum mismatch (MD5 {md5_of(payload)}, expected {checksums[batch]}, "
                                f"size {len(payload)} bytes); the file is corrupted or not the official one")
    train = parsed[:5]
    train_x = torch.from_numpy(np.concatenate([x for x, _ in train]))
    train_y = torch.from_numpy(np.concatenate([y for _, y in train]))
    test_x, test_y = (torch.from_numpy(a) for a in parsed[5])
    return Dataset("cifar10", train_x, train_y, test_x, test_y,
                   (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
