"""``depthlab info``: what this installation is and where it looks (versions, what accelerators
the machine shows, precision, the data root and the datasets present there, the default store),
without loading any data. By default nothing imports torch (the answer comes in a fraction of a
second): torch's version and build are read from its package metadata, an NVIDIA driver from
/proc or PATH. ``--devices`` asks torch itself (seconds: torch's import): the devices it can use,
what ``--device auto`` picks, its CPU threads, and each CUDA device's name, memory and bf16 support."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shutil
from pathlib import Path

import click

from ..defaults import DEFAULT_PRECISION, DEFAULT_STORE, PRECISIONS, data_root_source, resolve_data_root
from .app import cli

OPTIONAL = ("pandas", "ray", "dks", "tensorboard", "pillow")
NVIDIA_VERSION_FILE = Path("/proc/driver/nvidia/version")  # the loaded NVIDIA kernel module's version

# Where each dataset's files sit under the data root (checked for existence only, never read): every
# registered dataset (`depthlab.data.DATASETS`, which needs torch; tests/cli/test_info.py keeps them equal).
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


def nvidia_driver() -> str | None:
    """The NVIDIA driver this machine shows, without running anything: the kernel module's version
    from /proc, else ``nvidia-smi on PATH``; None when neither is there."""
    try:
        line = NVIDIA_VERSION_FILE.read_text(encoding="utf-8", errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return "nvidia-smi on PATH" if shutil.which("nvidia-smi") else None
    found = re.search(r"Kernel Module\s+(\S+)", line)
    return found.group(1) if found else line.strip()


def torch_build() -> str | None:
    """What the installed torch wheel was built for, from its metadata (torch is not imported):
    its local version tag (``cpu``, ``cu124``, ``rocm6.2``), else ``cu12``-style from the NVIDIA
    runtime it requires, else ``default``; None without torch."""
    try:
        dist = importlib.metadata.distribution("torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    _, _, tag = dist.version.partition("+")
    if tag:
        return tag
    for requirement in dist.requires or ():
        found = re.match(r"nvidia-cuda-runtime-(cu\d+)", requirement)
        if found:
            return found.group(1)
    return "default"


def gather(data_dir: str | None = None) -> dict:
    """Everything `info` says without importing torch."""
    optional = {name: _version("Pillow" if name == "pillow" else name) or _version(name) for name in OPTIONAL}
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    root = resolve_data_root(data_dir)
    return {
        "versions": {
            "depthlab": _version("depthlab"),
            "python": platform.python_version(),
            "torch": _version("torch"),
            "numpy": _version("numpy"),
        },
        "optional": optional,
        "machine": {
            "system": platform.system(),
            "arch": platform.machine(),
            "cpus": os.cpu_count(),
            "usable_cpus": usable,
            "nvidia_driver": nvidia_driver(),
            "torch_build": torch_build(),
            "mps_possible": platform.system() == "Darwin" and platform.machine() == "arm64",
        },
        "precision": {"default": DEFAULT_PRECISION, "choices": list(PRECISIONS)},
        "data_root": {
            "path": str(root),
            "from": data_root_source(data_dir),
            "exists": root.is_dir(),
            "datasets": {name: _present(root, name) for name in DATASET_FILES},
        },
        "store": {"default": DEFAULT_STORE, "exists": Path(DEFAULT_STORE).exists()},
    }


def probe_devices() -> dict:
    """What torch itself finds (imports torch): the devices, ``--device auto``'s pick, the CPU
    threads, and per CUDA device its name, compute capability, memory and bf16 support."""
    import torch

    from ..engine.device import resolve_device

    devices = ["cpu"]
    cuda = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(f"cuda:{i} ({props.name})")
            cuda.append(
                {
                    "device": f"cuda:{i}",
                    "name": props.name,
                    "capability": f"{props.major}.{props.minor}",
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "bf16": bool(torch.cuda.is_bf16_supported()),
                }
            )
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return {
        "devices": devices,
        "auto_device": str(resolve_device("auto")),
        "torch_threads": torch.get_num_threads(),
        "cuda": cuda,
        "cuda_runtime": torch.version.cuda,
    }


@cli.command()
@click.option("--data-dir", default=None, help="Report this data root instead of DEPTHLAB_DATA / ./data.")
@click.option(
    "--devices",
    "probe",
    is_flag=True,
    help="Also ask torch which devices it can use (imports torch: seconds): --device auto's pick, CPU "
    "threads, each CUDA device's memory and bf16 support. Without it nothing imports torch.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object on stdout (keys in docs/GUIDE.md, 'depthlab info').",
)
def info(data_dir, probe, as_json):
    """Versions, the machine's accelerators, precision defaults, the data root and its datasets, the default
    store; with --devices, the devices torch can use."""
    from ..errors import ConfigError

    if data_dir and Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise ConfigError(f"--data-dir {data_dir}: exists and is not a folder")
    doc = gather(data_dir)
    if probe:
        found = probe_devices()
        doc["devices"], doc["auto_device"], doc["cuda"] = (
            found["devices"],
            found["auto_device"],
            found["cuda"],
        )
        doc["precision"]["torch_threads"] = found["torch_threads"]
        doc["versions"]["cuda_runtime"] = found["cuda_runtime"]
    if as_json:
        click.echo(json.dumps(doc))
        return
    for line in describe(doc):
        click.echo(line)


def describe(doc: dict) -> list[str]:
    """The text of `info`: the lines of ``doc`` (with the probe's keys when ``--devices`` asked)."""
    v, m, p, r, s = doc["versions"], doc["machine"], doc["precision"], doc["data_root"], doc["store"]
    optional = ", ".join(f"{k} {ver}" if ver else f"{k} not installed" for k, ver in doc["optional"].items())
    lines = [
        f"depthlab {v['depthlab']}  python {v['python']}  torch {v['torch'] or 'not installed'}  "
        f"numpy {v['numpy']}",
        f"optional: {optional}",
    ]
    machine = (
        f"{m['usable_cpus']} of {m['cpus']} CPUs usable; NVIDIA driver {m['nvidia_driver'] or 'none'}; "
        f"torch build {m['torch_build'] or 'none'}; Apple MPS {'possible' if m['mps_possible'] else 'no'} "
        f"({m['system']} {m['arch']})"
    )
    if "devices" in doc:
        lines.append(f"devices: {', '.join(doc['devices'])} (--device auto picks {doc['auto_device']})")
        lines.append(f"  machine: {machine}")
        lines += [
            f"  {c['device']}: {c['name']}, compute {c['capability']}, {c['memory_gib']} GiB, "
            f"bf16 {'yes' if c['bf16'] else 'no'}"
            for c in doc["cuda"]
        ]
        threads = f"; torch CPU threads {p['torch_threads']}"
    else:
        lines.append(f"devices: cpu; {machine}; --devices asks torch which it can use")
        threads = ""
    lines.append(
        f"precision: {p['default']} by default on every device (--precision {'|'.join(p['choices'])})"
        + threads
    )
    lines.append(
        f"data root: {r['path']} (from {r['from']}; --data-dir beats DEPTHLAB_DATA beats ./data)"
        + ("" if r["exists"] else " - does not exist yet")
    )
    width = max(len(n) for n in r["datasets"])
    lines += [
        f"  {name:{width}}  {'present: ' + where if where else 'not present'}"
        for name, where in r["datasets"].items()
    ]
    lines.append(
        f"store: {s['default']} by default (--store PATH)" + (", exists here" if s["exists"] else "")
    )
    return lines
