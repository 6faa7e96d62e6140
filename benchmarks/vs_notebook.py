"""depthlab's engine against a faithful notebook-style training loop, one epoch each on MNIST.

    python benchmarks/vs_notebook.py [--data-dir DIR] [--quick] [--json FILE]

(a) The notebook loop a course would write: a ``torch.utils.data.Dataset`` that converts and
    normalises one sample at a time (exactly what torchvision's ``ToTensor()`` +
    ``Normalize((0.1307,), (0.3081,))`` do to a uint8 image, minus the PIL round trip, which
    would only make the notebook slower), a ``DataLoader`` with batch 256 and shuffling, the
    model in the default memory format, and the accuracy counted per sample in Python. Then
    the test set the same way, in eval mode under ``no_grad``.
(b) ``depthlab train cnn-tanh --depth 9 --epochs 1`` through the Python API (`train()`),
    the same network, optimiser (SGD lr 0.1, momentum 0.9) and batch size.

Both start from the uint8 arrays already in memory (reading and checking the files is the same
for both and is reported separately) and both include building the model and the test-set
evaluation. The ratio a / b is printed; the machine may be shared, so compare the ratio, not
the seconds. Each case also reports its CPU seconds (this process's, or the child process's for
c1): on a machine whose cores other jobs hold at a higher priority, a niced case waits for most
of its wall time, and the CPU-time ratio is the one that says what each side computes.
``--cases a1,c1`` runs only the cases named (the issue-31 figure: the notebook loop against the
whole ``depthlab train`` process, both on one thread), ``--rounds N`` repeats them interleaved. Unless ``--quick``, the same run also times both sides with one thread (on a busy
machine two spinning OpenMP threads are much slower than one), the engine without
channels_last, and the real ``depthlab train`` command end to end in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depthlab.data.registry import MNIST_STATS, load_dataset  # noqa: E402
from depthlab.engine.config import TrainConfig  # noqa: E402
from depthlab.engine.loop import train  # noqa: E402
from depthlab.models import create_model  # noqa: E402


class NotebookMNIST(torch.utils.data.Dataset):
    """One sample at a time, as torchvision's MNIST + ToTensor + Normalize would give it."""

    def __init__(self, images, labels, mean=MNIST_STATS[0], std=MNIST_STATS[1]):
        self.images, self.labels = images, labels  # numpy uint8 (N, 28, 28), int64 (N,)
        self.mean, self.std = torch.as_tensor(mean), torch.as_tensor(std)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = torch.from_numpy(self.images[i].copy())  # ToTensor: HxW uint8 ...
        img = img.view(28, 28, 1).permute(2, 0, 1).contiguous()  # ... to CxHxW
        img = img.to(torch.float32).div(255)  # ... scaled to [0, 1]
        img = img.sub_(self.mean[:, None, None]).div_(self.std[:, None, None])  # Normalize
        return img, int(self.labels[i])


def notebook_epoch(data, seed: int = 0) -> dict:
    """The notebook loop: returns seconds and the errors it measured."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = create_model("cnn-tanh", depth=9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_set = NotebookMNIST(data.train_x[:, 0].numpy(), data.train_y.numpy())
    test_set = NotebookMNIST(data.test_x[:, 0].numpy(), data.test_y.numpy())
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=256, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=256, shuffle=False)

    model.train()
    correct = total = 0
    loss_sum = 0.0
    for images, labels in train_loader:
        optimizer.zero_grad()
        outputs = model(images)
        loss = F.cross_entropy(outputs, labels)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(labels)
        _, predicted = torch.max(outputs, 1)
        for i in range(len(labels)):  # per sample, in Python, as in the notebook
            correct += (predicted[i] == labels[i]).item()
            total += 1
    train_error = 1 - correct / total

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in test_loader:
            _, predicted = torch.max(model(images), 1)
            for i in range(len(labels)):
                correct += (predicted[i] == labels[i]).item()
                total += 1
    return {
        "seconds": time.perf_counter() - started,
        "train_error": train_error,
        "test_error": 1 - correct / total,
        "loss": loss_sum / len(train_set),
    }


def depthlab_epoch(data, seed: int = 0, channels_last: bool | None = None) -> dict:
    """`depthlab train cnn-tanh --depth 9 --epochs 1` through the Python API."""
    config = TrainConfig(
        model="cnn-tanh",
        model_args={"depth": 9},
        epochs=1,
        lr=0.1,
        momentum=0.9,
        batch_size=256,
        seed=seed,
        device="cpu",
    )
    started = time.perf_counter()
    result = train(config, data, channels_last=channels_last)
    seconds = time.perf_counter() - started
    e = result.epochs[0]
    return {"seconds": seconds, "train_error": e.train_error, "test_error": e.test_error, "loss": e.loss}


def cli_epoch(data_dir: str | None, threads: int) -> dict:
    """The real command in a fresh process, end to end (start-up, reading + MD5 of the files,
    the store): what a user waits for."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "depthlab",
            "train",
            "cnn-tanh",
            "--depth",
            "9",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--threads",
            str(threads),
            "--store",
            str(Path(tmp) / "bench.db"),
            "--json",
        ]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        env = dict(os.environ, PYTHONPATH=str(REPO), DEPTHLAB_OFFLINE="1")
        started, cpu_started = time.perf_counter(), children_cpu_seconds()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds, cpu = time.perf_counter() - started, children_cpu_seconds() - cpu_started
    if done.returncode:
        raise SystemExit(f"depthlab train failed: {done.stderr.strip()}")
    e = json.loads(done.stdout)["epochs"][0]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "train_error": e["train_error"],
        "test_error": e["test_error"],
        "loss": e["loss"],
    }


def children_cpu_seconds() -> float:
    """User + system seconds of the finished child processes (the ``depthlab train`` process)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(fn, *args, **kwargs) -> dict:
    """``fn``'s result with this process's CPU seconds added (threads included), unless it
    measured its own (a child process)."""
    started = time.process_time()
    result = fn(*args, **kwargs)
    return {"cpu_seconds": time.process_time() - started, **result}


def warm_up() -> None:
    """Pay the one-time costs (oneDNN primitive creation, allocator growth) for both memory
    formats and both thread counts before any timing, so that neither side is charged for them."""
    for n in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(n)
        for memory_format in (torch.contiguous_format, torch.channels_last):
            model = create_model("cnn-tanh", depth=9).to(memory_format=memory_format)
            x = torch.zeros(256, 1, 28, 28).contiguous(memory_format=memory_format)
            for _ in range(2):
                F.cross_entropy(model(x), torch.zeros(256, dtype=torch.long)).backward()


def with_threads(n: int, fn, *args, **kwargs) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return timed(fn, *args, **kwargs)
    finally:
        torch.set_num_threads(before)


def all_cases(data, data_dir: str | None, default: int) -> dict:
    """Every case by key: (label, a function that runs it once)."""
    return {
        "a": (
            f"notebook loop, default threads ({default})",
            lambda: with_threads(default, notebook_epoch, data),
        ),
        "b": (
            f"depthlab engine, default threads ({default})",
            lambda: with_threads(default, depthlab_epoch, data),
        ),
        "b1": ("depthlab engine, 1 thread (--threads 1)", lambda: with_threads(1, depthlab_epoch, data)),
        "a1": ("notebook loop, 1 thread", lambda: with_threads(1, notebook_epoch, data)),
        "b1-nchw": (
            "depthlab engine, 1 thread, channels_last off",
            lambda: with_threads(1, depthlab_epoch, data, channels_last=False),
        ),
        "c1": ("`depthlab train ... --threads 1` process, end to end", lambda: cli_epoch(data_dir, 1)),
    }


def print_ratios(results: dict) -> None:
    """Every ratio whose two cases ran, by wall time and by CPU time (medians over rounds)."""
    pairs = (
        ("a", "b", "both with torch's default threads"),
        ("a", "b1", "notebook default vs depthlab --threads 1"),
        ("a1", "b1", "both 1 thread"),
        ("b1-nchw", "b1", "channels_last gain at 1 thread"),
        ("a1", "c1", "notebook loop vs the whole `depthlab train` process, both 1 thread"),
    )
    for x, y, what in pairs:
        if x in results and y in results:
            wall = results[x]["seconds"] / results[y]["seconds"]
            cpu = results[x]["cpu_seconds"] / results[y]["cpu_seconds"]
            print(f"ratio {x}/{y} ({what}): {wall:.2f}x wall, {cpu:.2f}x CPU")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--quick", action="store_true", help="only (a) and (b): the issue's ratio")
    parser.add_argument("--cases", default=None, help="comma-separated case keys (a, b, b1, a1, b1-nchw, c1)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat the cases, interleaved; medians reported"
    )
    parser.add_argument("--json", dest="json_path", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    t = time.perf_counter()
    data = load_dataset("mnist", args.data_dir, download=False)
    load_seconds = time.perf_counter() - t
    default = torch.get_num_threads()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"default threads {default}, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"reading + MD5-checking MNIST (same for both, not in the timings): {load_seconds:.1f}s")
    cases = all_cases(data, args.data_dir, default)
    keys = args.cases.split(",") if args.cases else ["a", "b"] if args.quick else list(cases)
    unknown = [k for k in keys if k not in cases]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(cases)}")
    warm_up()
    torch.set_num_threads(default)
    runs: dict[str, list[dict]] = {k: [] for k in keys}
    for _ in range(args.rounds):
        for key in keys:
            r = cases[key][1]()
            runs[key].append({**r, "load_average_after": os.getloadavg()[0]})
            print(
                f"  ({key:7}) {cases[key][0]:55} {r['seconds']:7.1f}s wall {r['cpu_seconds']:7.1f}s CPU   "
                f"train error {100 * r['train_error']:5.2f}%  test error {100 * r['test_error']:5.2f}%   "
                f"load avg {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    results = {
        k: {
            "label": cases[k][0],
            "seconds": statistics.median(r["seconds"] for r in v),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in v),
            "rounds": v,
        }
        for k, v in runs.items()
    }
    print_ratios(results)
    if args.json_path:
        Path(args.json_path).write_text(
            json.dumps({"default_threads": default, "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
