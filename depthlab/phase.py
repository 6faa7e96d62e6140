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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .errors import ConfigError
from .theory import MeanFieldPoint

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
    error: float          # best error over the learning rates tried
    lr: float | None      # the learning rate that reached it


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
        return {"sigma_w2": self.sigma_w2, "sigma_b2": self.sigma_b2,
                "max_trainable_depth": self.max_trainable_depth,
                "first_failing_depth": self.first_failing_depth,
                "depths": {str(t.depth): {"trainable": t.trainable, "error": round(t.error, 4), "lr": t.lr}
                           for t in sorted(self.trials, key=lambda t: t.depth)}}


def frontier_of(trials: Iterable[DepthTrial]) -> tuple[int | None, int | None]:
    """(largest trainable depth, smallest failing depth above it) of a set of trials."""
    trials = sorted(trials, key=lambda t: t.depth)
    ok = [t.depth for t in trials if t.trainable]
    best = max(ok) if ok else None
    failing = [t.depth for t in trials if not t.trainable and (best is None or t.depth > best)]
    return best, (min(failing) if failing else None)


def search_depths(try_depth: Callable[[int], DepthTrial], ladder: Sequence[int], *, refine: int = 1,
                  multiple: int = 3) -> list[DepthTrial]:
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


def phase_trial_config(act: str, sigma_b2: float, sigma_w2: float, depth: int, lr: float, *, width: float = 1.0,
                       epochs: int = 2, train_size: int | None = 10_000, test_size: int | None = None,
                       evals_per_epoch: int = 4, seed: int = 0, device: str = "auto"):
    """The `TrainConfig` of one phase-diagram trial."""
    from .train import TrainConfig

    return TrainConfig(model="stages", model_args=dict(depth=depth, act=act, init=scaled_init(sigma_w2, sigma_b2),
                                                       width=width),
                       train_size=train_size, test_size=test_size, epochs=epochs, lr=lr,
                       evals_per_epoch=evals_per_epoch, seed=seed, device=device)


def check_phase(act: str, sigma_b2: float, sigma_w2s: Sequence[float], ladder: Sequence[int],
                lrs: Sequence[float], **options) -> None:
    """Validate every trial the sweep may run (each rung of the ladder; bisection stays on
    multiples of 3 between rungs), raising `ConfigError` before any store is opened."""
    if not ladder or not lrs or not sigma_w2s:
        raise ConfigError("the phase sweep needs sigma_w2 values, depths and learning rates")
    for w in sigma_w2s:
        for lr in lrs:
            for depth in ladder:
                phase_trial_config(act, sigma_b2, w, depth, lr, **options).validate()


def measure_phase(act: str, sigma_b2: float, sigma_w2s: Sequence[float], ladder: Sequence[int],
                  lrs: Sequence[float], store, data, *, width: float = 1.0, epochs: int = 2,
                  train_size: int | None = 10_000, test_size: int | None = None, threshold: float = DEFAULT_THRESHOLD,
                  refine: int = 1, evals_per_epoch: int = 4, seed: int = 0, device: str = "auto",
                  log: Callable[[str], None] | None = None) -> list[PhaseMeasurement]:
    """Measure the frontier of ``stages`` (act, ``scaled:W2,B2``, no BN, no skips) for each
    sigma_w2, recording every trial in ``store``. A trial stops as soon as its error drops
    below ``threshold``; learning rates are tried in the order given until one trains."""
    from .runner import run_recorded

    def config(sigma_w2: float, depth: int, lr: float):
        return phase_trial_config(act, sigma_b2, sigma_w2, depth, lr, width=width, epochs=epochs,
                                  train_size=train_size, test_size=test_size, evals_per_epoch=evals_per_epoch,
                                  seed=seed, device=device)

    check_phase(act, sigma_b2, sigma_w2s, ladder, lrs, width=width, epochs=epochs, train_size=train_size,
                test_size=test_size, evals_per_epoch=evals_per_epoch, seed=seed, device=device)

    out = []
    for sigma_w2 in sigma_w2s:
        def try_depth(depth: int, sigma_w2=sigma_w2) -> DepthTrial:
            best = DepthTrial(depth, False, 1.0, None)
            for lr in lrs:
                result = run_recorded(config(sigma_w2, depth, lr), store, data, kind="phase",
                                      experiment=f"phase-{act}",
                                      monitor=lambda point: min(point.train_error, point.eval_error) < threshold)
                error = best_error(result)
                if error < best.error:
                    best = DepthTrial(depth, error < threshold, error, lr)
                if log is not None:
                    log(f"sigma_w2 {sigma_w2:g} depth {depth} lr {lr:g}: best error {100 * error:.1f}%"
                        f"{' (stored)' if result.get('reused') else ''} in {result.get('seconds', 0):.0f}s")
                if best.trainable:
                    break
            return best

        trials = search_depths(try_depth, ladder, refine=refine)
        best, failing = frontier_of(trials)
        out.append(PhaseMeasurement(sigma_w2, sigma_b2, best, failing, trials))
    return out


def measurements_from_store(store, act: str, sigma_b2: float, *, width: float | None = None,
                            threshold: float = DEFAULT_THRESHOLD, criterion: str = "either") -> list[PhaseMeasurement]:
    """Rebuild measured frontiers from every finished `stages` run in ``store`` with this
    activation, a ``scaled:W2,B2`` init with B2 = ``sigma_b2``, no BN and no skips (and the
    given width, if any), whichever command recorded them."""
    by_w2: dict[float, dict[int, DepthTrial]] = {}
    for row in store.runs():
        if row.status not in ("done", "diverged") or row.result is None:
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
    out = []
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
        raise ConfigError(f"measurements file {p} is not a readable CSV text file ({type(exc).__name__})") from None

    def opt_int(row, key):
        value = (row.get(key) or "").strip()
        return int(float(value)) if value else None

    out = []
    line = 1
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or not {"sigma_w2", "max_trainable_depth"} <= set(reader.fieldnames):
            raise ConfigError(f"measurements file {p} needs the columns sigma_w2 and max_trainable_depth")
        for line, row in enumerate(reader, start=2):
            out.append(PhaseMeasurement(float(row["sigma_w2"]), float(row.get("sigma_b2") or "nan"),
                                        opt_int(row, "max_trainable_depth"), opt_int(row, "first_failing_depth")))
    except (ValueError, OverflowError, TypeError):  # int(float("inf")) overflows; a short row gives None
        raise ConfigError(f"measurements file {p}, line {line}: not a number") from None
    except csv.Error as exc:
        raise ConfigError(f"measurements file {p}, line {line}: not CSV ({exc})") from None
    return out


MEASUREMENT_COLUMNS = ("sigma_w2", "sigma_b2", "max_trainable_depth", "first_failing_depth", "depths_tried")


def measurement_rows(measured: Sequence[PhaseMeasurement]) -> list[list]:
    return [[m.sigma_w2, m.sigma_b2, m.max_trainable_depth, m.first_failing_depth,
             " ".join(f"{t.depth}{'+' if t.trainable else '-'}" for t in m.trials)] for m in measured]


def plot_phase_diagram(points: Sequence[MeanFieldPoint], path: Path, *, act: str, sigma_b2: float,
                       critical: float | None = None, measured: Sequence[PhaseMeasurement] = (),
                       max_depth: float | None = None, note: str | None = None) -> Path:
    """sigma_w2 on x, depth on y (log): the 6 xi curve, the critical sigma_w2, and measured
    frontiers (a dot at the largest trainable depth, a bar up to the first failing one, an
    arrow for 'trainable at every depth tried')."""
    from .report import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
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
    labelled = {"ok": False, "fail": False}
    for m in measured:
        if m.max_trainable_depth is not None:
            ax.plot([m.sigma_w2], [m.max_trainable_depth], "o", color="C1",
                    label=None if labelled["ok"] else "measured: max trainable depth")
            labelled["ok"] = True
        if m.first_failing_depth is not None:
            low = m.max_trainable_depth or 1
            ax.plot([m.sigma_w2, m.sigma_w2], [low, m.first_failing_depth], color="C1", lw=1)
            ax.plot([m.sigma_w2], [m.first_failing_depth], "x", color="C3",
                    label=None if labelled["fail"] else "measured: first failing depth")
            labelled["fail"] = True
        elif m.max_trainable_depth is not None:
            ax.annotate("", xy=(m.sigma_w2, m.max_trainable_depth * 1.6), xytext=(m.sigma_w2, m.max_trainable_depth),
                        arrowprops=dict(arrowstyle="->", color="C1"))
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
    fig.savefig(path)
    plt.close(fig)
    return path
