"""Data: idx and CIFAR readers (generated and real files), checksums, corrupted files, downloads,
data-root resolution, splits and the device-resident batcher."""

import gzip
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fakedata import cifar_batch_bytes, idx_bytes, write_cifar_folder, write_idx_folder

import depthlab.data.readers as R
from depthlab import data as D
from depthlab.errors import ConfigError, DataError

# ---------------------------------------------------------------------------------------------
# idx readers on generated files


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip(tmp_path, gz):
    arrays = write_idx_folder(tmp_path / "FashionMNIST" / "raw", 64, 32, gz=gz)
    ds = D.load_dataset("fashion-mnist", tmp_path, download=False)
    assert ds.train_x.shape == (64, 1, 28, 28) and ds.test_x.shape == (32, 1, 28, 28)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert np.array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(ds.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.input_shape == (1, 28, 28)


def test_parse_idx_other_dtypes():
    a = np.arange(12, dtype=">i4").reshape(3, 4)
    payload = bytes([0, 0, 0x0C, 2]) + (3).to_bytes(4, "big") + (4).to_bytes(4, "big") + a.tobytes()
    assert np.array_equal(R.parse_idx(payload), a)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x00\x00", "truncated"),
        (b"\x12\x34\x08\x01" + b"\x00" * 8, "bad magic"),
        (bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8)), "bad magic"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated idx header"),
        (idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-5], "wrong size"),
        (idx_bytes(np.zeros((4, 28, 28), np.uint8)) + b"\x00", "wrong size"),
    ],
)
def test_parse_idx_rejects_malformed(payload, message):
    with pytest.raises(DataError, match=message):
        R.parse_idx(payload, "some-file")


def _corrupt_and_load(tmp_path, stem, new_bytes):
    folder = tmp_path / "FashionMNIST" / "raw"
    write_idx_folder(folder, 16, 8, gz=True)
    target = folder / f"{stem}.gz"
    target.write_bytes(new_bytes(target.read_bytes()))
    with pytest.raises(DataError) as info:
        D.load_dataset("fashion-mnist", tmp_path, download=False)
    message = str(info.value)
    assert "\n" not in message and str(target) in message
    return message


def test_truncated_gzip_names_the_file(tmp_path):
    message = _corrupt_and_load(tmp_path, "train-images-idx3-ubyte", lambda b: b[: len(b) // 2])
    assert "truncated or corrupted" in message


def test_bad_gzip_names_the_file(tmp_path):
    message = _corrupt_and_load(
        tmp_path, "t10k-labels-idx1-ubyte", lambda b: b[:10] + b"\xff" * (len(b) - 10)
    )
    assert "truncated or corrupted" in message


def test_random_bytes_as_gzip_idx(tmp_path):
    rng = np.random.default_rng(1)
    message = _corrupt_and_load(
        tmp_path,
        "train-labels-idx1-ubyte",
        lambda b: b"\x1f\x8b" + rng.integers(0, 256, 500, dtype=np.uint8).tobytes(),
    )
    assert "corrupted" in message


def test_size_mismatch_between_images_and_labels(tmp_path):
    folder = tmp_path / "FashionMNIST" / "raw"
    write_idx_folder(folder, 16, 8)
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(15, np.uint8)))
    with pytest.raises(DataError, match="disagree"):
        D.load_dataset("fashion-mnist", tmp_path, download=False)


def test_labels_out_of_range(tmp_path):
    folder = tmp_path / "FashionMNIST" / "raw"
    write_idx_folder(folder, 16, 8)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(8, 200, np.uint8)))
    with pytest.raises(DataError, match="labels outside"):
        D.load_dataset("fashion-mnist", tmp_path, download=False)


def test_missing_files_name_folder_and_files(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_folder(folder, 8, 8)
    (folder / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError) as info:
        D.load_dataset("mnist", tmp_path, download=False)
    message = str(info.value)
    assert str(folder) in message and "missing: t10k-images-idx3-ubyte" in message
    assert all(stem in message for stem in R.IDX_FILES)


def test_offline_env_disables_download(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried the network")

    monkeypatch.setattr(R, "download", no_network)
    monkeypatch.setenv("DEPTHLAB_OFFLINE", "1")
    with pytest.raises(DataError, match="missing data"):
        D.load_dataset("mnist", tmp_path)


# ---------------------------------------------------------------------------------------------
# Real MNIST (../shared/data, verified against the SPEC's MD5s)


def test_real_mnist_shapes_and_labels(mnist):
    assert mnist.train_x.shape == (60000, 1, 28, 28) and mnist.test_x.shape == (10000, 1, 28, 28)
    assert mnist.train_x.dtype == torch.uint8
    for y in (mnist.train_y, mnist.test_y):
        assert y.dtype == torch.int64 and y.min() == 0 and y.max() == 9
        assert torch.bincount(y).min() > 0.08 * len(y)  # every digit is well represented
    # The published normalisation constants are this data's statistics.
    x = mnist.train_x.float() / 255
    assert abs(x.mean().item() - 0.1307) < 1e-3 and abs(x.std().item() - 0.3081) < 1e-3


def test_real_mnist_content_matches_spec_md5(data_root):
    for stem, expected in R.MNIST_MD5.items():
        if "labels" in stem:  # the image files are checked by every load; these are quick
            raw = gzip.decompress((data_root / "MNIST" / "raw" / f"{stem}.gz").read_bytes())
            assert hashlib.md5(raw).hexdigest() == expected


def test_modified_mnist_file_fails_its_checksum(data_root, tmp_path):
    raw_dir = tmp_path / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    for stem in R.IDX_FILES[:3]:
        (raw_dir / f"{stem}.gz").symlink_to(data_root / "MNIST" / "raw" / f"{stem}.gz")
    labels = bytearray(
        gzip.decompress((data_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    )
    labels[100] = (labels[100] + 1) % 10  # still a well-formed idx file: only the checksum can tell
    target = raw_dir / "t10k-labels-idx1-ubyte"
    target.write_bytes(bytes(labels))
    with pytest.raises(DataError) as info:
        D.load_dataset("mnist", tmp_path, download=False)
    message = str(info.value)
    assert str(target) in message and "checksum mismatch" in message
    assert R.MNIST_MD5["t10k-labels-idx1-ubyte"] in message and hashlib.md5(labels).hexdigest() in message
    assert "\n" not in message


def test_truncated_mnist_file_fails_its_checksum(data_root, tmp_path):
    raw_dir = tmp_path / "MNIST" / "raw"
    raw_dir.mkdir(parents=True)
    for stem in R.IDX_FILES:
        if stem != "train-labels-idx1-ubyte":
            (raw_dir / f"{stem}.gz").symlink_to(data_root / "MNIST" / "raw" / f"{stem}.gz")
    raw = gzip.decompress((data_root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz").read_bytes())
    (raw_dir / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: checksum mismatch"):
        D.load_dataset("mnist", tmp_path, download=False)


def test_mnist32_is_mnist_zero_padded(data_root, mnist):
    padded = D.load_dataset("mnist32", data_root, download=False)
    assert padded.train_x.shape == (60000, 1, 32, 32) and padded.input_shape == (1, 32, 32)
    assert torch.equal(padded.test_x[:, :, 2:30, 2:30], mnist.test_x)
    border = padded.test_x.clone()
    border[:, :, 2:30, 2:30] = 0
    assert border.sum() == 0
    assert torch.equal(padded.train_y, mnist.train_y)


# ---------------------------------------------------------------------------------------------
# Downloads from a local file:// mirror


def test_download_from_file_mirror_verifies_content(data_root, tmp_path, monkeypatch):
    mirror = (data_root / "MNIST" / "raw").as_uri() + "/"
    monkeypatch.setattr(R, "MNIST_MIRRORS", ("file:///nonexistent-mirror/", mirror))
    ds = D.load_dataset("mnist", tmp_path)
    assert ds.train_x.shape == (60000, 1, 28, 28)
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == sorted(
        f"{s}.gz" for s in R.IDX_FILES
    )


def test_download_with_bad_checksum_leaves_no_file(tmp_path):
    source = tmp_path / "src" / "file.bin"
    source.parent.mkdir()
    source.write_bytes(b"payload")
    dest = tmp_path / "dest" / "file.bin"
    with pytest.raises(DataError, match="checksum mismatch"):
        R.download([source.as_uri()], dest, md5="0" * 32)
    assert not dest.exists()
    assert not dest.parent.exists() or not any(dest.parent.iterdir())  # no partial file either
    assert R.download([source.as_uri()], dest, md5=hashlib.md5(b"payload").hexdigest()) == dest
    assert dest.read_bytes() == b"payload" and [p.name for p in dest.parent.iterdir()] == ["file.bin"]


def test_download_failure_names_the_file(tmp_path):
    with pytest.raises(DataError, match="could not download x.gz"):
        R.download([(tmp_path / "absent").as_uri()], tmp_path / "x.gz")


def test_failed_download_gives_missing_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "MNIST_MIRRORS", ((tmp_path / "empty-mirror").as_uri() + "/",))
    with pytest.raises(DataError, match="missing data"):
        D.load_dataset("mnist", tmp_path / "root")


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches


def test_cifar_folder_reader(tmp_path):
    batches = write_cifar_folder(tmp_path / "cifar-10-batches-py", per_batch=20)
    ds = R.load_cifar10(tmp_path, False, checksums=None)
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert np.array_equal(ds.train_x[20:40].numpy(), batches[1][0])  # batch order kept
    assert np.array_equal(ds.test_y.numpy(), batches[5][1])
    assert len(ds.mean) == 3 and ds.input_shape == (3, 32, 32)


def test_cifar_tar_gz_reader(tmp_path):
    src = tmp_path / "src" / "cifar-10-batches-py"
    batches = write_cifar_folder(src, per_batch=10, seed=3)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    ds = R.load_cifar10(root, False, checksums=None)
    assert np.array_equal(ds.train_x[:10].numpy(), batches[0][0])
    assert np.array_equal(ds.test_x.numpy(), batches[5][0])


def test_cifar_py2_module_names_are_accepted():
    # The official files were pickled by Python 2 numpy: numpy.core.multiarray, not numpy._core.
    images = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3, 32, 32) % 256
    payload = cifar_batch_bytes(images, np.array([3, 7]), "b").replace(
        b"numpy._core.multiarray", b"numpy.core.multiarray"
    )
    x, y = R.parse_cifar_batch(payload, "b")
    assert np.array_equal(x, images) and y.tolist() == [3, 7]


def test_cifar_checksums_are_checked(tmp_path):
    write_cifar_folder(tmp_path / "cifar-10-batches-py", per_batch=4)
    # a full-size batch (10,000 images) that is not the official file
    images = np.zeros((R.CIFAR10_BATCH_IMAGES, 3, 32, 32), dtype=np.uint8)
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(
        cifar_batch_bytes(images, np.zeros(R.CIFAR10_BATCH_IMAGES, dtype=np.int64), "data_batch_1")
    )
    with pytest.raises(DataError) as info:
        D.load_dataset("cifar10", tmp_path, download=False)
    assert "data_batch_1: checksum mismatch" in str(info.value) and R.CIFAR10_MD5["data_batch_1"] in str(
        info.value
    )


def test_small_hand_made_cifar_batches_load_without_official_checksums(tmp_path):
    write_cifar_folder(tmp_path / "cifar-10-batches-py", per_batch=4)
    ds = D.load_dataset("cifar10", tmp_path, download=False)
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)


@pytest.mark.parametrize("damage", ["truncate", "random"])
def test_cifar_corrupted_batch(tmp_path, damage):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder, per_batch=4)
    target = folder / "data_batch_3"
    payload = target.read_bytes()
    target.write_bytes(
        payload[: len(payload) // 2]
        if damage == "truncate"
        else np.random.default_rng(0).integers(0, 256, len(payload), dtype=np.uint8).tobytes()
    )
    with pytest.raises(DataError, match=f"{target}: not a readable CIFAR-10 batch .* truncated or corrupted"):
        R.load_cifar10(tmp_path, False, checksums=None)


def test_cifar_wrong_shape(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder, per_batch=4)
    bad = {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match="test_batch: wrong size"):
        R.load_cifar10(tmp_path, False, checksums=None)


@pytest.mark.parametrize("damage", ["truncate", "random", "missing-member"])
def test_cifar_corrupted_archive(tmp_path, damage):
    src = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar_folder(src, per_batch=50)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(src.iterdir()):
            if not (damage == "missing-member" and p.name == "data_batch_4"):
                tar.add(p, arcname=f"cifar-10-batches-py/{p.name}")
    payload = archive.read_bytes()
    if damage == "truncate":
        archive.write_bytes(payload[: len(payload) // 2])
    elif damage == "random":
        archive.write_bytes(np.random.default_rng(0).integers(0, 256, len(payload), dtype=np.uint8).tobytes())
    with pytest.raises(DataError) as info:
        R.load_cifar10(tmp_path, False, checksums=None)
    assert str(archive) in str(info.value)
    assert ("data_batch_4" if damage == "missing-member" else "truncated or corrupted") in str(info.value)


def test_cifar_missing_files(tmp_path):
    with pytest.raises(DataError) as info:
        D.load_dataset("cifar10", tmp_path, download=False)
    assert "cifar-10-batches-py" in str(info.value) and "cifar-10-python.tar.gz" in str(info.value)
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder, per_batch=2)
    (folder / "data_batch_2").unlink()
    with pytest.raises(DataError, match="missing: data_batch_2"):
        R.load_cifar10(tmp_path, False, checksums=None)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/depthlab-pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = Path("/tmp/depthlab-pwned")
    marker.unlink(missing_ok=True)
    payload = pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2)
    with pytest.raises(DataError, match="not a readable CIFAR-10 batch"):
        R.parse_cifar_batch(payload, "evil")
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="forbidden global"):
        R._ArrayOnlyUnpickler(io.BytesIO(payload)).load()


# ---------------------------------------------------------------------------------------------
# Data root, registry


def test_data_root_resolution_order(monkeypatch):
    monkeypatch.setenv("DEPTHLAB_DATA", "/from/env")
    assert D.resolve_data_root("/from/flag") == Path("/from/flag")
    assert D.resolve_data_root(None) == Path("/from/env")
    monkeypatch.delenv("DEPTHLAB_DATA")
    assert D.resolve_data_root(None) == Path("data")


def test_data_root_env_is_used_by_load_dataset(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "FashionMNIST" / "raw", 8, 8)
    monkeypatch.setenv("DEPTHLAB_DATA", str(tmp_path))
    assert len(D.load_dataset("fashion-mnist", download=False).train_x) == 8
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEPTHLAB_DATA")
    (tmp_path / "data").mkdir()
    write_idx_folder(tmp_path / "data" / "FashionMNIST" / "raw", 4, 4)
    assert len(D.load_dataset("fashion-mnist", download=False).train_x) == 4  # ./data


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="unknown dataset 'mnits'"):
        D.load_dataset("mnits")


# ---------------------------------------------------------------------------------------------
# Splits


def test_subset_indices_deterministic():
    a = D.subset_indices(1000, 100, seed=3)
    assert torch.equal(a, D.subset_indices(1000, 100, seed=3))
    assert not torch.equal(a, D.subset_indices(1000, 100, seed=4))
    assert len(a.unique()) == 100 and torch.equal(a, a.sort().values)
    assert torch.equal(D.subset_indices(10, None), torch.arange(10))
    with pytest.raises(ConfigError):
        D.subset_indices(10, 0)


def test_train_val_split_partitions():
    train, val = D.train_val_split(1000, 0.1, seed=0)
    assert len(val) == 100 and len(train) == 900
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(1000))
    again = D.train_val_split(1000, 0.1, seed=0)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert not torch.equal(val, D.train_val_split(1000, 0.1, seed=1)[1])
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ConfigError):
            D.train_val_split(10, bad)


@pytest.mark.parametrize("n, k", [(100, 5), (101, 3), (10, 10)])
def test_kfold_partitions(n, k):
    folds = D.kfold_indices(n, k, seed=0)
    assert len(folds) == k
    vals = torch.cat([v for _, v in folds])
    assert torch.equal(vals.sort().values, torch.arange(n))  # validation parts partition range(n)
    for train, val in folds:
        assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(n))
        assert abs(len(val) - n / k) < 1
    assert all(torch.equal(a[1], b[1]) for a, b in zip(folds, D.kfold_indices(n, k, seed=0)))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(folds, D.kfold_indices(n, k, seed=1)))


# ---------------------------------------------------------------------------------------------
# Batches


def _images(n=50, c=1, h=6, w=6, seed=0):
    return torch.randint(
        0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


def test_batches_normalisation_matches_formula():
    x, y = _images(c=3), torch.arange(50)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    xb, yb = next(iter(D.Batches(x, y, 16, mean, std, shuffle=False)))
    expected = (x[:16].float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    assert xb.dtype == torch.float32 and torch.allclose(xb, expected, atol=1e-5)
    assert torch.equal(yb, y[:16])


def test_batches_cover_every_sample_once_and_are_seeded():
    x, y = _images(), torch.arange(50)
    batches = D.Batches(x, y, 16, (0.5,), (0.5,), seed=7)
    assert len(batches) == 4
    epoch1 = [yb for _, yb in batches]
    assert [len(b) for b in epoch1] == [16, 16, 16, 2]
    assert torch.equal(torch.cat(epoch1).sort().values, torch.arange(50))
    epoch2 = torch.cat([yb for _, yb in batches])
    assert not torch.equal(torch.cat(epoch1), epoch2)  # a new order every epoch
    same = D.Batches(x, y, 16, (0.5,), (0.5,), seed=7)
    assert torch.equal(torch.cat([yb for _, yb in same]), torch.cat(epoch1))
    other = D.Batches(x, y, 16, (0.5,), (0.5,), seed=8)
    assert not torch.equal(torch.cat([yb for _, yb in other]), torch.cat(epoch1))
    for xb, yb in D.Batches(x, y, 16, (0.5,), (0.5,), seed=7):  # images stay with their labels
        assert torch.allclose(xb, (x[yb].float() / 255 - 0.5) / 0.5, atol=1e-5)


def test_batches_drop_last_and_bad_size():
    x, y = _images(), torch.arange(50)
    assert len(D.Batches(x, y, 16, (0.5,), (0.5,), drop_last=True)) == 3
    assert sum(len(yb) for _, yb in D.Batches(x, y, 16, (0.5,), (0.5,), drop_last=True)) == 48
    with pytest.raises(ConfigError):
        D.Batches(x, y, 0, (0.5,), (0.5,))


def test_batches_channels_last():
    x, y = _images(c=3), torch.arange(50)
    xb, _ = next(iter(D.Batches(x, y, 8, (0.5,) * 3, (0.5,) * 3, channels_last=True)))
    assert xb.is_contiguous(memory_format=torch.channels_last)


def test_augmentation_flip_semantics():
    # pad 0: the crop is the whole image, so every output is the image or its mirror image.
    x = (torch.arange(8, dtype=torch.uint8) * 30).view(1, 1, 1, 8).expand(64, 3, 8, 8).contiguous()
    batches = D.Batches(
        x, torch.zeros(64, dtype=torch.long), 64, (0.0,) * 3, (1 / 255,) * 3, augment=True, pad=0, seed=0
    )
    xb, _ = next(iter(batches))
    assert xb.shape == (64, 3, 8, 8)
    flipped = torch.tensor([torch.equal(o, x[0].float().flip(-1)) for o in xb])
    same = torch.tensor([torch.equal(o, x[0].float()) for o in xb])
    assert torch.all(flipped ^ same) and 10 < flipped.sum() < 54


def test_augmentation_random_crop_is_a_window_of_the_padded_image():
    n, pad = 32, 4
    x = _images(n, 3, 12, 12, seed=1)
    y = torch.arange(n)
    batches = D.Batches(x, y, n, (0.0,) * 3, (1 / 255,) * 3, augment=True, pad=pad, seed=0)
    xb, yb = next(iter(batches))
    assert xb.shape == (n, 3, 12, 12)
    offsets = set()
    for out, label in zip(xb, yb):
        padded = torch.nn.functional.pad(x[label], (pad,) * 4).float()
        matches = [
            (dy, dx, f)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for f in (False, True)
            if torch.equal(out, (lambda w: w.flip(-1) if f else w)(padded[:, dy : dy + 12, dx : dx + 12]))
        ]
        assert matches, "an augmented image is not a (mirrored) window of its padded source"
        offsets.add(matches[0][:2])
    assert len(offsets) > 5  # the offsets really vary


# ---------------------------------------------------------------------------------------------
# Empty or wrong data folders are refused when loading (issue 24, item 4); the content fingerprint


def _capsys_cli(capsys, *args):
    from depthlab.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_data_folder_with_no_training_images_is_refused(tmp_path, capsys):
    """Fashion-MNIST with 0 training images was recorded `done` with Test Error nan%."""
    folder = tmp_path / "FashionMNIST" / "raw"
    write_idx_folder(folder, 16, 8)
    (folder / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(0, np.uint8)))
    with pytest.raises(DataError, match="the train files hold no images"):
        D.load_dataset("fashion-mnist", tmp_path, download=False)
    store = tmp_path / "s.db"
    code, out, err = _capsys_cli(
        capsys,
        "train",
        "cnn-tanh",
        "--dataset",
        "fashion-mnist",
        "--depth",
        "3",
        "--data-dir",
        str(tmp_path),
        "--store",
        str(store),
        "--device",
        "cpu",
    )
    assert code == 2 and not out and err.count("\n") == 1 and "hold no images" in err, err
    assert not store.exists()


def test_cifar_batches_with_no_images_are_refused(tmp_path, monkeypatch):
    write_cifar_folder(tmp_path / "cifar-10-batches-py", per_batch=0)
    # numpy pickles an empty array with a call to bytes(), which the restricted unpickler refuses
    with pytest.raises(DataError, match="data_batch_1: not a readable CIFAR-10 batch"):
        D.load_dataset("cifar10", tmp_path, download=False)
    monkeypatch.setattr(
        R,
        "parse_cifar_batch",
        lambda payload, name: (np.zeros((0, 3, 32, 32), np.uint8), np.zeros(0, np.int64)),
    )
    with pytest.raises(DataError, match="cifar-10-batches-py: the training batches hold no images"):
        D.load_dataset("cifar10", tmp_path, download=False)


def test_images_of_the_wrong_size_are_refused_from_the_header(tmp_path):
    folder = tmp_path / "FashionMNIST" / "raw"
    write_idx_folder(folder, 16, 8)
    target = folder / "t10k-images-idx3-ubyte"
    target.write_bytes(idx_bytes(np.zeros((8, 32, 32), np.uint8)))
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte: images of shape \(8, 32, 32\), expected \(N, 28, 28\)"
    ):
        D.load_dataset("fashion-mnist", tmp_path, download=False)
    target.write_bytes(idx_bytes(np.zeros((8, 28, 28), np.uint8)))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((8, 1), np.uint8)))
    with pytest.raises(DataError, match=r"labels of shape \(8, 1\), expected \(N,\)"):
        D.load_dataset("fashion-mnist", tmp_path, download=False)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: setattr(d, "test_x", d.test_x[:0]), "the test split holds no images"),
        (lambda d: setattr(d, "train_y", d.train_y[:-1]), "labels of shape"),
        (lambda d: setattr(d, "test_y", d.test_y * 0 + 10), "labels outside 0..9"),
        (lambda d: setattr(d, "test_y", d.test_y * 0 - 1), "labels outside 0..9"),
        (lambda d: setattr(d, "train_y", d.train_y.float()), "expected integers"),
        (lambda d: setattr(d, "train_x", d.train_x.float()), "expected uint8"),
        (
            lambda d: setattr(d, "train_x", torch.zeros(len(d.train_x), 1, 32, 32, dtype=torch.uint8)),
            "expected 1x28x28",
        ),
    ],
)
def test_every_loaded_dataset_is_validated(damage, message, monkeypatch):
    """`load_dataset` validates what any loader returns (the registry's, or one registered later)."""
    from fakedata import synthetic_dataset

    def loader(root, dl):
        data = synthetic_dataset(32, 16)
        damage(data)
        return data

    D.register_dataset(D.DatasetInfo("broken", (1, 28, 28), loader, "a test set"))
    try:
        with pytest.raises(DataError, match=message):
            D.load_dataset("broken", download=False)
    finally:
        D.DATASETS.pop("broken")
    assert synthetic_dataset(32, 16).validate((1, 28, 28)).name == "synthetic"


def test_fingerprint_is_stable_cached_and_tells_content_apart(tmp_path):
    from fakedata import synthetic_dataset

    write_idx_folder(tmp_path / "a" / "FashionMNIST" / "raw", 64, 32, seed=0)
    write_idx_folder(
        tmp_path / "b" / "FashionMNIST" / "raw", 64, 32, seed=0, gz=True
    )  # same content, gzipped
    write_idx_folder(tmp_path / "c" / "FashionMNIST" / "raw", 64, 32, seed=1)  # other files
    a, b, c = (D.load_dataset("fashion-mnist", tmp_path / k, download=False) for k in "abc")
    fp = a.fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == b.fingerprint() == a.fingerprint()
    assert c.fingerprint() != fp
    subset = D.Dataset(a.name, a.train_x[:50], a.train_y[:50], a.test_x, a.test_y, a.mean, a.std)
    assert subset.fingerprint() != fp  # another subset of the same files
    relabelled = D.Dataset(a.name, a.train_x, a.train_y.roll(1), a.test_x, a.test_y, a.mean, a.std)
    assert relabelled.fingerprint() != fp
    strided = D.Dataset(
        a.name,
        a.train_x.transpose(2, 3).contiguous().transpose(2, 3),
        a.train_y,
        a.test_x,
        a.test_y,
        a.mean,
        a.std,
    )
    assert strided.fingerprint() == fp  # the content counts, not the memory layout
    assert synthetic_dataset(32, 16).fingerprint() == synthetic_dataset(32, 16).fingerprint()
    # cached: computed once per object
    a.train_x = a.train_x.clone()
    a.train_x[0] ^= 1
    assert a.fingerprint() == fp


def test_fingerprint_of_real_mnist_and_mnist32_differ(data_root, mnist):
    padded = D.load_dataset("mnist32", data_root, download=False)
    assert mnist.fingerprint() != padded.fingerprint()
    assert D.load_dataset("mnist", data_root, download=False).fingerprint() == mnist.fingerprint()
