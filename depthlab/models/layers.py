"""From-scratch layers (SPEC §2.5): teaching versions of dropout and batch norm, tested against
torch's. Each is a drop-in replacement: models take ``bn_impl="scratch"`` to use `BatchNorm`,
and its state dict has the same keys as ``nn.BatchNorm2d``'s, so weights move between the two.
"""

from __future__ import annotations

import torch
from torch import nn


class Dropout(nn.Module):
    """Inverted dropout: in training each element is zeroed with probability ``p`` and the
    survivors are scaled by ``1 / (1 - p)``, so the expected output equals the input and eval
    mode is the identity (no rescaling at test time)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return torch.zeros_like(x)
        keep = torch.rand_like(x, dtype=torch.float32) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BatchNorm(nn.Module):
    """Batch normalisation over every axis but the channel axis 1: ``(x - mean) / sqrt(var + eps)
    * weight + bias``, with ``weight`` 1 and ``bias`` 0 at start.

    Training uses the batch statistics (biased variance, as torch does) and, when
    ``track_running_stats``, updates exponential running averages (unbiased variance, as torch
    does); eval mode then uses the running statistics, or the batch's when they are not tracked.
    Works for ``(N, C)``, ``(N, C, L)`` and ``(N, C, H, W)`` inputs, like ``nn.BatchNorm1d/2d``.
    """

    def __init__(
        self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, track_running_stats: bool = True
    ):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.track_running_stats = track_running_stats
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input (N, {self.num_features}, ...), got {tuple(x.shape)}")
        axes = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        # Statistics in float32 even under bf16 autocast: a low-precision variance is what
        # makes half-precision batch norm unstable.
        x32 = x.float()
        if self.training or not self.track_running_stats:
            mean = x32.mean(dim=axes)
            var = x32.var(dim=axes, unbiased=False)
            if self.training and self.track_running_stats:
                count = x32.numel() // self.num_features
                with torch.no_grad():
                    unbiased = var * (count / max(count - 1, 1))
                    self.running_mean.lerp_(mean.detach(), self.momentum)
                    self.running_var.lerp_(unbiased.detach(), self.momentum)
                    self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        out = (x32 - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"track_running_stats={self.track_running_stats}"
        )


def batch_norm(num_features: int, impl: str = "torch") -> nn.Module:
    """A 2d batch norm layer: torch's ``nn.BatchNorm2d`` or the from-scratch `BatchNorm`."""
    if impl == "scratch":
        return BatchNorm(num_features)
    return nn.BatchNorm2d(num_features)
