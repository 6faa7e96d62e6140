"""`vanilla-1000`: a 1,000-layer vanilla CNN (999 convolutions and the readout, no BN, no skips)
that the product trains itself on one CPU core.

The network is the ``stages`` family of `trainability-fixes` (three stages of 3x3 convs with
4/8/16 channels, 2x2 average pooling, a linear readout) at depth 999, under two normaliser-free,
skip-free fixes:

* ``cnn-tanh-delta``: tanh with delta-orthogonal init at the mean-field critical point (Xiao et
  al. 2018, who trained 10,000-layer vanilla CNNs this way), the deepest init-only fix of the
  `trainability-fixes` frontier;
* ``cnn-dks-tanh``: Deep Kernel Shaping's transformed tanh (Martens et al. 2021).

Both train with Adam at lr 1e-4, batch 64, for 3 epochs of 10,000 MNIST training images and
are tested on the full test set after each epoch. SGD at the fixes frontier's lrs (1e-3 to 1e-2)
diverges at this depth (measured: lr 0.01 took the loss from 2.49 to 118.9 in 6 steps); the
first report measured 28.5% test error for the delta-orthogonal net under this budget.

The verdict is the test error against chance (90% on ten balanced classes): whether 999 layers
left chance level, and how far, not whether they crossed the frontier's 20% line, which a
budget of 3 short epochs does not aim at. An arm takes about 40 minutes of one loaded core
(measured 2026-12-07: delta-orthogonal 28.46% in 2,478 s, DKS 5.38% in 2,177 s; docs/RESULTS.md). ``depthlab train`` with the same config
(the same hash: tests/experiments/test_vanilla.py) checkpoints every epoch and resumes, so an
arm can be trained in pieces, and ``reproduce`` with that store reads the finished arms back.
"""

from __future__ import annotations

from .catalogue import Experiment, register_experiment
from .parts import PartResult
from .sweeps import Sweep

CHANCE_ERROR = 0.9  # ten balanced classes (MNIST): the error of a guess
LAYERS = 999  # convolutions; with the readout, 1,000 layers

ARMS = (("delta-orthogonal", {"model": "cnn-tanh-delta"}), ("DKS", {"model": "cnn-dks-tanh"}))

VANILLA_BASE = dict(
    model_args={"depth": LAYERS},
    train_size=10000,
    epochs=3,
    batch_size=64,
    optimizer="adam",
    lr=1e-4,
    evals_per_epoch=1,
    threads=1,
)

# --quick: the same two arms at depth 12 on 2,000 images, one epoch, 500 test images (a smoke run).
QUICK = dict(model_args={"depth": 12}, train_size=2000, epochs=1, test_size=500)

VANILLA = Sweep(
    "vanilla-1000",
    VANILLA_BASE,
    arms=ARMS,
    quick=QUICK,
    title=f"vanilla CNN, {LAYERS} convs + readout (--quick: 12), no BN, no skips, Adam lr 1e-4",
)


def against_chance(row: dict) -> str:
    """One run's outcome as its final test error against chance, e.g. "28.5% test error after 3
    epoch(s) (chance: 90%)", or why it has none."""
    if row["status"] != "done" or row["test_error"] is None:
        return f"no result ({row['status']})"
    return (
        f"{100 * row['test_error']:.1f}% test error after {row['epochs']} epoch(s) "
        f"(chance: {100 * CHANCE_ERROR:.0f}%)"
    )


def depth_of(part: PartResult, index: int) -> int:
    """The conv layers of the part's ``index``-th run, read from its stored config."""
    return part.runs[index]["config"]["model_args"]["depth"]


def conclude_vanilla(parts: dict[str, PartResult]) -> str:
    """Per arm, its test error against chance, from the part's own rows."""
    part = parts["vanilla-1000"]
    layers = depth_of(part, 0) + 1
    said = "; ".join(f"{row['arm']} {against_chance(row)}" for row in part.rows)
    return f"A {layers:,}-layer vanilla CNN (no BN, no skips) trained with Adam: {said}."


register_experiment(
    Experiment(
        name="vanilla-1000",
        question="Does a 1,000-layer vanilla CNN (no BN, no skips) train on one CPU core, and how far does it "
        "get below chance?",
        parts=(VANILLA,),
        conclude=conclude_vanilla,
        reference="the first report: delta-orthogonal tanh, Adam 1e-4, 3 epochs of 10,000 images: 28.5% test "
        "error (chance 90%), about 1 h on one core",
    )
)
