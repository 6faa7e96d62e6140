"""Security (issue 5): files from elsewhere (checkpoints, CIFAR batches, stores) are never
unpickled as code; downloads are verified before they are used; names built from values can
never write outside the output folder. Source checks guard the rules for code added later."""

from __future__ import annotations

import ast
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from fakedata import cifar_batch_bytes, write_cifar_folder

import depthlab.data as D
import depthlab.data.download as DL
import depthlab.data.readers as R
from depthlab.cli import main
from depthlab.errors import ConfigError, DataError
from depthlab.store.sqlite import Store

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "depthlab").rglob("*.py")) + sorted((REPO / "benchmarks").rglob("*.py"))


class _Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------------------------
# Source rules: how files from elsewhere may be loaded


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_no_code_loads_pickles_or_checkpoints_unsafely():
    """torch.load only with weights_only=True, np.load only with allow_pickle=False, no plain
    pickle/marshal/shelve/eval/exec, no tar/zip extractall (path traversal): only the
    restricted CIFAR unpickler in depthlab/data/readers.py subclasses pickle.Unpickler."""
    problems = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(REPO)
        for call, name in _calls(tree):
            where = f"{rel}:{call.lineno}: {name}"
            if name == "torch.load" and _keyword(call, "weights_only") is not True:
                problems.append(f"{where} without weights_only=True")
            if name in ("np.load", "numpy.load") and _keyword(call, "allow_pickle") is not False:
                problems.append(f"{where} without allow_pickle=False")
            if name in (
                "pickle.load",
                "pickle.loads",
                "pickle.Unpickler",
                "marshal.load",
                "marshal.loads",
                "shelve.open",
                "eval",
                "exec",
                "torch.jit.load",
                "yaml.load",
                "yaml.unsafe_load",
                "dill.load",
                "dill.loads",
                "joblib.load",
            ):
                problems.append(where)
            if name.endswith(".extractall"):
                problems.append(f"{where} (extract members one by one, by name)")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                if "pickle.Unpickler" in bases and (rel.as_posix(), node.name) != (
                    "depthlab/data/readers.py",
                    "_ArrayOnlyUnpickler",
                ):
                    problems.append(f"{rel}:{node.lineno}: unpickler {node.name}")
    assert not problems, "unsafe loading:\n" + "\n".join(problems)


def test_restricted_unpickler_allows_only_numpy_array_reconstruction():
    allowed = R._ArrayOnlyUnpickler.ALLOWED
    assert {module for module, _ in allowed} <= {
        "numpy",
        "numpy.core.multiarray",
        "numpy._core.multiarray",
        "_codecs",
    }
    assert ("_codecs", "encode") in allowed and not any(
        name in ("eval", "system", "__import__") for _, name in allowed
    )


# ---------------------------------------------------------------------------------------------
# Checkpoints: torch.load(weights_only=True) refuses code


def test_a_malicious_checkpoint_is_refused_without_running_it(tmp_path):
    from depthlab.engine.checkpoints import load_checkpoint

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "depthlab-train-state-1", "model": _Payload(marker)}, path)
    with pytest.raises(DataError, match="corrupted or not a depthlab checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
    # ...whereas the plain unpickler would have run it: the payload is real
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_reproduce_resume_refuses_a_malicious_checkpoint_before_the_store(tmp_path, capsys):
    from depthlab.experiments.cifar import checkpoint_file, lr_bn_configs

    write_cifar_folder(tmp_path / "data" / "cifar-10-batches-py", per_batch=8)
    ckpt, marker, store = tmp_path / "ckpt", tmp_path / "pwned", tmp_path / "s.db"
    ckpt.mkdir()
    first = lr_bn_configs(dataset="cifar10", max_epochs=1, train_size=16)[0][1]
    torch.save(
        {"format": "depthlab-train-state-1", "config_hash": first.hash(), "model": _Payload(marker)},
        checkpoint_file(ckpt, first),
    )
    code, out, err = _cli(
        capsys,
        "reproduce",
        "cifar-lr-bn",
        "--dataset",
        "cifar10",
        "--max-epochs",
        "1",
        "--train-size",
        "16",
        "--data-dir",
        str(tmp_path / "data"),
        "--store",
        str(store),
        "--checkpoint-dir",
        str(ckpt),
        "--resume",
        "--device",
        "cpu",
    )
    assert code == 2 and err.startswith("depthlab: error: checkpoint") and err.count("\n") == 1, err
    assert not marker.exists() and not store.exists()


# ---------------------------------------------------------------------------------------------
# CIFAR batches: the restricted unpickler refuses code, also hidden inside an object array


def _evil_batches(tmp_path: Path, marker: Path, how: str) -> Path:
    folder = tmp_path / "data" / "cifar-10-batches-py"
    write_cifar_folder(folder, per_batch=8)
    if how == "top-level":
        payload = pickle.dumps({b"data": _Payload(marker), b"labels": [0]}, protocol=2)
    elif how == "object-array":  # the array's own state unpickles its elements: they must be refused too
        data = np.empty((1, 3072), dtype=object)
        data[0, 0] = _Payload(marker)
        payload = pickle.dumps({b"data": data, b"labels": [0]}, protocol=2)
    else:  # a well-formed batch with an extra key holding code
        ok = pickle.loads(cifar_batch_bytes(np.zeros((8, 3, 32, 32), np.uint8), np.zeros(8, np.int64), "x"))
        payload = pickle.dumps({**ok, b"extra": _Payload(marker)}, protocol=2)
    (folder / "data_batch_1").write_bytes(payload)
    assert b"touch" in payload
    return tmp_path / "data"


@pytest.mark.parametrize("how", ["top-level", "object-array", "extra-key"])
def test_a_malicious_cifar_batch_is_refused_without_running_it(how, tmp_path, capsys):
    marker = tmp_path / "pwned"
    root = _evil_batches(tmp_path, marker, how)
    store = tmp_path / "s.db"
    code, out, err = _cli(
        capsys,
        "train",
        "cifar-cnn",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(root),
        "--store",
        str(store),
        "--device",
        "cpu",
    )
    assert code == 2 and "not a readable CIFAR-10 batch" in err and err.count("\n") == 1, err
    assert "data_batch_1" in err and not marker.exists() and not store.exists()
    with pytest.raises(pickle.UnpicklingError, match="forbidden global"):
        R._ArrayOnlyUnpickler(
            open(root / "cifar-10-batches-py" / "data_batch_1", "rb"), encoding="bytes"
        ).load()
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# Stores from elsewhere: JSON text, parsed, never executed


def test_a_store_with_a_pickle_in_it_is_reported_not_loaded(tmp_path, capsys):
    marker, path = tmp_path / "pwned", tmp_path / "foreign.db"
    with Store(path) as store:
        run_id = store.start_run({"model": "cnn-tanh", "dataset": "mnist"}, "h")
        store.finish_run(run_id, "done", seconds=1.0, result={})
        store.conn.execute(
            "UPDATE runs SET result = ? WHERE id = ?", (pickle.dumps(_Payload(marker)), run_id)
        )
    before = path.read_bytes()
    code, out, err = _cli(capsys, "runs", "--store", str(path))
    assert code == 2 and "corrupted record" in err and err.count("\n") == 1, err
    assert not marker.exists() and path.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# Downloads: verified before they are put in place (file:// mirrors)


@pytest.fixture(scope="module")
def mirrors(data_root, tmp_path_factory):
    """A good mirror (the real MNIST files) and a bad one serving tampered copies."""
    good = data_root / "MNIST" / "raw"
    bad = tmp_path_factory.mktemp("bad-mirror")
    for stem in R.IDX_FILES:
        content = bytearray(gzip.decompress((good / f"{stem}.gz").read_bytes()))
        content[-1] ^= 0xFF  # one flipped byte: parses fine, fails the checksum
        (bad / f"{stem}.gz").write_bytes(gzip.compress(bytes(content), compresslevel=1))
    return good.as_uri() + "/", bad.as_uri() + "/"


def test_tampered_downloads_are_refused_and_never_left_in_place(mirrors, tmp_path, monkeypatch, capsys):
    good, bad = mirrors
    monkeypatch.delenv("DEPTHLAB_OFFLINE", raising=False)
    monkeypatch.setattr(R, "MNIST_MIRRORS", (bad,))
    root, store = tmp_path / "root", tmp_path / "s.db"
    code, out, err = _cli(
        capsys, "train", "cnn-tanh", "--data-dir", str(root), "--store", str(store), "--device", "cpu"
    )
    assert code == 2 and "missing data" in err and err.count("\n") == 1, err
    folder = root / "MNIST" / "raw"
    assert not store.exists() and (
        not folder.exists() or list(folder.iterdir()) == []
    )  # nothing, not even .part


def test_a_tampered_mirror_is_skipped_for_the_next_good_one(mirrors, tmp_path, monkeypatch):
    good, bad = mirrors
    monkeypatch.delenv("DEPTHLAB_OFFLINE", raising=False)
    monkeypatch.setattr(R, "MNIST_MIRRORS", (bad, good))
    data = D.load_dataset("mnist", tmp_path / "root")
    assert data.train_x.shape == (60000, 1, 28, 28)
    for stem in R.IDX_FILES:  # what was put in place is the verified content
        got = gzip.decompress((tmp_path / "root" / "MNIST" / "raw" / f"{stem}.gz").read_bytes())
        assert R.md5_of(got) == R.MNIST_MD5[stem]


def test_a_cifar_archive_with_a_wrong_checksum_is_not_used(tmp_path, monkeypatch):
    import io
    import tarfile

    monkeypatch.delenv("DEPTHLAB_OFFLINE", raising=False)
    archive = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:  # a readable archive, but not the official one
        for name in R.CIFAR10_BATCHES:
            payload = cifar_batch_bytes(np.zeros((4, 3, 32, 32), np.uint8), np.zeros(4, np.int64), name)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    archive.write_bytes(buffer.getvalue())
    monkeypatch.setattr(R, "CIFAR10_URL", archive.as_uri())
    with pytest.raises(DataError, match="missing data"):
        D.load_dataset("cifar10", tmp_path / "root")
    assert not (tmp_path / "root").exists() or not any((tmp_path / "root").rglob("*"))


# ---------------------------------------------------------------------------------------------
# Output paths


def test_model_names_cannot_carry_paths():
    from depthlab.models import Preset, register_preset

    for name in ("../evil", "a/b", "a\\b", "..", "", ".hidden", "x\x00y", "../../etc/passwd"):
        with pytest.raises(ValueError, match="bad model name"):
            register_preset(Preset(name, "stages", {}))


def test_file_names_from_configs_go_through_safe_child(tmp_path, monkeypatch):
    """A name that would escape (if a model name ever carried a path) is refused, not written."""
    from depthlab.engine.config import TrainConfig
    from depthlab.experiments.cifar import checkpoint_file
    from depthlab.report.outputs import safe_child

    config = TrainConfig(model="cifar-cnn", dataset="cifar10")
    assert checkpoint_file(tmp_path, config).parent == tmp_path
    monkeypatch.setattr(TrainConfig, "hash", lambda self: "../../escaped")
    with pytest.raises(ConfigError, match="bad output file name"):
        checkpoint_file(tmp_path, config)
    with pytest.raises(ConfigError):
        safe_child(tmp_path, "../x")


def test_no_file_name_is_built_from_values_without_safe_child():
    """Source rule: ``folder / f"...{value}..."`` must be ``safe_child(folder, f"...")`` so that a
    value can never add a separator or ``..``. Names built only from constants are listed."""
    constant_names = {
        ("depthlab/data/readers.py", "stem"),
        ("depthlab/data/cifar_jpeg.py", "CACHE_VERSION"),
        ("depthlab/data/cifar_jpeg.py", "stat"),
    }
    problems = []
    for path in SOURCES:
        rel = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Div)
                and isinstance(node.right, ast.JoinedStr)
            ):
                names = {
                    ast.unparse(v.value).split(".")[0]
                    for v in node.right.values
                    if isinstance(v, ast.FormattedValue)
                }
                if not all((rel, n) in constant_names for n in names):
                    problems.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert not problems, "file names built from values without safe_child:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# Decompression and pickle bombs (issue 24, item 6): sizes are checked before anything is
# allocated, gzip is read in bounded chunks, CIFAR pickles must have the official structure.


class _Alloc:
    """Unpickles to ``numpy.ndarray(shape)``: gigabytes from a few hundred bytes of pickle."""

    def __init__(self, shape, dtype="u1"):
        self.shape, self.dtype = shape, dtype

    def __reduce__(self):
        return (np.ndarray, (self.shape, np.dtype(self.dtype)))


class _Reconstruct(_Alloc):
    """Unpickles to ``numpy._core.multiarray._reconstruct(ndarray, shape, 'B')``, as big."""

    def __reduce__(self):
        from numpy.core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, self.shape, b"B"))


def _peak_bytes(fn) -> int:
    """Peak Python (and numpy) memory traced while ``fn()`` runs; ``fn`` must raise DataError."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(DataError) as info:
            fn()
        return tracemalloc.get_traced_memory()[1], str(info.value)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("bomb", [_Alloc, _Reconstruct])
def test_a_cifar_pickle_bomb_is_refused_before_it_allocates(bomb, tmp_path, capsys):
    payload = pickle.dumps({b"data": bomb((600_000, 3072)), b"labels": bomb((600_000,), "i8")}, protocol=2)
    assert len(payload) < 400  # 1.8 GB of images, 4.8 MB of labels, declared in a few hundred bytes
    peak, message = _peak_bytes(lambda: R.parse_cifar_batch(payload, "data_batch_1"))
    assert peak < 10 * 2**20, peak
    assert "data_batch_1: not a readable CIFAR-10 batch" in message and "\n" not in message
    root = tmp_path / "data"
    write_cifar_folder(root / "cifar-10-batches-py", per_batch=4)
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(payload)
    store = tmp_path / "s.db"
    code, out, err = _cli(
        capsys,
        "train",
        "cifar-cnn",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(root),
        "--store",
        str(store),
        "--device",
        "cpu",
    )
    assert code == 2 and "not a readable CIFAR-10 batch" in err and err.count("\n") == 1, err
    assert not out and not store.exists()


@pytest.mark.parametrize(
    "batch, why",
    [
        ({b"data": np.zeros((2, 3072), np.int64), b"labels": [0, 1]}, "not a uint8 array"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": np.zeros(2, np.int64)}, "not a list of ints"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, "1"]}, "not a list of ints"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"extra": 1}, "unexpected key"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "no data or no labels"),
        ([np.zeros((2, 3072), np.uint8), [0, 1]], "not a dict"),
    ],
)
def test_a_cifar_pickle_must_have_the_structure_of_the_official_batches(batch, why):
    with pytest.raises(DataError, match=f"not a readable CIFAR-10 batch .*{why}"):
        R.parse_cifar_batch(pickle.dumps(batch, protocol=2), "b")
    # the official structure (bytes keys, uint8 data, a list of int labels, names) still loads
    ok = cifar_batch_bytes(np.zeros((2, 3, 32, 32), np.uint8), np.array([3, 4]), "b")
    assert R.parse_cifar_batch(ok, "b")[1].tolist() == [3, 4]


def test_an_oversized_cifar_batch_is_refused_by_its_size_before_it_is_read(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_cifar_folder(root / "cifar-10-batches-py", per_batch=4)
    monkeypatch.setattr(R, "MAX_CIFAR_BATCH_BYTES", 1000)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"read {self}"))
    with pytest.raises(DataError, match="data_batch_1: .* bytes, more than a CIFAR-10 batch may hold"):
        R.load_cifar10(root, False, checksums=None)


def _idx_gz_bomb(path: Path, dims, zeros: int) -> None:
    """An idx .gz whose header declares ``dims`` (uint8), followed by ``zeros`` bytes of zeros,
    written in chunks (the test itself never holds the uncompressed data)."""
    import struct

    with gzip.GzipFile(path, mode="wb", compresslevel=1) as fh:
        fh.write(struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(">" + "I" * len(dims), *dims))
        chunk = bytes(2**20)
        for _ in range(zeros // len(chunk)):
            fh.write(chunk)


def test_an_idx_gzip_bomb_is_read_in_bounded_chunks(tmp_path):
    """MNIST's training images (checksummed) replaced by a 300 kB .gz holding 64 MB of zeros
    behind a header declaring 1000 images: reading stops at the declared size, long before
    the checksum would be computed on everything (the old reader decompressed it all first)."""
    from fakedata import write_idx_folder

    folder = tmp_path / "MNIST" / "raw"
    write_idx_folder(folder, 16, 8, gz=True)
    target = folder / "train-images-idx3-ubyte.gz"
    _idx_gz_bomb(target, (1000, 28, 28), 64 * 2**20)
    assert target.stat().st_size < 2**20
    peak, message = _peak_bytes(lambda: D.load_dataset("mnist", tmp_path, download=False))
    assert peak < 8 * 2**20, peak
    assert f"{target}: wrong size: more than 784000 data bytes" in message and "\n" not in message


@pytest.mark.parametrize("dims", [(4_000_000, 28, 28), (2**32 - 1, 2**32 - 1, 28)])
def test_an_idx_header_declaring_gigabytes_is_refused_before_anything_is_allocated(dims, tmp_path):
    from fakedata import write_idx_folder

    folder = tmp_path / "FashionMNIST" / "raw"
    write_idx_folder(folder, 16, 8, gz=True)
    target = folder / "train-images-idx3-ubyte.gz"
    _idx_gz_bomb(target, dims, 2**20)
    peak, message = _peak_bytes(lambda: D.load_dataset("fashion-mnist", tmp_path, download=False))
    assert peak < 4 * 2**20, peak
    assert f"{target}: header declares shape {dims}" in message and "\n" not in message


def test_a_downloaded_gzip_bomb_is_cut_off_and_fails_its_checksum(tmp_path):
    """The mirror's payload is checked after decompressing at most the idx size limit plus a
    header: a bomb served by a mirror cannot grow past it."""
    bomb = tmp_path / "bomb.gz"
    _idx_gz_bomb(bomb, (60000, 28, 28), 8 * 2**20)
    payload = bomb.read_bytes()
    assert len(R._gunzip_if_needed(payload, 1000)) == 1001
    assert R._md5_of_idx_download(b"\x1f\x8b garbage") == ""


def test_a_truncated_official_idx_file_fails_its_checksum_after_a_bounded_read(data_root, tmp_path):
    """A short official file is all read (no more than its header declares) and named by its MD5."""
    raw_dir = tmp_path / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    for stem in R.IDX_FILES[1:]:
        (raw_dir / f"{stem}.gz").symlink_to(data_root / "MNIST" / "raw" / f"{stem}.gz")
    with gzip.open(data_root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz") as fh:
        (raw_dir / "train-images-idx3-ubyte").write_bytes(fh.read(5000))
    with pytest.raises(
        DataError,
        match=r"train-images-idx3-ubyte: checksum mismatch .*5000 bytes uncompressed, "
        r"47040016 declared\); the file is truncated",
    ):
        D.load_dataset("mnist", tmp_path, download=False)


def test_a_download_larger_than_any_dataset_file_is_cut_off_and_not_kept(tmp_path, monkeypatch):
    big = tmp_path / "mirror" / "train-images-idx3-ubyte.gz"
    big.parent.mkdir()
    big.write_bytes(b"\x00" * 5000)
    monkeypatch.setattr(DL, "MAX_DOWNLOAD_BYTES", 1000)  # where download() reads it
    dest = tmp_path / "raw" / "train-images-idx3-ubyte.gz"
    with pytest.raises(DataError, match="more than 1,000 bytes"):
        R.download([big.as_uri()], dest)
    assert not dest.parent.exists() or not os.listdir(dest.parent)
