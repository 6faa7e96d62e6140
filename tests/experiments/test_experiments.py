"""lr-sweep, lr-find, ablate and the reproduce registry: units on synthetic data, functional
tests on small real-MNIST subsets, and the bad-input contract of each command."""

import dataclasses
import json
import math

import pytest
import torch

from depthlab.cli import main
from depthlab.data.dataset import Dataset
from depthlab.engine.config import TrainConfig
from depthlab.errors import ConfigError
from depthlab.experiments.catalogue import (
    EXPERIMENTS,
    Experiment,
    get_experiment,
    plan,
    register_experiment,
    reproduce,
)
from depthlab.experiments.configs import make_config, model_toggles, parse_lrs, toggle_override
from depthlab.experiments.lr_find import _suggest, lr_find
from depthlab.experiments.parts import Context, PartResult
from depthlab.experiments.sweeps import Ablation, Sweep, ablate, lr_sweep
from depthlab.models import create_model
from depthlab.store.sqlite import Store

# ---------------------------------------------------------------------------------------------
# Small pure pieces


def test_parse_lrs():
    assert parse_lrs("0.01,0.03,1e-1") == (0.01, 0.03, 0.1)
    for bad in ("0.1,x", "0,0.1", "-1", "0.1,0.1", "nan", ""):
        with pytest.raises(ConfigError):
            parse_lrs(bad)


def test_make_config_merges_model_args_and_defaults_the_dataset():
    config = make_config(
        {"model": "strided", "model_args": {"stack_depth": 1}}, {"model_args": {"kernel": 5}}, {"lr": 0.07}
    )
    assert config.model_args == {"stack_depth": 1, "kernel": 5} and config.lr == 0.07
    assert config.dataset == "mnist"
    assert make_config({"model": "skipfc"}).dataset == "mnist32"
    with pytest.raises(ConfigError, match="unknown training setting"):
        make_config({"model": "strided"}, {"learning_rate": 0.1})


def test_toggles_per_family():
    assert toggle_override("skipfc", "bn", True) == {"bn": True}
    assert toggle_override("skipfc", "skip", False) == {"skip": False}
    assert toggle_override("cnn-elu", "bn", True) == {"norm": "bn"}
    assert toggle_override("resnet-elu", "skip", False) == {"skip": "none"}
    assert toggle_override("strided-res", "skip", True) == {"skip": "res"}
    assert set(model_toggles("skipfc")) == {"bn", "skip", "legacy_bn", "softmax_out"}
    with pytest.raises(ConfigError, match="unknown toggle 'dropout'.*bn, skip"):
        toggle_override("cnn-tanh", "dropout", True)


def test_ablation_grid_over_folds_and_seeds():
    base = {"model": "skipfc", "optimizer": "adam", "lr": 1e-3}
    part = Ablation("a", base, ("bn", "skip"), folds=3)
    grid = part.grid(Context())
    assert len(grid) == 12
    assert [arm for arm, _, _ in grid[::3]] == [
        "bn=off skip=off",
        "bn=off skip=on",
        "bn=on skip=off",
        "bn=on skip=on",
    ]
    assert [(c.eval_split, c.folds, c.fold) for _, _, c in grid[:3]] == [
        ("val", 3, 0),
        ("val", 3, 1),
        ("val", 3, 2),
    ]
    assert grid[-1][2].model_args == {"bn": True, "skip": True}
    seeded = Ablation("a", base, ("bn",), folds=None, seeds=2).grid(Context(overrides={"seed": 5}))
    assert [(c.seed, c.val_fraction, c.folds) for _, _, c in seeded] == [
        (5, 1 / 3, None),
        (6, 1 / 3, None),
    ] * 2
    for bad, message in (
        (dict(folds=1), "at least 2"),
        (dict(folds=2, seeds=2), "either"),
        (dict(folds=None, seeds=0), "at least 1"),
    ):
        with pytest.raises(ConfigError, match=message):
            Ablation("a", base, ("bn",), **bad).grid(Context())


def test_piecewise_schedule_cannot_be_swept():
    sweep = Sweep("s", {"model": "strided", "schedule": "2@0.07,3@0.01"}, (0.01, 0.1))
    with pytest.raises(ConfigError, match="piecewise"):
        sweep.configs(Context())
    assert len(Sweep("s", {"model": "strided", "schedule": "2@0.07,3@0.01"}).configs(Context())) == 1


def test_suggestion_rule_on_a_known_trace():
    lrs = [10 ** (-4 + 0.1 * i) for i in range(41)]  # 1e-4 .. 1
    # flat, then falling fastest around lr 1e-2, lowest at lr 1e-1, then rising
    smoothed = [
        2.3 - 2.0 / (1 + math.exp(-(math.log10(lr) + 2) * 4)) + (max(0, math.log10(lr) + 1)) * 5 for lr in lrs
    ]
    found = _suggest(lrs, smoothed, smoothed, "test")
    assert found.min_loss_lr == pytest.approx(0.1)
    assert found.suggestion == pytest.approx(0.01)
    assert found.steepest_lr == pytest.approx(0.01, rel=0.3)
    assert not found.flat and found.drop > 0.5
    flat = _suggest(
        lrs, [2.3026 - 1e-4 * (i % 3) for i in range(41)], [2.3026 - 1e-4 * (i % 3) for i in range(41)], "t"
    )
    assert flat.flat and flat.suggestion is not None


def synthetic(n=512, seed=0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    # a learnable signal: a bright square whose position encodes the label
    x = torch.randint(0, 60, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    for i, label in enumerate(y.tolist()):
        r, c = 2 + 2 * (label // 5) * 6, 2 + (label % 5) * 5
        x[i, 0, r : r + 5, c : c + 4] = 255
    return Dataset("mnist", x, y, x[:128].clone(), y[:128].clone(), (0.13,), (0.31,))


def test_lr_find_restores_weights_and_stops_on_divergence():
    data = synthetic()
    config = TrainConfig(model="cnn-tanh", model_args={"depth": 3}, batch_size=32, momentum=0.9, device="cpu")
    model = create_model("cnn-tanh", (1, 28, 28), 10, depth=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    found = lr_find(config, data, min_lr=1e-3, max_lr=1e4, steps=120, model=model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert found.stopped.startswith("diverged")
    assert 10 <= len(found.lrs) < 120  # stopped early
    assert found.lrs == sorted(found.lrs) and found.lrs[0] == pytest.approx(1e-3)
    assert min(found.smoothed) < found.smoothed[0]  # the loss fell before it diverged
    assert found.suggestion == pytest.approx(found.min_loss_lr / 10)
    assert found.min_loss_lr == found.lrs[found.smoothed.index(min(found.smoothed))]


class SpikeOnce(torch.nn.Module):
    """A network whose second forward pass gives huge logits: the early spike a fresh network
    can show at a tiny lr, which is not divergence."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        out = self.inner(x)
        return out * 1e4 if self.calls == 2 else out


def test_an_early_spike_neither_stops_the_range_test_nor_sets_the_suggestion():
    data = synthetic()
    config = TrainConfig(model="cnn-tanh", model_args={"depth": 3}, batch_size=32, momentum=0.9, device="cpu")

    def run(**kwargs):
        model = SpikeOnce(create_model("cnn-tanh", (1, 28, 28), 10, depth=3))
        return lr_find(config, data, min_lr=1e-4, max_lr=1e-1, steps=60, **kwargs, model=model)

    without = run(burn_in=0)
    assert (
        without.stopped.startswith("diverged") and len(without.lrs) <= 3
    )  # the old rule: stopped by the spike
    found = run()  # burn-in: a tenth of the steps
    assert found.burn_in == 6 and not found.stopped.startswith("diverged") and len(found.lrs) == 60
    assert found.min_loss_lr in found.lrs[6:]


def test_a_minimum_inside_the_burn_in_is_not_the_suggestion():
    lrs = [10 ** (-4 + i / 10) for i in range(40)]
    smoothed = [2.3] * 40
    smoothed[1] = 1.0  # the average warming up, not the lr's doing
    smoothed[30] = 2.0  # the real minimum
    found = _suggest(lrs, smoothed, smoothed, "reached max lr", burn_in=4)
    assert found.min_loss_lr == lrs[30] and found.suggestion == pytest.approx(lrs[30] / 10)
    assert _suggest(lrs, smoothed, smoothed, "reached max lr").min_loss_lr == lrs[1]


def test_the_range_test_plot_is_clipped_to_the_smoothed_loss_and_readable():
    from depthlab.experiments.parts import draw_plot

    lrs = [10 ** (-5 + i / 10) for i in range(60)]
    smoothed = [2.3 - 0.005 * i for i in range(50)] + [2.05 + 0.5 * i for i in range(10)]
    losses = smoothed[:-1] + [1e10]  # the diverging end
    plot = _suggest(lrs, losses, smoothed, "diverged", burn_in=6).plot()
    low, high = plot.ylim
    assert low < min(smoothed) and 2.3 < high < 3 and high < max(losses)
    fig = draw_plot(plot)
    ax = fig.axes[0]
    assert ax.get_ylim() == pytest.approx((low, high))
    assert not any(t.get_text() for t in ax.xaxis.get_minorticklabels())  # 6 decades: majors only


def test_lr_find_range_checks():
    config = TrainConfig(model="cnn-tanh", model_args={"depth": 3})
    for kwargs, message in (
        (dict(min_lr=1.0, max_lr=0.1), "larger than"),
        (dict(min_lr=0.0), "positive"),
        (dict(steps=3), "steps"),
        (dict(smoothing=1.0), "smoothing"),
        (dict(steps=20, burn_in=11), "burn-in"),
        (dict(burn_in=-1), "burn-in"),
    ):
        with pytest.raises(ConfigError, match=message):
            lr_find(config, synthetic(64), **kwargs)


def test_conclusions_are_computed_from_the_numbers():
    exp = get_experiment("lr-momentum")

    def sweep_part(label, lr_errors, schedule="constant", epochs=5):
        rows = [
            {"arm": "", "lr": lr, "test_error": err, "epochs": epochs, "schedule": schedule}
            for lr, err in lr_errors
        ]
        return PartResult(label, label, [], rows)

    parts = {
        "batch64-m0": sweep_part("batch64-m0", [(0.03, 0.05), (0.1, 0.02)]),
        "batch16-m0.75": sweep_part("batch16-m0.75", [(0.01, 0.03), (0.03, 0.04)]),
        "piecewise": sweep_part("piecewise", [(0.07, 0.016)], "2@0.07,3@0.01"),
    }
    text = exp.conclude(parts)
    assert "best lr was 0.1 (2.00%" in text and "it was 0.01 (3.00%)" in text and "reached 1.60%" in text
    parts["batch64-m0"] = sweep_part("batch64-m0", [(0.03, 0.01), (0.1, 0.02)])
    assert "best lr was 0.03 (1.00%" in exp.conclude(parts)


def test_strided_conclusion_says_what_trained():
    exp = get_experiment("strided-residual")
    rows = [
        {"arm": arm, "lr": lr, "test_error": err, "best_test_error": err}
        for arm, lr, err in (
            ("strided", 0.01, 0.8865),
            ("strided", 0.1, 0.8865),
            ("strided-res", 0.01, 0.03),
            ("strided-res", 0.1, 0.8865),
            ("strided-gated", 0.01, 0.012),
            ("strided-gated", 0.1, 0.5),
        )
    ]
    gates = [
        {"arm": "a0=0.1", "gate_mean": 0.1, "test_error": 0.8865},
        {"arm": "a0=0.5", "gate_mean": 0.81, "test_error": 0.02},
    ]
    text = exp.conclude(
        {"stack-depth-3": PartResult("s", "", [], rows), "gate-start": PartResult("g", "", [], gates)}
    )
    assert "strided did not train (best test error 88.65%)" in text
    assert "strided-res trained (3.00% test error at lr 0.01)" in text
    assert "strided-gated trained (1.20% test error at lr 0.01)" in text
    assert "a0 0.1 stayed at 0.10" in text and "a0 0.5 moved to 0.81 (2.00% test error)" in text


def test_classic_experiments_plan_without_running():
    assert {"strided-residual", "lr-momentum", "skipfc-ablation"} <= set(EXPERIMENTS)
    full = plan("skipfc-ablation")
    assert len(full) == 6 * 3 and {c.epochs for c in full} == {30} and {c.optimizer for c in full} == {"adam"}
    quick = plan("skipfc-ablation", quick=True)
    assert {c.epochs for c in quick} == {2} and {c.train_size for c in quick} == {3000}
    lr = plan("lr-momentum")
    assert [c.schedule for c in lr][-1] == "2@0.07,3@0.01"
    assert {(c.batch_size, c.momentum) for c in lr} == {(64, 0.0), (16, 0.75), (16, 0.0)}
    assert len(plan("strided-residual")) == 3 * 3 + 3
    with pytest.raises(ConfigError, match="unknown experiment 'nope'"):
        plan("nope")


# ---------------------------------------------------------------------------------------------
# Functional tests on small real-MNIST subsets


def test_lr_sweep_records_each_lr_and_resumes_from_the_store(data_root, tmp_path):
    base = TrainConfig(
        model="strided",
        model_args={"stack_depth": 1},
        train_size=1500,
        test_size=1000,
        epochs=1,
        batch_size=64,
        momentum=0.9,
        device="cpu",
    )
    with Store(tmp_path / "s.db") as store:
        part = lr_sweep(base, [0.01, 0.05], store, data_dir=data_root)
        assert [r["lr"] for r in part.rows] == [0.01, 0.05]
        assert all(r["status"] == "done" and 0 <= r["test_error"] <= 1 for r in part.rows)
        assert store.count() == 2
        again = lr_sweep(base, [0.01, 0.05], store, data_dir=data_root)
        assert store.count() == 2 and all(r.reused for r in (x["result"] for x in again.runs))
        assert [r["test_error"] for r in again.rows] == [r["test_error"] for r in part.rows]
    paths = part.write(tmp_path, "sweep")
    assert [p.name for p in paths] == ["sweep.csv", "sweep-train-error.png", "sweep-test-error.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_ablation_on_real_mnist32_subset(data_root, tmp_path):
    base = dict(
        model="skipfc",
        optimizer="adam",
        lr=2e-3,
        batch_size=128,
        epochs=2,
        train_size=1500,
        test_size=1000,
        device="cpu",
    )
    with Store(tmp_path / "s.db") as store:
        part = ablate(base, ["bn"], store, folds=2, data_dir=data_root)
        assert store.count() == 4
    assert [r["arm"] for r in part.rows] == ["bn=off", "bn=on"]
    for row in part.rows:
        assert row["fits"] == "2/2"
        for key in ("train_error", "val_error", "test_error"):  # errors, like every other view
            assert 0.0 <= row[key] < 0.8 and row[key + "_std"] >= 0
        assert "train_acc" not in row
    # the two folds validate on disjoint halves, so the stored configs differ only in the fold
    folds = [r["config"]["fold"] for r in part.runs]
    assert folds == [0, 1, 0, 1]
    assert len(part.plots) == 2 and len(part.plots[0].curves[0].values) == 2


def tiny_experiment(name="tiny-test"):
    base = dict(
        model="strided",
        model_args={"stack_depth": 1},
        epochs=1,
        batch_size=64,
        momentum=0.9,
        train_size=1200,
        test_size=800,
    )

    def conclude(parts):
        best = parts["sweep"].best("test_error")
        return f"best lr {best['lr']:g} reached {100 * best['test_error']:.2f}%"

    return Experiment(
        name, "which lr?", (Sweep("sweep", base, (0.01, 0.05)),), conclude, quick={"train_size": 600}
    )


def test_reproduce_a_registered_experiment(data_root, tmp_path, monkeypatch):
    monkeypatch.setitem(EXPERIMENTS, "tiny-test", None)  # restored after the test
    register_experiment(tiny_experiment())
    with Store(tmp_path / "s.db") as store:
        result = reproduce("tiny-test", store, quick=True, data_dir=data_root, device="cpu")
    rows = result.parts["sweep"].rows
    best = min(rows, key=lambda r: r["test_error"])
    assert result.conclusion == f"best lr {best['lr']:g} reached {100 * best['test_error']:.2f}%"
    assert {r["label"] for r in rows} == {"lr=0.01", "lr=0.05"}
    assert all(run["config"]["train_size"] == 600 for run in result.parts["sweep"].runs)


@pytest.mark.slow
def test_lr_momentum_end_to_end_at_a_tiny_budget(data_root, tmp_path, monkeypatch):
    exp = get_experiment("lr-momentum")
    monkeypatch.setitem(
        EXPERIMENTS,
        "lr-momentum",
        dataclasses.replace(exp, quick=dict(train_size=500, test_size=500, epochs=1)),
    )
    with Store(tmp_path / "s.db") as store:
        result = reproduce("lr-momentum", store, quick=True, data_dir=data_root, device="cpu")
        assert store.count() == 5
    a = result.parts["batch64-m0"].best("test_error")
    assert f"best lr was {a['lr']:g} ({100 * a['test_error']:.2f}% test error)" in result.conclusion
    assert "1@0.07,1@0.01" in result.conclusion


# ---------------------------------------------------------------------------------------------
# The CLI


def run_cli(args, capsys):
    rc = main(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["reproduce", "nope"], "unknown experiment 'nope'"),
        (["ablate", "skipfc", "--toggle", "dropout"], "unknown toggle 'dropout'"),
        (["ablate", "skipfc", "--toggle", "bn", "--folds", "1"], "--folds must be at least 2"),
        (["ablate", "skipfc", "--toggle", "bn", "--folds", "2", "--seeds", "2"], "exclude each other"),
        (["ablate", "skipfc", "--toggle", "bn", "--bn"], "both fixed"),
        (["lr-sweep", "strided", "--lrs", "0.1,abc"], "bad learning rate"),
        (["lr-sweep", "strided", "--lrs", "0.1,0.2", "--schedule", "2@0.07,3@0.01"], "piecewise"),
        (["lr-sweep", "strided", "--lrs", "0.1", "-p", "stack_depth=0"], "stack_depth"),
    ],
)
def test_bad_input_is_one_line_exit_2_store_untouched(args, message, tmp_path, capsys):
    store = tmp_path / "s.db"
    rc, out, err = run_cli(args + ["--store", str(store), "--out", str(tmp_path / "out")], capsys)
    assert rc == 2
    assert err.startswith("depthlab: error:") and message in err and len(err.strip().splitlines()) == 1
    assert not store.exists()


def test_lr_find_bad_range_is_one_line(tmp_path, capsys):
    rc, out, err = run_cli(
        ["lr-find", "strided", "--min-lr", "1", "--max-lr", "0.1", "--out", str(tmp_path / "o")], capsys
    )
    assert rc == 2 and "--max-lr must be larger than --min-lr" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_lr_sweep(data_root, tmp_path, capsys):
    rc, out, err = run_cli(
        [
            "lr-sweep",
            "strided",
            "-p",
            "stack_depth=1",
            "--lrs",
            "0.02,0.1",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--momentum",
            "0",
            "--train-size",
            "1500",
            "--data-dir",
            str(data_root),
            "--store",
            str(tmp_path / "s.db"),
            "--out",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert rc == 0, err
    assert "Epoch 000/001" in out and "best lr" in out
    assert {p.name for p in (tmp_path / "o").iterdir()} == {
        "lr-sweep.csv",
        "lr-sweep-train-error.png",
        "lr-sweep-test-error.png",
        ".depthlab-command",
    }
    assert (tmp_path / "o" / ".depthlab-command").read_text() == "lr-sweep\n"  # whose results these are


def test_cli_lr_find(data_root, tmp_path, capsys):
    rc, out, err = run_cli(
        [
            "lr-find",
            "strided",
            "-p",
            "stack_depth=1",
            "--train-size",
            "1000",
            "--steps",
            "30",
            "--min-lr",
            "1e-3",
            "--max-lr",
            "3",
            "--batch-size",
            "64",
            "--momentum",
            "0.9",
            "--data-dir",
            str(data_root),
            "--out",
            str(tmp_path / "o"),
            "--json",
        ],
        capsys,
    )
    assert rc == 0, err
    found = json.loads(out)
    assert found["steps_run"] <= 30 and found["rule"].startswith("lr at the minimum")
    assert found["suggestion"] == pytest.approx(found["min_loss_lr"] / 10)
    assert (tmp_path / "o" / "lr-find.png").exists()
    assert sorted(found["files"]) == [
        str(tmp_path / "o" / "lr-find.json"),
        str(tmp_path / "o" / "lr-find.png"),
    ]
    rc, out, err = run_cli(
        [
            "lr-find",
            "strided",
            "-p",
            "stack_depth=1",
            "--train-size",
            "1000",
            "--steps",
            "30",
            "--min-lr",
            "1e-3",
            "--max-lr",
            "3",
            "--data-dir",
            str(data_root),
            "--out",
            str(tmp_path / "o"),
            "--force",
        ],
        capsys,
    )
    assert (
        rc == 0 and out.splitlines()[-1] == f"wrote lr-find.png, lr-find.json to {tmp_path / 'o'}/"
    )  # every file


def test_cli_ablate_with_friendly_flags(data_root, tmp_path, capsys):
    rc, out, err = run_cli(
        [
            "ablate",
            "skipfc",
            "--toggle",
            "bn",
            "--no-skip",
            "--seeds",
            "2",
            "--epochs",
            "1",
            "--optimizer",
            "adam",
            "--lr",
            "0.002",
            "--batch-size",
            "128",
            "--train-size",
            "1200",
            "--weight-decay",
            "1e-5",
            "--patience",
            "2",
            "--data-dir",
            str(data_root),
            "--store",
            str(tmp_path / "s.db"),
            "--out",
            str(tmp_path / "o"),
            "--json",
        ],
        capsys,
    )
    assert rc == 0, err
    rows = json.loads(out)["rows"]
    assert [r["arm"] for r in rows] == ["bn=off", "bn=on"]
    with Store(tmp_path / "s.db") as store:
        configs = [r.config for r in store.runs()]
    assert len(configs) == 4
    assert all(
        c["model_args"]["skip"] is False and c["weight_decay"] == 1e-5 and c["patience"] == 2 for c in configs
    )
    assert sorted(c["seed"] for c in configs) == [0, 0, 1, 1]


def test_cli_reproduce_lists_and_runs(data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(EXPERIMENTS, "tiny-test", tiny_experiment())
    rc, out, err = run_cli(["reproduce", "--list"], capsys)
    assert rc == 0 and "strided-residual" in out and "tiny-test" in out
    args = [
        "reproduce",
        "tiny-test",
        "--quick",
        "--data-dir",
        str(data_root),
        "--store",
        str(tmp_path / "s.db"),
        "--out",
        str(tmp_path / "o"),
    ]
    rc, out, err = run_cli(args, capsys)
    assert rc == 0, err
    last = out.strip().splitlines()
    assert any(line.startswith("best lr ") for line in last)
    assert (tmp_path / "o" / "reproduce.json").exists() and (tmp_path / "o" / "sweep-test-error.png").exists()
    rc, out2, err2 = run_cli(args, capsys)  # the second time everything comes from the store
    assert rc == 0 and "read from the store" in out2


# ---------------------------------------------------------------------------------------------
# depth-frontier, reduced budgets, forwarding to the CIFAR command


def test_frontier_part_on_a_real_subset(data_root, tmp_path):
    from depthlab.experiments.sweeps import Frontier

    part = Frontier(
        "f",
        ("cnn-elu-bn",),
        config=dict(
            depths=(3, 6),
            lrs=(0.1,),
            epochs=1,
            train_size=1500,
            eval_size=500,
            evals_per_epoch=2,
            device="cpu",
        ),
    )
    with Store(tmp_path / "s.db") as store:
        result = part.run(Context(store=store, data_dir=data_root))
        assert store.count() == 2
    row = result.row(model="cnn-elu-bn")
    assert set(row["depth_map"]) == {3, 6} and row["trials"] == 2
    assert row["max_depth"] in (None, 3, 6)
    assert (row["max_depth"] is None) == (not any(row["depth_map"].values()))
    assert result.plots[0].curves[0].epochs == [3, 6]  # x = depth


def test_depth_frontier_conclusion_is_computed():
    exp = get_experiment("depth-frontier")
    depths = {
        "cnn-tanh": 9,
        "cnn-tanh-lecun": 12,
        "cnn-elu": 6,
        "cnn-elu-bn": 24,
        "resnet-elu-bn": 24,
        "cnn-tanh-bn": 21,
        "resnet-elu": 3,
        "cnn-elu-multihead": None,
    }
    rows = [
        {"model": m, "max_depth": d, "capped": m in ("cnn-elu-bn", "resnet-elu-bn")}
        for m, d in depths.items()
    ]
    text = exp.conclude({"presets": PartResult("presets", "", [], rows)})
    assert "deepest trainable presets: cnn-elu-bn and resnet-elu-bn (24+)" in text
    assert "the shallowest: cnn-elu-multihead (no depth)" in text
    assert "cnn-elu from 6 to 24+" in text and "cnn-tanh from 9 to 21" in text
    assert "reached 24+ with BN and 3 without (+: still trainable at the search's cap of 24)" in text
    assert {c.model for c in plan("depth-frontier", quick=True)} == set(depths)


def test_reduced_budget_is_applied_and_checked():
    configs = plan("strided-residual", budget={"epochs": 2, "train_size": 5000})
    assert {(c.epochs, c.train_size) for c in configs} == {(2, 5000)}
    with pytest.raises(ConfigError, match="--epochs must be a positive integer"):
        plan("strided-residual", budget={"epochs": 0})


def test_reproduce_forwards_cifar_experiments_to_their_command(tmp_path, capsys):
    rc, out, err = run_cli(["reproduce", "--list"], capsys)
    assert "cifar-lr-bn" in out and "resnet-cifar" in out
    # the CIFAR command's own flag (--n) is accepted, and its own validation answers
    rc, out, err = run_cli(
        ["reproduce", "resnet-cifar", "--n", "3", "--epochs", "0", "--store", str(tmp_path / "s.db")], capsys
    )
    assert rc == 2 and "--epochs must be a positive integer" in err
    assert not (tmp_path / "s.db").exists()


# ---------------------------------------------------------------------------------------------
# Experiments on an executor: worker processes, fused lr groups, checkpoints


def test_an_lr_sweep_on_a_fused_group_matches_the_sequential_one(data_root, tmp_path):
    from depthlab.sweep.driver import TrialRunner
    from depthlab.sweep.executors import InProcessExecutor

    base = TrainConfig(
        model="strided",
        model_args={"stack_depth": 1},
        train_size=1500,
        test_size=1000,
        epochs=2,
        batch_size=64,
        momentum=0.9,
        device="cpu",
    )
    lrs = [0.01, 0.03, 0.1]
    with Store(tmp_path / "seq.db") as store:
        sequential = lr_sweep(base, lrs, store, data_dir=data_root)
    lines: list[str] = []
    with Store(tmp_path / "fused.db") as store, InProcessExecutor() as executor:
        runner = TrialRunner(executor, store, data_dir=data_root, fuse=3)
        fused = lr_sweep(base, lrs, store, data_dir=data_root, runner=runner, echo=lines.append)
        assert store.count("done") == 3 and runner.trials_run == 3
    assert all(run["result"].fused["members"] == 3 for run in fused.runs)  # one network for the grid
    for f, s in zip(fused.rows, sequential.rows):
        assert (f["lr"], f["status"], f["epochs"]) == (s["lr"], s["status"], s["epochs"])
        assert f["test_error"] == pytest.approx(s["test_error"], abs=3 / 1000)
    assert len(lines) == 3 and all(" done in " in line and "test error" in line for line in lines)


@pytest.mark.slow
def test_an_ablation_on_worker_processes_measures_what_the_sequential_one_does(data_root, tmp_path):
    """Extras (train/validation error of the restored weights) are measured in the worker that
    trained the network; the gated strided net's gates come back from a worker too."""
    from depthlab.sweep.driver import TrialRunner
    from depthlab.sweep.executors import ProcessExecutor

    base = dict(
        model="skipfc",
        optimizer="adam",
        lr=2e-3,
        batch_size=128,
        epochs=2,
        train_size=1500,
        test_size=1000,
        device="cpu",
        patience=1,
    )
    with Store(tmp_path / "seq.db") as store:
        sequential = ablate(base, ["bn"], store, folds=2, data_dir=data_root)
    with Store(tmp_path / "par.db") as store, ProcessExecutor(workers=2, threads=1) as executor:
        runner = TrialRunner(executor, store, data_dir=data_root)
        parallel = ablate(base, ["bn"], store, folds=2, data_dir=data_root, runner=runner)
        gated = lr_sweep(
            TrainConfig(
                model="strided-gated",
                model_args={"stack_depth": 1},
                train_size=600,
                test_size=200,
                epochs=1,
                batch_size=64,
                device="cpu",
            ),
            [0.01, 0.05],
            store,
            data_dir=data_root,
            runner=runner,
        )
        assert store.count("done") == 6
    for p, s in zip(parallel.runs, sequential.runs):
        assert p["config"] == s["config"] and p["result"].status == s["result"].status
        for key in ("fit_error", "eval_error"):
            assert p["result"].extras[key] == pytest.approx(s["result"].extras[key], abs=0.02)
    assert [r["arm"] for r in parallel.rows] == ["bn=off", "bn=on"]
    assert all(0 < r["gate_mean"] < 1 for r in gated.rows)


def test_cli_experiments_take_workers_and_fuse(data_root, tmp_path, capsys):
    common = ["--data-dir", str(data_root), "--store", str(tmp_path / "s.db")]
    rc, out, err = run_cli(
        [
            "lr-sweep",
            "strided",
            "-p",
            "stack_depth=1",
            "--lrs",
            "0.02,0.1",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--train-size",
            "600",
            "--fuse",
            "2",
            "--workers",
            "1",  # one slot: not halved
            "--out",
            str(tmp_path / "a"),
            "--json",
            *common,
        ],
        capsys,
    )
    assert rc == 0, err
    assert "up to 2 fused" in err and [r["status"] for r in json.loads(out)["rows"]] == ["done", "done"]
    with Store(tmp_path / "s.db") as store:
        assert all(r.result["fused"]["members"] == 2 for r in store.runs())
    assert not (tmp_path / "s.db-checkpoints").exists()
    rc, out, err = run_cli(
        [
            "ablate",
            "skipfc",
            "--toggle",
            "bn",
            "--folds",
            "2",
            "--epochs",
            "1",
            "--optimizer",
            "adam",
            "--lr",
            "0.002",
            "--train-size",
            "600",
            "--workers",
            "2",
            "--out",
            str(tmp_path / "b"),
            *common,
        ],
        capsys,
    )
    assert rc == 0, err
    assert "2 worker processes" in err and out.count(" done in ") == 4
    rc, out, err = run_cli(["reproduce", "lr-momentum", "--workers", "0", *common], capsys)
    assert rc == 2 and "--workers" in err
