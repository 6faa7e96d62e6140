"""`to_frame()` on every result type: documented columns, the same numbers as the result itself,
errors as fractions."""

from __future__ import annotations

import math

import pytest

pd = pytest.importorskip("pandas")

from fakedata import synthetic_dataset  # noqa: E402

from depthlab import TrainConfig  # noqa: E402
from depthlab.analysis.diagnostics import diagnose  # noqa: E402
from depthlab.analysis.mlp_phase import PhaseGridConfig, measure_grid  # noqa: E402
from depthlab.analysis.phase import PhaseMeasurement, PhaseMeasurements  # noqa: E402
from depthlab.errors import ConfigError  # noqa: E402
from depthlab.experiments.lr_find import lr_find  # noqa: E402
from depthlab.experiments.sweeps import lr_sweep  # noqa: E402
from depthlab.report.tables import data_frame  # noqa: E402


def test_an_lr_sweep_frame_has_one_row_per_run_with_fractions(data_root):
    base = TrainConfig(
        model="cnn-tanh",
        model_args={"depth": 3},
        train_size=256,
        test_size=128,
        epochs=1,
        batch_size=64,
        device="cpu",
    )
    part = lr_sweep(base, [0.01, 0.1], data_dir=str(data_root))
    frame = part.to_frame()
    assert len(frame) == 2 and sorted(frame["lr"]) == [0.01, 0.1]
    assert {"train_error", "test_error"} <= set(frame.columns)
    assert frame["test_error"].between(0, 1).all()
    assert list(frame["test_error"]) == [r["test_error"] for r in part.rows]


def test_an_lr_find_frame_is_its_trace():
    found = lr_find(
        TrainConfig(model="cnn-tanh", model_args={"depth": 3}, batch_size=32, device="cpu"),
        synthetic_dataset(256, 32),
        min_lr=1e-4,
        max_lr=1.0,
        steps=10,
    )
    frame = found.to_frame()
    assert list(frame.columns) == ["step", "lr", "loss", "smoothed_loss"]
    assert list(frame["lr"]) == found.lrs and list(frame["loss"]) == found.losses


def test_a_diagnosis_frame_is_long_form_one_row_per_step_and_layer():
    diag = diagnose(
        "cnn-tanh",
        {"depth": 3},
        steps=2,
        every=1,
        batch_size=32,
        data=synthetic_dataset(64, 32),
        device="cpu",
    )
    frame = diag.to_frame()
    assert len(frame) == len(diag.steps) * len(diag.layers)
    assert list(frame.columns[:4]) == ["step", "layer", "layer_name", "loss"]
    first = frame[(frame.step == int(diag.steps[0])) & (frame.layer == 1)].iloc[0]
    assert math.isclose(first.grad_norm, float(diag.grad_norm[0, 0]), rel_tol=1e-12)


def test_phase_measurements_frame():
    measured = PhaseMeasurements([PhaseMeasurement(1.5, 0.05, 12, 15), PhaseMeasurement(3.0, 0.05, None, 3)])
    frame = measured.to_frame()
    assert list(frame.columns) == [
        "sigma_w2",
        "sigma_b2",
        "max_trainable_depth",
        "first_failing_depth",
        "depths_tried",
    ]
    assert frame["max_trainable_depth"].tolist()[0] == 12 and frame["first_failing_depth"].tolist() == [15, 3]


def test_an_mlp_phase_grid_frame_has_one_row_per_cell(mnist):
    config = PhaseGridConfig(width=16, sigma_w2s=(1.0, 2.0), depths=(2, 4), steps=3, train_size=512)
    grid = measure_grid(config, mnist)
    frame = grid.to_frame()
    assert list(frame.columns) == ["depth", "sigma_w2", "sigma_b2", "train_accuracy"] and len(frame) == 4
    assert frame["train_accuracy"].between(0, 1).all()


def test_without_pandas_the_frame_is_one_clear_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ConfigError, match=r"pip install 'depthlab\[frames\]'"):
        data_frame([{"a": 1}])
