"""File readers: MNIST-style idx files and CIFAR-10 python batches, with checksummed downloads."""

from __future__ import annotations

import gzip
import io
import math
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset
from .download import _gunzip_if_needed, download, md5_of  # noqa: F401  (tests reach them here)

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


IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# The largest idx file read (its declared data size, checked from the header before anything
# is allocated): the MNIST training images take 47 MB, so 256 MiB leaves room for bigger
# MNIST-like sets while a crafted header (or a gzip bomb) cannot make us allocate gigabytes.
MAX_IDX_BYTES = 256 * 2**20


# The largest CIFAR-10 python batch read (an official one is 31 MB): checked on the file's
# (or the tar member's) size before it is read, which bounds everything its pickle can build.
MAX_CIFAR_BATCH_BYTES = 64 * 2**20


_READ_CHUNK = 2**20


def _idx_header(head: bytes, name: str) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """(dtype, dims, header size, declared data size) of an idx header; `DataError` if malformed
    or if it declares more than `MAX_IDX_BYTES` of data. ``head`` may hold more than the header."""
    if len(head) < 4:
        raise DataError(f"{name}: truncated idx file ({len(head)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", head[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES or not 1 <= ndim <= 4:
        raise DataError(f"{name}: not an idx file (bad magic number)")
    header = 4 + 4 * ndim
    if len(head) < header:
        raise DataError(f"{name}: truncated idx header")
    dims = struct.unpack(">" + "I" * ndim, head[4:header])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: four u32 dims can overflow int64
    if expected > MAX_IDX_BYTES:
        raise DataError(
            f"{name}: header declares shape {tuple(dims)} ({expected:,} bytes), more than the "
            f"{MAX_IDX_BYTES:,} bytes an idx file may hold here (corrupted or not a dataset file)"
        )
    return dtype, tuple(dims), header, expected


def parse_idx(payload: bytes, name: str = "idx data") -> np.ndarray:
    """Parse the bytes of an (uncompressed) idx file; a malformed file raises `DataError`."""
    dtype, dims, header, expected = _idx_header(payload[:20], name)
    if len(payload) - header != expected:
        raise DataError(
            f"{name}: wrong size: {len(payload) - header} data bytes, "
            f"{expected} expected for shape {tuple(dims)} (truncated or corrupted)"
        )
    return np.frombuffer(payload, dtype=dtype, offset=header).reshape(dims)


def _read_into(fh, view: memoryview) -> int:
    """Fill ``view`` from ``fh`` in bounded chunks (a gzip stream decompresses no more than a
    chunk ahead); returns how many bytes were read (fewer when the stream ends first)."""
    pos = 0
    with view:
        while pos < len(view):
            n = fh.readinto(view[pos : pos + _READ_CHUNK])
            if not n:
                break
            pos += n
    return pos


def read_idx_file(
    path: Path, *, shape: tuple[int | None, ...] | None = None, what: str = "data", md5: str | None = None
) -> bytearray:
    """The uncompressed bytes of an idx file (``.gz`` or not), read in bounded chunks: the
    header is read first, and no more data than it declares (at most `MAX_IDX_BYTES`) is ever
    decompressed or held, so a gzip bomb or a lying header fails before it costs memory.
    ``shape`` (None: any size on that axis) is checked on the header, before the data is read;
    a file shorter than its header says fails its checksum ``md5`` (when given), named as such."""
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            fh = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
            head = fh.read(4)
            if len(head) == 4 and 1 <= head[3] <= 4:
                head += fh.read(4 * head[3])
            _, dims, header, expected = _idx_header(head, str(path))
            if shape is not None and (
                len(dims) != len(shape)
                or any(want is not None and want != got for want, got in zip(shape, dims))
            ):
                want = (
                    "("
                    + ", ".join("N" if d is None else str(d) for d in shape)
                    + ("," if len(shape) == 1 else "")
                    + ")"
                )
                raise DataError(
                    f"{path}: {what} of shape {dims}, expected {want} (not a file of this dataset)"
                )
            payload = bytearray(header + expected)  # the declared size, at most MAX_IDX_BYTES
            payload[:header] = head[:header]
            got = header + _read_into(fh, memoryview(payload)[header:])
            trailing = fh.read(1)
    except DataError:
        raise
    except Exception as exc:  # OSError, EOFError, BadGzipFile and zlib.error share no base
        raise DataError(f"{path}: cannot read ({exc}); the file is truncated or corrupted") from None
    if got != header + expected and not trailing and md5 is not None:  # all of a short file is here
        digest = md5_of(memoryview(payload)[:got])
        raise DataError(
            f"{path}: checksum mismatch (MD5 {digest}, expected {md5}, {got} bytes uncompressed, "
            f"{header + expected} declared); the file is truncated, corrupted or not the official one"
        )
    if got != header + expected or trailing:
        size = f"{got - header}" if not trailing else f"more than {expected}"
        raise DataError(
            f"{path}: wrong size: {size} data bytes, {expected} expected for shape {dims} "
            "(truncated or corrupted)"
        )
    return payload


def _md5_of_idx_download(payload: bytes) -> str:
    try:
        return md5_of(_gunzip_if_needed(payload, MAX_IDX_BYTES + 64))
    except Exception:  # a broken gzip from a mirror: a checksum that matches nothing
        return ""


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def load_idx_folder(
    folder: Path,
    *,
    checksums: dict[str, str] | None,
    mirrors: tuple[str, ...],
    download_missing: bool,
    image_size: tuple[int, int] = (28, 28),
) -> dict[str, np.ndarray]:
    """Read the four idx files of an MNIST-like set, downloading any that are missing.
    Images must be ``image_size``, each split must hold images (as many as labels, in 0..9).

    All four are located (or fetched) before any is read, so a missing file is reported as
    such, with the folder and the full list of files expected."""
    paths = _locate_idx_files(folder, checksums=checksums, mirrors=mirrors, download_missing=download_missing)
    arrays = _read_idx_files(paths, checksums=checksums, image_size=image_size)
    _check_idx_splits(folder, arrays)
    return arrays


def _locate_idx_files(
    folder: Path, *, checksums: dict[str, str] | None, mirrors: tuple[str, ...], download_missing: bool
) -> dict[str, Path]:
    """The path of each of the four idx files in ``folder``, downloading those missing (while
    downloads work); `DataError` naming every file still missing."""
    paths: dict[str, Path | None] = {}
    for stem in IDX_FILES:
        path = _find_idx(folder, stem)
        if path is None and download_missing:
            try:
                path = download(
                    [m + stem + ".gz" for m in mirrors],
                    folder / f"{stem}.gz",
                    md5=checksums.get(stem) if checksums else None,
                    md5_of_content=_md5_of_idx_download,
                )
            except DataError:
                path = None
        paths[stem] = path
        if path is None:
            download_missing = False  # one failed download is enough to know the network is out
    missing = [stem for stem, path in paths.items() if path is None]
    if missing:
        raise DataError(
            f"missing data: {folder} needs {', '.join(s + '[.gz]' for s in IDX_FILES)} "
            f"(missing: {', '.join(missing)}; download failed or disabled; "
            "set --data-dir or DEPTHLAB_DATA)"
        )
    return paths


def _read_idx_files(
    paths: dict[str, Path], *, checksums: dict[str, str] | None, image_size: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Each idx file parsed into its array, after checking its shape and, where ``checksums``
    names it, the MD5 of its uncompressed content."""
    arrays: dict[str, np.ndarray] = {}
    for stem, path in paths.items():
        kind = "images" if "images" in stem else "labels"
        payload = read_idx_file(
            path,
            shape=(None, *image_size) if kind == "images" else (None,),
            what=kind,
            md5=checksums.get(stem) if checksums else None,
        )
        if checksums and stem in checksums and md5_of(payload) != checksums[stem]:
            raise DataError(
                f"{path}: checksum mismatch (MD5 {md5_of(payload)}, expected {checksums[stem]}, "
                f"{len(payload)} bytes uncompressed); the file is truncated, corrupted "
                "or not the official one"
            )
        arrays[stem] = parse_idx(payload, str(path))
    return arrays


def _check_idx_splits(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """`DataError` unless each split's images and labels agree: as many of each, unsigned
    bytes, at least one image, labels in 0..9."""
    for split in ("train", "t10k"):
        images, labels = arrays[f"{split}-images-idx3-ubyte"], arrays[f"{split}-labels-idx1-ubyte"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{folder}: {split} images {images.shape} and labels {labels.shape} disagree")
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise DataError(f"{folder}: {split} files must hold unsigned bytes (idx type 0x08)")
        if not len(images):
            raise DataError(f"{folder}: the {split} files hold no images (an empty or wrong data folder)")
        if labels.size and labels.max() > 9:
            raise DataError(f"{folder}: {split} labels outside 0..9 (corrupted label file)")


def _idx_dataset(name: str, folder: Path, checksums, mirrors, mean, std, download_missing, pad=0):
    arrays = load_idx_folder(folder, checksums=checksums, mirrors=mirrors, download_missing=download_missing)

    def images(a: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(a.astype(np.uint8, copy=True)).unsqueeze(1)
        return torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.int64))

    return Dataset(
        name,
        images(arrays["train-images-idx3-ubyte"]),
        labels(arrays["train-labels-idx1-ubyte"]),
        images(arrays["t10k-images-idx3-ubyte"]),
        labels(arrays["t10k-labels-idx1-ubyte"]),
        mean,
        std,
    )


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a CIFAR pickle: it may only be passed to ``_reconstruct``
    (as numpy's own pickles do); calling it, which would allocate an array of any shape the
    file asks for (``numpy.ndarray((600000, 3072))``: 1.8 GB from 240 bytes), is refused."""

    def __new__(cls, *args, **kwargs):
        raise pickle.UnpicklingError("numpy.ndarray called directly (not how numpy pickles an array)")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a crafted file cannot run code, and
    cannot allocate more than its own size: an array is made empty (``_reconstruct`` with shape
    ``(0,)``, as numpy pickles it) and filled from the raw bytes the file holds; a direct
    ``numpy.ndarray(shape)`` call or ``_reconstruct`` with any other shape is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        if name == "ndarray":
            return _NdarrayToken
        found = super().find_class(module, name)
        if name == "_reconstruct":

            def reconstruct(subtype, shape, dtype):
                if subtype is not _NdarrayToken or tuple(shape) != (0,):
                    raise pickle.UnpicklingError(
                        f"_reconstruct({getattr(subtype, '__name__', '?')}, {shape!r}): "
                        "only empty numpy arrays are made before their data is read"
                    )
                return found(np.ndarray, (0,), dtype)

            return reconstruct
        if name == "encode":

            def encode(text, encoding="utf-8"):
                if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
                    raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}: only latin1 text")
                return found(text, encoding)

            return encode
        return found


_CIFAR_KEYS = {"data", "labels", "batch_label", "filenames"}


def _cifar_structure(batch, name: str) -> tuple[np.ndarray, list]:
    """The ``data`` array and ``labels`` list of an unpickled batch, which must have the exact
    structure of the official batches: a dict with (bytes or str) keys ``data`` (a uint8
    ndarray), ``labels`` (a list of ints) and optionally ``batch_label`` and ``filenames``."""

    def bad(what: str) -> DataError:
        return DataError(
            f"{name}: not a readable CIFAR-10 batch ({what}); the file is truncated or "
            "corrupted, or not a CIFAR-10 batch"
        )

    if type(batch) is not dict:
        raise bad(f"a {type(batch).__name__}, not a dict")
    fields = {}
    for key, value in batch.items():
        text = key.decode("latin1") if type(key) is bytes else key if type(key) is str else None
        if text not in _CIFAR_KEYS or text in fields:
            raise bad(f"unexpected key {key!r}")
        fields[text] = value
    if "data" not in fields or "labels" not in fields:
        raise bad("no data or no labels")
    data, labels = fields["data"], fields["labels"]
    if type(data) is not np.ndarray or data.dtype != np.uint8:
        raise bad(f"data is a {type(data).__name__} of {getattr(data, 'dtype', '?')}, not a uint8 array")
    if type(labels) is not list or not all(type(v) is int for v in labels):
        raise bad("labels are not a list of ints")
    filenames = fields.get("filenames", [])
    if type(filenames) is not list or not all(type(v) in (bytes, str) for v in filenames):
        raise bad("filenames are not a list of names")
    if type(fields.get("batch_label", b"")) not in (bytes, str):
        raise bad("batch_label is not a name")
    return data, labels


def parse_cifar_batch(payload: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CIFAR-10 python batch into uint8 images (N, 3, 32, 32) and int64 labels."""
    if len(payload) > MAX_CIFAR_BATCH_BYTES:
        raise DataError(
            f"{name}: {len(payload):,} bytes, more than a CIFAR-10 batch may hold "
            f"({MAX_CIFAR_BATCH_BYTES:,}); not a CIFAR-10 batch"
        )
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(payload), encoding="bytes").load()
    except Exception as exc:
        raise DataError(
            f"{name}: not a readable CIFAR-10 batch ({type(exc).__name__}); "
            "the file is truncated or corrupted"
        ) from None
    data, label_list = _cifar_structure(batch, name)
    labels = np.asarray(label_list, dtype=np.int64) if label_list else np.zeros(0, np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(
            f"{name}: wrong size: data {data.shape}, labels {labels.shape}; expected (N, 3072) and N labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{name}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


CIFAR10_BATCH_IMAGES = 10_000


def load_cifar10(
    root: Path, download_missing: bool, *, checksums: dict[str, str] | None = CIFAR10_MD5
) -> Dataset:
    """Read the CIFAR-10 python batches from ``ROOT/cifar-10-batches-py/`` or, failing that,
    ``ROOT/cifar-10-python.tar.gz``. Each full-size (10,000-image) batch is checked against
    ``checksums`` (the official MD5s; ``None`` skips the check)."""
    folder = root / "cifar-10-batches-py"
    archive = root / "cifar-10-python.tar.gz"
    if folder.is_dir():
        payloads = _cifar_folder_payloads(folder)
    else:
        payloads = _cifar_archive_payloads(archive, folder, download_missing)
    parsed = [parse_cifar_batch(p, n) for n, p in payloads.items()]
    if checksums:
        # An official batch holds 10,000 images and must match its MD5 (a same-size corruption
        # parses fine); smaller hand-made batches (tests, subsets) are checked for structure only.
        for (name, payload), batch, (images, _) in zip(payloads.items(), CIFAR10_BATCHES, parsed):
            if len(images) == CIFAR10_BATCH_IMAGES and md5_of(payload) != checksums[batch]:
                raise DataError(
                    f"{name}: checksum mismatch (MD5 {md5_of(payload)}, expected {checksums[batch]}, "
                    f"size {len(payload)} bytes); the file is corrupted or not the official one"
                )
    for split, batches in (("training", parsed[:5]), ("test", parsed[5:])):
        if not sum(len(x) for x, _ in batches):
            where = folder if folder.is_dir() else archive
            raise DataError(f"{where}: the {split} batches hold no images (an empty or wrong data folder)")
    train = parsed[:5]
    train_x = torch.from_numpy(np.concatenate([x for x, _ in train]))
    train_y = torch.from_numpy(np.concatenate([y for _, y in train]))
    test_x, test_y = (torch.from_numpy(a) for a in parsed[5])
    return Dataset(
        "cifar10", train_x, train_y, test_x, test_y, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    )


def _cifar_folder_payloads(folder: Path) -> dict[str, bytes]:
    """The bytes of each CIFAR-10 batch file in ``folder``, by path, each size-checked before reading."""
    missing = [b for b in CIFAR10_BATCHES if not (folder / b).is_file()]
    if missing:
        raise DataError(
            f"missing data: {folder} needs {', '.join(CIFAR10_BATCHES)} (missing: {', '.join(missing)})"
        )
    payloads: dict[str, bytes] = {}
    for batch in CIFAR10_BATCHES:
        path = folder / batch
        try:
            if path.stat().st_size > MAX_CIFAR_BATCH_BYTES:
                raise DataError(
                    f"{path}: {path.stat().st_size:,} bytes, more than a CIFAR-10 batch may "
                    f"hold ({MAX_CIFAR_BATCH_BYTES:,}); not a CIFAR-10 batch"
                )
            payloads[str(path)] = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc})") from None
    return payloads


def _cifar_archive_payloads(archive: Path, folder: Path, download_missing: bool) -> dict[str, bytes]:
    """The bytes of each CIFAR-10 batch in the official archive (downloaded first if allowed),
    by ``archive:member``, each member's size checked before it is read."""
    if not archive.exists() and download_missing:
        try:
            download([CIFAR10_URL], archive, md5=CIFAR10_TGZ_MD5)
        except DataError:
            pass
    if not archive.exists():
        raise DataError(
            f"missing data: expected {folder}/ with {', '.join(CIFAR10_BATCHES)} "
            f"or {archive} (download failed or disabled; set --data-dir or DEPTHLAB_DATA)"
        )
    payloads: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for batch in CIFAR10_BATCHES:
                if batch not in members:
                    raise DataError(f"{archive}: missing member {batch}")
                if members[batch].size > MAX_CIFAR_BATCH_BYTES:  # the member's size, before reading it
                    raise DataError(
                        f"{archive}: member {batch} holds {members[batch].size:,} bytes, more "
                        f"than a CIFAR-10 batch may ({MAX_CIFAR_BATCH_BYTES:,})"
                    )
                payloads[f"{archive}:{batch}"] = tar.extractfile(members[batch]).read(
                    MAX_CIFAR_BATCH_BYTES + 1
                )
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: cannot read ({exc}); the archive is truncated or corrupted") from None
    return payloads
