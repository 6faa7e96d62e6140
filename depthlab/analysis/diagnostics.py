"""Gradient-flow diagnostics: why a deep network does or does not train.

For every conv layer of a built-in model (the output of its unit, i.e. after norm and
activation, where the model has units with a ``conv`` attribute; the raw conv output otherwise),
and every Linear and conv layer of your own model (a factory, or a built-in one without convs),
at initialisation and every few steps of training on real data:

- activation mean and standard deviation (forward signal),
- weight-gradient norm ||dL/dW||,
- backprop-signal norm ||dL/dh|| at the layer's output (what the chain rule carries back),
- update ratio ||W_after - W_before|| / ||W_before|| of the optimiser step just taken.

Everything is collected by forward hooks on the training steps themselves (no extra passes),
and returned as numpy arrays (``steps x layers``) in a `Diagnostics` for notebooks.

The verdict uses the statistics at initialisation. Weight gradients alone can hide vanishing:
dL/dW_l is the outer product of the backprop signal at layer l and the activation entering it,
so when the forward signal shrinks layer by layer as fast as the backward one does (naive-init
tanh), every layer's weight gradient is equally tiny (1e-13 at depth 30) and their first/last
ratio is ~1. The ratio of the backprop signal at the first layer to that at the last one, and
the forward activation scale, do show it; the line reports the weight-gradient ratio too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..models import as_model, create_model, default_dataset, model_config
from ..report.figures import new_axes
from ..report.tables import data_frame
from .verdict import PER_LAYER_LIMIT, RATIO_LIMIT, RELATIVE_GRAD_LIMIT, SHALLOW_RATIO_LIMIT, Verdict, judge  # noqa: F401

LABELS = ("vanishing", "exploding", "healthy")
WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)  # what a factory's layers are (`weight_layers`)


@dataclass
class Layer:
    name: str
    owner: nn.Module  # the module owning the weight (a conv or Linear)
    probe: nn.Module  # whose output is "the layer's activation"


def weight_layers(model: nn.Module, kinds: tuple = WEIGHT_LAYERS) -> list[Layer]:
    """The layers of ``model`` of ``kinds`` (Linear and conv of any dimension), in registration
    (= forward, for sequential nets) order. A module with a ``conv`` attribute (a unit: conv,
    norm, activation, skip) is probed at its output; a layer outside such a unit at its own."""
    layers: list[Layer] = []
    for name, module in model.named_modules():
        conv = getattr(module, "conv", None)
        owner = conv if isinstance(conv, kinds) else module if isinstance(module, kinds) else None
        if isinstance(getattr(owner, "weight", None), torch.Tensor) and all(
            layer.owner is not owner for layer in layers
        ):
            layers.append(Layer(name, owner, module))
    if not layers:
        raise ConfigError(
            f"the model has no {'conv' if kinds == (nn.Conv2d,) else 'Linear or conv'} layers to diagnose"
        )
    return layers


def conv_layers(model: nn.Module) -> list[Layer]:
    """The conv layers of ``model`` (`weight_layers` of kind `nn.Conv2d`)."""
    return weight_layers(model, (nn.Conv2d,))


def layer_kind(layers: Sequence[Layer]) -> str:
    """``conv`` when every layer is a 2-d conv, else ``weight`` (what plots and tables call them)."""
    return "conv" if all(isinstance(layer.owner, nn.Conv2d) for layer in layers) else "weight"


def layers_for(model, net: nn.Module) -> list[Layer]:
    """What diagnose watches in ``net``, built from ``model``: the conv layers of a built-in
    model (its depth counts them), else (a factory, the mlp family) every Linear and conv layer."""
    if isinstance(model, str) and any(isinstance(m, nn.Conv2d) for m in net.modules()):
        return conv_layers(net)
    return weight_layers(net)


class _Recorder:
    """Forward hooks that keep each probed output's statistics and, once backward has run,
    the norm of the gradient that reached it."""

    def __init__(self, layers: Sequence[Layer]):
        self.layers = layers
        self.active = False
        self.mean = [math.nan] * len(layers)
        self.std = [math.nan] * len(layers)
        self.signal: list[torch.Tensor | None] = [None] * len(layers)
        self.handles = [layer.probe.register_forward_hook(self._hook(i)) for i, layer in enumerate(layers)]

    def _hook(self, index: int):
        def hook(module, inputs, output):
            if not self.active or not isinstance(output, torch.Tensor):
                return
            out = output.detach().float()
            self.mean[index] = out.mean().item()
            self.std[index] = out.std().item()
            if output.requires_grad:

                def keep(grad, index=index):
                    self.signal[index] = grad.detach().float().norm()

                output.register_hook(keep)

        return hook

    def signal_norms(self) -> list[float]:
        return [s.item() if s is not None else math.nan for s in self.signal]

    def reset(self) -> None:
        self.mean = [math.nan] * len(self.layers)
        self.std = [math.nan] * len(self.layers)
        self.signal = [None] * len(self.layers)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@contextmanager
def recording(model: nn.Module, layers: Sequence[Layer] | None = None) -> Iterator[_Recorder]:
    recorder = _Recorder(conv_layers(model) if layers is None else layers)
    try:
        yield recorder
    finally:
        recorder.remove()


@dataclass
class Diagnostics:
    """Per-layer statistics over training. Arrays are ``(len(steps), len(layers))``; row 0 is
    the initialisation (step 0, before any update). ``model`` is the preset's name or the
    factory's label; ``layer_kind`` says what the layers are: ``conv`` or ``weight``
    (Linear and conv, `layers_for`)."""

    model: str
    config: dict
    layers: list[str]
    steps: np.ndarray
    act_mean: np.ndarray
    act_std: np.ndarray
    grad_norm: np.ndarray
    signal_norm: np.ndarray
    weight_norm: np.ndarray
    update_ratio: np.ndarray
    loss: np.ndarray
    diverged: bool
    verdict: Verdict
    seconds: float = 0.0
    layer_kind: str = "conv"

    def to_frame(self):
        """Long form, one row per (recorded step, layer): ``step``, ``layer`` (1 = input
        side), ``layer_name``, ``loss`` (the step's train loss), ``act_mean``, ``act_std``,
        ``grad_norm`` (||dL/dW||), ``signal_norm`` (||dL/dh||), ``weight_norm`` and
        ``update_ratio`` (||lr dL/dW|| / ||W||)."""
        stats = ("act_mean", "act_std", "grad_norm", "signal_norm", "weight_norm", "update_ratio")
        return data_frame(
            {
                "step": int(step),
                "layer": j + 1,
                "layer_name": name,
                "loss": float(self.loss[i]),
                **{k: float(np.atleast_2d(getattr(self, k))[i, j]) for k in stats},
            }
            for i, step in enumerate(self.steps)
            for j, name in enumerate(self.layers)
        )

    def to_json(self) -> dict:
        def arr(a):
            return [[None if not math.isfinite(v) else float(v) for v in row] for row in np.atleast_2d(a)]

        return {
            "model": self.model,
            "config": self.config,
            "layers": self.layers,
            "steps": [int(s) for s in self.steps],
            "loss": [None if not math.isfinite(v) else float(v) for v in self.loss],
            "act_mean": arr(self.act_mean),
            "act_std": arr(self.act_std),
            "grad_norm": arr(self.grad_norm),
            "signal_norm": arr(self.signal_norm),
            "weight_norm": arr(self.weight_norm),
            "update_ratio": arr(self.update_ratio),
            "diverged": self.diverged,
            "verdict": self.verdict.to_json(),
            "seconds": round(self.seconds, 3),
            "layer_kind": self.layer_kind,
        }


def gradient_profile(
    model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, layers: Sequence[Layer] | None = None
) -> dict[str, np.ndarray]:
    """One forward/backward pass at the model's current weights: per-layer activation mean/std,
    weight-gradient, backprop-signal and weight norms (no update) of ``layers`` (default: the
    conv layers). Gradients are left in place."""
    from ..engine.setup import forward_backward

    with recording(model, layers) as rec:
        rec.active = True
        loss, _ = forward_backward(
            model, xb, yb, amp=False, zero_grad=lambda: model.zero_grad(set_to_none=True)
        )
        return {
            "act_mean": np.array(rec.mean),
            "act_std": np.array(rec.std),
            "grad_norm": np.array([_norm(layer.owner.weight.grad) for layer in rec.layers]),
            "signal_norm": np.array(rec.signal_norms()),
            "weight_norm": np.array([_norm(layer.owner.weight) for layer in rec.layers]),
            "loss": float(loss.item()),
        }


def _norm(t: torch.Tensor | None) -> float:
    return math.nan if t is None else float(t.detach().float().norm().item())


def diagnose(
    model,
    overrides: dict | None = None,
    *,
    steps: int = 50,
    every: int = 5,
    lr: float = 0.1,
    momentum: float = 0.9,
    batch_size: int = 256,
    train_size: int | None = 10_000,
    dataset: str | None = None,
    data=None,
    data_dir=None,
    seed: int = 0,
    device: str = "auto",
    compile: bool = False,
    precision: str = "fp32",
) -> Diagnostics:
    """Train ``model`` (a preset name, or your own factory ``build(depth, **params)``: a function
    or `ModelFactory`, its depth and parameters in ``overrides``) for ``steps`` SGD steps on real
    data, recording per-layer statistics (`layers_for`) at initialisation and every ``every``
    steps. Returns a `Diagnostics` with a verdict.

    The set-up is a training run's (`depthlab.engine.setup.set_up`: fp32, channels-last on CPU
    and CUDA, the same seeded network and batches); ``compile`` wraps it in ``torch.compile`` (hooks stay active: the
    recorded steps fall back to eager where dynamo cannot trace them)."""
    import time

    from ..data.registry import load_dataset
    from ..engine.setup import make_optimizer, set_up

    overrides, model = dict(overrides or {}), as_model(model)
    model_config(model, **overrides)
    dataset = dataset or default_dataset(model)
    config = _watch_config(
        model, overrides, dataset, train_size, batch_size, lr, momentum, seed, device, precision
    )
    _check_watch(steps, every)
    if data is None:
        data = load_dataset(dataset, data_dir)
    started = time.perf_counter()
    setup = set_up(config, data)  # device, precision, channels-last, the train subset's batches
    net = setup.new_model()
    layers = layers_for(model, net)
    optimizer = make_optimizer(config, net.parameters())
    forward = torch.compile(net) if compile else net
    trace = _watch_training(net, forward, layers, optimizer, setup, config, steps, every)
    return _diagnostics_of(config, layers, trace, started)


def _watch_config(model, overrides, dataset, train_size, batch_size, lr, momentum, seed, device, precision):
    """The one-epoch training configuration that `diagnose` watches, validated (a bad value is
    refused here, before any data is read)."""
    from ..engine.config import TrainConfig

    config = TrainConfig(
        model=model,
        model_args=overrides,
        dataset=dataset,
        train_size=train_size,
        epochs=1,
        batch_size=batch_size,
        lr=lr,
        momentum=momentum,
        seed=seed,
        device=device,
        precision=precision,
    )
    config.validate()
    return config


def _diagnostics_of(config, layers: Sequence[Layer], trace: _Trace, started: float) -> Diagnostics:
    """Package what `_watch_training` recorded as a `Diagnostics` with its verdict; ``seconds``
    counts from ``started`` (the set-up) to the verdict."""
    import time

    arrays = {k: np.array(v, dtype=float) for k, v in trace.rows.items()}
    return Diagnostics(
        config.model_name,
        config.canonical()["model_args"],
        [layer.name for layer in layers],
        np.array(trace.steps),
        arrays["act_mean"],
        arrays["act_std"],
        arrays["grad_norm"],
        arrays["signal_norm"],
        arrays["weight_norm"],
        arrays["update_ratio"],
        np.array(trace.losses, dtype=float),
        trace.diverged,
        _verdict(arrays, trace),
        time.perf_counter() - started,
        layer_kind(layers),
    )


def _check_watch(steps, every) -> None:
    """Refuse a ``steps``/``every`` that the recording loop cannot honour (one line, before any data is read)."""
    if not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be a non-negative integer, got {steps}")
    if not isinstance(every, int) or every <= 0:
        raise ConfigError(f"every must be a positive integer, got {every}")


@dataclass
class _Trace:
    """What `_watch_training` collected: per-statistic rows (one per recorded step), the
    recorded steps, their losses, and whether the loss became non-finite."""

    rows: dict[str, list]
    steps: list[int]
    losses: list[float]
    diverged: bool = False


def _cycle(batches):
    """The training batches over and over (the watch may run past one epoch)."""
    while True:
        yield from batches


def _watch_training(net, forward, layers, optimizer, setup, config, steps: int, every: int) -> _Trace:
    """Run ``steps`` SGD steps (plus the step-``steps`` pass that is recorded but not applied),
    recording the layers' statistics at step 0, every ``every`` steps and the last one; stop at
    the first non-finite loss (its update ratio is NaN: no step is taken after it)."""
    from ..engine.device import precision_scope
    from ..engine.setup import train_step

    stream = _cycle(setup.train_batches[config.seed])
    trace = _Trace(
        {k: [] for k in ("act_mean", "act_std", "grad_norm", "signal_norm", "weight_norm", "update_ratio")},
        [],
        [],
    )
    rows = trace.rows
    with recording(net, layers) as rec, precision_scope(setup.device, config.precision):
        for step in range(steps + 1):
            xb, yb = next(stream)
            record = step % every == 0 or step == steps
            rec.active = record
            rec.reset()
            before: list[torch.Tensor] = []

            def measure(loss: torch.Tensor, step=step, record=record, before=before) -> bool:  # pre-update
                trace.diverged = trace.diverged or not math.isfinite(loss.item())
                if record:
                    before.extend(_record_step(trace, rec, layers, step, loss.item()))
                return not trace.diverged and step < steps

            train_step(forward, optimizer, xb, yb, amp=setup.amp, before_update=measure)
            if trace.diverged:
                if record:
                    rows["update_ratio"].append([math.nan] * len(layers))
                break
            if record:
                rows["update_ratio"].append(
                    [
                        _norm(layer.owner.weight.detach() - b) / max(_norm(b), 1e-30)
                        if step < steps
                        else math.nan
                        for layer, b in zip(layers, before)
                    ]
                )
    return trace


def _record_step(trace: _Trace, rec, layers, step: int, loss: float) -> list[torch.Tensor]:
    """Append one recorded step's statistics to ``trace``; returns the weights before the
    optimiser step, from which the update ratio is measured once the step is taken."""
    before = [layer.owner.weight.detach().clone() for layer in layers]
    trace.rows["act_mean"].append(list(rec.mean))
    trace.rows["act_std"].append(list(rec.std))
    trace.rows["grad_norm"].append([_norm(layer.owner.weight.grad) for layer in layers])
    trace.rows["signal_norm"].append(rec.signal_norms())
    trace.rows["weight_norm"].append([_norm(b) for b in before])
    trace.steps.append(step)
    trace.losses.append(loss)
    return before


def _verdict(arrays: dict[str, np.ndarray], trace: _Trace) -> Verdict:
    """Judge the statistics at initialisation; a loss that became non-finite after the first
    recorded step makes the verdict "exploding" whatever the initial statistics said."""
    verdict = judge(
        arrays["grad_norm"][0],
        arrays["signal_norm"][0],
        arrays["act_std"][0],
        arrays["weight_norm"][0],
        diverged=trace.diverged and len(trace.steps) == 1,
    )
    if trace.diverged and len(trace.steps) > 1:
        verdict.label = "exploding"
        verdict.reasons.append(f"loss became non-finite by step {trace.steps[-1]}")
    return verdict


def depth_profiles(
    model,
    depths: Sequence[int],
    overrides: dict | None = None,
    *,
    data=None,
    data_dir=None,
    batch_size: int = 256,
    seed: int = 0,
    device: str = "cpu",
) -> dict[int, dict[str, np.ndarray]]:
    """`gradient_profile` at initialisation for several depths of one model (same batch, same seed)."""
    from ..data.batches import Batches
    from ..data.registry import load_dataset
    from ..engine.device import resolve_device

    overrides, model = {k: v for k, v in (overrides or {}).items() if k != "depth"}, as_model(model)
    for d in depths:
        model_config(model, **overrides, depth=d)
    dev = resolve_device(device)
    if data is None:
        data = load_dataset(default_dataset(model), data_dir)
    batches = Batches(
        data.train_x[:batch_size].to(dev),
        data.train_y[:batch_size].to(dev),
        batch_size,
        data.mean,
        data.std,
        shuffle=False,
    )
    xb, yb = next(iter(batches))
    out = {}
    for d in depths:
        torch.manual_seed(seed)
        net = create_model(model, data.input_shape, data.num_classes, **overrides, depth=d).to(dev)
        out[d] = gradient_profile(net, xb, yb, layers_for(model, net))
    return out


def nearby_depths(model, depth: int, overrides: dict | None = None) -> list[int]:
    """A few depths around ``depth`` (about /4, /2, x1, x2) that the model accepts (a factory:
    multiples of its ``depth_step``; whether it builds there is for its caller to check)."""
    overrides, model = {k: v for k, v in (overrides or {}).items() if k != "depth"}, as_model(model)
    step = getattr(model, "depth_step", 1)
    found = []
    for target in (depth // 4, depth // 2, depth, 2 * depth):
        for d in range(max(target, 1), max(target - 3, 0), -1):
            try:
                if d % step:
                    raise ConfigError(f"not a multiple of {step}")
                model_config(model, **overrides, depth=d)
            except ConfigError:
                continue
            if d not in found:
                found.append(d)
            break
    return sorted(found)


def plot_heatmap(diag: Diagnostics, ax=None):
    """Layer x step heatmap of log10 weight-gradient norm, as a `matplotlib.figure.Figure`."""
    fig, ax = new_axes(ax, figsize=(6.4, 4.0), dpi=100)
    with np.errstate(divide="ignore", invalid="ignore"):
        data = np.log10(diag.grad_norm.T)
    data = np.where(np.isfinite(data), data, np.nan)
    image = ax.imshow(
        data,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        interpolation="nearest",
        extent=(-0.5, len(diag.steps) - 0.5, 0.5, len(diag.layers) + 0.5),
    )
    ticks = range(0, len(diag.steps), max(1, len(diag.steps) // 8))
    ax.set_xticks(list(ticks), [str(diag.steps[i]) for i in ticks])
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{'conv ' if diag.layer_kind == 'conv' else ''}layer (1 = input side)")
    ax.set_title(f"{diag.model} depth {diag.config.get('depth')}: log10 ||dL/dW||  [{diag.verdict.label}]")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig


def plot_depth_profiles(
    profiles: dict[int, dict[str, np.ndarray]], *, model: str, axes=None, layer_kind: str = "conv"
):
    """Weight-gradient norm and backprop-signal norm vs layer index at init, one line per depth,
    as a `matplotlib.figure.Figure` (drawn into the two ``axes`` when given)."""
    if axes is None:
        fig, axes = new_axes(figsize=(9.0, 3.8), dpi=100, ncols=2)
    else:
        fig = axes[0].figure
    for d, prof in sorted(profiles.items()):
        layers = np.arange(1, len(prof["grad_norm"]) + 1)
        # a log axis cannot show exact zeros (float32 underflow in very deep vanishing nets): say so
        underflow = "" if np.any(prof["grad_norm"] > 0) else " (all 0: underflow)"
        axes[0].plot(layers, prof["grad_norm"], label=f"depth {d}{underflow}")
        axes[1].plot(layers, prof["signal_norm"], label=f"depth {d}")
    for ax, title in zip(axes, ("weight-gradient norm ||dL/dW||", "backprop signal ||dL/dh||")):
        ax.set_yscale("log")
        ax.set_xlabel(f"{'conv ' if layer_kind == 'conv' else ''}layer (1 = input side)")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{model} at initialisation", fontsize=11)
    fig.tight_layout()
    return fig
