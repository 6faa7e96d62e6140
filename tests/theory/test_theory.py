"""Mean-field theory against closed forms, the known tanh critical point, the init schemes it
drives, the phase-measurement helpers and the `theory` CLI."""

import json
import math

import numpy as np
import pytest
import torch

from depthlab import theory
from depthlab.analysis.phase import (
    DepthTrial,
    best_error,
    frontier_of,
    measurements_from_store,
    parse_scaled_init,
    scaled_init,
    search_depths,
)
from depthlab.cli import main
from depthlab.errors import ConfigError
from depthlab.models.init import delta_orthogonal_, init_conv_

# ---------------------------------------------------------------------------------------------
# Quadrature and closed forms


def test_gaussian_moments_are_exact():
    assert theory.gaussian_expectation(lambda z: z**2) == pytest.approx(1.0, abs=1e-12)
    assert theory.gaussian_expectation(lambda z: z**4) == pytest.approx(3.0, abs=1e-10)
    assert theory.gaussian_expectation(lambda z: (z > 0).astype(float)) == pytest.approx(0.5, abs=1e-12)
    # a correlated pair: E[z1 (c z1 + sqrt(1-c^2) z2)] = c
    c = 0.3
    assert theory.gaussian_expectation_2d(
        lambda a, b: a * (c * a + math.sqrt(1 - c * c) * b)
    ) == pytest.approx(c)


def test_tanh_second_moment_against_direct_integration():
    q = 0.7
    x = np.linspace(-12, 12, 200_001)
    density = np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)
    direct = np.trapezoid(np.tanh(math.sqrt(q) * x) ** 2 * density, x)
    assert theory.gaussian_expectation(lambda z: np.tanh(math.sqrt(q) * z) ** 2) == pytest.approx(
        direct, rel=1e-8
    )


@pytest.mark.parametrize("sigma_w2", [0.5, 1.0, 1.5, 1.9])
@pytest.mark.parametrize("sigma_b2", [0.05, 0.3])
def test_relu_fixed_point_and_chi1_match_closed_forms(sigma_w2, sigma_b2):
    # E[relu(sqrt(q) z)^2] = q / 2, so q* = sigma_b2 / (1 - sigma_w2 / 2); E[relu'^2] = 1/2
    assert theory.q_star("relu", sigma_w2, sigma_b2) == pytest.approx(sigma_b2 / (1 - sigma_w2 / 2), rel=1e-9)
    assert theory.chi_1("relu", sigma_w2, sigma_b2) == pytest.approx(sigma_w2 / 2, rel=1e-12)
    point = theory.mean_field_point("relu", sigma_w2, sigma_b2)
    assert point.phase == "ordered" and point.c_star == 1.0
    assert point.xi == pytest.approx(-1 / math.log(sigma_w2 / 2))
    assert point.max_depth == pytest.approx(6 * point.xi)


def test_relu_critical_point_and_unbounded_phase():
    assert theory.critical_sigma_w2("relu", 0.0) == pytest.approx(2.0, abs=1e-6)
    assert theory.critical_init("relu", 50) == (2.0, 0.0)
    at_critical = theory.mean_field_point("relu", 2.0, 0.0)
    assert at_critical.phase == "critical" and at_critical.q_star == pytest.approx(1.0)  # every q is fixed
    assert math.isinf(at_critical.xi)
    past = theory.mean_field_point("relu", 2.5, 0.05)
    assert past.phase == "unbounded" and math.isinf(past.q_star) and past.max_depth is None
    assert past.to_json()["q_star"] is None  # JSON has no infinity


def test_relu_correlation_map_matches_arc_cosine_kernel():
    # for ReLU, E[relu(u1) relu(u2)] = q (sqrt(1-c^2) + (pi - arccos c) c) / (2 pi)
    q, c, w2 = 1.3, 0.4, 1.2
    expected = w2 * q * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (2 * math.pi) / q
    # the kink along an oblique line costs the tensor-product rule its spectral accuracy: ~0.3%
    assert theory.correlation_map("relu", c, q, w2, 0.0) == pytest.approx(expected, rel=5e-3)
    # smooth tanh: at c = 1 the correlation map is the length map divided by q
    assert theory.correlation_map("tanh", 1.0, 0.6, 1.7, 0.05) == pytest.approx(
        theory.length_map("tanh", 0.6, 1.7, 0.05) / 0.6, rel=1e-9
    )


def test_tanh_critical_point_at_sigma_b2_005_is_176():
    assert round(theory.critical_sigma_w2("tanh", 0.05), 2) == 1.76
    # without bias the transition is at sigma_w2 = 1 (tanh'(0) = 1)
    assert theory.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, abs=1e-4)


def test_tanh_phases_on_either_side_of_the_critical_line():
    crit = theory.critical_sigma_w2("tanh", 0.05)
    ordered, chaotic = (
        theory.mean_field_point("tanh", crit - 0.3, 0.05),
        theory.mean_field_point("tanh", crit + 0.3, 0.05),
    )
    assert ordered.phase == "ordered" and ordered.chi_1 < 1 and ordered.c_star == 1.0
    assert chaotic.phase == "chaotic" and chaotic.chi_1 > 1 and 0 < chaotic.c_star < 1 and chaotic.chi_c < 1
    # the correlation depth peaks at the transition
    xs = [theory.mean_field_point("tanh", w, 0.05).xi for w in (1.0, 1.5, 1.7, 1.82, 2.2, 3.0)]
    assert xs[0] < xs[1] < xs[2] and xs[3] > xs[4] > xs[5]
    # q* is a fixed point of the length map and c* of the correlation map
    q = chaotic.q_star
    assert theory.length_map("tanh", q, chaotic.sigma_w2, 0.05) == pytest.approx(q, rel=1e-9)
    c = chaotic.c_star
    assert theory.correlation_map("tanh", c, q, chaotic.sigma_w2, 0.05) == pytest.approx(c, abs=1e-6)


def test_critical_init_makes_chi1_one_at_q_one_over_depth():
    for depth in (9, 300):
        w2, b2 = theory.critical_init("tanh", depth)
        q = 1.0 / depth
        assert theory.chi_1("tanh", w2, b2, q) == pytest.approx(1.0, abs=1e-9)
        assert theory.length_map("tanh", q, w2, b2) == pytest.approx(q, rel=1e-6)
    assert theory.critical_init("tanh", 300)[0] == pytest.approx(
        1.0 + 2.0 / 300, abs=1e-4
    )  # 1 + 2q to 1st order


def test_bad_theory_input_raises_config_error():
    with pytest.raises(ConfigError):
        theory.mean_field_point("sigmoid", 1.0, 0.05)
    with pytest.raises(ConfigError):
        theory.q_star("tanh", -1.0, 0.05)
    with pytest.raises(ConfigError):
        theory.default_sigma_w2_grid(2.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Inits the theory drives


@pytest.mark.parametrize("shape", [(8, 8, 3, 3), (16, 8, 3, 3), (4, 1, 3, 3), (8, 16, 5, 5)])
def test_delta_orthogonal_is_orthogonal_at_the_centre_and_zero_elsewhere(shape):
    torch.manual_seed(0)
    w = delta_orthogonal_(torch.empty(shape), gain=1.3)
    c = tuple(s // 2 for s in shape[2:])
    centre = w[(slice(None), slice(None)) + c]
    mask = torch.ones(shape[2:], dtype=torch.bool)
    mask[c] = False
    assert torch.count_nonzero(w[:, :, mask]) == 0
    small = min(shape[0], shape[1])
    gram = centre.T @ centre if shape[0] >= shape[1] else centre @ centre.T
    assert torch.allclose(gram, 1.3**2 * torch.eye(small), atol=1e-5)


def test_delta_orthogonal_critical_conv_uses_the_critical_variances():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 16, 3, padding=1)
    init_conv_(conv, "delta-orthogonal:critical", act="tanh", depth=300)
    w2, b2 = theory.critical_init("tanh", 300)
    centre = conv.weight[:, :, 1, 1]
    assert torch.allclose(centre.T @ centre, w2 * torch.eye(16), atol=1e-5)
    # an orthogonal conv is an isometry per pixel: it keeps the norm of a centre-only input
    x = torch.randn(2, 16, 5, 5)
    y = torch.nn.functional.conv2d(x, conv.weight, padding=1)
    assert (y.pow(2).sum() / x.pow(2).sum()).item() == pytest.approx(w2, rel=1e-4)
    assert conv.bias.std().item() < 10 * math.sqrt(b2) + 1e-6


def test_critical_init_weights_have_the_mean_field_std():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3)
    init_conv_(conv, "critical", act="tanh", depth=30)
    w2, _ = theory.critical_init("tanh", 30)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(w2 / (9 * 64)), rel=0.03)


# ---------------------------------------------------------------------------------------------
# Phase-measurement helpers


def test_scaled_init_round_trip_and_best_error():
    assert parse_scaled_init(scaled_init(1.5, 0.05)) == (1.5, 0.05)
    assert parse_scaled_init("lecun-in") is None
    result = {
        "checkpoints": [
            {"epoch": 0.5, "train_error": 0.5, "eval_error": 0.4},
            {"epoch": 1.0, "train_error": 0.3, "eval_error": 0.19},
        ]
    }
    assert best_error(result) == 0.19
    assert best_error(result, "train") == 0.3
    assert best_error({"checkpoints": [], "epochs": []}) == 1.0


def test_search_depths_walks_up_then_bisects():
    tried = []

    def try_depth(d):
        tried.append(d)
        return DepthTrial(d, d <= 30, 0.1 if d <= 30 else 0.9, 0.1)

    trials = search_depths(try_depth, [6, 12, 24, 48, 96], refine=2)
    assert tried == [6, 12, 24, 48, 36, 30]
    assert frontier_of(trials) == (30, 36)


def test_measurements_from_store_groups_by_sigma_w2(tmp_path):
    from depthlab.store.sqlite import Store

    def record(store, w2, depth, err, act="tanh", b2=0.05):
        cfg = {
            "model": "stages",
            "dataset": "mnist",
            "lr": 0.1,
            "model_args": {
                "depth": depth,
                "act": act,
                "init": scaled_init(w2, b2),
                "norm": "none",
                "skip": "none",
                "width": 2.0,
            },
        }
        result = {"status": "done", "checkpoints": [{"epoch": 1, "train_error": err, "eval_error": err}]}
        store.record(cfg, f"h{w2}{depth}{act}{b2}", result, kind="phase")

    with Store(tmp_path / "s.db") as store:
        for depth, err in ((6, 0.05), (12, 0.1), (24, 0.8)):
            record(store, 1.0, depth, err)
        record(store, 2.5, 6, 0.05)
        record(store, 1.0, 48, 0.05, act="relu")  # other activation: ignored
        record(store, 1.0, 96, 0.05, b2=0.1)  # other bias variance: ignored
        measured = measurements_from_store(store, "tanh", 0.05)
        assert measurements_from_store(store, "tanh", 0.05, width=1.0) == []
    assert [(m.sigma_w2, m.max_trainable_depth, m.first_failing_depth) for m in measured] == [
        (1.0, 12, 24),
        (2.5, 6, None),
    ]


# ---------------------------------------------------------------------------------------------
# CLI


def test_theory_cli_json_schema(capsys):
    assert main(["theory", "--act", "tanh", "--sigma-b2", "0.05", "--sigma-w2", "1,1.5,2.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"act", "sigma_b2", "critical_sigma_w2", "grid"}
    assert out["act"] == "tanh" and out["sigma_b2"] == 0.05 and round(out["critical_sigma_w2"], 2) == 1.76
    assert [g["sigma_w2"] for g in out["grid"]] == [1.0, 1.5, 2.5]
    for g in out["grid"]:
        assert set(g) >= {"sigma_w2", "q_star", "chi_1", "xi", "max_depth", "phase"}
        assert g["max_depth"] == pytest.approx(6 * g["xi"])
    assert [g["phase"] for g in out["grid"]] == ["ordered", "ordered", "chaotic"]


def test_theory_cli_relu_and_critical_init(capsys):
    assert (
        main(["theory", "--act", "relu", "--sigma-b2", "0", "--sigma-w2", "1,2,3", "--depth", "50", "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["critical_sigma_w2"] == pytest.approx(2.0, abs=1e-6)
    assert out["critical_init"]["sigma_w2"] == 2.0
    assert [g["chi_1"] for g in out["grid"]] == pytest.approx([0.5, 1.0, 1.5])


def test_theory_cli_writes_plot_and_overlays_measurements(tmp_path, capsys):
    csv = tmp_path / "m.csv"
    csv.write_text("sigma_w2,max_trainable_depth,first_failing_depth\n1.0,12,24\n3.0,24,\n")
    out = tmp_path / "out"
    assert main(["theory", "--measured", str(csv), "--sigma-w2", "0.5:4:8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "critical sigma_w2 = 1.7610" in text and "first failing" in text
    assert (out / "phase-tanh-b0.05.png").stat().st_size > 1000
    assert (out / "measured-tanh-b0.05.csv").read_text().splitlines()[1].startswith("1.0,")


def test_theory_cli_checks_the_maps_against_real_nets(capsys, data_root):
    assert (
        main(
            [
                "theory",
                "--sigma-w2",
                "4",
                "--check-widths",
                "1",
                "--check-depth",
                "9",
                "--data-dir",
                str(data_root),
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)["init_agreement"]
    assert [(r["stage"], r["channels"]) for r in rows] == [(1, 4), (3, 16)]
    for r in rows:  # deep in the chaotic phase the per-layer gradient growth is close to chi_1
        assert r["chi_1_theory"] == pytest.approx(1.342, abs=1e-3)
        assert r["chi_1_measured"] == pytest.approx(r["chi_1_theory"], rel=0.25)


@pytest.mark.parametrize(
    "args",
    [
        ["theory", "--act", "sigmoid"],
        ["theory", "--sigma-b2", "-0.1"],
        ["theory", "--sigma-w2", "abc"],
        ["theory", "--sigma-w2", "2:1:5"],
        ["theory", "--sigma-w2", "0,1"],
        ["theory", "--depth", "0"],
        ["theory", "--store", "/nonexistent/x.db"],
        ["theory", "--measured", "/nonexistent/m.csv"],
        ["theory", "--check-widths", "1", "--check-depth", "10"],
        ["theory", "--check-widths", "0"],
        ["phase", "--lrs", "0"],
        ["phase", "--depths", "6,x"],
        ["phase", "--threshold", "1.5"],
    ],
)
def test_theory_cli_bad_input_exits_2_with_one_line(args, capsys, tmp_path):
    store = tmp_path / "untouched.db"
    extra = ["--store", str(store)] if args[0] == "phase" else []
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("depthlab: error: ")
    assert not store.exists()


@pytest.mark.slow
def test_phase_cli_measures_records_and_overlays(tmp_path, capsys, data_root, monkeypatch):
    """A tiny real measurement (depth 3 and 6, 1k MNIST images, 1 epoch): every trial lands in
    the store, the theory command rebuilds the same frontier from it, and the plot is written."""
    monkeypatch.setenv("DEPTHLAB_DATA", str(data_root))
    store, out = tmp_path / "p.db", tmp_path / "out"
    args = [
        "phase",
        "--sigma-w2",
        "1.0",
        "--depths",
        "3,6",
        "--refine",
        "0",
        "--lrs",
        "0.1",
        "--width",
        "1",
        "--epochs",
        "1",
        "--train-size",
        "1000",
        "--test-size",
        "500",
        "--threshold",
        "0.5",
        "--device",
        "cpu",
        "--store",
        str(store),
        "--out",
        str(out),
        "--json",
    ]
    assert main(args) == 0
    measured = json.loads(capsys.readouterr().out)["measured"]
    assert len(measured) == 1 and measured[0]["sigma_w2"] == 1.0
    assert set(measured[0]["depths"]) <= {"3", "6"} and "3" in measured[0]["depths"]
    assert (out / "phase-tanh-b0.05.png").stat().st_size > 1000
    assert main(["theory", "--store", str(store), "--sigma-w2", "1", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["measured"]
    assert [(m["max_trainable_depth"], m["first_failing_depth"]) for m in again] == [
        (measured[0]["max_trainable_depth"], measured[0]["first_failing_depth"])
    ]
    assert main(args) == 0  # the second time every trial comes from the store
    assert "stored" in capsys.readouterr().err
