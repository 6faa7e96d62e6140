"""Which depths are valid is the factory's business (issue 21): ``--depth-step`` / ``depth_step``
sets the search's step (default 3 for the built-in families, a factory's ``depth_step`` or 1),
the multiple-of-the-step rule binds only the built-in families, and a store filled by a factory's
frontier reads back in ``frontier --status`` and ``depthlab runs``."""

from __future__ import annotations

import json
import textwrap

import pytest

import depthlab
from depthlab.cli import main
from depthlab.depth_frontier.criterion import TrialVerdict
from depthlab.depth_frontier.protocol import FrontierConfig
from depthlab.depth_frontier.search import find_frontier
from depthlab.errors import ConfigError
from depthlab.models import ModelFactory

NETS = textwrap.dedent("""
    from torch import nn


    def build(depth, width=8):
        layers = [nn.Flatten(), nn.Linear(784, width), nn.Tanh()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.Tanh()]
        return nn.Sequential(*layers, nn.Linear(width, 10))
""")


@pytest.fixture
def factory(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(NETS)
    return ModelFactory.from_file(str(path))


def probed(model, config, trains_up_to: int) -> list[int]:
    calls = []

    def trial(depth, lr, seed):
        calls.append(depth)
        ok = depth <= trains_up_to
        return TrialVerdict(depth, lr, seed, ok, 0.1 if ok else 0.9, 1.0, "done", 0.0)

    find_frontier(model, config, None, trial=trial)
    return calls


def test_the_step_in_use_is_the_flag_else_the_models_own(factory):
    config = FrontierConfig(max_depth=7, depth_step=2)
    assert config.step_for(factory) == config.step_for("cnn-tanh") == 2
    assert FrontierConfig().step_for("cnn-tanh") == 3 and FrontierConfig().step_for(factory) == 1


def test_a_factory_searches_multiples_of_the_step_up_to_a_max_depth_that_is_not_one(factory):
    config = FrontierConfig(max_depth=7, depth_step=2, lrs=(0.1,))
    assert probed(factory, config, trains_up_to=100) == [2, 4, 6]
    assert probed(factory, config, trains_up_to=3) == [2, 4]
    assert probed(factory, FrontierConfig(max_depth=7, lrs=(0.1,)), trains_up_to=4) == [1, 2, 4, 7, 5]
    assert probed(factory, FrontierConfig(depths=(1, 2, 5), lrs=(0.1,)), trains_up_to=100) == [1, 2, 5]


def test_the_multiple_rule_binds_only_the_built_in_families(factory):
    FrontierConfig(max_depth=7, depth_step=2).validate_models([factory])
    FrontierConfig(depths=(1, 2, 5)).validate_models([factory])
    FrontierConfig(max_depth=12, depth_step=6).validate_models(["cnn-tanh"])
    for config, message in [
        (FrontierConfig(max_depth=7), "--max-depth must be a multiple of 3, got 7"),
        (FrontierConfig(depths=(3, 5)), "depths must be positive multiples of 3, got 5"),
        (FrontierConfig(max_depth=10, depth_step=4), "--max-depth must be a multiple of 4, got 10"),
        (FrontierConfig(max_depth=2), "--max-depth must be at least 3, got 2"),
    ]:
        with pytest.raises(ConfigError, match=message):
            config.validate_models(["cnn-tanh"])
    with pytest.raises(ConfigError, match="depths must be positive, got 0"):
        FrontierConfig(depths=(0, 2)).validate_models([factory])


@pytest.mark.parametrize(
    "fields",
    [
        dict(max_depth=7, depth_step=0),
        dict(max_depth=7, depth_step=8),
        dict(depths=(1, 2, 5), depth_step=6),
        dict(max_depth=7, depth_step=True),
        dict(max_depth=7, depth_step=2.0),
    ],
)
def test_the_step_is_bounded_by_one_and_the_deepest_depth(fields):
    with pytest.raises(ConfigError, match="--depth-step must be an integer from 1 to the deepest depth"):
        FrontierConfig(**fields)


def test_the_python_api_takes_depth_step(factory, mnist):
    found = depthlab.frontier(
        factory,
        progress=False,
        data=mnist,
        max_depth=5,
        depth_step=2,
        lrs=(0.3,),
        epochs=1,
        train_size=256,
        eval_size=200,
        evals_per_epoch=1,
        threshold=0.99,
        device="cpu",
    )
    assert sorted(found.models[0].depths) == [2, 4] and found.models[0].max_trainable_depth == 4


SMALL = [
    "--lrs",
    "0.3",
    "--epochs",
    "1",
    "--train-size",
    "256",
    "--eval-size",
    "200",
    "--evals-per-epoch",
    "1",
    "--threshold",
    "0.99",
    "--device",
    "cpu",
    "--workers",
    "1",
]  # every net errs less than 99%: each depth trains


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_factory_frontier_fills_a_store_that_status_and_runs_read_back(
    factory, tmp_path, capsys, data_root
):
    store, model_file = str(tmp_path / "s.db"), factory.origin
    common = ["--model-file", model_file, *SMALL, "--store", store, "--data-dir", str(data_root)]
    code, out, err = _run(
        capsys, "frontier", *common, "--depths", "1,2,5", "--out", str(tmp_path / "o"), "--json"
    )
    assert code == 0, err
    (found,) = json.loads(out.splitlines()[-1])["models"]
    assert found["model"] == "nets.build" and found["max_trainable_depth"] == 5
    assert sorted(map(int, found["depths"])) == [1, 2, 5]

    code, out, err = _run(capsys, "frontier", *common, "--depths", "1,2,5", "--status")
    assert code == 0, err
    row = [line for line in out.splitlines() if line.startswith("nets.build")]
    assert (
        len(row) == 1
        and "≥ 5 (cap)" in row[0]
        and "finished" in row[0]
        and row[0].rstrip().endswith("1+ 2+ 5+")
    )
    assert "1 of 1 searches finished" in out

    code, out, err = _run(capsys, "runs", "--store", store)
    assert code == 0, err
    trials = [line.split() for line in out.splitlines() if " nets.build " in line]
    assert sorted(int(t[4]) for t in trials) == [1, 2, 5] and all("done" in t for t in trials)


def test_the_cli_searches_a_factory_with_depth_step_2_to_max_depth_7(factory, tmp_path, capsys, data_root):
    code, out, err = _run(
        capsys,
        "frontier",
        "--model-file",
        factory.origin,
        *SMALL,
        "--max-depth",
        "7",
        "--depth-step",
        "2",
        "--store",
        str(tmp_path / "s.db"),
        "--out",
        str(tmp_path / "o"),
        "--data-dir",
        str(data_root),
        "--json",
    )
    assert code == 0, err
    (found,) = json.loads(out.splitlines()[-1])["models"]
    assert sorted(map(int, found["depths"])) == [2, 4, 6] and found["max_trainable_depth"] == 6


def test_the_dry_run_plans_a_factory_with_its_step(factory):
    from depthlab.cli import plan

    assert plan.probe_depths(7, step=2) == [2, 4, 6] and plan.probe_depths(300) == [
        3,
        6,
        12,
        24,
        48,
        96,
        192,
        300,
    ]
    lines = plan.plan_lines(
        [factory, "cnn-tanh"], FrontierConfig(max_depth=9), {"plain": 1e-6, "bn": 2e-6}, 1000
    )
    assert "depths probed first nets.build: 1, 2, 4, 8, 9; cnn-tanh: 3, 6, 9" in lines[0]
    lines = plan.plan_lines(
        [factory], FrontierConfig(max_depth=7, depth_step=2), {"plain": 1e-6, "bn": 2e-6}, 1000
    )
    assert "model(s) nets.build; depths probed first 2, 4, 6 " in lines[0] and "multiples of 2)" in lines[0]
