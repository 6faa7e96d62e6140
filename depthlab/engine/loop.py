"""The training engine: a config dataclass, optimisers, learning-rate schedules and one loop.

``train(TrainConfig(model="cnn-tanh", model_args={"depth": 9}, epochs=3))`` returns a
`RunResult` with per-epoch train error (counted on the fly, train mode), evaluation error
(eval mode, after each epoch) and loss. A NaN/inf loss stops the run as ``diverged``.
"""

from __future__ import annotations

import copy
import math
import os
import time
from typing import Callable

import torch

from ..data.batches import Batches
from ..data.dataset import Dataset
from ..data.registry import load_dataset
from ..errors import ConfigError
from ..models import count_parameters, create_model
from ..records.record import MONITOR_STOP, Checkpoint, EpochMetrics, Monitor, RunResult
from .checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .device import autocast_bf16, precision_scope, resolve_device
from .schedule import parse_schedule
from .setup import evaluate, make_optimizer, multi_head_loss, prepare_splits


def train(config: TrainConfig, data: Dataset | None = None, *, data_dir=None,
          monitor: Monitor | None = None, on_epoch: Callable[[EpochMetrics], None] | None = None,
          on_step: Callable[[int, int], None] | None = None, checkpoint_path=None, resume: bool = False,
          checkpoint_required: bool = True,
          compile_model: bool = False, channels_last: bool | None = None) -> RunResult:
    """Train one configuration.

    ``monitor`` is called at each evaluation (``evals_per_epoch`` times per epoch) and may stop
    the run early by returning True (the frontier stops as soon as its criterion is met).
    ``on_epoch`` receives each epoch's metrics as soon as they exist (the store writes them).
    With ``checkpoint_path`` the full training state (model, optimizer, epoch, early-stopping
    state, RNG states of the batcher and of torch) is saved there after every epoch and at every
    evaluation point inside one (with the epoch's sample order and running sums); with
    ``resume`` an existing checkpoint of the same config is continued, giving the same result
    as an uninterrupted run (the restored epochs are passed to ``on_epoch`` again; the
    checkpoint records the monitor's decisions, so resume under the same monitor). Not
    ``checkpoint_required`` (a sweep's checkpoints), a failed write is a warning, not an error.
    ``compile_model`` wraps the model in ``torch.compile`` (a speed option on CUDA).
    ``channels_last`` (default: on for CPU and CUDA) is exposed for benchmarks: NHWC convs are
    about twice as fast on CPU for these few-channel networks (see BENCHMARKS.md).
    """
    config.validate()
    device = resolve_device(config.device)
    with precision_scope(device, config.precision):
        return _train(config, device, data, data_dir, monitor, on_epoch, on_step, checkpoint_path, resume,
                      checkpoint_required, compile_model, channels_last)


def _train(config: TrainConfig, device: torch.device, data, data_dir, monitor, on_epoch, on_step, checkpoint_path,
           resume, checkpoint_required, compile_model, channels_last) -> RunResult:
    if data is None:
        data = load_dataset(config.dataset, data_dir)
    canonical = config.canonical()
    started = time.perf_counter()
    schedule = parse_schedule(config.schedule)
    amp = autocast_bf16(config.precision)
    if channels_last is None:
        channels_last = device.type in ("cpu", "cuda")

    torch.manual_seed(config.seed)
    model = create_model(config.model, data.input_shape, data.num_classes, **config.model_args).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model.parameters())
    # Deep thin nets are launch-bound on a GPU: CUDA graphs (reduce-overhead) remove that cost.
    net = (torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else "default")
           if compile_model or config.compile else model)  # state dicts are taken from `model`

    tx, ty, ex, ey, test_x, test_y = (t.to(device) for t in prepare_splits(config, data))
    train_batches = Batches(tx, ty, config.batch_size, data.mean, data.std, seed=config.seed,
                            augment=config.augment, channels_last=channels_last)
    eval_batches = Batches(ex, ey, 1024, data.mean, data.std, shuffle=False, channels_last=channels_last)
    steps_per_epoch = len(train_batches)
    eval_at = {round(steps_per_epoch * (i + 1) / config.evals_per_epoch) for i in range(config.evals_per_epoch)}
    check_every = 1 if device.type == "cpu" else 20  # a finiteness check syncs an accelerator

    result = RunResult(canonical, "done", [], 0.0, parameters=count_parameters(model), device=str(device))
    best_error, best_state, since_best = math.inf, None, 0
    first_epoch, elapsed_before = 0, 0.0
    mid_epoch: dict | None = None  # where a checkpoint saved in the middle of an epoch stands
    if resume and checkpoint_path is not None and os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path)
        if state.get("config_hash") != config.hash():
            raise ConfigError(f"checkpoint {checkpoint_path} belongs to a different configuration; "
                              "delete it or run without --resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        train_batches.generator.set_state(state["batches_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        best_error, since_best = state["best_error"], state["since_best"]
        best_state = ({k: v.to(device) for k, v in state["best_state"].items()}
                      if state["best_state"] is not None else None)
        result.checkpoints = [Checkpoint(**c) for c in state["checkpoints"]]
        result.stopped_early, result.reason = state["stopped_early"], state["reason"]
        first_epoch, elapsed_before = state["epoch"], state["seconds"]
        mid_epoch = state.get("mid_epoch")
        for d in state["epochs"]:
            metrics = EpochMetrics(**d)
            result.epochs.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics)

    def save_state(epochs_done: int, mid: dict | None = None) -> None:
        """Save after ``epochs_done`` whole epochs, plus ``mid`` (the running epoch's order,
        steps and sums) when saving at an evaluation point inside an epoch."""
        if checkpoint_path is None:
            return
        save_checkpoint(checkpoint_path, {
            "format": CHECKPOINT_FORMAT, "config_hash": config.hash(), "epoch": epochs_done, "mid_epoch": mid,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "batches_rng": train_batches.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            "best_error": best_error, "since_best": since_best, "best_state": best_state,
            "epochs": [e.to_dict() for e in result.epochs], "checkpoints": [vars(c) for c in result.checkpoints],
            "stopped_early": result.stopped_early, "reason": result.reason,
            "seconds": elapsed_before + time.perf_counter() - started}, required=checkpoint_required)

    try:
        for epoch in range(first_epoch, config.epochs):
            if result.stopped_early:  # a resumed run that had already stopped
                break
            epoch_start = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), device=device)
            wrong = torch.zeros((), dtype=torch.long, device=device)
            seen, start_step = 0, 0
            lr = config.lr
            eval_error, head_errors = math.nan, None
            if mid_epoch is not None:  # resumed inside this epoch: continue its order and sums
                order = mid_epoch["order"].to(device) if mid_epoch["order"] is not None else None
                start_step, seen = mid_epoch["step"], mid_epoch["seen"]
                loss_sum, wrong = mid_epoch["loss_sum"].to(device), mid_epoch["wrong"].to(device)
                eval_error, head_errors = mid_epoch["eval_error"], mid_epoch["head_errors"]
                epoch_start -= mid_epoch["seconds"]
                mid_epoch = None
            else:
                order = train_batches.epoch_order()
            for step, (xb, yb) in enumerate(train_batches.batches(order, start_step), start=start_step + 1):
                lr = schedule.lr_at(epoch + (step - 1) / steps_per_epoch, config.lr, config.epochs)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    outputs = net(xb)
                loss, logits = multi_head_loss(outputs, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * len(yb)
                wrong += (logits.detach().argmax(1) != yb).sum()
                seen += len(yb)
                if on_step is not None:
                    on_step(step, steps_per_epoch)
                if step % check_every == 0 or step == steps_per_epoch:
                    if not torch.isfinite(loss_sum):
                        raise _Diverged(epoch, step)
                if step in eval_at:
                    eval_error, head_errors = evaluate(net, eval_batches, amp)
                    checkpoint = Checkpoint(epoch + step / steps_per_epoch, wrong.item() / seen, eval_error)
                    result.checkpoints.append(checkpoint)
                    if monitor is not None and monitor(checkpoint):
                        result.stopped_early = True
                        if step != steps_per_epoch:
                            break
                    elif step != steps_per_epoch and checkpoint_path is not None:
                        # A killed run then loses at most the steps since the last evaluation.
                        save_state(epoch, {
                            "step": step, "steps": steps_per_epoch, "order": order.cpu() if order is not None else None, "seen": seen,
                            "loss_sum": loss_sum.cpu(), "wrong": wrong.cpu(), "eval_error": eval_error,
                            "head_errors": head_errors, "seconds": time.perf_counter() - epoch_start})
            metrics = EpochMetrics(epoch, wrong.item() / max(seen, 1), eval_error, loss_sum.item() / max(seen, 1),
                                   lr, time.perf_counter() - epoch_start, head_errors)
            result.epochs.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics)
            if result.stopped_early:
                result.reason = MONITOR_STOP
            elif config.patience is not None:
                if eval_error < best_error:
                    best_error, since_best = eval_error, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    since_best += 1
                    if since_best > config.patience:
                        result.stopped_early, result.reason = True, f"early stopping after epoch {epoch}"
            save_state(epoch + 1)
            if result.stopped_early:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        if config.eval_split == "test" and best_state is None and result.epochs:
            result.test_error = result.epochs[-1].test_error
        else:
            result.test_error, _ = evaluate(
                net, Batches(test_x, test_y, 1024, data.mean, data.std, shuffle=False,
                               channels_last=channels_last), amp)
    except _Diverged as exc:
        result.status, result.reason = "diverged", f"non-finite loss at epoch {exc.epoch}, step {exc.step}"
    result.seconds = elapsed_before + time.perf_counter() - started
    result.model = model
    return result


class _Diverged(Exception):
    def __init__(self, epoch: int, step: int):
        super().__init__(f"diverged at epoch {epoch}, step {step}")
        self.epoch, self.step = epoch, step
