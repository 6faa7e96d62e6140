"""Datasets from .npz files: every documented layout, statistics from the training split, bad
files as one line."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pytest
import torch

from depthlab.data.batches import Batches
from depthlab.data.npz import load_npz, npz_input_shape, npz_path
from depthlab.errors import DataError


def write(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


def arrays(shape, dtype=np.uint8, n_train=20, n_test=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)

    def images(n):
        return (
            rng.integers(0, 256, (n, *shape)) if dtype == np.uint8 else rng.normal(2.0, 3.0, (n, *shape))
        ).astype(dtype)

    return dict(
        x_train=images(n_train),
        y_train=rng.integers(0, classes, n_train),
        x_test=images(n_test),
        y_test=np.arange(n_test) % classes,
    )


@pytest.mark.parametrize(
    "shape, expected",
    [((8, 9), (1, 8, 9)), ((8, 9, 3), (3, 8, 9)), ((3, 8, 9), (3, 8, 9)), ((1, 8, 9), (1, 8, 9))],
)
def test_every_layout_becomes_n_c_h_w(tmp_path, shape, expected):
    data = load_npz(write(tmp_path, **arrays(shape)))
    assert data.input_shape == expected and data.train_x.dtype == torch.uint8
    assert data.num_classes == 3 and data.name == f"npz:{tmp_path / 'd.npz'}"


def test_channels_last_images_keep_their_pixels(tmp_path):
    a = arrays((6, 5, 3))
    data = load_npz(write(tmp_path, **a))
    assert torch.equal(data.train_x[2, 1], torch.from_numpy(a["x_train"][2, :, :, 1]))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_batches_are_normalised_with_the_training_splits_statistics(tmp_path, dtype):
    data = load_npz(write(tmp_path, **arrays((6, 6, 3), dtype=dtype, n_train=400)))
    batches = Batches(data.train_x, data.train_y, 400, data.mean, data.std, shuffle=False)
    xb, _ = next(iter(batches))
    per_channel = xb.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-4)
    assert torch.allclose(per_channel.std(1, unbiased=False), torch.ones(3), atol=1e-3)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("y_test"), "missing array(s) y_test"),
        (lambda a: a.update(x_train=a["x_train"][:0], y_train=a["y_train"][:0]), "must not be empty"),
        (lambda a: a.update(y_train=a["y_train"][:-1]), "labels must be a vector of 20 integers"),
        (lambda a: a.update(y_test=a["y_test"] - 1), "labels must be 0 .. K-1"),
        (lambda a: a.update(y_train=a["y_train"] + 0.5), "labels must be integers"),
        (lambda a: a.update(x_test=a["x_test"][:, :4]), "train images are"),
        (lambda a: a.update(x_train=a["x_train"][:, :, :, None, None]), "images must be N x H x W"),
    ],
)
def test_a_bad_file_is_one_line(tmp_path, change, message):
    a = arrays((8, 9))
    change(a)
    with pytest.raises(DataError) as info:
        load_npz(write(tmp_path, **a))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_missing_or_foreign_file_is_one_line(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_npz(tmp_path / "absent.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_npz(tmp_path / "text.npz")


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    a = arrays((8, 9))
    a["x_train"] = np.array([object()] * 20, dtype=object)
    path = tmp_path / "d.npz"
    np.savez(path, **a)
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_npz(path)


def test_npz_names():
    assert str(npz_path("npz:some/file.npz")) == "some/file.npz" and npz_path("mnist") is None


# ---------------------------------------------------------------------------------------------
# Attacks (issue 29): each refused with one line before any store is opened, and cheaply


def npy_header(shape, dtype=np.uint8) -> bytes:
    """A .npy header declaring ``shape`` and ``dtype`` (whatever data follows it)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf,
        {
            "shape": tuple(shape),
            "fortran_order": False,
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        },
    )
    return buf.getvalue()


def write_members(path, members):
    """An npz (a deflated zip) whose member ``key`` holds ``header`` then ``zeros`` zero bytes then
    ``data``, streamed, so that a member of hundreds of MB costs no memory to write."""
    zeros = bytes(4 * 2**20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for key, (header, data, n_zeros) in members.items():
            with z.open(f"{key}.npy", "w", force_zip64=True) as f:
                f.write(header + data)
                for start in range(0, n_zeros, len(zeros)):
                    f.write(zeros[: min(len(zeros), n_zeros - start)])
    return path


def honest(a: dict) -> dict:
    """``arrays()``'s arrays as members holding exactly what their headers declare."""
    return {k: (npy_header(v.shape, v.dtype), np.ascontiguousarray(v).tobytes(), 0) for k, v in a.items()}


def test_labels_beyond_the_class_bound_are_refused(tmp_path):
    a = arrays((8, 9))
    a["y_train"] = a["y_train"].astype(np.int64)
    a["y_train"][3] = 2**40  # the attack: a 2**40-way output layer (exit 1, a failed row)
    with pytest.raises(DataError, match="at most 100,000 classes, found 1099511627776"):
        load_npz(write(tmp_path, **a))


def test_a_header_declaring_a_billion_images_is_refused_unread(tmp_path):
    """40 KB whose headers declare 10**9 images (and labels): refused from the headers, not a
    MemoryError on a 64 GB allocation."""
    a = honest(arrays((8, 8)))
    a["x_train"] = (npy_header((10**9, 8, 8)), bytes(40_000), 0)
    a["y_train"] = (npy_header((10**9,), np.int64), bytes(800), 0)
    path = write_members(tmp_path / "d.npz", a)
    tracemalloc.start()
    try:
        with pytest.raises(
            DataError, match=r"its arrays declare 67\.06 GiB, more than the 2\.00 GiB .* nothing was read"
        ):
            load_npz(path)
        assert tracemalloc.get_traced_memory()[1] < 8 * 2**20
    finally:
        tracemalloc.stop()


def test_a_zip_bomb_is_refused_from_its_declared_size(tmp_path, monkeypatch):
    """A member of 256 MB of zeros (under 1 MB compressed) whose header declares them, with the
    limit set to 64 MB: refused from the header, the zeros never decompressed."""
    monkeypatch.setenv("DEPTHLAB_NPZ_MAX_BYTES", str(64 * 2**20))
    n = 256 * 2**20 // (28 * 28)
    a = honest(arrays((28, 28)))
    a["x_train"] = (npy_header((n, 28, 28)), b"", n * 28 * 28)
    a["y_train"] = (npy_header((n,)), b"", n)
    path = write_members(tmp_path / "bomb.npz", a)
    assert path.stat().st_size < 2 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"more than the 0\.06 GiB an npz dataset may hold"):
            load_npz(path)
        assert tracemalloc.get_traced_memory()[1] < 8 * 2**20
    finally:
        tracemalloc.stop()


def test_a_member_holding_more_than_its_header_declares_is_refused_after_one_chunk(tmp_path):
    """A zip bomb behind an honest small header: 256 MB of zeros after the 20 declared images.
    The read stops at the declared size, so memory stays at the declared arrays plus one chunk."""
    a = arrays((28, 28))
    members = honest(a)
    header, data, _ = members["x_train"]
    members["x_train"] = (header, data, 256 * 2**20)
    path = write_members(tmp_path / "bomb.npz", members)
    assert path.stat().st_size < 2 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="x_train: holds more data than its header declares"):
            load_npz(path)
        assert tracemalloc.get_traced_memory()[1] < 8 * 2**20
    finally:
        tracemalloc.stop()


def test_a_truncated_member_is_one_line(tmp_path):
    a = arrays((8, 9))
    members = honest(a)
    header, data, _ = members["x_test"]
    members["x_test"] = (header, data[:-10], 0)
    with pytest.raises(DataError, match="x_test: truncated"):
        load_npz(write_members(tmp_path / "d.npz", members))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 but not really", bytes(100)])
def test_an_empty_or_non_zip_file_is_one_line_not_an_abort(tmp_path, content):
    """A 0-byte file raised EOFError, which click turns into "aborted", exit 130, as if Ctrl-C."""
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="empty file" if not content else "not a readable .npz file"):
        load_npz(path)
    with pytest.raises(DataError):
        npz_input_shape(path)


def test_fortran_ordered_and_big_endian_arrays_read_as_numpy_does(tmp_path):
    a = arrays((6, 5, 3), dtype=np.float32)
    a["x_train"] = np.asfortranarray(a["x_train"]).astype(">f4")
    data = load_npz(write(tmp_path, **a))
    assert torch.equal(
        data.train_x, torch.from_numpy(a["x_train"].astype(np.float32).transpose(0, 3, 1, 2).copy())
    )
