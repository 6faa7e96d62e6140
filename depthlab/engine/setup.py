"""A run's set-up, shared by every trainer (single runs, fused groups, the lr range test and the
gradient diagnostics): device, precision, data splits and batchers, evaluation points, the seeded
model, the optimiser, and `forward_backward`, the one place where a run differentiates its loss."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batches import Batches, kfold_indices, subset_indices, train_val_split
from ..data.dataset import Dataset
from ..data.registry import load_dataset
from ..models import create_model
from .config import TrainConfig
from .device import PrecisionPolicy, precision_policy, resolve_device


@dataclass
class Setup:
    """Everything a run needs before its first step. ``config`` is the run's (a fused group's
    first member's: its members differ only in per-member fields). ``train_batches`` holds one
    batcher per seed (a fused group's members of one seed share their batches)."""

    config: TrainConfig
    data: Dataset
    device: torch.device
    precision: PrecisionPolicy
    channels_last: bool
    train_batches: dict[int, Batches]
    eval_batches: Batches
    test_x: torch.Tensor
    test_y: torch.Tensor
    steps_per_epoch: int
    eval_at: set[int]  # the steps of an epoch after which the run is evaluated
    check_every: int  # steps between finiteness checks (each syncs an accelerator)

    @property
    def amp(self) -> bool:
        return self.precision.amp

    def autocast(self):
        """The forward's precision context (bf16 autocast when the config asks for it)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def test_batches(self) -> Batches:
        return Batches(
            self.test_x,
            self.test_y,
            1024,
            self.data.mean,
            self.data.std,
            shuffle=False,
            channels_last=self.channels_last,
        )

    def new_model(self, config: TrainConfig | None = None, *, on_device: bool = True) -> nn.Module:
        """``config``'s network initialised from its seed (as every trainer initialises it), on
        the device and channels-last unless ``on_device`` is false (then on the CPU, as built)."""
        config = config or self.config
        torch.manual_seed(config.seed)
        model = create_model(config.model, self.data.input_shape, self.data.num_classes, **config.model_args)
        if not on_device:
            return model
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


def set_up(
    configs: TrainConfig | Sequence[TrainConfig],
    data: Dataset | None = None,
    *,
    data_dir=None,
    channels_last: bool | None = None,
) -> Setup:
    """The set-up of a run of ``configs`` (one config, or a fused group's, validated by the
    caller). ``channels_last`` (default: on for CPU and CUDA): NHWC convs are about twice as fast
    on CPU for these few-channel networks (see BENCHMARKS.md)."""
    configs = [configs] if isinstance(configs, TrainConfig) else list(configs)
    head = configs[0]
    device = resolve_device(head.device)
    if data is None:
        data = load_dataset(head.dataset, data_dir)
    if channels_last is None:
        channels_last = device.type in ("cpu", "cuda")
    tx, ty, ex, ey, test_x, test_y = (t.to(device) for t in prepare_splits(head, data))
    train_batches = {
        s: Batches(
            tx,
            ty,
            head.batch_size,
            data.mean,
            data.std,
            seed=s,
            augment=head.augment,
            channels_last=channels_last,
        )
        for s in sorted({c.seed for c in configs})
    }
    eval_batches = Batches(ex, ey, 1024, data.mean, data.std, shuffle=False, channels_last=channels_last)
    steps = len(next(iter(train_batches.values())))
    eval_at = {round(steps * (i + 1) / head.evals_per_epoch) for i in range(head.evals_per_epoch)}
    return Setup(
        head,
        data,
        device,
        precision_policy(device, head.precision),
        channels_last,
        train_batches,
        eval_batches,
        test_x,
        test_y,
        steps,
        eval_at,
        1 if device.type == "cpu" else 20,
    )


def forward_backward(
    net: Callable,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    amp: bool,
    zero_grad: Callable[[], None],
    loss_fn: Callable | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass (under bf16 autocast when ``amp``), the loss ``loss_fn(outputs, y)`` (by
    default `multi_head_loss`; a fused net's gives one loss per member, whose sum is
    differentiated: members share no op, so each one's gradient is its own), the old gradients
    cleared with ``zero_grad`` and the new ones computed. Returns (loss, final-head logits);
    the caller steps its optimiser. Every trainer's backward pass is this one."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        outputs = net(x)
    loss, logits = (loss_fn or multi_head_loss)(outputs, y)
    zero_grad()
    loss.sum().backward()
    return loss, logits


def train_step(
    net: Callable,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    amp: bool,
    lr: float | None = None,
    before_update: Callable[[torch.Tensor], bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """One optimisation step, as a run takes it: the lr set on every parameter group (when
    given), `forward_backward` (old gradients set to None), then the optimiser's update, unless
    ``before_update(loss)`` returns False (Lightning's ``on_before_optimizer_step``: what a tool
    measures between the backward pass and the update, lr_find's divergence test, diagnose's
    per-layer record, and whether to update at all). Returns (loss, final-head logits, whether
    the weights were updated). The single-network trainer, lr_find, diagnose and the dry run's
    timing step through here; a fused group steps its fused optimiser around `forward_backward`."""
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    loss, logits = forward_backward(
        net, x, y, amp=amp, zero_grad=lambda: optimizer.zero_grad(set_to_none=True)
    )
    if before_update is not None and not before_update(loss):
        return loss, logits, False
    optimizer.step()
    return loss, logits, True


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def multi_head_loss(outputs, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over heads; returns (loss, final-head logits)."""
    if isinstance(outputs, (list, tuple)):
        loss = sum(F.cross_entropy(o.float(), y) for o in outputs) / len(outputs)
        return loss, outputs[-1]
    return F.cross_entropy(outputs.float(), y), outputs


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, amp: bool = False) -> tuple[float, list[float] | None]:
    """Error of the final head (and of every head when there are several), model in eval mode."""
    was_training = model.training
    model.eval()
    wrong: torch.Tensor | None = None
    n = 0
    for xb, yb in batches:
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=amp):
            outputs = model(xb)
        outs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        w = torch.stack([(o.argmax(1) != yb).sum() for o in outs])
        wrong = w if wrong is None else wrong + w
        n += len(yb)
    model.train(was_training)
    errors = (wrong.double() / max(n, 1)).tolist()
    return errors[-1], (errors if len(errors) > 1 else None)


def _select(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    return x if idx is None else x[idx]


def prepare_splits(config: TrainConfig, data: Dataset):
    """(train_x, train_y, eval_x, eval_y, test_x, test_y) on the CPU for a config."""
    train_idx = subset_indices(len(data.train_x), config.train_size, seed=0)
    tx, ty = data.train_x[train_idx], data.train_y[train_idx]
    test_idx = subset_indices(len(data.test_x), config.test_size, seed=0)
    test_x, test_y = data.test_x[test_idx], data.test_y[test_idx]
    if config.eval_split == "test":
        return tx, ty, test_x, test_y, test_x, test_y
    if config.folds:
        fit_idx, val_idx = kfold_indices(len(tx), config.folds, seed=0)[config.fold]
    else:
        fit_idx, val_idx = train_val_split(len(tx), config.val_fraction, seed=0)
    return tx[fit_idx], ty[fit_idx], tx[val_idx], ty[val_idx], test_x, test_y
