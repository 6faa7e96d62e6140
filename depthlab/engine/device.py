"""Where a run trains: the device policy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..defaults import DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS  # noqa: F401  (re-exported: the engine's precisions)
from ..errors import ConfigError


def resolve_device(name: str = "auto", *, available: bool = True) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu. Not ``available``: only the name is checked, so a
    config for a GPU can be built on a machine without one (a Ray driver sending GPU trials)."""
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
    if available and device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but CUDA is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {name!r}")
    return device


def check_precision(precision: str, device: torch.device) -> None:
    """One line for a precision that does not exist or does not apply to ``device``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision == "tf32" and device.type != "cuda":
        raise ConfigError(
            f"precision tf32 needs a CUDA device (this run is on {device.type}); use fp32, bf16 or fp32-ftz"
        )
    if precision == "fp32-ftz" and device.type != "cpu":
        raise ConfigError(
            f"precision fp32-ftz flushes subnormals on the CPU only (this run is on {device.type}); "
            "use fp32, bf16 or tf32"
        )


def autocast_bf16(precision: str) -> bool:
    """Whether the forward passes of a run in ``precision`` run under bf16 autocast."""
    return precision == "bf16"


@dataclass(frozen=True)
class PrecisionPolicy:
    """How a run's arithmetic is done on its device: the forward's autocast dtype (None: fp32)
    and whether CUDA matmuls and convolutions may use tf32."""

    autocast: torch.dtype | None
    tf32: bool

    @property
    def amp(self) -> bool:
        return self.autocast is not None


def precision_policy(device: torch.device, precision: str = DEFAULT_PRECISION) -> PrecisionPolicy:
    """The policy of a run in ``precision`` on ``device``: bf16 autocast only when asked for
    (on every device: a CUDA run is fp32 unless its config says otherwise), tf32 only on CUDA."""
    check_precision(precision, device)
    return PrecisionPolicy(
        torch.bfloat16 if autocast_bf16(precision) else None, device.type == "cuda" and precision == "tf32"
    )


def flushing_subnormals() -> bool:
    """Whether this CPU thread flushes subnormal numbers to zero now (torch sets the flag but has
    no getter: a subnormal times one is zero exactly when it does)."""
    return float(torch.tensor([1e-39]) * 1.0) == 0.0


@contextmanager
def subnormals_flushed(flush: bool) -> Iterator[None]:
    """Inside: the CPU flushes subnormal numbers to zero exactly when ``flush`` (torch's flag for
    this thread and its intra-op threads), as it was on the way out."""
    before = flushing_subnormals()
    torch.set_flush_denormal(flush)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


@contextmanager
def precision_scope(device: torch.device, precision: str) -> Iterator[None]:
    """Inside: CUDA matmuls and convolutions use tf32 exactly when ``precision`` is tf32, and the
    CPU flushes subnormals exactly when it is fp32-ftz (torch's global flags, restored on the way
    out so that one run never changes the next)."""
    if device.type != "cuda":
        with subnormals_flushed(device.type == "cpu" and precision == "fp32-ftz"):
            yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision_policy(
        device, precision
    ).tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


MAX_THREADS = 256  # torch intra-op threads a run may ask for (100000 crashed OpenMP)


@contextmanager
def thread_scope(threads: int | None) -> Iterator[None]:
    """Run the body on ``threads`` torch intra-op threads (None: leave them as they are) and
    restore the previous count after. CPU results depend on it bitwise, so a sweep pins it."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
