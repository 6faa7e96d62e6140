"""What depthlab assumes unless told otherwise, as plain values every layer can read without
torch (``depthlab info`` prints them before, and without, probing any device): the data root's
rule, the default store and the precisions a run trains in."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STORE = "depthlab.db"

# The arithmetic a run trains in is part of the experiment, never a side effect of the device:
# every device trains in fp32 unless the config asks for bf16 (autocast on CPU and CUDA), on CUDA
# tf32 (fp32 storage, tensor-core matmuls and convolutions) or, on CPU, fp32-ftz: fp32 with subnormal
# numbers (below 1.2e-38) flushed to zero. A net whose gradients vanish, or a large-lr run on its way
# to diverging, fills the backward pass with subnormals, which x86 cores compute up to ~15 times
# slower (BENCHMARKS.md); flushed, every number above them is computed as in fp32, but the bits of a
# run can differ from fp32's, hence a precision of its own. `depthlab.engine.device` applies it.
PRECISIONS = ("fp32", "bf16", "tf32", "fp32-ftz")
PRECISION_HELP = (
    "fp32, bf16 (autocast), tf32 (CUDA matmuls/convolutions) or fp32-ftz (CPU: fp32 with subnormal "
    "numbers flushed to zero; much faster where gradients vanish)."
)
DEFAULT_PRECISION = "fp32"


def resolve_data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """``--data-dir`` wins over ``DEPTHLAB_DATA``, which wins over ``./data``."""
    if data_dir:
        return Path(data_dir)
    env = os.environ.get("DEPTHLAB_DATA")
    return Path(env) if env else Path("data")


def data_root_source(data_dir: str | os.PathLike | None = None) -> str:
    """Which of the three gave `resolve_data_root` its answer, in the words of the flag or variable."""
    if data_dir:
        return "--data-dir"
    return "DEPTHLAB_DATA" if os.environ.get("DEPTHLAB_DATA") else "default ./data"
