"""How a DKS/TAT CNN should take a 1-channel image (issue 30): the package's per-location
normalisation with its homogeneous coordinate 1 (``input_norm="pln"``: each pixel becomes the
2-vector [x, 1] rescaled to mean square 1) against the standardised image as it is
(``input_norm="none"``: q = 1 on average over the data set, not at every pixel).

Three measurements per choice, on real MNIST, for the ``stages`` presets ``cnn-tat-lrelu`` and
``cnn-dks-tanh`` at depth 24:

1. the constant channel's share of q at the input (mean over images and pixels of
   homog^2 / sum of squares, after the normalisation); the package's ``avg_q`` mode is measured
   too, for reference (not a model option);
2. the mean cosine between the layer-1 outputs (first conv + activation, at init) of different
   test images, with ``cnn-tanh-delta`` and ``cnn-relu-he`` as references;
3. the test error (1,000 test images) after 1 epoch of 5,000 training images at batch 64 (78
   steps) with SGD (momentum 0.9) at lr 0.01 and with Adam at lr 1e-3, one seed, one thread.

    DEPTHLAB_DATA=../shared/data python benchmarks/dks_preprocessing.py [--no-train]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from depthlab.data.batches import Batches
from depthlab.data.registry import load_dataset
from depthlab.engine.config import TrainConfig
from depthlab.models import create_model
from depthlab.models.transformed import _import_dks
from depthlab.sweep.runner import run_recorded

DEPTH = 24
CHOICES = ("pln", "none")
TRANSFORMED = ("cnn-tat-lrelu", "cnn-dks-tanh")
REFERENCES = ("cnn-tanh-delta", "cnn-relu-he")
OPTIMIZERS = (("sgd", 0.01), ("adam", 1e-3))


def constant_share(images: torch.Tensor, homog_mode: str) -> float:
    """The homogeneous channel's mean share of each pixel's sum of squares after the package's PLN."""
    _, pre, _ = _import_dks("dks")
    out = pre.per_location_normalization(images.permute(0, 2, 3, 1), homog_mode=homog_mode)
    return (out[..., -1] ** 2 / (out**2).sum(-1)).mean().item()


def layer1_cosine(model: str, images: torch.Tensor, input_norm: str | None) -> float:
    """Mean cosine between the layer-1 outputs of different images, at init (seed 0)."""
    torch.manual_seed(0)
    args = {"depth": DEPTH, **({"input_norm": input_norm} if input_norm else {})}
    net = create_model(model, (1, 28, 28), 10, **args).eval()
    with torch.no_grad():
        x = net.pln(images) if net.pln is not None else images
        h = net.stages[0][0](x).flatten(1)
    h = torch.nn.functional.normalize(h, dim=1)
    cos = h @ h.T
    n = len(h)
    return ((cos.sum() - cos.diagonal().sum()) / (n * (n - 1))).item()


def trained_error(model: str, input_norm: str, optimizer: str, lr: float, data) -> tuple[float, float]:
    """Test error after 1 epoch of 5,000 images, and the seconds it took."""
    config = TrainConfig(
        model=model,
        model_args={"depth": DEPTH, "input_norm": input_norm},
        train_size=5000,
        test_size=1000,
        epochs=1,
        batch_size=64,
        optimizer=optimizer,
        lr=lr,
        threads=1,
    )
    started = time.perf_counter()
    result = run_recorded(config, None, data)
    return (
        result.test_error if result.test_error is not None else float("nan")
    ), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-train", action="store_true", help="only the measurements at init")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("mnist")
    images = Batches(data.test_x, data.test_y, 256, data.mean, data.std).normalise(
        data.test_x[:256]
    )  # as trained
    out: dict = {"share": {m: constant_share(images, m) for m in ("one", "avg_q")}, "cosine": {}, "error": {}}
    print(
        "constant channel's share of q at the input: "
        + ", ".join(f"{m} {v:.3f}" for m, v in out["share"].items())
        + ", none 0"
    )
    for model in TRANSFORMED:
        for choice in CHOICES:
            out["cosine"][f"{model} {choice}"] = layer1_cosine(model, images, choice)
    for model in REFERENCES:
        out["cosine"][model] = layer1_cosine(model, images, None)
    for name, value in out["cosine"].items():
        print(f"layer-1 mean cosine between different images, {name}: {value:.3f}")
    if not args.no_train:
        for model in TRANSFORMED:
            for choice in CHOICES:
                for optimizer, lr in OPTIMIZERS:
                    error, seconds = trained_error(model, choice, optimizer, lr, data)
                    out["error"][f"{model} {choice} {optimizer} {lr:g}"] = error
                    print(
                        f"test error, {model} depth {DEPTH} input_norm={choice} {optimizer} {lr:g}: "
                        f"{100 * error:.1f}% ({seconds:.0f} s)",
                        flush=True,
                    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
