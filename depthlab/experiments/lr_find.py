"""The learning-rate range test: lr grows geometrically each step; the suggestion is the
smoothed loss's minimum divided by ten."""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from dataclasses import dataclass

import torch

from ..data.dataset import Dataset
from ..engine.config import MAX_LR, MAX_STEPS, TrainConfig
from ..engine.device import precision_scope
from ..engine.setup import make_optimizer, set_up, train_step
from ..errors import ConfigError
from ..report.tables import data_frame
from .parts import Curve, Plot


@dataclass
class LRFindResult:
    """The lr range test's trace and its suggestion.

    Suggestion rule: the lr at the minimum of the smoothed loss, divided by 10. At the minimum
    the loss has stopped improving because the lr is about to be too large; an order of
    magnitude below it is the largest lr that still descends steadily (Smith 2017, the
    ``lr_min / 10`` of fastai). The steepest descent point is reported too."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    stopped: str
    min_loss_lr: float | None
    steepest_lr: float | None
    suggestion: float | None
    rule: str = "lr at the minimum of the smoothed loss / 10"
    drop: float = 0.0  # relative fall of the smoothed loss from its first value to its minimum
    burn_in: int = 0  # first steps ignored by the divergence stop and the suggestion

    @property
    def flat(self) -> bool:
        """True when the loss hardly fell (< 0.5%): nothing in the range learned within the
        test's steps, and the minimum, hence the suggestion, is noise."""
        return self.drop < 0.005

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_frame(self):
        """The trace as a pandas DataFrame: ``step``, ``lr``, ``loss`` (that step's train loss) and
        ``smoothed_loss`` (its exponential moving average, bias-corrected)."""
        return data_frame(
            {"step": i, "lr": lr, "loss": loss, "smoothed_loss": sm}
            for i, (lr, loss, sm) in enumerate(zip(self.lrs, self.losses, self.smoothed))
        )

    def plot(self) -> Plot:
        """Loss against lr (log x), the y axis clipped to where the smoothed loss lives: from a
        little below its minimum to a little above where it started, so that the spikes of the
        diverging end do not flatten the useful part into a line."""
        marks = [
            (v, f"{name} {v:.2g}")
            for name, v in (("suggested", self.suggestion), ("steepest", self.steepest_lr))
            if v
        ]
        finite = [v for v in self.smoothed if math.isfinite(v)]
        ylim = None
        if finite:
            low, start = min(finite), max(finite[: max(1, self.burn_in + 1)])
            span = max(start - low, 0.05 * abs(start), 1e-6)
            ylim = (low - 0.1 * span, start + 0.5 * span)
        return Plot(
            "lr-find",
            f"lr range test ({self.stopped})",
            "train loss",
            [Curve("smoothed loss", self.lrs, self.smoothed), Curve("loss", self.lrs, self.losses)],
            log_x=True,
            xlabel="learning rate",
            marks=marks,
            ylim=ylim,
        )


MAX_DIVERGE = 1e6  # --diverge: the loss may grow by this factor over its minimum before the test stops


def check_lr_range(
    min_lr: float, max_lr: float, steps: int, smoothing: float, diverge: float, burn_in: int | None = None
) -> None:
    if not (math.isfinite(min_lr) and min_lr > 0):
        raise ConfigError(f"--min-lr must be positive, got {min_lr}")
    if not (math.isfinite(max_lr) and max_lr > min_lr):
        raise ConfigError(f"--max-lr must be larger than --min-lr, got min {min_lr:g} >= max {max_lr:g}")
    if max_lr > MAX_LR:
        raise ConfigError(f"--max-lr must be at most {MAX_LR:g}, got {max_lr:g}")
    if not isinstance(steps, int) or steps < 10:
        raise ConfigError(f"--steps must be at least 10, got {steps}")
    if steps > MAX_STEPS:
        raise ConfigError(f"--steps must be at most {MAX_STEPS:,}, got {steps:,}")
    if not 0 <= smoothing < 1:
        raise ConfigError(f"--smoothing must be in [0, 1), got {smoothing}")
    if not 1 < diverge <= MAX_DIVERGE:
        raise ConfigError(f"--diverge must be larger than 1 and at most {MAX_DIVERGE:g}, got {diverge:g}")
    if burn_in is not None and not (isinstance(burn_in, int) and 0 <= burn_in <= steps // 2):
        raise ConfigError(f"--burn-in must be from 0 to half of --steps ({steps // 2}), got {burn_in}")


def lr_find(
    config: TrainConfig,
    data: Dataset | None = None,
    *,
    data_dir=None,
    min_lr: float = 1e-5,
    max_lr: float = 10.0,
    steps: int = 100,
    smoothing: float = 0.98,
    diverge: float = 4.0,
    burn_in: int | None = None,
    model: torch.nn.Module | None = None,
) -> LRFindResult:
    """Exponential lr range test: ``steps`` mini-batches with the lr growing geometrically from
    ``min_lr`` to ``max_lr``; the loss is smoothed by a bias-corrected exponential moving average;
    the test stops early once the smoothed loss exceeds ``diverge`` times its minimum (or is not
    finite). The first ``burn_in`` steps (default a tenth of ``steps``, as Lightning skips its
    first 10 of 100) neither stop the test nor count for the suggestion: an early spike of a
    fresh network is not divergence, and a minimum there is the average warming up. The network's weights are restored afterwards (pass ``model`` to test, and keep,
    your own network; otherwise one is built from ``config`` and its seed). Nothing is stored."""
    burn_in = steps // 10 if burn_in is None else burn_in
    check_lr_range(min_lr, max_lr, steps, smoothing, diverge, burn_in)
    config.validate()
    setup = set_up(config, data, data_dir=data_dir)
    if model is None:
        model = setup.new_model()  # seeded, on the device, channels-last: as train() builds it
    else:
        torch.manual_seed(config.seed)
        model = model.to(setup.device)  # a caller's own network keeps its memory format
    saved = copy.deepcopy(model.state_dict())
    was_training = model.training
    optimizer = make_optimizer(config, model.parameters())
    batches = setup.train_batches[config.seed]
    model.train()
    try:
        with precision_scope(setup.device, config.precision):
            lrs, losses, smoothed, stopped = _sweep_lr(
                model, optimizer, batches, setup.amp, min_lr, max_lr, steps, smoothing, diverge, burn_in
            )
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
    return _suggest(lrs, losses, smoothed, stopped, burn_in)


def _sweep_lr(
    model,
    optimizer,
    batches,
    amp: bool,
    min_lr: float,
    max_lr: float,
    steps: int,
    smoothing: float,
    diverge: float,
    burn_in: int,
) -> tuple[list[float], list[float], list[float], str]:
    """Train ``steps`` steps (cycling through ``batches``), the lr growing geometrically from
    ``min_lr`` to ``max_lr``; returns the lrs, the losses, their smoothed values and why the
    sweep stopped (a non-finite loss, or the smoothed loss past ``diverge`` times its minimum
    after the burn-in, or the last step reached). Each step is the engine's `train_step`, the
    loss taken (and the sweep stopped) before the update. The weights are left as the sweep made them."""
    ratio = max_lr / min_lr
    trace = _LossTrace(smoothing, diverge, burn_in)
    step = 0
    while step < steps:
        for xb, yb in batches:
            if step >= steps:
                break
            lr = min_lr * ratio ** (step / (steps - 1))
            _, _, updated = train_step(
                model,
                optimizer,
                xb,
                yb,
                amp=amp,
                lr=lr,
                before_update=functools.partial(trace.take, step, lr),
            )
            if not updated:
                return trace.lrs, trace.losses, trace.smoothed, trace.stopped
            step += 1
    return trace.lrs, trace.losses, trace.smoothed, f"reached max lr {max_lr:g}"


class _LossTrace:
    """lr_find's record: each step's lr, loss and bias-corrected smoothed loss, and why it stopped."""

    def __init__(self, smoothing: float, diverge: float, burn_in: int):
        self.smoothing, self.diverge, self.burn_in = smoothing, diverge, burn_in
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.avg, self.best, self.stopped = 0.0, math.inf, ""

    def take(self, step: int, lr: float, loss: torch.Tensor) -> bool:
        """Record step ``step``'s ``loss`` at ``lr``; False (no update, the sweep ends) once the
        loss is not finite (not recorded) or the smoothed loss diverged (recorded)."""
        value = loss.item()
        if not math.isfinite(value):
            self.stopped = f"diverged at lr {lr:.3g} (non-finite loss)"
            return False
        self.avg = self.smoothing * self.avg + (1 - self.smoothing) * value
        smooth = self.avg / (1 - self.smoothing ** (step + 1))
        self.lrs.append(lr)
        self.losses.append(value)
        self.smoothed.append(smooth)
        if step >= self.burn_in:
            self.best = min(self.best, smooth)
        if step > self.burn_in and smooth > self.diverge * self.best:
            self.stopped = f"diverged at lr {lr:.3g} (smoothed loss > {self.diverge:g}x its minimum)"
            return False
        return True


def _suggest(
    lrs: list[float], losses: list[float], smoothed: list[float], stopped: str, burn_in: int = 0
) -> LRFindResult:
    if len(smoothed) < burn_in + 3:
        return LRFindResult(lrs, losses, smoothed, stopped, None, None, None, burn_in=burn_in)
    i_min = min(range(burn_in, len(smoothed)), key=smoothed.__getitem__)
    first = smoothed[burn_in]
    drop = (first - smoothed[i_min]) / abs(first) if first else 0.0
    # steepest descent of the smoothed loss per unit of log lr, before the minimum, after the burn-in
    start = max(1, burn_in, len(smoothed) // 10)
    slopes = [
        (smoothed[i + 1] - smoothed[i - 1]) / math.log(lrs[i + 1] / lrs[i - 1])
        for i in range(start, min(i_min, len(smoothed) - 1))
    ]
    steepest = lrs[start + min(range(len(slopes)), key=slopes.__getitem__)] if slopes else None
    return LRFindResult(
        lrs, losses, smoothed, stopped, lrs[i_min], steepest, lrs[i_min] / 10, drop=drop, burn_in=burn_in
    )
