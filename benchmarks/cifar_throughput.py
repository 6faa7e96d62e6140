"""Training throughput (images/s) of resnet20 and resnet18 on CIFAR-shaped data.

depthlab's path: the split lives on the device as one uint8 tensor, `depthlab.data.Batches`
slices it, pads/crops/flips whole batches and normalises them as tensors; the model runs in
channels_last, with bf16 autocast on CUDA (and ``--compile`` for torch.compile).

The baseline, measured in the same run: a plain ``torch.utils.data.DataLoader`` over a
map-style dataset of HWC uint8 images with torchvision-style *per-sample* augmentation
(RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize: written out here, since
torchvision is not a dependency), batches copied to the device, the model in the default
memory format and fp32. The same model, optimiser (SGD 0.1/0.9/1e-4) and batch size.

    python benchmarks/cifar_throughput.py                     # resnet20 and resnet18, auto device
    python benchmarks/cifar_throughput.py --images 2048 --models resnet20 --device cpu

Prints images/s for both and the ratio. Timings on a shared machine are noisy: compare the
two figures of one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from depthlab.data.batches import Batches  # noqa: E402
from depthlab.engine.device import resolve_device  # noqa: E402
from depthlab.models import create_model  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class PerSampleCifar(torch.utils.data.Dataset):
    """What a torchvision CIFAR pipeline does per image: pad 4 + random 32x32 crop, random
    horizontal flip, to float tensor in [0, 1], normalise."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, seed: int = 0):
        self.images, self.labels = images_hwc, labels
        self.rng = np.random.default_rng(seed)
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = np.pad(self.images[i], ((4, 4), (4, 4), (0, 0)))
        dy, dx = self.rng.integers(0, 9, 2)
        img = img[dy : dy + 32, dx : dx + 32]
        if self.rng.random() < 0.5:
            img = img[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255)
        return (x - self.mean) / self.std, int(self.labels[i])


def _step(model, optimizer, xb, yb, amp: bool) -> None:
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(xb)
    loss = F.cross_entropy(out.float(), yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(batches, model, optimizer, device, amp: bool, warmup_steps: int) -> float:
    """Images/s over the batches after the first ``warmup_steps`` (compilation, allocator)."""
    seen, started = 0, None
    for i, (xb, yb) in enumerate(batches):
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        if i == warmup_steps:
            _sync(device)
            started = time.perf_counter()
        _step(model, optimizer, xb, yb, amp)
        if started is not None:
            seen += len(yb)
    _sync(device)
    return seen / (time.perf_counter() - started)


def depthlab_path(name, images, labels, batch_size, device, compile_model, warmup_steps) -> float:
    torch.manual_seed(0)
    channels_last = device.type in ("cpu", "cuda")
    model = create_model(name, (3, 32, 32), 10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    net = torch.compile(model) if compile_model else model
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)  # resident uint8, NCHW
    y = torch.from_numpy(labels).to(device)
    batches = Batches(x, y, batch_size, MEAN, STD, augment=True, drop_last=True, channels_last=channels_last)
    return _timed(batches, net, optimizer, device, device.type == "cuda", warmup_steps)


def baseline_path(name, images, labels, batch_size, device, workers, warmup_steps) -> float:
    torch.manual_seed(0)
    model = create_model(name, (3, 32, 32), 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(
        PerSampleCifar(images, labels),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    return _timed(loader, model, optimizer, device, False, warmup_steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet20,resnet18")
    parser.add_argument(
        "--images",
        type=int,
        default=None,
        help="Training images per measurement (default: 50000 on CUDA, 1536 on CPU).",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Baseline DataLoader workers (default: 0 on "
        "CPU, where workers compete with the model for the cores; 4 on CUDA).",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model on depthlab's path.")
    parser.add_argument("--warmup-steps", type=int, default=2)
    args = parser.parse_args()
    device = resolve_device(args.device)
    n = args.images or (50_000 if device.type == "cuda" else 1536)
    workers = args.workers if args.workers is not None else (4 if device.type == "cuda" else 0)
    if n < (args.warmup_steps + 1) * args.batch_size:
        parser.error("--images must cover more than the warm-up steps")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int64)
    print(
        f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
        f"torch {torch.__version__}, {n} images per measurement, batch {args.batch_size}, "
        f"baseline workers {workers}{', compiled' if args.compile else ''}"
    )
    print(f"{'model':10} {'depthlab img/s':>15} {'baseline img/s':>15} {'ratio':>7}")
    for name in args.models.split(","):
        ours = depthlab_path(name, images, labels, args.batch_size, device, args.compile, args.warmup_steps)
        base = baseline_path(name, images, labels, args.batch_size, device, workers, args.warmup_steps)
        print(f"{name:10} {ours:15,.0f} {base:15,.0f} {ours / base:6.2f}x", flush=True)


if __name__ == "__main__":
    main()
