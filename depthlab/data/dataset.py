"""`Dataset`: a dataset in memory (uint8 images, labels, normalisation), and where data lives."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from ..defaults import resolve_data_root  # noqa: F401  (re-exported: where the loaders look)
from ..errors import DataError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class Dataset:
    """A dataset held in memory: uint8 images ``(N, C, H, W)`` and int64 labels per split."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int = 10
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def share_memory_(self) -> Dataset:
        """Move the four tensors into shared memory, in place (a no-op once they are there).

        Pickling a tensor for another process does this implicitly, swapping its storage for a
        shared copy and freeing the old one. Whoever sends the dataset to workers calls this
        first, in its own thread: done implicitly in a pool's feeder thread it would free the
        memory under a reader in another thread (a fingerprint being hashed: a SIGSEGV)."""
        for t in (self.train_x, self.train_y, self.test_x, self.test_y):
            t.share_memory_()
        return self

    def fingerprint(self) -> str:
        """A short, stable checksum (16 hex digits) of the content actually loaded: both splits'
        images and labels, with their shapes and dtypes. Equal data gives an equal fingerprint
        in any process; another file, subset or padding gives another one. Computed once (one
        pass over the bytes, BLAKE2b) and cached: the tensors are not expected to change."""
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=8)
            for label, t in (
                ("train_x", self.train_x),
                ("train_y", self.train_y),
                ("test_x", self.test_x),
                ("test_y", self.test_y),
            ):
                t = t.detach().to("cpu").contiguous()
                h.update(f"{label}:{t.dtype}:{tuple(t.shape)};".encode())
                h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def validate(self, input_shape: tuple[int, ...] | None = None) -> Dataset:
        """Refuse, with one line (`DataError`), what would train on nothing or on the wrong
        thing: an empty split, images that are not uint8 ``(N, C, H, W)`` (of ``input_shape``
        when given), image and label counts that differ, labels outside ``0..num_classes-1``."""
        for split, x, y in (("training", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.ndim != 4 or x.dtype != torch.uint8:
                raise DataError(
                    f"{self.name}: {split} images are {x.dtype} of shape {tuple(x.shape)}, "
                    "expected uint8 (N, C, H, W)"
                )
            if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
                raise DataError(
                    f"{self.name}: {split} images are {'x'.join(map(str, x.shape[1:]))}, "
                    f"expected {'x'.join(map(str, input_shape))} (a wrong data folder?)"
                )
            if len(x) == 0:
                raise DataError(
                    f"{self.name}: the {split} split holds no images (an empty or wrong data folder)"
                )
            if y.ndim != 1 or len(y) != len(x):
                raise DataError(f"{self.name}: {len(x)} {split} images but labels of shape {tuple(y.shape)}")
            if y.dtype.is_floating_point or y.dtype == torch.bool:
                raise DataError(f"{self.name}: {split} labels are {y.dtype}, expected integers")
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise DataError(f"{self.name}: {split} labels outside 0..{self.num_classes - 1}")
        return self
