"""``depthlab info``: what this installation is and where it looks (versions, devices, precision,
the data root and the datasets present there, the default store), without loading any data."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from pathlib import Path

import click

from .app import cli

OPTIONAL = ("pandas", "ray", "dks", "tensorboard", "pillow")
DEFAULT_STORE = "depthlab.db"

# Where each dataset's files sit under the data root (checked for existence only, never read).
DATASET_FILES = {
    "mnist": ("MNIST/raw",),
    "mnist32": ("MNIST/raw",),
    "fashion-mnist": ("FashionMNIST/raw",),
    "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz"),
    "cifar10-jpeg": ("CIFAR10-JPEG/cifar10-jpeg-q75.zip",),
}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _present(root: Path, name: str) -> str | None:
    """The path that holds ``name`` under ``root`` (a non-empty folder or a file), else None."""
    for rel in DATASET_FILES.get(name, ()):
        path = root / rel
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            return str(path)
    return None


def gather(data_dir: str | None = None) -> dict:
    import torch

    from ..data.dataset import resolve_data_root
    from ..data.registry import DATASETS
    from ..engine.device import DEFAULT_PRECISION, PRECISIONS, resolve_device

    optional = {name: _version("Pillow" if name == "pillow" else name) or _version(name) for name in OPTIONAL}
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    root = resolve_data_root(data_dir)
    source = "--data-dir" if data_dir else ("DEPTHLAB_DATA" if os.environ.get("DEPTHLAB_DATA") else "default ./data")
    return {
        "versions": {"depthlab": _version("depthlab"), "python": platform.python_version(), "torch": torch.__version__,
                     "numpy": _version("numpy")},
        "optional": optional,
        "devices": devices,
        "auto_device": str(resolve_device("auto")),
        "precision": {"default": DEFAULT_PRECISION, "choices": list(PRECISIONS),
                      "torch_threads": torch.get_num_threads()},
        "data_root": {"path": str(root), "from": source, "exists": root.is_dir(),
                      "datasets": {name: _present(root, name) for name in DATASETS}},
        "store": {"default": DEFAULT_STORE, "exists": Path(DEFAULT_STORE).exists()},
    }


@cli.command()
@click.option("--data-dir", default=None, help="Report this data root instead of DEPTHLAB_DATA / ./data.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def info(data_dir, as_json):
    """Versions, devices, precision defaults, the data root and its datasets, the default store."""
    from ..errors import ConfigError

    if data_dir and Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise ConfigError(f"--data-dir {data_dir}: exists and is not a folder")
    doc = gather(data_dir)
    if as_json:
        click.echo(json.dumps(doc))
        return
    v = doc["versions"]
    click.echo(f"depthlab {v['depthlab']}  python {v['python']}  torch {v['torch']}  numpy {v['numpy']}")
    click.echo("optional: " + ", ".join(f"{k} {ver}" if ver else f"{k} not installed"
                                        for k, ver in doc["optional"].items()))
    click.echo(f"devices: {', '.join(doc['devices'])} (--device auto picks {doc['auto_device']})")
    p = doc["precision"]
    click.echo(f"precision: {p['default']} by default on every device (--precision {'|'.join(p['choices'])}); "
               f"torch CPU threads {p['torch_threads']}")
    r = doc["data_root"]
    click.echo(f"data root: {r['path']} (from {r['from']}; --data-dir beats DEPTHLAB_DATA beats ./data)"
               + ("" if r["exists"] else " - does not exist yet"))
    width = max(len(n) for n in r["datasets"])
    for name, where in r["datasets"].items():
        click.echo(f"  {name:{width}}  {'present: ' + where if where else 'not present'}")
    s = doc["store"]
    click.echo(f"store: {s['default']} by default (--store PATH)" + (", exists here" if s["exists"] else ""))
