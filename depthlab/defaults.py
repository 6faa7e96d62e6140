"""What depthlab assumes unless told otherwise, as plain values every layer can read without
torch (``depthlab info`` prints them before, and without, probing any device): the data root's
rule, the default store and the precisions a run trains in."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STORE = "depthlab.db"

# The arithmetic a run trains in is part of the experiment, never a side effect of the device:
# every device trains in fp32 unless the config asks for bf16 (autocast on CPU and CUDA) or, on
# CUDA, tf32 (fp32 storage, tensor-core matmuls and convolutions). `depthlab.engine.device` applies it.
PRECISIONS = ("fp32", "bf16", "tf32")
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
