"""The fused phase-diagram trainer (`depthlab.analysis.mlp_phase`): config, init, fused = unfused,
member independence, the store and resume, the verdicts on real MNIST, agreement, the plot."""

import ast
import inspect
import io
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from depthlab.analysis import mlp_phase
from depthlab.analysis.mlp_phase import (
    DEFAULT_THRESHOLD,
    KIND,
    PhaseGrid,
    PhaseGridConfig,
    batch_indices,
    init_fused_mlp,
    measure_grid,
    member_accuracies,
    phase_data,
    plot_phase_heatmap,
    scale_pixels,
    theory_agreement,
    train_fused_,
    train_fused_mlp,
)
from depthlab.errors import ConfigError
from depthlab.models import create_model
from depthlab.store import Store
from depthlab.theory import TRAINABLE_DEPTH_FACTOR, mean_field_point

# A tiny grid that still shows the phase diagram on real MNIST. Checked over seeds 0-3 before
# choosing the assertions: depth 2 reaches 0.53-0.66 everywhere; at depth 100, sigma_w2 1 and 4
# stay at 0.10-0.13 (chance, or the majority class); at depth 20 the near-critical 1.75 reaches
# 0.42-0.57 while the ordered 1.0 reaches only 0.12-0.17 (less than its 6 xi_c = 22 suggests).
TINY = PhaseGridConfig(
    width=32,
    depths=(2, 20, 100),
    sigma_w2s=(1.0, 1.75, 4.0),
    lr=0.01,
    steps=100,
    batch_size=128,
    train_size=2000,
)


def test_defaults_are_the_classic_protocol():
    c = PhaseGridConfig()
    c.validate()
    assert (c.act, c.width, c.sigma_b2, c.lr, c.batch_size, c.steps, c.train_size) == (
        "tanh",
        300,
        0.05,
        1e-3,
        256,
        200,
        None,
    )
    assert c.sigma_w2s == tuple(np.linspace(1, 4, 13)) and c.depths == tuple(range(10, 101, 10))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("width", 0, "width must be a positive integer"),
        ("batch_size", 2.0, "batch_size must be a positive integer"),
        ("steps", -1, "steps must be a non-negative integer"),
        ("train_size", 0, "train_size must be a positive integer or None"),
        ("sigma_b2", -0.1, "sigma_b2 must be a finite non-negative number"),
        ("lr", math.nan, "lr must be a finite positive number"),
        ("sigma_w2s", (), "sigma_w2s must be a non-empty list"),
        ("sigma_w2s", (1.0, 0.0), "sigma_w2s must be a non-empty list of positive numbers"),
        ("depths", (10, 0), "depths must be a non-empty list of positive integers"),
        ("depths", (10, 10), "must not repeat"),
        ("act", "sigmoid", "unknown activation"),
        ("dataset", "imagenet", "unknown dataset"),
    ],
)
def test_bad_configs_are_one_line_config_errors(field, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        PhaseGridConfig(**{field: value}).validate()
    assert "\n" not in str(info.value)


def test_keys_are_stable_and_cover_the_protocol():
    a = PhaseGridConfig(sigma_w2s=[1.0, 2.0], depths=[3, 4])
    assert a.key() == PhaseGridConfig(sigma_w2s=(1.0, 2.0), depths=(3, 4)).key()
    assert a.key() != PhaseGridConfig(sigma_w2s=(1.0, 2.0), depths=(3, 4), lr=2e-3).key()
    assert PhaseGridConfig(sigma_b2=0).cell_hash(3, 1.0) == PhaseGridConfig(sigma_b2=0.0).cell_hash(3, 1.0)
    assert len({a.cell_hash(d, s) for d in (3, 4) for s in (1.0, 2.0)}) == 4
    cell = a.cell_config(3, 2.0)
    for key in (
        "act",
        "width",
        "sigma_b2",
        "lr",
        "batch_size",
        "steps",
        "seed",
        "train_size",
        "dataset",
        "pixels",
        "depth",
        "sigma_w2",
    ):
        assert key in cell
    assert cell["kind"] == KIND and cell["init"] == "scaled:2,0.05"


def test_fused_init_standard_deviations():
    config = PhaseGridConfig(width=1500, sigma_b2=0.3)
    net = init_fused_mlp(2, [1.0, 4.0], config, 784)
    for g, w2 in enumerate((1.0, 4.0)):
        for layer, fan_in in ((0, 784), (1, 1500)):
            assert net.weights[layer][g].std().item() == pytest.approx(math.sqrt(w2 / fan_in), rel=0.01)
            assert net.biases[layer][g].std().item() == pytest.approx(math.sqrt(0.3), rel=0.06)
    # the members share their draws: they differ by the weight scale alone
    assert torch.allclose(net.weights[1][1], 2 * net.weights[1][0])
    assert torch.equal(net.biases[1][0], net.biases[1][1])
    assert [tuple(w.shape) for w in net.weights] == [(2, 784, 1500), (2, 1500, 1500), (2, 1500, 10)]


def _unfused_run(depth, sigma_w2, config, x, y):
    """One member trained as the `mlp` family's nn.Module with torch.optim.SGD."""
    start = init_fused_mlp(depth, [sigma_w2], config, x.shape[1])
    model = create_model(
        "mlp", (1, 28, 28), 10, depth=depth, width=config.width, act=config.act, init="torch-default"
    )
    with torch.no_grad():
        for linear, w, b in zip(model.linears(), start.weights, start.biases):
            linear.weight.copy_(w[0].T)
            linear.bias.copy_(b[0, 0])
    opt = torch.optim.SGD(model.parameters(), lr=config.lr)
    for idx in batch_indices(config, len(x)):
        opt.zero_grad()
        F.cross_entropy(model(scale_pixels(x[idx])), y[idx]).backward()
        opt.step()
    with torch.no_grad():
        acc = (model(scale_pixels(x)).argmax(1) == y).double().mean().item()
    return model, acc


def test_fused_members_equal_separate_unfused_runs(mnist):
    # A modest lr: a chaotic member (sigma_w2 = 4) amplifies the last-bit differences between
    # bmm and mm, to 1e-5 in 40 steps at lr 0.05; at lr 0.02 they stay below 4e-7.
    config = PhaseGridConfig(width=32, lr=0.02, steps=40, batch_size=64, train_size=1000)
    sigmas = [1.0, 1.75, 4.0]
    x, y = phase_data(config, mnist)
    net = init_fused_mlp(4, sigmas, config, x.shape[1])
    train_fused_(net, config, x, y)
    fused_acc = member_accuracies(net, x, y)
    assert train_fused_mlp(4, sigmas, config, mnist) == fused_acc
    for g, s in enumerate(sigmas):
        model, acc = _unfused_run(4, s, config, x, y)
        assert abs(acc - fused_acc[g]) <= 1e-5
        for linear, w, b in zip(model.linears(), net.weights, net.biases):
            assert torch.allclose(linear.weight.T, w[g].detach(), atol=1e-5, rtol=0)
            assert torch.allclose(linear.bias, b[g, 0].detach(), atol=1e-5, rtol=0)
        # and trained alone as a fused network of one, it is the same member
        assert train_fused_mlp(4, [s], config, mnist)[0] == pytest.approx(fused_acc[g], abs=1e-5)
    assert fused_acc[1] > 0.3  # it did learn: the comparison is not between two untrained nets


def test_a_diverged_member_leaves_the_others_alone(mnist):
    config = PhaseGridConfig(width=16, lr=0.05, steps=10, batch_size=32, train_size=300)
    x, y = phase_data(config, mnist)
    alone = init_fused_mlp(3, [1.5], config, x.shape[1])
    train_fused_(alone, config, x, y)
    pair = init_fused_mlp(3, [1.5, 3.0], config, x.shape[1])
    with torch.no_grad():
        pair.weights[1][1, 0, 0] = math.nan  # member 1 is poisoned from the start
    losses = train_fused_(pair, config, x, y)
    assert math.isfinite(losses[0]) and math.isnan(losses[1])
    for a, p in zip(alone.parameters(), pair.parameters()):
        assert torch.allclose(a[0], p[0], atol=1e-6, rtol=0)
    acc = member_accuracies(pair, x, y)
    assert acc[1] == pytest.approx((y == 0).double().mean().item())  # NaN logits: class 0 everywhere


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory, mnist):
    """The TINY grid measured into a store, first interrupted after its first depth."""
    path = tmp_path_factory.mktemp("phase") / "phase.db"

    def stop_after_first_depth(event):
        raise KeyboardInterrupt

    with Store(path) as store:
        with pytest.raises(KeyboardInterrupt):
            measure_grid(TINY, mnist, store, progress=stop_after_first_depth)
        assert len(store.runs(kind=KIND)) == len(TINY.sigma_w2s)
        events = []
        resumed = measure_grid(TINY, mnist, store, progress=events.append)
    return path, resumed, events


def test_an_interrupted_grid_resumes_and_a_finished_one_trains_nothing(tiny_store, mnist):
    path, resumed, events = tiny_store
    assert (resumed.reused, resumed.trained) == (3, 6)
    assert [e["trained"] for e in events] == [0, 3, 3]
    with Store(path) as store:
        rows = store.runs(kind=KIND)
        assert len(rows) == 9 and {r.status for r in rows} == {"done"}
        again = measure_grid(TINY, mnist, store)
    assert (again.reused, again.trained) == (9, 0)
    assert np.array_equal(again.accuracy, resumed.accuracy)
    by_cell = {(r.config["depth"], r.config["sigma_w2"]): r for r in rows}
    for row in resumed.to_rows():
        stored = by_cell[(row["depth"], row["sigma_w2"])]
        assert stored.result["train_accuracy"] == row["train_accuracy"]
        assert stored.config["seed"] == 0 and stored.config["width"] == 32 and stored.model == "mlp"


def test_cells_measured_on_other_data_are_measured_again(tiny_store, mnist, tmp_path):
    """Same grid, same name, other images (a wrong data folder, say): nothing is reused."""
    import dataclasses
    import shutil

    path, grid, _ = tiny_store
    copy = tmp_path / "copy.db"
    shutil.copy(path, copy)
    other = dataclasses.replace(mnist, train_x=mnist.train_x.flip(0), train_y=mnist.train_y.flip(0))
    small = PhaseGridConfig(**{**TINY.__dict__, "depths": TINY.depths[:1]})
    with Store(copy) as store:
        assert store.runs(kind=KIND)[0].config["data_fingerprint"] == mnist.fingerprint()
        same = measure_grid(small, mnist, store)
        moved = measure_grid(small, other, store)
    assert (same.reused, same.trained) == (3, 0)
    assert (moved.reused, moved.trained) == (0, 3)


def test_a_cell_does_not_depend_on_its_neighbours(tiny_store, mnist):
    _, grid, _ = tiny_store
    alone = measure_grid(PhaseGridConfig(**{**TINY.__dict__, "depths": (20,), "sigma_w2s": (4.0,)}), mnist)
    assert alone.accuracy[0, 0] == pytest.approx(grid.accuracy[1, 2], abs=1e-3)  # at most one sample


def test_the_tiny_grid_shows_the_phase_diagram(tiny_store):
    _, grid, _ = tiny_store
    acc = {
        (d, s): grid.accuracy[i, j] for i, d in enumerate(grid.depths) for j, s in enumerate(grid.sigma_w2s)
    }
    assert all(acc[2, s] > 0.4 for s in grid.sigma_w2s)  # shallow: trains
    assert acc[100, 1.0] < 0.2 and acc[100, 4.0] < 0.2  # far past 6 xi_c: chance
    assert acc[20, 1.75] > acc[20, 1.0] + 0.15  # near-critical trains deeper
    agreement = theory_agreement(grid, threshold=0.3)
    assert agreement.deepest[:2] == [2, 20] and agreement.censored[:2] == [False, False]
    xi_ordered = mean_field_point("tanh", 1.0, TINY.sigma_b2).xi
    assert (
        agreement.deepest[0] <= TRAINABLE_DEPTH_FACTOR * xi_ordered
    )  # ordered: no deeper than theory allows
    assert agreement.c is not None and agreement.c > 0


def test_theory_agreement_picks_uncensored_frontiers_and_fits_them():
    config = PhaseGridConfig(depths=(10, 20, 30, 40), sigma_w2s=(1.0, 1.5, 1.75, 3.0, 4.0))
    passes = np.array(
        [
            [1, 1, 1, 0, 1],
            [0, 1, 1, 0, 0],
            [0, 1, 1, 0, 1],  # sigma_w2 = 4: the deepest passing depth counts, not the first gap
            [0, 0, 1, 0, 0],
        ],
        dtype=float,
    )
    grid = PhaseGrid(config, 0.1 + 0.8 * passes)
    a = theory_agreement(grid)
    assert a.threshold == DEFAULT_THRESHOLD
    assert a.deepest == [10, 30, 40, None, 30]
    assert a.censored == [False, False, True, True, False]
    xi = [mean_field_point("tanh", s, 0.05).xi for s in config.sigma_w2s]
    assert a.used == [True, True, False, False, True]
    d, x = np.array([10, 30, 30.0]), np.array([xi[0], xi[1], xi[4]])
    assert a.c == pytest.approx(float(d @ x / (x @ x)))
    assert a.ratios == pytest.approx(list(d / x))
    assert a.median_ratio == pytest.approx(float(np.median(d / x)))
    assert a.iqr_ratio == pytest.approx((np.percentile(d / x, 25), np.percentile(d / x, 75)))
    assert a.to_json()["xi"][2] is not None and math.isfinite(a.xi[2])
    assert json.loads(json.dumps(a.to_json()))["censored"] == a.censored  # plain bools, not numpy's
    nothing = theory_agreement(PhaseGrid(config, np.full((4, 5), 0.1)))
    assert nothing.c is None and nothing.median_ratio is None and nothing.deepest == [None] * 5


def test_heatmap_uses_the_object_api_and_draws_the_curves():
    tree = ast.parse(inspect.getsource(mlp_phase))
    imported = {
        a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names
    }
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any("pyplot" in name for name in imported)
    assert "matplotlib.use(" not in inspect.getsource(mlp_phase)
    config = PhaseGridConfig(depths=(10, 20, 30, 40), sigma_w2s=(1.0, 1.5, 2.5, 4.0))
    frontier = np.array([10, 30, 20, 10])
    grid = PhaseGrid(config, np.where(np.array(config.depths)[:, None] <= frontier, 0.9, 0.1))
    fig = plot_phase_heatmap(grid)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.collections) == 1  # the heatmap
    labels = [line.get_label() for line in ax.lines]
    assert labels[0] == r"$6\,\xi_c$" and any("fit" in label for label in labels)
    fig.savefig(io.BytesIO(), format="png")
    outer = Figure()
    sub = outer.subfigures(1, 2)[1]
    assert plot_phase_heatmap(grid, sub.add_subplot()) is outer
