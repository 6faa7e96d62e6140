"""CIFAR-10 readers: the python-pickle batches (generated in the exact format, folder and .tar.gz)
and the cifar10-jpeg zip (a tiny generated zip, plus a few images of the real one)."""

import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from depthlab.data import cifar_jpeg
from depthlab.data.cifar_jpeg import channel_stats, decode_members, split_members
from depthlab.data.dataset import CIFAR10_CLASSES
from depthlab.data.readers import CIFAR10_BATCHES
from depthlab.data.registry import load_dataset
from depthlab.errors import DataError

# --- python-pickle batches ---------------------------------------------------------------------


def write_cifar_batches(folder: Path, per_batch: int = 8, seed: int = 0) -> dict:
    """CIFAR-10 python batches as the official files are: protocol-2 pickles of a dict with
    bytes keys, ``data`` (N, 3072) uint8 in channel-major order, ``labels`` a list of ints."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name in CIFAR10_BATCHES:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img{i}.png".encode() for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        made[name] = (data, labels)
    return made


def test_cifar10_reader_reads_generated_python_batches(tmp_path):
    made = write_cifar_batches(tmp_path / "cifar-10-batches-py")
    data = load_dataset("cifar10", tmp_path, download=False)
    assert data.train_x.shape == (40, 3, 32, 32) and data.test_x.shape == (8, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    first, labels = made["data_batch_1"]
    # row-major 3072 = 3 planes of 32x32: pixel (c, h, w) is byte c*1024 + h*32 + w
    assert data.train_x[0, 2, 5, 7].item() == first[0, 2 * 1024 + 5 * 32 + 7]
    assert data.train_y[:8].tolist() == labels
    assert data.test_y.tolist() == made["test_batch"][1]


def test_cifar10_reader_reads_the_tar_gz(tmp_path):
    made = write_cifar_batches(tmp_path / "src" / "cifar-10-batches-py")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    data = load_dataset("cifar10", tmp_path, download=False)
    assert data.train_x.shape == (40, 3, 32, 32)
    assert data.test_y.tolist() == made["test_batch"][1]


def test_cifar10_folder_missing_a_batch_names_it(tmp_path):
    write_cifar_batches(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path, download=False)


# --- cifar10-jpeg ------------------------------------------------------------------------------


def write_jpeg_zip(root: Path, per_class=(2, 1)) -> dict:
    """A tiny zip in the stand-in's layout; every image is one flat colour (JPEG keeps flat
    colours to within a few levels), distinct per class and index."""
    from PIL import Image

    folder = root / "CIFAR10-JPEG"
    folder.mkdir(parents=True, exist_ok=True)
    colours = {}
    with zipfile.ZipFile(folder / "cifar10-jpeg-q75.zip", "w") as archive:
        for split, count in zip(("train", "test"), per_class):
            for k, cls in enumerate(CIFAR10_CLASSES):
                for i in range(count):
                    colour = (20 * k + 10, 200 - 15 * i, 40 + 10 * k)
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), colour).save(buf, format="JPEG", quality=75)
                    archive.writestr(f"{split}/{cls}/{i:04d}.jpg", buf.getvalue())
                    colours[(split, cls, i)] = colour
    return colours


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("DEPTHLAB_CACHE", str(folder))
    return folder


def test_jpeg_reader_decodes_the_zip_into_uint8_tensors(tmp_path, cache):
    colours = write_jpeg_zip(tmp_path / "data")
    data = load_dataset("cifar10-jpeg", tmp_path / "data", download=False)
    assert data.name == "cifar10-jpeg"
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (10, 3, 32, 32)
    assert data.train_x.dtype == torch.uint8
    assert data.train_y.tolist() == [k for k in range(10) for _ in range(2)]  # sorted names: class order
    assert data.test_y.tolist() == list(range(10))
    pixel = data.train_x[3, :, 16, 16].tolist()  # train/automobile/0001.jpg
    expected = colours[("train", "automobile", 1)]
    assert all(abs(a - b) <= 3 for a, b in zip(pixel, expected))
    assert len(data.mean) == 3 and all(0 < s for s in data.std)


def test_jpeg_reader_decodes_once_then_reads_the_cache(tmp_path, cache, monkeypatch):
    write_jpeg_zip(tmp_path / "data")
    first = load_dataset("cifar10-jpeg", tmp_path / "data", download=False)
    assert len(list(cache.glob("cifar10-jpeg-*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(cifar_jpeg, "decode_cifar10_jpeg", no_decoding)
    second = load_dataset("cifar10-jpeg", tmp_path / "data", download=False)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)


def test_jpeg_reader_ignores_a_corrupted_cache_and_survives_an_unwritable_one(tmp_path, cache, monkeypatch):
    write_jpeg_zip(tmp_path / "data")
    good = load_dataset("cifar10-jpeg", tmp_path / "data", download=False)
    for path in cache.glob("*.npz"):
        path.write_bytes(b"not an npz")
    again = load_dataset("cifar10-jpeg", tmp_path / "data", download=False)
    assert torch.equal(good.train_x, again.train_x)
    # a "cache folder" below a regular file can never be created
    monkeypatch.setenv(
        "DEPTHLAB_CACHE", str(tmp_path / "data" / "CIFAR10-JPEG" / "cifar10-jpeg-q75.zip" / "x")
    )
    assert torch.equal(load_dataset("cifar10-jpeg", tmp_path / "data", download=False).train_x, good.train_x)


def test_jpeg_reader_errors_name_the_problem(tmp_path, cache):
    with pytest.raises(DataError, match="cifar10-jpeg-q75.zip"):
        load_dataset("cifar10-jpeg", tmp_path, download=False)
    folder = tmp_path / "CIFAR10-JPEG"
    folder.mkdir()
    (folder / "cifar10-jpeg-q75.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="corrupted"):
        load_dataset("cifar10-jpeg", tmp_path, download=False)
    with zipfile.ZipFile(folder / "cifar10-jpeg-q75.zip", "w") as archive:
        archive.writestr("train/unicorn/0000.jpg", b"x")
        archive.writestr("test/cat/0000.jpg", b"x")
    with pytest.raises(DataError, match="unicorn"):
        load_dataset("cifar10-jpeg", tmp_path, download=False)
    with zipfile.ZipFile(folder / "cifar10-jpeg-q75.zip", "w") as archive:
        archive.writestr("train/cat/0000.jpg", b"not a jpeg")
        archive.writestr("test/cat/0000.jpg", b"not a jpeg")
    with pytest.raises(DataError, match="cannot decode train/cat/0000.jpg"):
        load_dataset("cifar10-jpeg", tmp_path, download=False)


def test_channel_stats_are_exact():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 3, 8, 8), dtype=np.uint8)
    mean, std = channel_stats(images)
    x = images.astype(np.float64) / 255
    assert np.allclose(mean, x.mean(axis=(0, 2, 3)), atol=1e-4)
    assert np.allclose(std, x.std(axis=(0, 2, 3)), atol=1e-4)


def test_real_jpeg_zip_a_few_images_decode_to_cifar_shaped_tensors(data_root):
    real_zip = data_root / "CIFAR10-JPEG" / "cifar10-jpeg-q75.zip"
    if not real_zip.is_file():
        pytest.skip(f"the CIFAR-10 JPEG stand-in is not at {real_zip}")
    with zipfile.ZipFile(real_zip) as archive:
        train, test = split_members(archive, "train", real_zip), split_members(archive, "test", real_zip)
        assert (len(train), len(test)) == (50_000, 10_000)
        names = [n for cls in CIFAR10_CLASSES for n in train if n.startswith(f"train/{cls}/")][::2500]
        images, labels = decode_members(archive, names, real_zip)
    assert images.shape == (20, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [k for k in range(10) for _ in range(2)]
    assert 40 < images.mean() < 200 and images.std() > 20  # real photographs, not blank files
