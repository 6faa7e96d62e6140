"""The pieces of a run's set-up shared by every trainer: optimisers, the multi-head loss, evaluation and splits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batches import Batches, kfold_indices, subset_indices, train_val_split
from ..data.dataset import Dataset
from .config import TrainConfig


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0,
                               weight_decay=config.weight_decay)
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
