"""Fused layers: G members of one architecture side by side in one network (see `depthlab.engine.fused`),
the fused SGD step, and which configs fuse (`fusion_key`)."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..models import create_model
from .config import TrainConfig

PER_MEMBER = ("lr", "seed", "momentum", "weight_decay", "schedule")


# Parameter-free modules that act per channel (or per element): they work on the fused layout as is.
LAYOUT_FREE = (
    nn.Tanh,
    nn.ELU,
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Softplus,
    nn.Identity,
    nn.AvgPool2d,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
)


class NotFusable(Exception):
    """A model (or its forward code) that the fused layout cannot represent."""


class FusedConv2d(nn.Module):
    """G convs as one grouped conv over ``G * C_in`` input channels."""

    def __init__(self, convs: Sequence[nn.Conv2d]):
        super().__init__()
        c = convs[0]
        if c.padding_mode != "zeros":
            raise NotFusable(f"conv padding mode {c.padding_mode}")
        self.stride, self.padding, self.dilation, self.groups = c.stride, c.padding, c.dilation, c.groups
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in convs]))  # G, Co, Ci/groups, k, k
        self.bias = (
            nn.Parameter(torch.stack([m.bias.detach() for m in convs])) if c.bias is not None else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.weight.shape[0]
        bias = self.bias.reshape(-1) if self.bias is not None else None
        return F.conv2d(
            x,
            self.weight.reshape(-1, *self.weight.shape[2:]),
            bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups * g,
        )


class FusedBatchNorm(nn.Module):
    """G batch norms as one over ``G * C`` channels (`nn.BatchNorm1d/2d` semantics, per channel)."""

    def __init__(self, norms: Sequence[nn.modules.batchnorm._BatchNorm]):
        super().__init__()
        n = norms[0]
        self.eps, self.momentum, self.track_running_stats = n.eps, n.momentum, n.track_running_stats
        stack = lambda name: torch.stack([getattr(m, name).detach() for m in norms])  # noqa: E731
        self.weight = nn.Parameter(stack("weight")) if n.affine else None
        self.bias = nn.Parameter(stack("bias")) if n.affine else None
        if n.track_running_stats:
            self.register_buffer("running_mean", stack("running_mean"))
            self.register_buffer("running_var", stack("running_var"))
            self.register_buffer("num_batches_tracked", n.num_batches_tracked.detach().clone())
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        bn_training = self.training or self.running_mean is None
        use_buffers = not self.training or self.track_running_stats
        flat = lambda t: t.view(-1) if t is not None else None  # noqa: E731  (views: updates land in place)
        return F.batch_norm(
            x,
            flat(self.running_mean) if use_buffers else None,
            flat(self.running_var) if use_buffers else None,
            flat(self.weight),
            flat(self.bias),
            bn_training,
            factor,
            self.eps,
        )


class FusedLinear(nn.Module):
    """G linear layers as one batched matmul: input ``(N, G * I)``, output ``(N, G * O)``."""

    def __init__(self, linears: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]))  # G, O, I
        bias = linears[0].bias
        self.bias = (
            nn.Parameter(torch.stack([m.bias.detach() for m in linears])) if bias is not None else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, o, i = self.weight.shape
        xg = x.reshape(x.shape[0], g, i).transpose(0, 1)  # G, N, I
        wt = self.weight.transpose(1, 2).to(xg.dtype)  # G, I, O
        out = (
            torch.baddbmm(self.bias.unsqueeze(1).to(xg.dtype), xg, wt)
            if self.bias is not None
            else torch.bmm(xg, wt)
        )
        return out.transpose(0, 1).reshape(x.shape[0], g * o)


FUSED_LAYERS = (FusedConv2d, FusedBatchNorm, FusedLinear)


def _fuse_into(target: nn.Module, members: Sequence[nn.Module]) -> None:
    """Replace, in ``target`` (a copy of member 0), every leaf by its fused version."""
    if any(p is not None for p in target._parameters.values()):
        raise NotFusable(f"{type(target).__name__} holds parameters of its own")
    for name, child in list(target.named_children()):
        peers = [getattr(m, name) for m in members]
        if isinstance(child, nn.Conv2d):
            setattr(target, name, FusedConv2d(peers))
        elif isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            setattr(target, name, FusedBatchNorm(peers))
        elif isinstance(child, nn.Linear):
            setattr(target, name, FusedLinear(peers))
        elif isinstance(child, LAYOUT_FREE):
            continue
        elif type(child) in (nn.Sequential, nn.ModuleList, nn.ModuleDict) or list(child.children()):
            _fuse_into(child, peers)
        elif any(True for _ in child.parameters()) or any(True for _ in child.buffers()):
            raise NotFusable(f"layer {type(child).__name__} has no fused version")
        elif type(child).__module__.startswith("torch.nn"):
            raise NotFusable(f"layer {type(child).__name__} is not known to act per channel")
        else:
            _fuse_into(child, peers)  # a user module without state: its forward is checked by the probe


def fuse_models(members: Sequence[nn.Module], input_shape, *, check: bool = True) -> nn.Module:
    """One network holding ``members`` side by side (raises `NotFusable` where it cannot).

    With ``check`` the fused net is compared with the members on a random probe batch, in train
    and eval mode, on copies (so no running statistic moves): forward code that mixes channels
    across members (a reshape by channel count, a channel padding) is caught here. The probe runs
    in float64: it looks for structural mixing, whose differences are of the order of the
    activations, while a deep chaotic net (cnn-tanh-bn at depth 96 on a 3-image batch) amplifies
    float32 rounding between a grouped conv and separate ones past any tolerance."""
    fused = copy.deepcopy(members[0])
    _fuse_into(fused, members)
    fused.train(members[0].training)
    if check:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(3, *input_shape, generator=generator, dtype=torch.float64)
        for training in (True, False):
            ours = copy.deepcopy(fused).double().train(training)
            theirs = [copy.deepcopy(m).double().train(training) for m in members]
            with torch.no_grad():
                want = [m(x) for m in theirs]
                try:
                    got = split_outputs(ours(x.repeat(1, len(members), 1, 1)), len(members))
                except (RuntimeError, ValueError) as exc:  # e.g. a shortcut that pads channels
                    raise NotFusable(
                        f"the model's fused forward fails ({type(exc).__name__}: {exc})"
                    ) from exc
            want = [torch.stack(list(w), 1) if isinstance(w, (list, tuple)) else w.unsqueeze(1) for w in want]
            want_t = torch.stack(want, 2)  # N, heads, G, K
            got_t = torch.stack(list(got), 1) if isinstance(got, (list, tuple)) else got.unsqueeze(1)
            if got_t.shape != want_t.shape or not torch.allclose(got_t, want_t, rtol=1e-3, atol=1e-4):
                raise NotFusable(
                    f"the model's forward does not keep members apart ({'train' if training else 'eval'}"
                    " mode probe differs)"
                )
    return fused


def split_outputs(outputs, g: int):
    """Fused logits ``(N, G * K)`` (or a list of them, one per head) as ``(N, G, K)``."""
    if isinstance(outputs, (list, tuple)):
        return [o.reshape(o.shape[0], g, -1) for o in outputs]
    return outputs.reshape(outputs.shape[0], g, -1)


def member_losses(outputs, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member mean cross-entropy over heads (`depthlab.engine.multi_head_loss` per member):
    ``outputs`` split as ``(N, G, K)``, ``y`` ``(N, G)``; returns (losses ``(G,)``, final logits)."""
    heads = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    per_head = [F.cross_entropy(o.float().permute(0, 2, 1), y, reduction="none").mean(0) for o in heads]
    return sum(per_head) / len(per_head), heads[-1]


def compact_(model: nn.Module, keep: torch.Tensor) -> None:
    """Keep only members ``keep`` (indices) in every fused layer, in place."""
    for module in model.modules():
        if isinstance(module, FUSED_LAYERS):
            for name, p in list(module._parameters.items()):
                if p is not None:
                    module._parameters[name] = nn.Parameter(p.detach()[keep].clone())
            for name in ("running_mean", "running_var"):
                b = module._buffers.get(name)
                if b is not None:
                    module._buffers[name] = b[keep].clone()


class FusedSGD:
    """`torch.optim.SGD` (dampening 0) over stacked parameters, with per-member lr, momentum
    and weight decay tensors of shape ``(G,)`` broadcast over each parameter's member axis.
    Weight decay is its own per-member term (added to the gradient before momentum, as torch
    does), not folded into the lr. ``active`` masks members out: their parameters and momentum
    buffers do not move."""

    def __init__(self, model: nn.Module, nesterov: bool):
        self.model, self.nesterov = model, nesterov
        self.buffers: dict[str, torch.Tensor] = {}

    def zero_grad(self) -> None:
        for p in self.model.parameters():
            p.grad = None

    @torch.no_grad()
    def step(
        self,
        lr: torch.Tensor,
        momentum: torch.Tensor,
        weight_decay: torch.Tensor,
        active: torch.Tensor,
        use_weight_decay: bool,
    ) -> None:
        for name, p in self.model.named_parameters():
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            live = active.view(shape)
            d_p = p.grad
            if use_weight_decay:
                d_p = d_p.add(p * weight_decay.view(shape))
            d_p = torch.where(live, d_p, 0.0)
            buf = self.buffers.get(name)
            if buf is None:
                buf = self.buffers[name] = d_p.clone()
            else:
                buf.copy_(torch.where(live, buf * momentum.view(shape) + d_p, buf))
            step = d_p + momentum.view(shape) * buf if self.nesterov else buf
            p.addcmul_(torch.where(live, -lr.view(shape), 0.0), step)

    def compact_(self, model: nn.Module, keep: torch.Tensor) -> None:
        self.model = model
        self.buffers = {name: b[keep].clone() for name, b in self.buffers.items()}


@functools.lru_cache(maxsize=256)
def _model_fusable(model: str, model_args_json: str, input_shape: tuple[int, ...]) -> bool:
    """Whether the model has a fused form whose shapes work out. The members are built on the
    meta device: the driver calls this while a worker thread of the same process seeds the
    global RNG and builds its model, so drawing weights here would change that model's init.
    Whether the fused forward keeps members apart numerically is checked by `train_fused`,
    which trains member by member where it does not."""
    args = json.loads(model_args_json)
    try:
        with torch.device("meta"):
            members = [create_model(model, input_shape, 10, **args) for _ in range(2)]
            fused = fuse_models(members, input_shape, check=False)
            with torch.no_grad():
                fused(torch.empty(2, input_shape[0] * 2, *input_shape[1:]))
    except NotFusable:
        return False
    except (RuntimeError, ValueError, TypeError, NotImplementedError):  # the fused forward breaks
        return False
    return True


def fusion_key(config: TrainConfig) -> str | None:
    """A key shared exactly by the configs that `train_fused` can train together, or None when
    ``config`` cannot be fused (not SGD, early-stopping patience, a model with no fused form)."""
    if config.optimizer != "sgd" or config.patience is not None or not isinstance(config.model, str):
        return None  # a model factory has no fused form
    from ..data.registry import DATASETS

    info = DATASETS.get(config.dataset)
    if info is None or not _model_fusable(
        config.model, json.dumps(config.model_args, sort_keys=True), tuple(info.input_shape)
    ):
        return None
    d = config.canonical()
    for name in PER_MEMBER:
        d.pop(name)
    return json.dumps(d, sort_keys=True)


def fusable_group(configs: Sequence[TrainConfig]) -> int:
    """The largest number of ``configs`` that could train as one fused network (1: none fuse)."""
    counts: dict[str, int] = {}
    for c in configs:
        key = fusion_key(c)
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=1)
