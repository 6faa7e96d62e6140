"""Every figure depthlab draws is a matplotlib `Figure` built with the object API: it returns the
figure, draws into a given axes, and never touches pyplot's state or the backend (which would
break inline plots in a notebook)."""

from __future__ import annotations

import ast
from pathlib import Path

import matplotlib
import pytest
from fakedata import synthetic_dataset
from matplotlib.figure import Figure

from depthlab import theory
from depthlab.analysis.diagnostics import depth_profiles, diagnose, plot_depth_profiles, plot_heatmap
from depthlab.analysis.phase import PhaseMeasurement, plot_phase_diagram
from depthlab.depth_frontier.outputs import plot_frontier, save_frontier_plots
from depthlab.depth_frontier.protocol import FrontierConfig
from depthlab.depth_frontier.results import FrontierResult
from depthlab.depth_frontier.search import find_frontier
from depthlab.experiments.parts import Curve, Plot, draw_plot
from depthlab.report.figures import save_figure

PACKAGE = Path(__file__).resolve().parents[2] / "depthlab"


@pytest.fixture(scope="module")
def frontier_result() -> FrontierResult:
    data = synthetic_dataset(256, 64)
    config = FrontierConfig(max_depth=6, lrs=(0.1,), epochs=1, train_size=256, eval_size=64, device="cpu")
    return FrontierResult(config=config, models=[find_frontier("cnn-tanh", config, None, data)], seconds=0.0)


@pytest.fixture(scope="module")
def diagnosis():
    return diagnose(
        "cnn-tanh",
        {"depth": 3},
        steps=2,
        every=1,
        batch_size=32,
        data=synthetic_dataset(64, 32),
        device="cpu",
    )


@pytest.fixture(scope="module")
def builders(frontier_result, diagnosis):
    """Each figure builder once, called with ``ax=None`` or with an axes of a figure we made."""
    points = theory.phase_grid("tanh", 0.05, [1.0, 1.5, 2.0, 3.0])
    measured = [PhaseMeasurement(sigma_w2=1.5, sigma_b2=0.05, max_trainable_depth=12, first_failing_depth=15)]
    plot = Plot(name="errors", title="t", ylabel="error", curves=[Curve("a", [1, 2], [0.5, 0.3])])
    profiles = depth_profiles("cnn-tanh", [3, 6], data=synthetic_dataset(64, 32), batch_size=32)
    return {
        "frontier-depth": lambda ax: plot_frontier(frontier_result, "depth", ax=ax),
        "frontier-error": lambda ax: plot_frontier(frontier_result, "error", ax=ax),
        "experiment-plot": lambda ax: draw_plot(plot, ax=ax),
        "diagnostics-heatmap": lambda ax: plot_heatmap(diagnosis, ax=ax),
        "diagnostics-depths": lambda ax: plot_depth_profiles(
            profiles, model="cnn-tanh", axes=None if ax is None else [ax, ax]
        ),
        "phase-diagram": lambda ax: plot_phase_diagram(
            points, act="tanh", sigma_b2=0.05, measured=measured, ax=ax
        ),
    }


NAMES = [
    "diagnostics-depths",
    "diagnostics-heatmap",
    "experiment-plot",
    "frontier-depth",
    "frontier-error",
    "phase-diagram",
]


@pytest.mark.parametrize("name", NAMES)
def test_every_figure_is_returned_and_leaves_the_backend_alone(name, builders, tmp_path):
    backend = matplotlib.get_backend()
    fig = builders[name](None)
    assert isinstance(fig, Figure) and fig.axes
    assert matplotlib.get_backend() == backend
    path = save_figure(fig, tmp_path / "new-folder" / f"{name}.png")  # a missing folder is created
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", NAMES)
def test_every_figure_draws_into_a_given_axes(name, builders):
    host = Figure()
    ax = host.add_subplot()
    assert builders[name](ax) is host
    assert ax.lines or ax.images or ax.patches or ax.collections


def test_frontier_plots_are_saved_into_a_str_folder_that_does_not_exist(frontier_result, tmp_path):
    folder = str(tmp_path / "plots")
    paths = save_frontier_plots(frontier_result, folder)
    assert [p.name for p in paths] == ["frontier-error.png", "frontier-depth.png"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)


def test_no_module_switches_the_backend_or_uses_pyplot():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("matplotlib.use", "mpl.use"):
                pytest.fail(f"{path}: {ast.unparse(node)}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any("pyplot" in n for n in names), f"{path}:{node.lineno} imports pyplot"
