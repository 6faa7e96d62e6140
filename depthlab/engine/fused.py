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

import time
from collections.abc import Sequence

import torch
from torch import nn

from ..data.batches import Batches
from ..data.dataset import Dataset
from ..data.registry import load_dataset
from ..errors import ConfigError, UserError
from ..models import count_parameters
from ..records.record import Monitor, RunResult
from .config import TrainConfig
from .device import precision_scope, thread_scope
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
from .loop import LoopCallback, run_epochs
from .run import failed_result, run_safely
from .setup import Setup, forward_backward, set_up
from .stepper import Member, Stepper

FUSED_CHECKPOINT_FORMAT = "depthlab-fused-state-2"  # format 1 (epoch ends only) still loads


@torch.no_grad()
def _evaluate_members(
    model: nn.Module, batches: Batches, g: int, amp: bool, channels_last: bool
) -> torch.Tensor:
    """Error per head and member, ``(heads, G)`` (float64, on the CPU), model in eval mode
    (`depthlab.engine.setup.evaluate` for every member at once)."""
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


class FusedStepper(Stepper):
    """G members as one fused network (see the module docstring); per-member state is indexed
    along the net's member axis, in the order of ``live``."""

    format = FUSED_CHECKPOINT_FORMAT

    def __init__(self, setup: Setup, configs: list[TrainConfig], monitors: list, ranks: list):
        # each member initialised exactly as `train` initialises a separate run
        nets = [setup.new_model(c, on_device=False) for c in configs]
        parameters = count_parameters(nets[0])
        self.model = fuse_models(nets, setup.data.input_shape).to(
            setup.device
        )  # goes channels-last with the input
        del nets
        super().__init__(
            setup,
            [
                Member(i, c, m, parameters, str(setup.device), r)
                for i, (c, m, r) in enumerate(zip(configs, monitors, ranks))
            ],
        )
        self.optimizer = FusedSGD(self.model, nesterov=setup.config.nesterov)
        self.hashes = [c.hash() for c in configs]
        self.seeds = sorted(setup.train_batches)
        self.momentum = self._floats([m.config.momentum for m in self.live])
        self.weight_decay = self._floats([m.config.weight_decay for m in self.live])
        self.use_weight_decay = any(m.config.weight_decay > 0 for m in self.live)
        self.active = torch.ones(len(self.live), dtype=torch.bool, device=setup.device)
        self.bad = torch.full((len(self.live),), -1, dtype=torch.long, device=setup.device)
        self.lr_values: list[float] | None = None
        self.lr_t = self._floats([])
        self.zero_sums()

    def _floats(self, values) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=self.setup.device)

    def train_mode(self) -> None:
        self.model.train()

    def zero_sums(self) -> None:
        self.loss_sum = torch.zeros(len(self.live), device=self.setup.device)
        self.wrong = torch.zeros(len(self.live), dtype=torch.long, device=self.setup.device)

    def step(self, batch, epoch: int, step: int) -> int:
        live, g, channels_last = self.live, len(self.live), self.setup.channels_last
        if len(self.seeds) == 1:
            xb, yb = batch[self.seeds[0]]
            x = _replicate(xb, g, channels_last)
            y = yb.unsqueeze(1).expand(len(yb), g)
        else:
            x = torch.cat([batch[m.config.seed][0] for m in live], 1)
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            y = torch.stack([batch[m.config.seed][1] for m in live], 1)
        lrs = self.set_lrs(epoch, step)
        if lrs != self.lr_values:  # constant schedules: one host-to-device copy, not one per step
            self.lr_values, self.lr_t = lrs, self._floats(lrs)
        losses, logits = forward_backward(
            self.model,
            x,
            y,
            amp=self.setup.amp,
            zero_grad=self.optimizer.zero_grad,
            loss_fn=lambda outputs, y: member_losses(split_outputs(outputs, g), y),
        )
        self.step_losses = losses.detach()
        finite = torch.isfinite(losses.detach())
        self.bad = torch.where(
            self.active & ~finite & (self.bad < 0), torch.full_like(self.bad, step), self.bad
        )
        self.active = self.active & finite  # a diverged member's update is zeroed until it leaves the net
        self.optimizer.step(self.lr_t, self.momentum, self.weight_decay, self.active, self.use_weight_decay)
        self.loss_sum += losses.detach() * y.shape[0]
        self.wrong += (logits.detach().argmax(-1) != y).sum(0)
        return y.shape[0]

    def first_bad(self, step: int) -> list[int]:
        return self.bad.tolist()

    def sums(self) -> tuple[list[int], list[float]]:
        return self.wrong.tolist(), self.loss_sum.tolist()

    def evaluate(self, batches: Batches) -> torch.Tensor:
        return _evaluate_members(
            self.model, batches, len(self.live), self.setup.amp, self.setup.channels_last
        )

    def drop_finished(self) -> None:
        """Cut finished members out of the net, the optimiser and the per-member state."""
        keep = [i for i, m in enumerate(self.live) if not m.finished]
        if len(keep) == len(self.live):
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.setup.device)
        compact_(self.model, index)
        self.optimizer.compact_(self.model, index)
        self.live = [self.live[i] for i in keep]
        self.momentum, self.weight_decay, self.active, self.bad, self.loss_sum, self.wrong = (
            t[index]
            for t in (self.momentum, self.weight_decay, self.active, self.bad, self.loss_sum, self.wrong)
        )
        self.lr_values = None
        if self.errors is not None:
            self.errors = self.errors[:, keep]

    def final_test_errors(self) -> list[float] | None:
        if self.setup.config.eval_split == "test":
            return None
        return self.evaluate(self.setup.test_batches())[-1].tolist()

    def pack(self, epochs_done: int, mid: dict | None, seconds: float) -> dict:
        if mid is not None:
            mid = {
                **mid,
                "loss_sum": self.loss_sum.cpu(),
                "wrong": self.wrong.cpu(),
                "errors": self.errors.cpu(),
            }
        return {
            "format": FUSED_CHECKPOINT_FORMAT,
            "config_hashes": self.hashes,
            "epoch": epochs_done,
            "mid_epoch": mid,
            "model": self.model.state_dict(),
            "momentum_buffers": self.optimizer.buffers,
            "batches_rng": {s: b.generator.get_state() for s, b in self.setup.train_batches.items()},
            "torch_rng": torch.get_rng_state(),
            "members": [m.state() for m in self.members],
            "seconds": seconds,
        }

    def unpack(self, state: dict, path) -> tuple[int, float, dict | None]:
        device = self.setup.device
        if state.get("config_hashes") != self.hashes:
            raise ConfigError(f"checkpoint {path} belongs to other configurations; delete it")
        for m, saved in zip(self.members, state["members"]):
            m.restore(saved)
        self.drop_finished()  # the members that had finished leave the net as they did before the save
        self.model.load_state_dict(state["model"])
        self.optimizer.buffers = {name: b.to(device) for name, b in state["momentum_buffers"].items()}
        for seed, rng in state["batches_rng"].items():
            self.setup.train_batches[seed].generator.set_state(rng)
        torch.set_rng_state(state["torch_rng"])
        mid = state.get("mid_epoch")
        if mid is not None:
            self.loss_sum, self.wrong = mid["loss_sum"].to(device), mid["wrong"].to(device)
            self.errors = mid["errors"]  # on the CPU, as `_evaluate_members` returns it
        return state["epoch"], state["seconds"], mid


def train_fused(
    configs: Sequence[TrainConfig],
    data: Dataset | None = None,
    *,
    data_dir=None,
    monitors: Sequence[Monitor | None] | Monitor | None = None,
    callbacks: Sequence[LoopCallback] = (),
    checkpoint_path=None,
    checkpoint_required: bool = True,
    member_by_member: bool = True,
    ranks: Sequence[int | None] | None = None,
) -> list[RunResult]:
    """Train ``configs`` (equal but for lr, seed, momentum, weight decay and schedule) as one
    fused network; return one `RunResult` per config, in order, as `depthlab.sweep.runner.run_recorded`
    does, with ``fused`` set (the group size and its wall time).

    ``monitors``: one per config (or one for all); each sees its member's checkpoints and may
    stop it. ``callbacks`` (`LoopCallback`s) follow the group: ``on_epoch_metrics(loop, i,
    metrics)`` gets member i's epochs, ``on_step_end`` every step (``loop.stepper.step_losses``:
    the live members' losses, in the order of ``loop.stepper.live``). Each member's ``seconds`` is its
    share (1/G) of the fused wall time. A model whose fused net fails the probe check is
    trained member by member instead (same results, no speed-up, no checkpoint), or, not
    ``member_by_member``, raises `NotFusable` so that the caller runs the members as single
    trials, each with a checkpoint of its own (`depthlab.sweep.TrialRunner` does).

    With ``checkpoint_path`` the group's whole state (the fused net, momentum buffers, which
    members are still training, every member's results so far, the batchers' RNG states) is
    saved there after every epoch and at every evaluation point inside one (with the epoch's
    sample orders and the live members' running sums), atomically, and a run that finds a checkpoint of the same
    configs there continues from it: the results equal an uninterrupted run's (the restored
    epochs are passed to ``on_epoch_metrics`` again). The checkpoint records the monitors' decisions:
    continue it under the same monitors (`depthlab.engine.checkpoint_resumable` checks). Not
    ``checkpoint_required``, a checkpoint that cannot be written is skipped with a warning.

    ``ranks`` (one per config, None for "not ranked") marks members that are alternatives in an
    order, as the lrs of one wave of the frontier search: once a ranked member's monitor stops
    it, every live member of a larger rank is moot (the search reads verdicts in rank order and
    stops at the first that trains) and is stopped at that evaluation point with status
    ``cancelled`` (`RunStatus.CANCELLED`), its work so far in the result. A cancelled run is not a
    result: `depthlab.sweep.TrialRunner` does not record it."""
    configs = list(configs)
    if not configs:
        return []
    monitors, ranks = _check_group(configs, monitors, ranks)
    if data is None:
        data = load_dataset(configs[0].dataset, data_dir)
    results = _train_group(
        configs, data, monitors, ranks, callbacks, checkpoint_path, checkpoint_required, member_by_member
    )
    for r in results:
        r.reused = False
    return results


def _train_group(
    configs: list[TrainConfig],
    data: Dataset,
    monitors: list[Monitor | None],
    ranks: list[int | None],
    callbacks,
    checkpoint_path,
    checkpoint_required: bool,
    member_by_member: bool,
) -> list[RunResult]:
    """The group's results: trained as one net; where it is not fusable, member by member (or
    `NotFusable` raised, not ``member_by_member``); where training crashes, every run failed."""
    started = time.perf_counter()
    try:
        return _train_as_one_net(
            configs, data, monitors, ranks, callbacks, checkpoint_path, checkpoint_required, started
        )
    except (KeyboardInterrupt, SystemExit, UserError):
        raise
    except NotFusable:
        if not member_by_member:
            raise
        return [run_safely(c, data, monitor=m) for c, m in zip(configs, monitors)]
    except (
        Exception
    ) as exc:  # as run_recorded: a crash (out of memory, a bug) fails these runs, not the sweep
        seconds = (time.perf_counter() - started) / len(configs)
        return [failed_result(c, seconds, exc) for c in configs]


def _train_as_one_net(
    configs: list[TrainConfig],
    data: Dataset,
    monitors: list[Monitor | None],
    ranks: list[int | None],
    callbacks,
    checkpoint_path,
    checkpoint_required: bool,
    started: float,
) -> list[RunResult]:
    """`train_fused`'s fused path: the group set up and trained as one network under its threads
    and precision, each member's result given its share (1/G) of the wall time and, in
    ``fused``, the group's size and wall time."""
    with thread_scope(configs[0].threads):
        setup = set_up(configs, data)
        with precision_scope(setup.device, configs[0].precision):
            stepper = FusedStepper(setup, configs, monitors, ranks)
            wall = run_epochs(
                stepper,
                callbacks=callbacks,
                checkpoint_path=checkpoint_path,
                checkpoint_required=checkpoint_required,
                started=started,
            )
    results = [m.result for m in stepper.members]
    for r in results:
        r.seconds, r.fused = wall / len(configs), {"members": len(configs), "seconds": round(wall, 3)}
    return results


def _check_group(configs: list[TrainConfig], monitors, ranks) -> tuple[list, list]:
    """The group's configs validated as one fusable group; its monitors and ranks, one per config."""
    for c in configs:
        c.validate()
    keys = [fusion_key(c) for c in configs]
    if None in keys:
        bad = configs[keys.index(None)]
        raise ConfigError(
            f"cannot fuse {bad.model} (optimizer {bad.optimizer}, patience {bad.patience}): fused "
            "training is SGD without early-stopping patience, on models that have a fused form"
        )
    if len(set(keys)) > 1:
        raise ConfigError("fused configs must differ only in " + ", ".join(PER_MEMBER))
    if monitors is None or callable(monitors):
        monitors = [monitors] * len(configs)
    monitors = list(monitors)
    if len(monitors) != len(configs):
        raise ConfigError(f"{len(monitors)} monitors for {len(configs)} configs")
    ranks = list(ranks) if ranks is not None else [None] * len(configs)
    if len(ranks) != len(configs):
        raise ConfigError(f"{len(ranks)} ranks for {len(configs)} configs")
    return monitors, ranks
