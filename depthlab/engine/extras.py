"""Extras: measurements of a trained network stored with its result (gate values, the train-split
error of the restored weights), chosen by name so that workers can compute them."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..data.batches import Batches
from ..data.dataset import Dataset
from ..errors import ConfigError
from ..models import create_model
from .config import TrainConfig
from .device import autocast_bf16
from .setup import evaluate, prepare_splits


def _has_gates(config: TrainConfig, data: Dataset) -> bool:
    """Whether the config's network has gates to report (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = create_model(config.model, data.input_shape, data.num_classes, **config.model_args)
    return callable(getattr(model, "gates", None)) and len(model.gates()) > 0


def gate_stats(model) -> dict:
    """Mean/min/max of a gated model's gate values (empty for other models)."""
    gates = model.gates() if callable(getattr(model, "gates", None)) else []
    if not gates:
        return {}
    values = torch.cat([g.flatten().float().cpu() for g in gates])
    return {
        "gate_mean": values.mean().item(),
        "gate_min": values.min().item(),
        "gate_max": values.max().item(),
    }


def split_errors(config: TrainConfig, data: Dataset) -> Callable:
    """An ``extras`` function measuring the trained model (eval mode, restored weights) on its
    fit split and its evaluation split, so that train/val/test accuracies describe one network."""

    def measure(model) -> dict:
        device = next(model.parameters()).device
        channels_last = device.type in ("cpu", "cuda")
        tx, ty, ex, ey, _, _ = prepare_splits(config, data)
        out = {}
        for key, x, y in (("fit_error", tx, ty), ("eval_error", ex, ey)):
            batches = Batches(
                x.to(device),
                y.to(device),
                1024,
                data.mean,
                data.std,
                shuffle=False,
                channels_last=channels_last,
            )
            out[key], _ = evaluate(model, batches, amp=autocast_bf16(config.precision))
        return {**out, **gate_stats(model)}

    return measure


EXTRAS: dict[str, Callable[[TrainConfig, Dataset], Callable]] = {
    "gates": lambda config, data: gate_stats,
    "splits": split_errors,
}


def extras_for(name: str | None, config: TrainConfig, data: Dataset) -> Callable | None:
    """The ``extras`` function (see `depthlab.sweep.runner.run_recorded`) called ``name`` in `EXTRAS`,
    for ``config`` on ``data``; None for None. By name, so that trials that need one can be
    shipped to worker processes and Ray tasks, which build it there."""
    if name is None:
        return None
    if name not in EXTRAS:
        raise ConfigError(f"unknown extras {name!r}; choose one of: {', '.join(EXTRAS)}")
    return EXTRAS[name](config, data)
