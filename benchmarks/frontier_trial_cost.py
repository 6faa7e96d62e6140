"""What a frontier trial costs on this machine, and what dominates it.

For a few (model, depth) pairs: milliseconds per SGD step (batch 256, channels-last as the engine
uses on CPU) and per evaluation batch, the cost per image per conv layer, and a profiler
breakdown of one deep model's step by operator. The baseline measured in the same run is the
shallowest model (depth 3): the ratio shows how cost grows with depth. From these numbers the
cost of a protocol follows: one 60,000-image epoch at depth d costs about 60000 * d * (ms per
image-layer).

    python benchmarks/frontier_trial_cost.py
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from depthlab import create_model
from depthlab.engine.setup import multi_head_loss


def step_ms(model_name: str, depth: int, steps: int) -> tuple[float, float]:
    """CPU milliseconds (process time: on a shared machine, wall time mostly measures the
    neighbours) per training step of 256 images and per evaluation of 1024 images."""
    torch.manual_seed(0)
    x = torch.randn(256, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (256,))
    net = create_model(model_name, depth=depth).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step():
        loss, _ = multi_head_loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t = time.process_time()
    for _ in range(steps):
        step()
    train = (time.process_time() - t) / steps * 1000
    net.eval()
    xe = torch.randn(1024, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        net(xe)
        t = time.process_time()
        net(xe)
        evaluation = (time.process_time() - t) * 1000
    return train, evaluation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)")
    cases = [("cnn-tanh", 3), ("cnn-tanh", 12), ("cnn-elu-bn", 3), ("cnn-elu-bn", 24), ("cnn-elu-bn", 48)]
    base = {}
    for name, depth in cases:
        train, evaluation = step_ms(name, depth, args.steps)
        per_layer = train / 256 / depth
        base.setdefault(name, train)
        print(
            f"{name:12} depth {depth:3}: {train:7.1f} CPU ms/step (x{train / base[name]:.1f} the depth-3 step), "
            f"eval {evaluation:6.1f} CPU ms per 1024 images; {per_layer * 1000:.0f} us per image per layer "
            f"-> one 60k epoch ~ {60000 * train / 256 / 1000:.0f} s"
        )

    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    net = create_model("cnn-elu-bn", depth=24).to(memory_format=torch.channels_last)
    x = torch.randn(256, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (256,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows)
    groups: dict[str, float] = {}
    for e in rows:
        key = (
            "convolution"
            if "conv" in e.key
            else "batch norm"
            if "batch_norm" in e.key
            else "activation"
            if "elu" in e.key
            else "pooling"
            if "pool" in e.key
            else "other"
        )
        groups[key] = groups.get(key, 0.0) + e.self_cpu_time_total
    print(
        "cnn-elu-bn depth 24, one training step by operator: "
        + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(groups.items(), key=lambda kv: -kv[1]))
    )


if __name__ == "__main__":
    main()
