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


@pytest.fixture(scope="session")
def frontier_store(tmp_path_factory):
    """A store (and its flags) holding one finished frontier trial, made by the real command on
    a small generated dataset: the rows `runs`, `frontier --status` and a resume all read."""
    from fakedata import write_idx_folder

    from depthlab.cli import main

    root = tmp_path_factory.mktemp("frontier-store")
    write_idx_folder(root / "data" / "FashionMNIST" / "raw", 128, 64)
    args = [
        "frontier",
        "--models",
        "cnn-tanh",
        "--depths",
        "3",
        "--lrs",
        "0.1",
        "--epochs",
        "1",
        "--train-size",
        "128",
        "--eval-size",
        "64",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(root / "data"),
        "--workers",
        "1",
        "--device",
        "cpu",
    ]
    store = root / "store.db"
    assert main(args + ["--store", str(store), "--out", str(root / "out")]) == 0
    return store, args
