"""The measured side of the phase diagram: the largest trainable depth of a plain `stages`
tanh network with the mean-field init ``scaled:W2,B2`` over a grid of sigma_w2, read back
from the run store and drawn against the mean-field prediction 6 xi (`depthlab.theory`).

A depth counts as trainable when, for some learning rate of the grid, the error (train or
evaluation, the classic "either" criterion of SPEC 4) drops below ``threshold`` within the
epoch budget. Every trial is an ordinary recorded run (`runner.run_recorded`), so the store
keeps them, a repeated command skips finished trials, and `measurements_from_store` can
rebuild the points from whatever measured them (this module's search or `depthlab frontier`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..records.record import RunStatus
from ..report.figures import new_axes
from ..report.tables import data_frame
from ..theory import MeanFieldPoint

DEFAULT_THRESHOLD = 0.2


def scaled_init(sigma_w2: float, sigma_b2: float) -> str:
    """The init string of the mean-field parametrisation: weights N(0, W2/fan_in), biases N(0, B2)."""
    return f"scaled:{sigma_w2:g},{sigma_b2:g}"


def parse_scaled_init(init: str) -> tuple[float, float] | None:
    """(W2, B2) of a ``scaled:W2,B2`` init string, None for any other init."""
    name, _, arg = init.partition(":")
    if name != "scaled":
        return None
    try:
        w2, b2 = (float(v) for v in arg.split(","))
    except ValueError:
        return None
    return w2, b2


def best_error(result: dict, criterion: str = "either") -> float:
    """The lowest error a recorded run reached at any evaluation: train (counted on the fly),
    evaluation, or either. A run with no evaluation (diverged at once, failed) gives 1.0."""
    errors = []
    for point in result.get("checkpoints") or []:
        if criterion in ("either", "train"):
            errors.append(point["train_error"])
        if criterion in ("either", "test"):
            errors.append(point["eval_error"])
    if not errors:  # stored results without checkpoints: fall back to the per-epoch figures
        for epoch in result.get("epochs") or []:
            if criterion in ("either", "train"):
                errors.append(epoch["train_error"])
            if criterion in ("either", "test"):
                errors.append(epoch["test_error"])
    finite = [e for e in errors if isinstance(e, (int, float)) and math.isfinite(e)]
    return min(finite) if finite else 1.0


@dataclass
class DepthTrial:
    depth: int
    trainable: bool
    error: float  # best error over the learning rates tried
    lr: float | None  # the learning rate that reached it


@dataclass
class PhaseMeasurement:
    """Measured frontier of one sigma_w2: the largest trainable depth tried and the smallest
    failing depth above it (None where the search never saw one)."""

    sigma_w2: float
    sigma_b2: float
    max_trainable_depth: int | None
    first_failing_depth: int | None
    trials: list[DepthTrial] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "sigma_w2": self.sigma_w2,
            "sigma_b2": self.sigma_b2,
            "max_trainable_depth": self.max_trainable_depth,
            "first_failing_depth": self.first_failing_depth,
            "depths": {
                str(t.depth): {"trainable": t.trainable, "error": round(t.error, 4), "lr": t.lr}
                for t in sorted(self.trials, key=lambda t: t.depth)
            },
        }


class PhaseMeasurements(list):
    """Measured frontiers, one `PhaseMeasurement` per sigma_w2 (a list, with a frame)."""

    def to_frame(self):
        """One row per sigma_w2: ``sigma_w2``, ``sigma_b2``, ``max_trainable_depth`` and
        ``first_failing_depth`` (None where not reached), ``depths_tried`` (``12+ 15-``: trains,
        fails)."""
        return data_frame(
            (dict(zip(MEASUREMENT_COLUMNS, row)) for row in measurement_rows(self)), MEASUREMENT_COLUMNS
        )


def frontier_of(trials: Iterable[DepthTrial]) -> tuple[int | None, int | None]:
    """(largest trainable depth, smallest failing depth above it) of a set of trials."""
    trials = sorted(trials, key=lambda t: t.depth)
    ok = [t.depth for t in trials if t.trainable]
    best = max(ok) if ok else None
    failing = [t.depth for t in trials if not t.trainable and (best is None or t.depth > best)]
    return best, (min(failing) if failing else None)


def search_depths(
    try_depth: Callable[[int], DepthTrial], ladder: Sequence[int], *, refine: int = 1, multiple: int = 3
) -> list[DepthTrial]:
    """Walk up ``ladder`` until a depth fails, then bisect ``refine`` times between the last
    trainable and the first failing depth (on multiples of ``multiple``). Small and greedy on
    purpose: it is the stand-in for `depthlab frontier` and spends one trial per rung."""
    trials: list[DepthTrial] = []
    for depth in sorted(set(ladder)):
        trial = try_depth(depth)
        trials.append(trial)
        if not trial.trainable:
            break
    for _ in range(refine):
        best, failing = frontier_of(trials)
        if best is None or failing is None:
            break
        mid = (best + failing) // 2 // multiple * multiple
        if mid <= best:
            break
        trials.append(try_depth(mid))
    return sorted(trials, key=lambda t: t.depth)


def phase_configs(
    act: str,
    sigma_b2: float,
    sigma_w2s: Sequence[float],
    ladder: Sequence[int],
    lrs: Sequence[float],
    *,
    width: float = 1.0,
    epochs: int = 3,
    train_size: int | None = 10_000,
    test_size: int | None = 2000,
    threshold: float = DEFAULT_THRESHOLD,
    evals_per_epoch: int = 4,
    seed: int = 0,
    device: str = "auto",
    precision: str = "fp32",
) -> dict:
    """The frontier protocol (`depthlab.depth_frontier.FrontierConfig`) of each sigma_w2, with every
    trial of the sweep validated: the CLI calls this before it opens the store."""
    from ..depth_frontier.protocol import FrontierConfig

    ladder = sorted(set(ladder))
    if not ladder or not lrs or not sigma_w2s:
        raise ConfigError("the phase sweep needs sigma_w2 values, depths and learning rates")
    configs = {}
    for sigma_w2 in sigma_w2s:
        fc = FrontierConfig(
            max_depth=max(3, -(-max(ladder) // 3) * 3),
            lrs=tuple(float(lr) for lr in lrs),
            epochs=epochs,
            threshold=threshold,
            criterion="either",
            seed=seed,
            train_size=train_size,
            eval_size=test_size,
            evals_per_epoch=evals_per_epoch,
            device=device,
            precision=precision,
            model_args=dict(act=act, init=scaled_init(sigma_w2, sigma_b2), width=width),
        )
        fc.validate()
        for depth in ladder:
            fc.trial_config("stages", depth, fc.lrs[0], seed).validate()
        configs[sigma_w2] = fc
    return configs


def measure_phase(
    act: str,
    sigma_b2: float,
    sigma_w2s: Sequence[float],
    ladder: Sequence[int],
    lrs: Sequence[float],
    store,
    data,
    *,
    width: float = 1.0,
    epochs: int = 3,
    train_size: int | None = 10_000,
    test_size: int | None = 2000,
    threshold: float = DEFAULT_THRESHOLD,
    refine: int = 1,
    evals_per_epoch: int = 4,
    seed: int = 0,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
    precision: str = "fp32",
) -> PhaseMeasurements:
    """Measure the frontier of ``stages`` (act, ``scaled:W2,B2``, no BN, no skips) for each
    sigma_w2, recording every trial in ``store``.

    Each depth is judged by `depthlab.depth_frontier` (the `frontier` command's criterion, lr order
    and trial recording, so its runs and these share store keys); only the depth search is
    coarser: the ``ladder`` is walked up to the first failure and ``refine`` bisection steps
    follow, instead of bisecting down to consecutive multiples of 3. Near the frontier each
    failing depth costs the full budget for every lr, and a frontier at depth ~40 is located
    to within +-15% by one bisection step; the plot shows the bracket."""
    ladder = sorted(set(ladder))
    configs = phase_configs(
        act,
        sigma_b2,
        sigma_w2s,
        ladder,
        lrs,
        width=width,
        epochs=epochs,  # the whole sweep,
        train_size=train_size,
        test_size=test_size,
        threshold=threshold,  # validated first
        evals_per_epoch=evals_per_epoch,
        seed=seed,
        device=device,
        precision=precision,
    )

    out = PhaseMeasurements()
    for sigma_w2, fc in configs.items():
        trials = _search_frontier(sigma_w2, fc, store, data, ladder, refine=refine, seed=seed, log=log)
        best, failing = frontier_of(trials)
        out.append(PhaseMeasurement(sigma_w2, sigma_b2, best, failing, trials))
    return out


def _search_frontier(
    sigma_w2: float, fc, store, data, ladder: Sequence[int], *, refine: int, seed: int, log
) -> list[DepthTrial]:
    """Walk ``ladder`` (then ``refine`` bisection steps) for one sigma_w2 with its frontier
    config ``fc``, recording every trial in ``store`` and reporting each one to ``log``; each
    depth tries the lr that trained the last trainable depth first."""
    from ..depth_frontier.criterion import run_trial
    from ..depth_frontier.search import evaluate_depth

    last_lr: list[float | None] = [None]

    def trial(depth: int, lr: float, s: int):
        t = run_trial("stages", depth, lr, s, fc, store, data)
        if log is not None:
            err = f"{100 * t.error:.1f}%" if t.error is not None else "-"
            log(
                f"sigma_w2 {sigma_w2:g} depth {depth} lr {lr:g}: {'trained' if t.trained else 'failed'}, "
                f"error {err}, {'stored' if t.reused else f'{t.seconds:.0f}s'}"
            )
        return t

    def try_depth(depth: int) -> DepthTrial:
        result = evaluate_depth(depth, fc.sorted_lrs(), last_lr[0], [seed], trial)
        if result.trainable:
            last_lr[0] = result.lr
        return DepthTrial(depth, result.trainable, 1.0 if result.error is None else result.error, result.lr)

    return search_depths(try_depth, ladder, refine=refine)


def measurements_from_store(
    store,
    act: str,
    sigma_b2: float,
    *,
    width: float | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    criterion: str = "either",
) -> PhaseMeasurements:
    """Rebuild measured frontiers from every finished `stages` run in ``store`` with this
    activation, a ``scaled:W2,B2`` init with B2 = ``sigma_b2``, no BN and no skips (and the
    given width, if any), whichever command recorded them."""
    by_w2: dict[float, dict[int, DepthTrial]] = {}
    for row in store.runs():
        if row.status not in (RunStatus.DONE, RunStatus.DIVERGED) or row.result is None:
            continue
        args = row.config.get("model_args", {})
        if row.model != "stages" and "act" not in args:
            continue
        if args.get("act") != act or args.get("norm", "none") != "none" or args.get("skip", "none") != "none":
            continue
        if width is not None and not math.isclose(float(args.get("width", 1.0)), width):
            continue
        parsed = parse_scaled_init(str(args.get("init", "")))
        if parsed is None or not math.isclose(parsed[1], sigma_b2, rel_tol=1e-9, abs_tol=1e-12):
            continue
        w2, depth = parsed[0], int(args["depth"])
        error = best_error(row.result, criterion)
        trial = DepthTrial(depth, error < threshold, error, row.config.get("lr"))
        known = by_w2.setdefault(w2, {})
        if depth not in known or trial.error < known[depth].error:
            known[depth] = trial
    out = PhaseMeasurements()
    for w2 in sorted(by_w2):
        trials = sorted(by_w2[w2].values(), key=lambda t: t.depth)
        best, failing = frontier_of(trials)
        out.append(PhaseMeasurement(w2, sigma_b2, best, failing, trials))
    return out


def read_measurements_csv(path: str | Path) -> list[PhaseMeasurement]:
    """Measured points from a CSV with columns sigma_w2, max_trainable_depth and optionally
    first_failing_depth and sigma_b2 (empty cells mean none)."""
    import csv
    import io

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"measurements file {p} does not exist")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"measurements file {p} is not a readable CSV text file ({type(exc).__name__})"
        ) from None

    def opt_int(row, key):
        value = (row.get(key) or "").strip()
        return int(float(value)) if value else None

    out = []
    line = 1
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or not {"sigma_w2", "max_trainable_depth"} <= set(reader.fieldnames):
            raise ConfigError(f"measurements file {p} needs the columns sigma_w2 and max_trainable_depth")
        for line, row in enumerate(reader, start=2):  # noqa: B007  (the except clauses name the line)
            out.append(
                PhaseMeasurement(
                    float(row["sigma_w2"]),
                    float(row.get("sigma_b2") or "nan"),
                    opt_int(row, "max_trainable_depth"),
                    opt_int(row, "first_failing_depth"),
                )
            )
    except (ValueError, OverflowError, TypeError):  # int(float("inf")) overflows; a short row gives None
        raise ConfigError(f"measurements file {p}, line {line}: not a number") from None
    except csv.Error as exc:
        raise ConfigError(f"measurements file {p}, line {line}: not CSV ({exc})") from None
    return out


MEASUREMENT_COLUMNS = ("sigma_w2", "sigma_b2", "max_trainable_depth", "first_failing_depth", "depths_tried")


def measurement_rows(measured: Sequence[PhaseMeasurement]) -> list[list]:
    return [
        [
            m.sigma_w2,
            m.sigma_b2,
            m.max_trainable_depth,
            m.first_failing_depth,
            " ".join(f"{t.depth}{'+' if t.trainable else '-'}" for t in m.trials),
        ]
        for m in measured
    ]


def plot_phase_diagram(
    points: Sequence[MeanFieldPoint],
    *,
    act: str,
    sigma_b2: float,
    critical: float | None = None,
    measured: Sequence[PhaseMeasurement] = (),
    max_depth: float | None = None,
    note: str | None = None,
    ax=None,
):
    """sigma_w2 on x, depth on y (log): the 6 xi curve, the critical sigma_w2, and measured
    frontiers (a dot at the largest trainable depth, a bar up to the first failing one, an
    arrow for 'trainable at every depth tried'), as a `matplotlib.figure.Figure`."""
    fig, ax = new_axes(ax, figsize=(6.4, 4.4), dpi=100)
    ws = [p.sigma_w2 for p in points if p.max_depth is not None and math.isfinite(p.max_depth)]
    ds = [p.max_depth for p in points if p.max_depth is not None and math.isfinite(p.max_depth)]
    top = max_depth or max([1000.0] + [m.first_failing_depth or 0 for m in measured])
    ax.plot(ws, ds, color="C0", lw=2, label=r"theory: $6\,\xi_c$")
    ax.fill_between(ws, 1, ds, color="C0", alpha=0.08)
    if critical is not None:
        ax.axvline(critical, color="k", ls="--", lw=1, label=rf"critical $\sigma_w^2$ = {critical:.3f}")
    unbounded = [p.sigma_w2 for p in points if p.phase == "unbounded"]
    if unbounded:
        ax.axvspan(min(unbounded), max(unbounded), color="C3", alpha=0.08, label="no finite q* (exploding)")
    _plot_measured(ax, measured)
    ax.set_yscale("log")
    ax.set_ylim(1, top)
    ax.set_xlabel(r"$\sigma_w^2$ (weight variance $\times$ fan-in)")
    ax.set_ylabel("depth (conv layers)")
    what = "theory vs measured" if measured else "predicted"
    ax.set_title(rf"{act}, $\sigma_b^2$ = {sigma_b2:g}: trainable depth, {what}")
    ax.legend(fontsize=8, loc="upper right")
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="0.3")
    fig.tight_layout()
    return fig


def _plot_measured(ax, measured: Sequence[PhaseMeasurement]) -> None:
    """Draw the measured frontiers on ``ax``: a dot at the largest trainable depth, a bar up to
    a cross at the first failing one, an arrow where every depth tried trained; each kind of
    mark is labelled once in the legend."""
    labelled = {"ok": False, "fail": False}
    for m in measured:
        if m.max_trainable_depth is not None:
            ax.plot(
                [m.sigma_w2],
                [m.max_trainable_depth],
                "o",
                color="C1",
                label=None if labelled["ok"] else "measured: max trainable depth",
            )
            labelled["ok"] = True
        if m.first_failing_depth is not None:
            low = m.max_trainable_depth or 1
            ax.plot([m.sigma_w2, m.sigma_w2], [low, m.first_failing_depth], color="C1", lw=1)
            ax.plot(
                [m.sigma_w2],
                [m.first_failing_depth],
                "x",
                color="C3",
                label=None if labelled["fail"] else "measured: first failing depth",
            )
            labelled["fail"] = True
        elif m.max_trainable_depth is not None:
            ax.annotate(
                "",
                xy=(m.sigma_w2, m.max_trainable_depth * 1.6),
                xytext=(m.sigma_w2, m.max_trainable_depth),
                arrowprops=dict(arrowstyle="->", color="C1"),
            )


@dataclass
class InitAgreement:
    """Mean-field predictions vs one finite network at init, inside one stage (same channel
    count, no pooling in between), averaged over seeds."""

    sigma_w2: float
    sigma_b2: float
    width: float
    channels: int  # channels of the stage compared
    chi_1_theory: float
    chi_1_measured: float  # geometric mean of ||dL/dx_{l-1}||^2 / ||dL/dx_l||^2 across the stage
    phi2_theory: float  # E[phi(h)^2] at q*: the mean square activation
    phi2_measured: float  # mean square activation, averaged over the stage's second half


def init_agreement(
    act: str,
    sigma_w2: float,
    sigma_b2: float,
    width: float,
    data,
    *,
    depth: int = 36,
    stage: int = 0,
    seeds: Sequence[int] = (0, 1, 2),
    batch_size: int = 128,
) -> InitAgreement:
    """Build ``stages`` (act, scaled:W2,B2, width) at ``depth``, push one real MNIST batch
    through it and back, and compare the per-layer gradient growth and activation scale inside
    ``stage`` (0: 28x28 maps, where zero padding touches the fewest pixels) with chi_1 and
    E[phi^2] at q*."""
    import numpy as np
    import torch

    from .. import theory
    from ..models import create_model
    from .diagnostics import gradient_profile

    xb, yb = _first_batch(data, batch_size)
    logs, squares, channels = [], [], 0
    per_stage = depth // 3
    for seed in seeds:
        torch.manual_seed(seed)
        net = create_model(
            "stages",
            data.input_shape,
            data.num_classes,
            depth=depth,
            act=act,
            init=scaled_init(sigma_w2, sigma_b2),
            width=width,
        )
        channels = net.spec.channels()[stage]
        prof = gradient_profile(net, xb, yb)
        # skip the stage's first conv: it changes the channel count (and follows a pool)
        signal = prof["signal_norm"][stage * per_stage + 1 : (stage + 1) * per_stage]
        logs.append(np.mean(2 * np.log(signal[:-1] / signal[1:])))
        half = slice(stage * per_stage + per_stage // 2, (stage + 1) * per_stage)
        squares.append(np.mean(prof["act_std"][half] ** 2 + prof["act_mean"][half] ** 2))
    phi2 = _mean_square_activation_at_q_star(act, sigma_w2, sigma_b2)
    return InitAgreement(
        sigma_w2,
        sigma_b2,
        width,
        channels,
        theory.chi_1(act, sigma_w2, sigma_b2),
        float(np.exp(np.mean(logs))),
        phi2,
        float(np.mean(squares)),
    )


def _first_batch(data, batch_size: int):
    """The first ``batch_size`` training images (normalised, unshuffled) and their labels."""
    from ..data.batches import Batches

    return next(
        iter(
            Batches(
                data.train_x[:batch_size],
                data.train_y[:batch_size],
                batch_size,
                data.mean,
                data.std,
                shuffle=False,
            )
        )
    )


def _mean_square_activation_at_q_star(act: str, sigma_w2: float, sigma_b2: float) -> float:
    """E[phi(h)^2] for h ~ N(0, q*): the mean-field prediction of the mean square activation."""
    from .. import theory

    q = theory.q_star(act, sigma_w2, sigma_b2)
    phi, _ = theory.activation(act)
    return theory.gaussian_expectation(lambda z: phi(math.sqrt(q) * z) ** 2)
