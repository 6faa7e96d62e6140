"""The trainability phase diagram of wide fully connected networks (Schoenholz et al. 2017,
"Deep Information Propagation", their MNIST heatmap): train accuracy over (sigma_w2, depth)
against the mean-field correlation depth xi_c (`depthlab.theory`).

Classic protocol (`PhaseGridConfig` defaults): tanh, width 300, sigma_b2 = 0.05, weights
N(0, sigma_w2 / fan_in) and biases N(0, sigma_b2) on every layer (the readout included),
sigma_w2 in 1, 1.25, ..., 4, depths 10, 20, ..., 100, plain SGD, lr 1e-3, batches of 256,
200 steps, pixels x / 255 - 0.5; a cell's value is its accuracy on the whole training set.

The members of one depth differ only in sigma_w2 and train as one fused network: each layer's
weights are stacked ``(G, fan_in, fan_out)`` and applied with one ``baddbmm``; the loss is the
sum of the members' mean losses, so each member gets exactly its own gradient and plain SGD on
the stacked tensors is each member's own SGD. The members share their standard normal draws
(weights sqrt(sigma_w2 / fan_in) * Z) and batches: a cell depends on (protocol, depth, sigma_w2,
seed) alone, never on which cells trained beside it, and neighbouring sigma_w2 differ by
sigma_w2 only (common random numbers keep noise from blurring the frontier).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from ..data import Dataset, check_dataset_name, load_dataset, subset_indices
from ..engine.config import MAX_LR, MAX_SEED, MAX_STEPS
from ..engine.memory import MAX_DEPTH
from ..errors import ConfigError
from ..models import make_activation
from ..models.specs import MAX_MLP_WIDTH
from ..records.record import RunStatus
from ..report.tables import data_frame
from ..store import Store
from ..sweep.runner import FINGERPRINT_KEY, recorded_on
from ..theory import MAX_VARIANCE, TRAINABLE_DEPTH_FACTOR, correlation_depths
from .phase import scaled_init

KIND = "mlp-phase"
PROTOCOL_VERSION = 1  # bump when a change alters what a stored cell means
DEFAULT_SIGMA_W2S = tuple(1.0 + 0.25 * i for i in range(13))
DEFAULT_DEPTHS = tuple(range(10, 101, 10))
DEFAULT_THRESHOLD = 0.4
NUM_CLASSES = 10


@dataclass(frozen=True)
class PhaseGridConfig:
    """The protocol and the grid of a phase diagram. ``train_size`` (None: the whole training
    set) takes a fixed random subset, used both to train and to measure accuracy."""

    act: str = "tanh"
    width: int = 300
    sigma_b2: float = 0.05
    sigma_w2s: tuple[float, ...] = DEFAULT_SIGMA_W2S
    depths: tuple[int, ...] = DEFAULT_DEPTHS
    lr: float = 1e-3
    batch_size: int = 256
    steps: int = 200
    seed: int = 0
    train_size: int | None = None
    dataset: str = "mnist"

    def __post_init__(self):  # lists (from JSON, a command line) become the tuples validate expects
        for name in ("sigma_w2s", "depths"):
            if isinstance(getattr(self, name), (list, range)):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def validate(self) -> None:
        """Raise `ConfigError` (one line) on any unusable setting."""
        make_activation(self.act)
        check_dataset_name(self.dataset)
        for name, ok, what in [
            (
                "width",
                _is_int(self.width) and 0 < self.width <= MAX_MLP_WIDTH,
                f"a positive integer (at most {MAX_MLP_WIDTH:,})",
            ),
            ("batch_size", _is_int(self.batch_size) and self.batch_size > 0, "a positive integer"),
            (
                "steps",
                _is_int(self.steps) and 0 <= self.steps <= MAX_STEPS,
                f"a non-negative integer (at most {MAX_STEPS:,})",
            ),
            ("seed", _is_int(self.seed) and 0 <= self.seed <= MAX_SEED, "an integer in [0, 2**63 - 1]"),
            (
                "train_size",
                self.train_size is None or _is_int(self.train_size) and self.train_size > 0,
                "a positive integer or None",
            ),
            (
                "sigma_b2",
                _is_number(self.sigma_b2) and 0 <= self.sigma_b2 <= MAX_VARIANCE,
                f"a finite non-negative number (at most {MAX_VARIANCE:g})",
            ),
            (
                "lr",
                _is_number(self.lr) and 0 < self.lr <= MAX_LR,
                f"a finite positive number (at most {MAX_LR:g})",
            ),
            (
                "sigma_w2s",
                isinstance(self.sigma_w2s, tuple)
                and len(self.sigma_w2s) > 0
                and all(_is_number(s) and 0 < s <= MAX_VARIANCE for s in self.sigma_w2s),
                f"a non-empty list of positive numbers (each at most {MAX_VARIANCE:g})",
            ),
            (
                "depths",
                isinstance(self.depths, tuple)
                and len(self.depths) > 0
                and all(_is_int(d) and 0 < d <= MAX_DEPTH for d in self.depths),
                f"a non-empty list of positive integers (each at most {MAX_DEPTH:,})",
            ),
        ]:
            if not ok:
                raise ConfigError(f"{name} must be {what}, got {getattr(self, name)!r}")
        if len(set(self.sigma_w2s)) != len(self.sigma_w2s) or len(set(self.depths)) != len(self.depths):
            raise ConfigError("sigma_w2s and depths must not repeat a value")

    def protocol(self) -> dict:
        """Everything that defines a cell's result apart from its depth and sigma_w2."""
        d = dataclasses.asdict(self)
        del d["sigma_w2s"], d["depths"]
        d["sigma_b2"], d["lr"] = float(self.sigma_b2), float(self.lr)  # 0 and 0.0 hash alike
        return {**d, "pixels": "x/255-0.5", "version": PROTOCOL_VERSION}

    def cell_config(self, depth: int, sigma_w2: float) -> dict:
        """The config stored with one (depth, sigma_w2) cell: the protocol, the cell, the seed."""
        return {
            **self.protocol(),
            "kind": KIND,
            "model": "mlp",
            "depth": int(depth),
            "sigma_w2": float(sigma_w2),
            "init": scaled_init(float(sigma_w2), float(self.sigma_b2)),
        }

    def cell_hash(self, depth: int, sigma_w2: float) -> str:
        """The store's config hash of one cell."""
        return _digest(self.cell_config(depth, sigma_w2))

    def key(self) -> str:
        """A stable hash of the whole grid config (protocol and axes)."""
        return _digest(
            {
                **self.protocol(),
                "sigma_w2s": [float(s) for s in self.sigma_w2s],
                "depths": [int(d) for d in self.depths],
            }
        )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _digest(d) -> str:  # also seeds generators: 16 hex digits fit manual_seed's 64 bits
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def scale_pixels(xb: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to float32 in [-0.5, 0.5] (x / 255 - 0.5, the protocol's scaling)."""
    return xb.to(torch.float32).div_(255.0).sub_(0.5)


class FusedMLP:
    """G fully connected members of one depth as stacked tensors: ``weights[l]`` is
    ``(G, fan_in, fan_out)``, ``biases[l]`` is ``(G, 1, fan_out)``; the last layer is the readout."""

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor], act: str):
        self.weights, self.biases, self.act_name = weights, biases, act
        self.act = make_activation(act)

    @property
    def members(self) -> int:
        return self.weights[0].shape[0]

    def parameters(self) -> list[torch.Tensor]:
        return self.weights + self.biases

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(G, N, classes)`` of a float batch ``(N, features)`` shared by all members."""
        h = x.unsqueeze(0).expand(self.members, -1, -1)
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = self.act(torch.baddbmm(b, h, w))
        return torch.baddbmm(self.biases[-1], h, self.weights[-1])


def init_fused_mlp(
    depth: int,
    sigma_w2s: Sequence[float],
    config: PhaseGridConfig,
    in_features: int,
    device: str | torch.device = "cpu",
) -> FusedMLP:
    """The members of ``depth`` at their mean-field init: weights sqrt(sigma_w2 / fan_in) * Z and
    biases sqrt(sigma_b2) * z, with Z, z drawn once per layer from a generator seeded by
    (seed, depth), so a member's init does not depend on the other members."""
    g = torch.Generator().manual_seed(int(_digest([config.seed, "init", depth]), 16))
    dims = [in_features] + [config.width] * depth + [NUM_CLASSES]
    weights, biases = [], []
    for fan_in, fan_out in pairwise(dims):
        z = torch.randn(fan_in, fan_out, generator=g)
        zb = torch.randn(fan_out, generator=g)
        scales = torch.tensor([math.sqrt(s / fan_in) for s in sigma_w2s], dtype=torch.float32)
        weights.append((scales.view(-1, 1, 1) * z).to(device).requires_grad_())
        bias = (math.sqrt(config.sigma_b2) * zb).expand(len(sigma_w2s), 1, fan_out)
        biases.append(bias.contiguous().to(device).requires_grad_())
    return FusedMLP(weights, biases, config.act)


def batch_indices(config: PhaseGridConfig, n: int) -> Iterator[torch.Tensor]:
    """The protocol's ``config.steps`` batches of indices into ``n`` samples: shuffled, with a
    fresh permutation when one runs out. They depend on the seed alone (same for every depth)."""
    g = torch.Generator().manual_seed(int(_digest([config.seed, "batches"]), 16))
    batch = min(config.batch_size, n)
    order, pos = torch.randperm(n, generator=g), 0
    for _ in range(config.steps):
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=g), 0
        yield order[pos : pos + batch]
        pos += batch


def train_fused_(net: FusedMLP, config: PhaseGridConfig, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Plain SGD on every member in place, on the `batch_indices` of the flattened uint8 images
    ``x``. Returns each member's loss on the last batch (NaN where it diverged)."""
    params, losses = net.parameters(), torch.full((net.members,), math.nan)
    for idx in batch_indices(config, len(x)):
        idx = idx.to(x.device)
        logits = net(scale_pixels(x[idx]))
        per_sample = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y[idx].repeat(net.members), reduction="none"
        )
        member_loss = per_sample.view(net.members, -1).mean(1)
        grads = torch.autograd.grad(member_loss.sum(), params)
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=-config.lr)
        losses = member_loss.detach()
    return losses.cpu()


@torch.no_grad()
def member_accuracies(net: FusedMLP, x: torch.Tensor, y: torch.Tensor, chunk: int = 512) -> list[float]:
    """Each member's accuracy on all of ``x``; non-finite logits count as 0 (a diverged member
    predicts one class everywhere). Chunks of 512 ran ~25% faster than 4096 on one CPU thread."""
    correct = torch.zeros(net.members, dtype=torch.int64, device=x.device)
    for start in range(0, len(x), chunk):
        logits = torch.nan_to_num(net(scale_pixels(x[start : start + chunk])), nan=0.0)
        correct += (logits.argmax(-1) == y[start : start + chunk]).sum(1)
    return (correct.double() / len(x)).tolist()


def phase_data(config: PhaseGridConfig, data: Dataset, device: str | torch.device = "cpu"):
    """The training images as flattened uint8 ``(N, features)`` and labels, ``train_size`` subset applied."""
    idx = subset_indices(len(data.train_x), config.train_size, config.seed)
    return data.train_x[idx].reshape(len(idx), -1).to(device), data.train_y[idx].to(device)


def _train_depth(depth, sigma_w2s, config, x, y, device) -> tuple[list[float], list[bool], list[float]]:
    net = init_fused_mlp(depth, sigma_w2s, config, x.shape[1], device)
    losses = train_fused_(net, config, x, y)
    finite = torch.stack([torch.isfinite(p.detach()).flatten(1).all(1).cpu() for p in net.parameters()]).all(
        0
    )
    diverged = (~finite | ~torch.isfinite(losses)).tolist()
    return member_accuracies(net, x, y), diverged, losses.tolist()


def train_fused_mlp(
    depth: int,
    sigma_w2s: Sequence[float],
    config: PhaseGridConfig,
    data: Dataset,
    *,
    device: str | torch.device = "cpu",
) -> list[float]:
    """Train the members (one per sigma_w2) of ``depth`` as one fused network; return each
    member's accuracy on the (``train_size`` subset of the) training set after training."""
    config.validate()
    x, y = phase_data(config, data, device)
    return _train_depth(depth, list(sigma_w2s), config, x, y, device)[0]


@dataclass
class PhaseGrid:
    """Train accuracy per cell: ``accuracy[i, j]`` for ``config.depths[i]``, ``config.sigma_w2s[j]``
    (NaN where a cell was not measured). ``trained`` and ``reused`` count the cells."""

    config: PhaseGridConfig
    accuracy: np.ndarray
    trained: int = 0
    reused: int = 0

    @property
    def depths(self) -> list[int]:
        return list(self.config.depths)

    @property
    def sigma_w2s(self) -> list[float]:
        return [float(s) for s in self.config.sigma_w2s]

    def to_frame(self):
        """`to_rows` as a pandas DataFrame: one row per (depth, sigma_w2) cell."""
        return data_frame(self.to_rows(), ("depth", "sigma_w2", "sigma_b2", "train_accuracy"))

    def to_rows(self) -> list[dict]:
        """One dict per cell: depth, sigma_w2, sigma_b2 and train_accuracy (None if unmeasured)."""
        return [
            {
                "depth": d,
                "sigma_w2": s,
                "sigma_b2": self.config.sigma_b2,
                "train_accuracy": None if math.isnan(self.accuracy[i, j]) else float(self.accuracy[i, j]),
            }
            for i, d in enumerate(self.depths)
            for j, s in enumerate(self.sigma_w2s)
        ]


def _stored_accuracy(store: Store | None, cell_hash: str, data: Dataset) -> float | None:
    """A cell's stored training accuracy, if it was measured on this data (`recorded_on`)."""
    found = store.find_finished(cell_hash) if store is not None else None
    if found is None or found.status == RunStatus.FAILED or not found.result:
        return None
    if not recorded_on(found.config, data.fingerprint, dataset=data.name):
        return None
    value = found.result.get("train_accuracy")
    return float(value) if isinstance(value, (int, float)) else None


def _cell_result(
    accuracy: float, diverged: bool, loss: float, group_seconds: float, group_size: int, device
) -> dict:
    """The stored result of one cell trained in a fused group of ``group_size`` members that took
    ``group_seconds`` together (each cell is charged an equal share)."""
    return {
        "status": (RunStatus.DIVERGED if diverged else RunStatus.DONE).value,
        "train_accuracy": accuracy,
        "final_loss": loss if math.isfinite(loss) else None,
        "seconds": group_seconds / group_size,
        "group_seconds": group_seconds,
        "group_size": group_size,
        "device": str(device),
    }


def measure_grid(
    config: PhaseGridConfig,
    data: Dataset | None = None,
    store: Store | None = None,
    progress: Callable[[dict], None] | None = None,
    *,
    device: str | torch.device = "cpu",
) -> PhaseGrid:
    """Measure every cell, depth by depth (one fused run per depth over its unfinished sigma_w2).

    Each cell is recorded in ``store`` as its own finished run (kind ``mlp-phase``) as soon as
    its depth is done; cells already there are read back, not trained, so an interrupted grid
    resumes. ``progress`` gets one dict per depth: depth, sigma_w2s, accuracies, trained (how
    many of them were trained now), seconds."""
    config.validate()
    if data is None:
        data = load_dataset(config.dataset)
    elif data.name != config.dataset:
        raise ConfigError(f"the data is {data.name!r} but the config says {config.dataset!r}")
    x, y = phase_data(config, data, device)
    sigmas = [float(s) for s in config.sigma_w2s]
    grid = PhaseGrid(config, np.full((len(config.depths), len(sigmas)), np.nan))
    for i, depth in enumerate(config.depths):
        stored = [_stored_accuracy(store, config.cell_hash(depth, s), data) for s in sigmas]
        todo = [j for j, acc in enumerate(stored) if acc is None]
        grid.accuracy[i] = [np.nan if acc is None else acc for acc in stored]
        grid.reused += len(sigmas) - len(todo)
        t0 = time.perf_counter()
        if todo:
            accs, diverged, losses = _train_depth(depth, [sigmas[j] for j in todo], config, x, y, device)
            seconds = time.perf_counter() - t0
            for j, acc, div, loss in zip(todo, accs, diverged, losses):
                grid.accuracy[i, j] = acc
                result = _cell_result(acc, div, loss, seconds, len(todo), device)
                if store is not None:
                    store.record(
                        {**config.cell_config(depth, sigmas[j]), FINGERPRINT_KEY: data.fingerprint()},
                        config.cell_hash(depth, sigmas[j]),
                        result,
                        kind=KIND,
                    )
            grid.trained += len(todo)
        if progress is not None:
            progress(
                {
                    "depth": depth,
                    "sigma_w2s": sigmas,
                    "accuracies": grid.accuracy[i].tolist(),
                    "trained": len(todo),
                    "seconds": time.perf_counter() - t0,
                }
            )
    return grid


@dataclass
class TheoryAgreement:
    """Measured frontier against the correlation depth xi_c, per sigma_w2.

    ``deepest``: the deepest grid depth with accuracy above ``threshold`` (None: none), a floor
    of the frontier (biasing c low by up to a depth step / xi_c). It is *censored* when it is the
    grid's deepest depth or None; the others with a finite xi_c enter the least-squares fit
    ``deepest ~ c * xi_c`` and the ratios deepest / xi_c."""

    threshold: float
    sigma_w2s: list[float]
    xi: list[float | None]
    deepest: list[int | None]
    censored: list[bool]
    used: list[bool]
    c: float | None
    ratios: list[float]
    median_ratio: float | None
    iqr_ratio: tuple[float, float] | None  # (25th, 75th percentile)

    def to_json(self) -> dict:
        """A JSON-safe dict (infinite xi_c becomes None)."""
        return {
            **dataclasses.asdict(self),
            "xi": [x if x is not None and math.isfinite(x) else None for x in self.xi],
        }


def theory_agreement(grid: PhaseGrid, threshold: float = DEFAULT_THRESHOLD) -> TheoryAgreement:
    """Compare each sigma_w2's deepest depth with accuracy above ``threshold`` to c * xi_c.

    The default threshold 0.4 is midway between chance (0.1) and what well-conditioned shallow
    nets reach under the classic protocol (200 steps at lr 1e-3 are short: depth-10 tanh nets
    measured 0.66 at sigma_w2 = 1.75 and 0.70 at 2.5 on the full training set). c depends on
    the threshold; pass another one to see by how much."""
    depths = np.array(grid.depths)
    xi = correlation_depths(grid.config.act, grid.config.sigma_b2, grid.sigma_w2s)
    deepest = []
    for j in range(len(xi)):
        passing = depths[grid.accuracy[:, j] > threshold]
        deepest.append(int(passing.max()) if passing.size else None)
    censored = [bool(d is None or d == int(depths.max())) for d in deepest]  # plain bools: JSON
    used = [bool(not cens and x is not None and 0 < x < math.inf) for cens, x in zip(censored, xi)]
    pairs = [(d, x) for d, x, ok in zip(deepest, xi, used) if ok]
    c = median = iqr = None
    ratios = [d / x for d, x in pairs]
    if pairs:
        dv, xv = np.array(pairs, dtype=float).T
        c = float(dv @ xv / (xv @ xv))
        median = float(np.median(ratios))
        iqr = (float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75)))
    return TheoryAgreement(threshold, grid.sigma_w2s, xi, deepest, censored, used, c, ratios, median, iqr)


def plot_phase_heatmap(grid: PhaseGrid, ax=None, *, threshold: float = DEFAULT_THRESHOLD) -> Figure:
    """The accuracy heatmap (sigma_w2 on x, depth on y) with 6 xi_c and the fitted c * xi_c
    (`theory_agreement` at ``threshold``) over it. Draws on ``ax`` when given, else on a new
    `Figure`; returns the figure (object API only: no pyplot, no global state)."""
    if ax is None:
        fig = Figure(figsize=(7.0, 5.0), layout="constrained")
        ax = fig.add_subplot()
    fig = ax.get_figure()
    sig, dep = np.array(grid.sigma_w2s), np.array(grid.depths, dtype=float)
    order_s, order_d = np.argsort(sig), np.argsort(dep)
    x_edges, y_edges = _edges(sig[order_s]), _edges(dep[order_d])
    mesh = ax.pcolormesh(
        x_edges,
        y_edges,
        grid.accuracy[np.ix_(order_d, order_s)],
        vmin=0.0,
        vmax=1.0,
        cmap="viridis",
        shading="flat",
    )
    fig.colorbar(mesh, ax=ax, label="train accuracy")
    dense = np.linspace(sig.min(), sig.max(), 121)
    xi = np.array(
        [
            np.nan if x is None else x
            for x in correlation_depths(grid.config.act, grid.config.sigma_b2, dense)
        ],
        dtype=float,
    )
    ax.plot(dense, TRAINABLE_DEPTH_FACTOR * xi, color="white", ls="--", lw=2, label=r"$6\,\xi_c$")
    agreement = theory_agreement(grid, threshold)
    if agreement.c is not None:
        ax.plot(dense, agreement.c * xi, color="red", lw=2, label=rf"${agreement.c:.2f}\,\xi_c$ (fit)")
    ax.set(xlim=x_edges[[0, -1]], ylim=y_edges[[0, -1]], xlabel=r"$\sigma_w^2$", ylabel="depth")
    ax.set_title(
        f"{grid.config.act}, width {grid.config.width}, "
        rf"$\sigma_b^2$ = {grid.config.sigma_b2:g}, {grid.config.steps} SGD steps"
    )
    ax.legend(loc="upper right")
    while not isinstance(fig, Figure):  # drawn on a SubFigure: return its root figure
        fig = fig.figure
    return fig


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (midpoints inside, half a step beyond the ends)."""
    step = np.diff(centres) if len(centres) > 1 else np.array([1.0])
    return np.r_[centres[0] - step[0] / 2, (centres[1:] + centres[:-1]) / 2, centres[-1] + step[-1] / 2]
