"""Datasets from .npz files: every documented layout, statistics from the training split, bad
files as one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthlab.data.batches import Batches
from depthlab.data.npz import load_npz, npz_path
from depthlab.errors import DataError


def write(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


def arrays(shape, dtype=np.uint8, n_train=20, n_test=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    def images(n):
        return (rng.integers(0, 256, (n, *shape)) if dtype == np.uint8 else rng.normal(2.0, 3.0, (n, *shape))
                ).astype(dtype)
    return dict(x_train=images(n_train), y_train=rng.integers(0, classes, n_train), x_test=images(n_test),
                y_test=np.arange(n_test) % classes)


@pytest.mark.parametrize("shape, expected", [((8, 9), (1, 8, 9)), ((8, 9, 3), (3, 8, 9)), ((3, 8, 9), (3, 8, 9)),
                                             ((1, 8, 9), (1, 8, 9))])
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


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("y_test"), "missing array(s) y_test"),
    (lambda a: a.update(x_train=a["x_train"][:0], y_train=a["y_train"][:0]), "must not be empty"),
    (lambda a: a.update(y_train=a["y_train"][:-1]), "labels must be a vector of 20 integers"),
    (lambda a: a.update(y_test=a["y_test"] - 1), "labels must be 0 .. K-1"),
    (lambda a: a.update(y_train=a["y_train"] + 0.5), "labels must be integers"),
    (lambda a: a.update(x_test=a["x_test"][:, :4]), "train images are"),
    (lambda a: a.update(x_train=a["x_train"][:, :, :, None, None]), "images must be N x H x W"),
])
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
