"""Subsets, validation splits, K folds and the device-resident batcher `Batches`."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import ConfigError


def subset_indices(n: int, size: int | None, seed: int = 0) -> torch.Tensor:
    """A fixed random subset of ``size`` of ``n`` indices (all of them, in order, when size is None)."""
    if size is None or size >= n:
        return torch.arange(n)
    if size <= 0:
        raise ConfigError(f"subset size must be positive, got {size}")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:size].sort().values


def train_val_split(n: int, val_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic split of ``n`` indices into train and validation parts."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1), got {val_fraction}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(round(n * val_fraction)))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def kfold_indices(n: int, k: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """K (train, validation) index pairs; the validation parts partition ``range(n)``."""
    if k < 2:
        raise ConfigError(f"fold count must be at least 2, got {k}")
    g = torch.Generator().manual_seed(seed)
    folds = torch.randperm(n, generator=g).tensor_split(k)
    return [
        (torch.cat([f for j, f in enumerate(folds) if j != i]).sort().values, folds[i].sort().values)
        for i in range(k)
    ]


class Batches:
    """Iterates over shuffled mini-batches of a uint8 image tensor that lives on the device.

    Each batch is sliced by index, converted to float and normalised in one fused tensor op;
    optional augmentation (random crop after zero padding, horizontal flip) runs on whole batches.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        mean,
        std,
        *,
        shuffle: bool = True,
        seed: int = 0,
        augment: bool = False,
        pad: int = 4,
        drop_last: bool = False,
        channels_last: bool = False,
    ):
        if batch_size <= 0:
            raise ConfigError(f"batch size must be positive, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.augment, self.pad = batch_size, shuffle, augment, pad
        self.drop_last, self.channels_last = drop_last, channels_last
        c = x.shape[1]
        std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, c, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, c, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def normalise(self, xb: torch.Tensor) -> torch.Tensor:
        out = torch.addcmul(self.shift, xb.to(torch.float32), self.scale)
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def _augment(self, xb: torch.Tensor) -> torch.Tensor:
        n, _, h, w = xb.shape
        p = self.pad
        padded = torch.nn.functional.pad(xb, (p, p, p, p))
        dx = torch.randint(0, 2 * p + 1, (n,), generator=self.generator).to(xb.device)
        dy = torch.randint(0, 2 * p + 1, (n,), generator=self.generator).to(xb.device)
        rows = dy.view(n, 1) + torch.arange(h, device=xb.device).view(1, h)  # n, h
        cols = dx.view(n, 1) + torch.arange(w, device=xb.device).view(1, w)  # n, w
        flip = (torch.rand(n, generator=self.generator) < 0.5).to(xb.device)
        cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
        idx_n = torch.arange(n, device=xb.device).view(n, 1, 1, 1)
        idx_c = torch.arange(xb.shape[1], device=xb.device).view(1, -1, 1, 1)
        return padded[idx_n, idx_c, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(self.epoch_order())

    def epoch_order(self) -> torch.Tensor | None:
        """Draw the next epoch's sample order (None without shuffling)."""
        return (
            torch.randperm(len(self.x), generator=self.generator).to(self.x.device) if self.shuffle else None
        )

    def batches(
        self, order: torch.Tensor | None, start_step: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of an epoch in ``order`` (from `epoch_order`), from batch ``start_step``
        on: with the generator state saved at that point, a resumed epoch draws exactly the
        batches (and augmentations) the uninterrupted one would have."""
        n = len(self.x)
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for start in range(start_step * self.batch_size, stop, self.batch_size):
            if order is None:
                xb, yb = self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                xb, yb = self.x[idx], self.y[idx]
            if self.augment:
                xb = self._augment(xb)
            yield self.normalise(xb), yb
