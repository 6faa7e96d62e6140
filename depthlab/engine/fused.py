"""Fused multi-model training: G configurations of one architecture, trained as one network.

An lr grid (or a set of seeds) of one model is G independent trainings that do the same
operations on tensors of the same shapes. `train_fused` trains them as one network whose
layers hold the G members side by side: member g owns channels ``[g*C, (g+1)*C)`` of every
activation. A conv becomes one grouped conv (``groups = G * groups``), a batch norm one batch
norm over ``G * C`` channels (its statistics are per channel, hence per member), a linear layer
one batched matmul; activations and pooling act per channel already. Narrow nets (the stages
family has 4-16 channels) run far faster this way: one wide op instead of G narrow ones.

Exactness. Every parameter of the fused net has a leading member axis ``G``. No op mixes
members, so the gradient of ``sum_g loss_g`` restricted to member g is exactly member g's own
gradient. `FusedSGD` applies PyTorch's SGD (momentum, dampening 0, nesterov, weight decay) with
per-member lr, momentum and weight decay tensors broadcast over that axis, so each member
follows the same trajectory as a separate run with the same seed and data order (up to float
rounding: the tests check losses step by step to 1e-5). Members with one seed share each batch;
members with different seeds get their own batches, stacked.

Divergence and early stops. A member whose loss goes non-finite is reported ``diverged`` at that
step (as `depthlab.engine.train` would) and masked: its update is zeroed, and at the next check
it is cut out of the network (its slices dropped from every parameter, buffer and momentum), so
it can never poison the others. A member whose monitor stops it is finalised the same way. When
members leave, the remaining ones run on a narrower network.

What fuses: configs equal in everything but ``lr``, ``seed``, ``momentum``, ``weight_decay`` and
``schedule``; SGD; no early-stopping patience; models built only from Conv2d, BatchNorm1d/2d,
Linear and parameter-free elementwise/pooling modules, whose own forward code is layout-agnostic
(checked on a probe batch when the fused net is built). `fusion_key` says whether a config fuses.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable, Sequence

import torch
from torch import nn

from ..data.batches import Batches
from ..data.dataset import Dataset
from ..data.registry import load_dataset
from ..errors import ConfigError, UserError
from ..models import count_parameters, create_model
from ..records.record import CANCELLED, MONITOR_STOP, Checkpoint, EpochMetrics, Monitor, RunResult
from .checkpoints import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .device import autocast_bf16, precision_scope, resolve_device
from .fused_layers import (
    PER_MEMBER,
    FusedSGD,
    NotFusable,
    compact_,
    fuse_models,
    fusion_key,
    member_losses,
    split_outputs,
)
from .run import failed_result, run_safely
from .schedule import parse_schedule
from .setup import prepare_splits


FUSED_CHECKPOINT_FORMAT = "depthlab-fused-state-2"  # format 1 (epoch ends only) still loads


@torch.no_grad()
def _evaluate_members(model: nn.Module, batches: Batches, g: int, amp: bool, channels_last: bool) -> torch.Tensor:
    """Error per head and member, ``(heads, G)`` (float64, on the CPU), model in eval mode
    (`depthlab.engine.evaluate` for every member at once)."""
    was_training = model.training
    model.eval()
    wrong, n = None, 0
    for xb, yb in batches:
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=amp):
            outputs = split_outputs(model(_replicate(xb, g, channels_last)), g)
        heads = outputs if isinstance(outputs, list) else [outputs]
        w = torch.stack([(o.argmax(-1) != yb.unsqueeze(1)).sum(0) for o in heads])  # heads, G
        wrong = w if wrong is None else wrong + w
        n += len(yb)
    model.train(was_training)
    return wrong.double().cpu() / max(n, 1)


def _replicate(xb: torch.Tensor, g: int, channels_last: bool) -> torch.Tensor:
    """One batch for G members that share it: ``(N, C, H, W)`` -> ``(N, G * C, H, W)``."""
    out = xb.repeat(1, g, 1, 1)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


class _Member:
    """One member's config, monitor, current lr and the result being built."""

    def __init__(self, index: int, config: TrainConfig, monitor: Monitor | None, parameters: int, device: str,
                 rank: int | None = None):
        self.index, self.config, self.monitor, self.rank = index, config, monitor, rank
        self.schedule = parse_schedule(config.schedule)
        self.result = RunResult(config.canonical(), "done", [], 0.0, parameters=parameters, device=device)
        self.lr = config.lr
        self.stop_at_epoch_end = False  # its monitor stopped it at the last step of an epoch
        self.finished = False


def train_fused(configs: Sequence[TrainConfig], data: Dataset | None = None, *, data_dir=None,
                monitors: Sequence[Monitor | None] | Monitor | None = None,
                on_epoch: Callable[[int, EpochMetrics], None] | None = None,
                on_step: Callable[[int, int, dict[int, float]], None] | None = None,
                checkpoint_path=None, checkpoint_required: bool = True,
                member_by_member: bool = True, ranks: Sequence[int | None] | None = None) -> list[dict]:
    """Train ``configs`` (equal but for lr, seed, momentum, weight decay and schedule) as one
    fused network; return one result dict per config, in order, with the schema of
    `depthlab.sweep.runner.run_recorded` plus ``"fused"`` (the group size and its wall time).

    ``monitors``: one per config (or one for all); each sees its member's checkpoints and may
    stop it. ``on_epoch(i, metrics)`` gets member i's epochs; ``on_step(epoch, step, losses)``
    the loss of every live member at every step (``{i: loss}``; it syncs, so tests only). Each member's ``seconds`` is its
    share (1/G) of the fused wall time. A model whose fused net fails the probe check is
    trained member by member instead (same results, no speed-up, no checkpoint), or, not
    ``member_by_member``, raises `NotFusable` so that the caller runs the members as single
    trials, each with a checkpoint of its own (`depthlab.sweep.TrialRunner` does).

    With ``checkpoint_path`` the group's whole state (the fused net, momentum buffers, which
    members are still training, every member's results so far, the batchers' RNG states) is
    saved there after every epoch and at every evaluation point inside one (with the epoch's
    sample orders and the live members' running sums), atomically, and a run that finds a checkpoint of the same
    configs there continues from it: the results equal an uninterrupted run's (the restored
    epochs are passed to ``on_epoch`` again). The checkpoint records the monitors' decisions:
    continue it under the same monitors (`depthlab.engine.checkpoint_resumable` checks). Not
    ``checkpoint_required``, a checkpoint that cannot be written is skipped with a warning.

    ``ranks`` (one per config, None for "not ranked") marks members that are alternatives in an
    order, as the lrs of one wave of the frontier search: once a ranked member's monitor stops
    it, every live member of a larger rank is moot (the search reads verdicts in rank order and
    stops at the first that trains) and is stopped at that evaluation point with status
    ``cancelled`` (`CANCELLED`), its work so far in the result. A cancelled run is not a
    result: `depthlab.sweep.TrialRunner` does not record it."""
    configs = list(configs)
    if not configs:
        return []
    for c in configs:
        c.validate()
    keys = [fusion_key(c) for c in configs]
    if None in keys:
        bad = configs[keys.index(None)]
        raise ConfigError(f"cannot fuse {bad.model} (optimizer {bad.optimizer}, patience {bad.patience}): fused "
                          "training is SGD without early-stopping patience, on models that have a fused form")
    if len(set(keys)) > 1:
        raise ConfigError("fused configs must differ only in " + ", ".join(PER_MEMBER))
    if monitors is None or callable(monitors):
        monitors = [monitors] * len(configs)  # type: ignore[list-item]
    monitors = list(monitors)  # type: ignore[arg-type]
    if len(monitors) != len(configs):
        raise ConfigError(f"{len(monitors)} monitors for {len(configs)} configs")
    ranks = list(ranks) if ranks is not None else [None] * len(configs)
    if len(ranks) != len(configs):
        raise ConfigError(f"{len(ranks)} ranks for {len(configs)} configs")
    if data is None:
        data = load_dataset(configs[0].dataset, data_dir)
    started = time.perf_counter()
    try:
        with precision_scope(resolve_device(configs[0].device), configs[0].precision):
            results = _train_fused(configs, monitors, data, on_epoch, on_step, checkpoint_path, checkpoint_required,
                                   ranks)
    except (KeyboardInterrupt, SystemExit, UserError):
        raise
    except NotFusable:
        if not member_by_member:
            raise
        results = [run_safely(c, data, monitor=m) for c, m in zip(configs, monitors)]
    except Exception as exc:  # as run_recorded: a crash (out of memory, a bug) fails these runs, not the sweep
        seconds = (time.perf_counter() - started) / len(configs)
        results = [failed_result(c, seconds, exc) for c in configs]
    return [{**r, "reused": False} for r in results]


def _member_state(m: _Member) -> dict:
    """What a checkpoint keeps of a member: its results so far and where it stands."""
    r = m.result
    return {"status": r.status, "reason": r.reason, "stopped_early": r.stopped_early, "test_error": r.test_error,
            "epochs": [e.to_dict() for e in r.epochs], "checkpoints": [vars(c) for c in r.checkpoints],
            "lr": m.lr, "finished": m.finished, "stop_at_epoch_end": m.stop_at_epoch_end}


def _restore_member(m: _Member, saved: dict, on_epoch) -> None:
    r = m.result
    r.status, r.reason, r.stopped_early, r.test_error = (saved["status"], saved["reason"], saved["stopped_early"],
                                                         saved["test_error"])
    r.epochs = [EpochMetrics(**e) for e in saved["epochs"]]
    r.checkpoints = [Checkpoint(**c) for c in saved["checkpoints"]]
    m.lr, m.finished, m.stop_at_epoch_end = saved["lr"], saved["finished"], saved["stop_at_epoch_end"]
    if on_epoch is not None:
        for metrics in r.epochs:
            on_epoch(m.index, metrics)


def _outranked(m: _Member, members: Sequence[_Member]) -> bool:
    """Whether live member ``m`` is moot: a member of a smaller rank was stopped by its monitor."""
    return m.rank is not None and not m.result.stopped_early and any(
        o.rank is not None and o.rank < m.rank and o.result.stopped_early and o.result.reason == MONITOR_STOP
        for o in members)


def _train_fused(configs: list[TrainConfig], monitors: list, data: Dataset, on_epoch, on_step,
                 checkpoint_path=None, checkpoint_required: bool = True,
                 ranks: Sequence[int | None] | None = None) -> list[dict]:
    """The loop of `depthlab.engine.train`, for G members at once (see the module docstring)."""
    head = configs[0]
    device = resolve_device(head.device)
    amp = autocast_bf16(head.precision)
    channels_last = device.type in ("cpu", "cuda")
    started = time.perf_counter()

    nets = []
    for c in configs:  # each member initialised exactly as `train` initialises a separate run
        torch.manual_seed(c.seed)
        nets.append(create_model(c.model, data.input_shape, data.num_classes, **c.model_args))
    parameters = count_parameters(nets[0])
    model = fuse_models(nets, data.input_shape).to(device)  # its activations go channels-last with the input
    del nets
    ranks = list(ranks) if ranks is not None else [None] * len(configs)
    members = [_Member(i, c, m, parameters, str(device), r)
               for i, (c, m, r) in enumerate(zip(configs, monitors, ranks))]
    optimizer = FusedSGD(model, nesterov=head.nesterov)

    tx, ty, ex, ey, test_x, test_y = (t.to(device) for t in prepare_splits(head, data))
    seeds = sorted({c.seed for c in configs})
    train_batches = {s: Batches(tx, ty, head.batch_size, data.mean, data.std, seed=s, augment=head.augment,
                                channels_last=channels_last) for s in seeds}
    eval_batches = Batches(ex, ey, 1024, data.mean, data.std, shuffle=False, channels_last=channels_last)
    steps_per_epoch = len(train_batches[seeds[0]])
    eval_at = {round(steps_per_epoch * (i + 1) / head.evals_per_epoch) for i in range(head.evals_per_epoch)}
    check_every = 1 if device.type == "cpu" else 20  # a finiteness check syncs an accelerator

    def floats(values) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)

    # Per-member state, indexed along the fused net's member axis; `live` names its members.
    live = list(members)
    momentum = floats([m.config.momentum for m in live])
    weight_decay = floats([m.config.weight_decay for m in live])
    use_weight_decay = any(m.config.weight_decay > 0 for m in live)
    active = torch.ones(len(live), dtype=torch.bool, device=device)
    first_bad = torch.full((len(live),), -1, dtype=torch.long, device=device)
    loss_sum = torch.zeros(len(live), device=device)
    wrong = torch.zeros(len(live), dtype=torch.long, device=device)
    lr_values: list[float] | None = None
    lr_t = floats([])

    def drop_finished() -> None:
        """Cut finished members out of the net, the optimiser and the per-member state."""
        nonlocal live, momentum, weight_decay, active, first_bad, loss_sum, wrong, lr_values
        keep = [i for i, m in enumerate(live) if not m.finished]
        if len(keep) == len(live):
            return
        index = torch.tensor(keep, dtype=torch.long, device=device)
        compact_(model, index)
        optimizer.compact_(model, index)
        live = [live[i] for i in keep]
        momentum, weight_decay, active, first_bad, loss_sum, wrong = (
            t[index] for t in (momentum, weight_decay, active, first_bad, loss_sum, wrong))
        lr_values = None

    def test_errors() -> list[float]:
        batches = Batches(test_x, test_y, 1024, data.mean, data.std, shuffle=False, channels_last=channels_last)
        return _evaluate_members(model, batches, len(live), amp, channels_last)[-1].tolist()

    def close_epoch(ids: list[int], epoch: int, seen: int, errors: torch.Tensor | None, seconds: float,
                    ending: list[int]) -> None:
        """Append the epoch's metrics of members ``ids``; finish those in ``ending``."""
        wrong_l, loss_l = wrong.tolist(), loss_sum.tolist()
        tests = test_errors() if ending and head.eval_split != "test" else None
        for i in ids:
            m = live[i]
            errs = errors[:, i].tolist() if errors is not None else [math.nan]
            metrics = EpochMetrics(epoch, wrong_l[i] / max(seen, 1), errs[-1], loss_l[i] / max(seen, 1), m.lr,
                                   seconds, errs if len(errs) > 1 else None)
            m.result.epochs.append(metrics)
            if on_epoch is not None:
                on_epoch(m.index, metrics)
            if i in ending:
                m.finished = True
                m.result.test_error = metrics.test_error if tests is None else tests[i]

    first_epoch, elapsed_before = 0, 0.0
    mid_epoch: dict | None = None  # where a checkpoint saved inside an epoch stands
    hashes = [c.hash() for c in configs]
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path, FUSED_CHECKPOINT_FORMAT)
        if state.get("config_hashes") != hashes:
            raise ConfigError(f"checkpoint {checkpoint_path} belongs to other configurations; delete it")
        for m, saved in zip(members, state["members"]):
            _restore_member(m, saved, on_epoch)
        drop_finished()  # the members that had finished leave the net as they did before the save
        model.load_state_dict(state["model"])
        optimizer.buffers = {name: b.to(device) for name, b in state["momentum_buffers"].items()}
        for seed, rng in state["batches_rng"].items():
            train_batches[seed].generator.set_state(rng)
        torch.set_rng_state(state["torch_rng"])
        first_epoch, elapsed_before = state["epoch"], state["seconds"]
        mid_epoch = state.get("mid_epoch")

    def save_state(epochs_done: int, mid: dict | None = None) -> None:
        """Save after ``epochs_done`` whole epochs, plus ``mid`` (the running epoch's orders,
        steps and the live members' sums) at an evaluation point inside an epoch."""
        if checkpoint_path is None:
            return
        save_checkpoint(checkpoint_path, {
            "format": FUSED_CHECKPOINT_FORMAT, "config_hashes": hashes, "epoch": epochs_done, "mid_epoch": mid,
            "model": model.state_dict(), "momentum_buffers": optimizer.buffers,
            "batches_rng": {s: b.generator.get_state() for s, b in train_batches.items()},
            "torch_rng": torch.get_rng_state(), "members": [_member_state(m) for m in members],
            "seconds": elapsed_before + time.perf_counter() - started}, required=checkpoint_required)

    for epoch in range(first_epoch, head.epochs):
        if not live:
            break
        epoch_start = time.perf_counter()
        share = len(live)  # members sharing this epoch's wall time
        model.train()
        loss_sum, wrong = torch.zeros_like(loss_sum), torch.zeros_like(wrong)
        seen, start_step = 0, 0
        errors: torch.Tensor | None = None
        if mid_epoch is not None:  # resumed inside this epoch: continue its orders and sums
            orders = {s: o.to(device) if o is not None else None for s, o in mid_epoch["orders"].items()}
            start_step, seen = mid_epoch["step"], mid_epoch["seen"]
            loss_sum, wrong = mid_epoch["loss_sum"].to(device), mid_epoch["wrong"].to(device)
            errors = mid_epoch["errors"]  # on the CPU, as `_evaluate_members` returns it
            epoch_start, share = epoch_start - mid_epoch["seconds"], mid_epoch["share"]
            mid_epoch = None
        else:
            orders = {s: b.epoch_order() for s, b in train_batches.items()}
        iterators = {s: b.batches(orders[s], start_step) for s, b in train_batches.items()}
        for step in range(start_step + 1, steps_per_epoch + 1):
            batch = {s: next(it) for s, it in iterators.items()}
            if len(seeds) == 1:
                xb, yb = batch[seeds[0]]
                x = _replicate(xb, len(live), channels_last)
                y = yb.unsqueeze(1).expand(len(yb), len(live))
            else:
                x = torch.cat([batch[m.config.seed][0] for m in live], 1)
                x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
                y = torch.stack([batch[m.config.seed][1] for m in live], 1)
            lrs = [m.schedule.lr_at(epoch + (step - 1) / steps_per_epoch, m.config.lr, m.config.epochs) for m in live]
            for m, lr in zip(live, lrs):
                m.lr = lr
            if lrs != lr_values:  # constant schedules: one host-to-device copy, not one per step
                lr_values, lr_t = lrs, floats(lrs)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                outputs = split_outputs(model(x), len(live))
            losses, logits = member_losses(outputs, y)
            if on_step is not None:
                on_step(epoch, step, {m.index: v for m, v in zip(live, losses.tolist())})
            optimizer.zero_grad()
            losses.sum().backward()  # members share no op: each slice of the gradient is its own
            finite = torch.isfinite(losses.detach())
            first_bad = torch.where(active & ~finite & (first_bad < 0), torch.full_like(first_bad, step), first_bad)
            active = active & finite
            optimizer.step(lr_t, momentum, weight_decay, active, use_weight_decay)
            loss_sum += losses.detach() * y.shape[0]
            wrong += (logits.detach().argmax(-1) != y).sum(0)
            seen += y.shape[0]
            if step % check_every == 0 or step == steps_per_epoch or step in eval_at:
                for m, bad in zip(live, first_bad.tolist()):
                    if bad >= 0:  # as `train`: diverged, no metrics for the unfinished epoch
                        m.result.status, m.finished = "diverged", True
                        m.result.reason = f"non-finite loss at epoch {epoch}, step {bad}"
                drop_finished()
                if not live:
                    break
            if step in eval_at:
                errors = _evaluate_members(model, eval_batches, len(live), amp, channels_last)  # heads, G
                wrong_l = wrong.tolist()
                stopped = []
                for i, m in enumerate(live):
                    checkpoint = Checkpoint(epoch + step / steps_per_epoch, wrong_l[i] / seen, errors[-1, i].item())
                    m.result.checkpoints.append(checkpoint)
                    if m.monitor is not None and m.monitor(checkpoint):
                        m.result.stopped_early, m.result.reason = True, MONITOR_STOP
                        stopped.append(i)
                if step == steps_per_epoch:
                    for i in stopped:
                        live[i].stop_at_epoch_end = True
                elif stopped:  # as `train`: a run stopped mid-epoch records the partial epoch
                    close_epoch(stopped, epoch, seen, errors, (time.perf_counter() - epoch_start) / share, stopped)
                    keep = [i for i in range(len(live)) if i not in stopped]
                    drop_finished()
                    errors = errors[:, keep]
                    if not live:
                        break
                moot = [i for i, m in enumerate(live) if _outranked(m, members)]
                if moot:  # their verdicts can no longer change the answer: stop paying for them
                    for i in moot:
                        m = live[i]
                        m.result.status, m.finished = CANCELLED, True
                        m.result.reason = "cancelled: a member ranked before it met its monitor's criterion"
                    keep = [i for i in range(len(live)) if i not in moot]
                    drop_finished()
                    errors = errors[:, keep]
                    if not live:
                        break
                if step != steps_per_epoch and checkpoint_path is not None:
                    # A killed group then loses at most the steps since the last evaluation.
                    save_state(epoch, {
                        "step": step, "steps": steps_per_epoch, "seen": seen, "seconds": time.perf_counter() - epoch_start, "share": share,
                        "orders": {s: o.cpu() if o is not None else None for s, o in orders.items()},
                        "loss_sum": loss_sum.cpu(), "wrong": wrong.cpu(), "errors": errors.cpu()})
        if not live:
            break
        last = epoch == head.epochs - 1
        ending = [i for i, m in enumerate(live) if last or m.stop_at_epoch_end]
        close_epoch(list(range(len(live))), epoch, seen, errors, (time.perf_counter() - epoch_start) / share, ending)
        drop_finished()
        save_state(epoch + 1)
    wall = elapsed_before + time.perf_counter() - started
    out = []
    for m in members:
        m.result.seconds = wall / len(members)
        d = m.result.to_dict()
        d["checkpoints"] = [vars(c) for c in m.result.checkpoints]
        d["fused"] = {"members": len(members), "seconds": round(wall, 3)}
        out.append(d)
    return out
