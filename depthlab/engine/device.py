"""Where a run trains: the device policy."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from ..errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but CUDA is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {name!r}")
    return device


# The arithmetic a run trains in is part of the experiment, never a side effect of the device:
# every device trains in fp32 unless the config asks for bf16 (autocast on CPU and CUDA) or, on
# CUDA, tf32 (fp32 storage, tensor-core matmuls and convolutions).
PRECISIONS = ("fp32", "bf16", "tf32")
DEFAULT_PRECISION = "fp32"


def check_precision(precision: str, device: torch.device) -> None:
    """One line for a precision that does not exist or does not apply to ``device``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision == "tf32" and device.type != "cuda":
        raise ConfigError(f"precision tf32 needs a CUDA device (this run is on {device.type}); use fp32 or bf16")


def autocast_bf16(precision: str) -> bool:
    """Whether the forward passes of a run in ``precision`` run under bf16 autocast."""
    return precision == "bf16"


@contextmanager
def precision_scope(device: torch.device, precision: str) -> Iterator[None]:
    """Inside: CUDA matmuls and convolutions use tf32 exactly when ``precision`` is tf32 (torch's
    global flags, restored on the way out so that one run never changes the next)."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
