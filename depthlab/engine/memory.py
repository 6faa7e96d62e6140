"""How deep a run may be: a hard bound on the depth fields of every model spec, and an estimate
of a run's memory (weights, gradients, momentum and the activations a training step keeps),
checked against what the machine has before anything is built (`TrainConfig.validate`)."""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import torch

from ..errors import ConfigError

MAX_DEPTH = 30_000  # layers (the depth field of stages, mlp; stack_depth; resnet-cifar n)
DEPTH_FIELDS = ("depth", "stack_depth", "n")
PARAM_COPIES = 4  # weights, gradients, momentum, one transient copy
ACTIVATION_COPIES = 1  # autograd keeps about one tensor per layer output (gradients are transient)


def check_depth(spec) -> None:
    """Refuse a depth field above `MAX_DEPTH` (300 million layers grew memory without end)."""
    for name in DEPTH_FIELDS:
        value = getattr(spec, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_DEPTH:
            raise ConfigError(f"{name} must be at most {MAX_DEPTH:,}, got {value:,}")


def _meta_sizes(model: str, args: dict, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(parameters, activation elements per sample) of ``model`` built with ``args`` on the meta
    device, counting the output of every leaf module in one forward pass."""
    from ..models import create_model

    total = 0

    def count(_module, _inputs, output) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    with torch.device("meta"):
        net = create_model(model, input_shape, 10, **args)
        hooks = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
        with torch.no_grad():
            net(torch.empty(1, *input_shape))
        for h in hooks:
            h.remove()
    return sum(p.numel() for p in net.parameters()), total


@functools.lru_cache(maxsize=256)
def _per_depth(
    model: str, args_json: str, input_shape: tuple[int, ...]
) -> tuple[float, float, float, float] | None:
    """(params at depth 0, params per layer, activations per sample at depth 0, per layer),
    from two small builds on the meta device (nothing allocated, no RNG drawn); None when the
    family cannot be built so."""
    args = json.loads(args_json)
    for small, large in ((3, 6), (2, 4), (1, 2)):
        try:
            sizes = [_meta_sizes(model, {**args, "depth": depth}, input_shape) for depth in (small, large)]
        except (ConfigError, RuntimeError, ValueError, TypeError, NotImplementedError):
            continue
        (p1, a1), (p2, a2) = sizes
        span = large - small
        return (
            p1 - (p2 - p1) / span * small,
            (p2 - p1) / span,
            a1 - (a2 - a1) / span * small,
            (a2 - a1) / span,
        )
    return None


def estimate_bytes(
    model: str, spec, input_shape: tuple[int, ...], batch_size: int, members: int = 1
) -> int | None:
    """The estimated peak memory of training ``model`` (its validated ``spec``) on batches of
    ``batch_size``; None for a family without a ``depth`` field or that the meta device cannot run."""
    depth = getattr(spec, "depth", None)
    if not isinstance(depth, int):
        return None
    args = {k: v for k, v in dataclasses.asdict(spec).items() if k != "depth"}
    try:
        coefficients = _per_depth(model, json.dumps(args, sort_keys=True, default=str), tuple(input_shape))
    except TypeError:
        return None
    if coefficients is None:
        return None
    p0, p1, a0, a1 = coefficients
    params, activations = max(p0 + p1 * depth, 0), max(a0 + a1 * depth, 0)
    return int(4 * members * (PARAM_COPIES * params + ACTIVATION_COPIES * batch_size * activations))


def machine_bytes(device: torch.device) -> int | None:
    """The memory the run's device has: the GPU's, or the machine's RAM."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.get_device_properties(device).total_memory)
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None


def check_memory(
    model: str, spec, input_shape: tuple[int, ...], batch_size: int, device: torch.device
) -> None:
    """Refuse a run whose estimated memory exceeds what ``device`` has, with the estimate."""
    need, have = estimate_bytes(model, spec, input_shape, batch_size), machine_bytes(device)
    if need is not None and have is not None and need > have:
        raise ConfigError(
            f"{model} at depth {spec.depth:,} with batch size {batch_size:,} needs about "
            f"{need / 2**30:,.1f} GiB to train, more than the {have / 2**30:,.1f} GiB this "
            f"{device.type} has; use a smaller depth, width or batch size"
        )
