"""Steppers: what differs between the trainers that share the loop of `depthlab.engine.loop`.

The loop drives a stepper through epochs, evaluation points, monitors, checkpoints and
divergence. A stepper trains its *members* (runs, each with its config, monitor and result):
`SingleStepper` one network with any optimiser (and early-stopping patience); the fused
stepper (`depthlab.engine.fused.FusedStepper`) G members stacked in one network, cutting
diverged, stopped and outranked members out of it. The single stepper steps with
`depthlab.engine.setup.train_step`, the fused one its fused optimiser around the same
`depthlab.engine.setup.forward_backward`; each writes (and reads back) its own checkpoint format.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..data.batches import Batches
from ..errors import ConfigError
from ..models import count_parameters
from ..records.record import EpochMetrics, EvaluationPoint, Monitor, RunResult, RunStatus
from .checkpoints import CHECKPOINT_FORMAT
from .config import TrainConfig
from .schedule import parse_schedule
from .setup import Setup, evaluate, make_optimizer, train_step


class Member:
    """One run trained by a stepper: its config, monitor, rank, current lr and result so far."""

    def __init__(
        self,
        index: int,
        config: TrainConfig,
        monitor: Monitor | None,
        parameters: int,
        device: str,
        rank: int | None = None,
    ):
        self.index, self.config, self.monitor, self.rank = index, config, monitor, rank
        self.schedule = parse_schedule(config.schedule)
        self.result = RunResult(
            config.canonical(), RunStatus.DONE, [], 0.0, parameters=parameters, device=device
        )
        self.lr = config.lr
        self.stop_at_epoch_end = False  # its monitor stopped it at the last step of an epoch
        self.finished = False

    def state(self) -> dict:
        """What a fused checkpoint keeps of a member: its results so far and where it stands."""
        r = self.result
        return {
            "status": str(r.status),
            "reason": r.reason,
            "stopped_early": r.stopped_early,
            "test_error": r.test_error,
            "epochs": [e.to_dict() for e in r.epochs],
            "checkpoints": [vars(c) for c in r.evaluation_points],
            "lr": self.lr,
            "finished": self.finished,
            "stop_at_epoch_end": self.stop_at_epoch_end,
        }

    def restore(self, saved: dict) -> None:
        r = self.result
        r.status, r.reason = RunStatus(saved["status"]), saved["reason"]
        r.stopped_early, r.test_error = saved["stopped_early"], saved["test_error"]
        r.epochs = [EpochMetrics(**e) for e in saved["epochs"]]
        r.evaluation_points = [EvaluationPoint(**c) for c in saved["checkpoints"]]
        self.lr, self.finished = saved["lr"], saved["finished"]
        self.stop_at_epoch_end = saved["stop_at_epoch_end"]


class Stepper:
    """The interface the loop drives (see the module docstring). ``live`` are the members still
    training, in the order of the running sums and of ``errors`` (the last evaluation point's
    errors, ``(heads, len(live))`` float64 on the CPU)."""

    format: str = ""  # the checkpoint format it writes

    def __init__(self, setup: Setup, members: list[Member]):
        self.setup, self.members, self.live = setup, members, list(members)
        self.errors: torch.Tensor | None = None
        self.step_losses: torch.Tensor | None = None  # the last step's loss of each live member

    def set_lrs(self, epoch: int, step: int) -> list[float]:
        """Each live member's lr at ``step`` (1-based) of ``epoch``, from its schedule."""
        t = epoch + (step - 1) / self.setup.steps_per_epoch
        lrs = [m.schedule.lr_at(t, m.config.lr, m.config.epochs) for m in self.live]
        for m, lr in zip(self.live, lrs):
            m.lr = lr
        return lrs

    # What each stepper implements.
    def train_mode(self) -> None: ...
    def zero_sums(self) -> None: ...
    def step(self, batch: dict[int, tuple[torch.Tensor, torch.Tensor]], epoch: int, step: int) -> int:
        """One optimisation step of every live member on ``batch`` (by seed); returns the batch size."""
        raise NotImplementedError

    def first_bad(self, step: int) -> list[int]:
        """Per live member: the step its loss went non-finite, -1 while it is finite."""
        raise NotImplementedError

    def sums(self) -> tuple[list[int], list[float]]:
        """Per live member: wrong predictions and summed loss over this epoch's steps so far."""
        raise NotImplementedError

    def evaluate(self, batches: Batches) -> torch.Tensor:
        raise NotImplementedError

    def drop_finished(self) -> None: ...
    def end_epoch(self, member: Member, metrics: EpochMetrics) -> None:
        """After an epoch's metrics: a stepper may stop the member (early-stopping patience)."""

    def final_test_errors(self) -> list[float] | None:
        """Per live member, its final test error (None: the last evaluation's, on the test split)."""
        raise NotImplementedError

    def pack(self, epochs_done: int, mid: dict | None, seconds: float) -> dict:
        """The checkpoint after ``epochs_done`` epochs (``mid``: where the running epoch stands)."""
        raise NotImplementedError

    def unpack(self, state: dict, path) -> tuple[int, float, dict | None]:
        """Restore a checkpoint; returns (epochs done, seconds spent, the running epoch's ``mid``)."""
        raise NotImplementedError


class SingleStepper(Stepper):
    """One network, any optimiser, early-stopping patience (best weights restored at the end)."""

    format = CHECKPOINT_FORMAT

    def __init__(
        self,
        setup: Setup,
        monitor: Monitor | None = None,
        *,
        compile_model: bool = False,
        model: nn.Module | None = None,
    ):
        config = setup.config
        self.model = setup.new_model() if model is None else model
        super().__init__(setup, [Member(0, config, monitor, count_parameters(self.model), str(setup.device))])
        self.optimizer = make_optimizer(config, self.model.parameters())
        # Deep thin nets are launch-bound on a GPU: CUDA graphs (reduce-overhead) remove that cost.
        self.net = (
            torch.compile(self.model, mode="reduce-overhead" if setup.device.type == "cuda" else "default")
            if compile_model or config.compile
            else self.model
        )  # state dicts are taken from `model`
        self.best_error, self.best_state, self.since_best = math.inf, None, 0
        self.zero_sums()

    def train_mode(self) -> None:
        self.model.train()

    def zero_sums(self) -> None:
        self.loss_sum = torch.zeros((), device=self.setup.device)
        self.wrong = torch.zeros((), dtype=torch.long, device=self.setup.device)

    def step(self, batch, epoch: int, step: int) -> int:
        xb, yb = batch[self.setup.config.seed]
        loss, logits, _ = train_step(
            self.net, self.optimizer, xb, yb, amp=self.setup.amp, lr=self.set_lrs(epoch, step)[0]
        )
        self.loss_sum += loss.detach() * len(yb)
        self.wrong += (logits.detach().argmax(1) != yb).sum()
        self.step_losses = loss.detach().reshape(1)
        return len(yb)

    def first_bad(self, step: int) -> list[int]:
        return [-1 if torch.isfinite(self.loss_sum) else step]

    def sums(self) -> tuple[list[int], list[float]]:
        return [self.wrong.item()], [self.loss_sum.item()]

    def evaluate(self, batches: Batches) -> torch.Tensor:
        error, heads = evaluate(self.net, batches, self.setup.amp)
        return torch.tensor(heads or [error], dtype=torch.float64).unsqueeze(1)

    def drop_finished(self) -> None:
        self.live = [m for m in self.live if not m.finished]

    def end_epoch(self, member: Member, metrics: EpochMetrics) -> None:
        patience, r = self.setup.config.patience, member.result
        if r.stopped_early or patience is None:
            return
        if metrics.test_error < self.best_error:
            self.best_error, self.since_best = metrics.test_error, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.since_best += 1
            if self.since_best >= patience:  # N epochs without improvement (Keras, Lightning)
                r.stopped_early, r.reason = True, f"early stopping after epoch {metrics.epoch}"

    def final_test_errors(self) -> list[float] | None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        elif self.setup.config.eval_split == "test" and self.members[0].result.epochs:
            return None
        return [evaluate(self.net, self.setup.test_batches(), self.setup.amp)[0]]

    def pack(self, epochs_done: int, mid: dict | None, seconds: float) -> dict:
        s, r = self.setup, self.members[0].result
        if mid is not None:
            errors = self.errors[:, 0].tolist()
            mid = {
                "step": mid["step"],
                "steps": mid["steps"],
                "order": mid["orders"][s.config.seed],
                "seen": mid["seen"],
                "loss_sum": self.loss_sum.cpu(),
                "wrong": self.wrong.cpu(),
                "eval_error": errors[-1],
                "head_errors": errors if len(errors) > 1 else None,
                "seconds": mid["seconds"],
            }
        return {
            "format": CHECKPOINT_FORMAT,
            "config_hash": s.config.hash(),
            "epoch": epochs_done,
            "mid_epoch": mid,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "batches_rng": s.train_batches[s.config.seed].generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if s.device.type == "cuda" else [],
            "best_error": self.best_error,
            "since_best": self.since_best,
            "best_state": self.best_state,
            "epochs": [e.to_dict() for e in r.epochs],
            "checkpoints": [vars(c) for c in r.evaluation_points],
            "stopped_early": r.stopped_early,
            "reason": r.reason,
            "seconds": seconds,
        }

    def unpack(self, state: dict, path) -> tuple[int, float, dict | None]:
        s, r = self.setup, self.members[0].result
        if state.get("config_hash") != s.config.hash():
            raise ConfigError(
                f"checkpoint {path} belongs to a different configuration; delete it or run without --resume"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        s.train_batches[s.config.seed].generator.set_state(state["batches_rng"])
        torch.set_rng_state(state["torch_rng"])
        if s.device.type == "cuda" and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.best_error, self.since_best = state["best_error"], state["since_best"]
        self.best_state = (
            {k: v.to(s.device) for k, v in state["best_state"].items()}
            if state["best_state"] is not None
            else None
        )
        r.evaluation_points = [EvaluationPoint(**c) for c in state["checkpoints"]]
        r.stopped_early, r.reason = state["stopped_early"], state["reason"]
        r.epochs.extend(EpochMetrics(**d) for d in state["epochs"])
        mid = state.get("mid_epoch")
        if mid is not None:
            self.loss_sum, self.wrong = mid["loss_sum"].to(s.device), mid["wrong"].to(s.device)
            self.errors = torch.tensor(
                mid["head_errors"] or [mid["eval_error"]], dtype=torch.float64
            ).unsqueeze(1)
            mid = {
                "step": mid["step"],
                "seen": mid["seen"],
                "seconds": mid["seconds"],
                "share": 1,
                "orders": {s.config.seed: mid["order"]},
            }
        return state["epoch"], state["seconds"], mid
