import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("DEPTHLAB_DATA", REPO.parent / "shared" / "data")).resolve()

# Two single-threaded test processes (pytest -n 2) beat two fighting over two cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "MNIST" / "raw").is_dir():
        message = f"real MNIST not found under {DATA_ROOT} (set DEPTHLAB_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI always has it: a skip there would hide a broken set-up
        pytest.skip(message)
    return DATA_ROOT


@pytest.fixture(scope="session")
def mnist(data_root):
    from depthlab.data.registry import load_dataset

    return load_dataset("mnist", data_root, download=False)
