"""The optimizer as an axis of the frontier search (issue 30, section 1): a depth trains when some
(optimizer, lr) trains it, each optimizer on its own grid. On synthetic verdicts the search equals
the exhaustive optimizer x lr x depth grid, one-at-a-time and in waves that never mix optimizers;
SGD alone keeps every trial's identity (the carried store's hashes); the grammar, the plan, the
JSON, the tables and frames name the optimizer."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from depthlab.depth_frontier.criterion import TrialVerdict
from depthlab.depth_frontier.outputs import printed_rows, table_headers, table_rows
from depthlab.depth_frontier.points import OptimizerLr, lr_words
from depthlab.depth_frontier.protocol import (
    ADAPTIVE_LRS,
    DEFAULT_LRS,
    FrontierConfig,
    parse_optimizer_lrs,
    parse_optimizers,
)
from depthlab.depth_frontier.results import FrontierResult
from depthlab.depth_frontier.search import PendingTrial, find_frontier, lr_order
from depthlab.depth_frontier.seeds import neighbours
from depthlab.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CARRIED = REPO / "runs" / "frontier-full" / "store.db"
GRIDS = {"sgd": (0.01, 0.03, 0.1, 0.3), "adam": (1e-4, 1e-3, 1e-2), "adamw": (1e-3, 1e-2)}
SGD_ADAM = {name: GRIDS[name] for name in ("sgd", "adam")}


def fake_trials(table: dict, calls: list):
    """A trial function reading verdicts from ``table[(depth, optimizer, lr, seed)]``."""

    def trial(depth, lr, seed):
        assert isinstance(lr, OptimizerLr)  # several optimizers: every point names its own
        calls.append((depth, lr.optimizer, float(lr), seed))
        ok = table[(depth, lr.optimizer, float(lr), seed)]
        return TrialVerdict(depth, lr, seed, ok, 0.1 if ok else 0.9, 1.0, "done", 0.0)

    return trial


@st.composite
def monotone_tables(draw):
    """A verdict table over depth x optimizer x lr x seed in which trainability is monotone in depth."""
    top = draw(st.integers(1, 30))
    boundary = draw(st.integers(0, top))
    optimizers = draw(st.lists(st.sampled_from(sorted(GRIDS)), min_size=2, max_size=3, unique=True))
    grids = {o: tuple(sorted(draw(st.sets(st.sampled_from(GRIDS[o]), min_size=1)))) for o in optimizers}
    seeds = list(range(draw(st.integers(1, 3))))
    points = [(o, lr) for o in optimizers for lr in grids[o]]
    table = {}
    for n in range(1, top + 1):
        working = draw(st.sets(st.sampled_from(points), min_size=1)) if n <= boundary else set()
        for o, lr in points:
            for s in seeds:  # trainable cells: every seed; others: a minority at most
                table[(3 * n, o, lr, s)] = (o, lr) in working or (
                    draw(st.booleans()) and s == 0 and len(seeds) > 1
                )
    return top, tuple(optimizers), grids, seeds, table


def exhaustive(table, depths, grids, seeds):
    """Every (depth, optimizer, lr) for the full budget: the ground truth."""
    ok = {
        d: any(2 * sum(table[(d, o, lr, s)] for s in seeds) > len(seeds) for o in grids for lr in grids[o])
        for d in depths
    }
    good, bad = [d for d in depths if ok[d]], [d for d in depths if not ok[d]]
    return ok, (max(good) if good else None), (min(bad) if bad else None)


def check_against_exhaustive(result, case, calls):
    top, _, grids, seeds, table = case
    ok, max_ok, first_bad = exhaustive(table, [3 * n for n in range(1, top + 1)], grids, seeds)
    assert result.max_trainable_depth == max_ok and result.first_failing_depth == first_bad
    for d, r in result.depths.items():
        assert r.trainable == ok[d]
        if r.trainable:  # the reported (optimizer, lr) really trains the depth, with a majority of seeds
            assert 2 * sum(table[(d, r.lr.optimizer, float(r.lr), s)] for s in seeds) > len(seeds)
    assert len(set(calls)) == len(calls)  # no trial twice


@settings(max_examples=150, deadline=None)
@given(monotone_tables())
def test_search_equals_the_exhaustive_optimizer_lr_depth_grid(case):
    top, optimizers, grids, seeds, table = case
    calls = []
    config = FrontierConfig(max_depth=3 * top, optimizers=optimizers, lrs=grids, seeds=len(seeds))
    result = find_frontier("cnn-tanh", config, None, trial=fake_trials(table, calls))
    check_against_exhaustive(result, case, calls)
    if result.lr is not None:
        assert result.to_dict()["optimizer"] == result.lr.optimizer


@settings(max_examples=100, deadline=None)
@given(monotone_tables(), st.integers(2, 4))
def test_waves_hold_one_optimizer_and_answer_as_the_one_at_a_time_search(case, width):
    top, optimizers, grids, seeds, table = case
    config = FrontierConfig(max_depth=3 * top, optimizers=optimizers, lrs=grids, seeds=len(seeds))
    one_at_a_time = find_frontier("cnn-tanh", config, None, trial=fake_trials(table, []))
    waves, trial = [], fake_trials(table, [])

    def cells(batch):
        waves.append(batch)
        return [trial(*cell) for cell in batch]

    batched = find_frontier("cnn-tanh", config, None, cells=cells, width=width)
    assert all(len({lr.optimizer for _, lr, _ in wave}) == 1 for wave in waves)  # never across optimizers
    assert all(len({lr for _, lr, _ in wave}) <= width for wave in waves)
    assert batched.to_dict()["depths"] == one_at_a_time.to_dict()["depths"]
    assert (batched.max_trainable_depth, batched.lr) == (one_at_a_time.max_trainable_depth, one_at_a_time.lr)


def test_the_search_order_tries_the_winning_optimizer_first_then_the_others_from_their_middle():
    config = FrontierConfig(optimizers=("sgd", "adam"), lrs=SGD_ADAM)
    points = config.points()
    assert lr_order(points, None)[:4] == [
        OptimizerLr("sgd", 0.1),
        OptimizerLr("sgd", 0.03),
        OptimizerLr("sgd", 0.3),
        OptimizerLr("sgd", 0.01),
    ]
    order = lr_order(points, OptimizerLr("adam", 1e-2))
    assert order == [OptimizerLr("adam", x) for x in (1e-2, 1e-3, 1e-4)] + lr_order(points, None)[:4]
    assert OptimizerLr("sgd", 0.01) != OptimizerLr("adam", 0.01) and OptimizerLr("sgd", 0.01) != 0.01
    assert neighbours(OptimizerLr("adam", 1e-2), points) == [
        OptimizerLr("adam", 1e-3),
        OptimizerLr("adam", 1e-2),
    ]
    assert lr_words(OptimizerLr("adam", 1e-4)) == "adam lr 0.0001" and lr_words(0.1) == "lr 0.1"


def test_a_depth_only_adam_trains_is_trainable_and_the_answer_names_adam():
    """SGD fails everywhere, Adam trains to 48: the frontier is 48, with adam lr 1e-3."""
    truth = lambda d, lr, s: lr.optimizer == "adam" and float(lr) == 1e-3 and d <= 48  # noqa: E731
    config = FrontierConfig(max_depth=96, optimizers=("sgd", "adam"), lrs=SGD_ADAM)
    calls = []

    def trial(depth, lr, seed):
        calls.append((depth, lr, seed))
        ok = truth(depth, lr, seed)
        return TrialVerdict(depth, lr, seed, ok, 0.1 if ok else 0.9, 1.0, "done", 0.0)

    m = find_frontier("cnn-tanh", config, None, trial=trial)
    assert (m.max_trainable_depth, m.first_failing_depth) == (48, 51)
    assert (
        m.lr == OptimizerLr("adam", 1e-3)
        and f"trainable at {m.max_trainable_depth} with {lr_words(m.lr)}"
        == "trainable at 48 with adam lr 0.001"
    )
    d = m.to_dict()
    assert d["optimizer"] == "adam" and d["lr"] == 1e-3 and d["depths"]["48"]["optimizer"] == "adam"
    assert set(d["depths"]["51"]["lrs_tried"]) == {
        "sgd 0.01",
        "sgd 0.03",
        "sgd 0.1",
        "sgd 0.3",
        "adam 0.0001",
        "adam 0.001",
        "adam 0.01",
    }
    # once adam trained a depth, the next depth starts with it: one trial per trainable depth after the first
    assert [c[1] for c in calls if c[0] == 6] == [OptimizerLr("adam", 1e-3)]
    result = FrontierResult(config, [m], 0.0)
    assert table_headers(result)[-1] == "optimizer" and table_rows(result)[0][-1] == "adam"
    assert table_rows(result)[0][3] == 1e-3 and printed_rows(result)[0][2] == "adam 0.001"
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["config"]["optimizers"] == ["sgd", "adam"] and doc["config"]["lrs"]["adam"] == [
        1e-4,
        1e-3,
        1e-2,
    ]
    frame = result.to_frame()
    assert frame["optimizer"].tolist() == ["adam"] and frame["lr"].tolist() == [1e-3]


def test_seeds_auto_rechecks_the_boundary_at_the_deciding_optimizers_neighbours():
    truth = lambda d, lr, s: lr.optimizer == "adam" and d <= 15  # noqa: E731
    config = FrontierConfig(max_depth=48, optimizers=("sgd", "adam"), lrs=SGD_ADAM, seeds="auto")
    calls = []

    def trial(depth, lr, seed):
        calls.append((depth, lr, seed))
        ok = truth(depth, lr, seed)
        return TrialVerdict(depth, lr, seed, ok, 0.1 if ok else 0.9, 1.0, "done", 0.0)

    m = find_frontier("cnn-tanh", config, None, trial=trial)
    assert (m.max_trainable_depth, m.first_failing_depth, m.label) == (15, 18, "15 [15–15]")
    assert {lr.optimizer for _, lr, s in calls if s > 0} == {"adam"}  # re-checks stay in the deciding grid
    assert m.lr.optimizer == "adam" and len(calls) == len(set(calls))


def test_status_mode_names_the_next_trials_optimizer():
    config = FrontierConfig(max_depth=48, optimizers=("sgd", "adam"), lrs=SGD_ADAM)

    def from_store(depth, lr, seed):  # depth 3 is stored (sgd 0.1 trains), nothing else
        if depth > 3:
            raise PendingTrial((depth, lr, seed))
        return TrialVerdict(depth, lr, seed, True, 0.1, 1.0, "done", 0.0)

    m = find_frontier("cnn-tanh", config, None, trial=from_store)
    assert m.next_trial == (6, OptimizerLr("sgd", 0.1), 0)
    assert m.to_dict()["next_trial"] == {"depth": 6, "lr": 0.1, "seed": 0, "optimizer": "sgd"}


# ---------------------------------------------------------------------------------------------
# Identity: SGD alone is the search it was


@pytest.mark.skipif(not CARRIED.exists(), reason="the carried frontier store is not in this checkout")
def test_sgd_alone_keeps_the_hashes_of_the_carried_store():
    """The carried store's trials were recorded before the optimizer axis: the default protocol,
    SGD named explicitly or not, hashes its cells to keys the store holds, and Adam's do not."""
    before = hashlib.md5(CARRIED.read_bytes()).hexdigest()
    db = sqlite3.connect(f"file:{CARRIED}?mode=ro", uri=True)
    try:
        keys = {k for (k,) in db.execute("SELECT config_hash FROM runs WHERE kind = 'frontier'")}
    finally:
        db.close()
    default = FrontierConfig(max_depth=300)
    named = FrontierConfig(max_depth=300, optimizers=("sgd",), lrs={"sgd": DEFAULT_LRS})
    cell = ("cnn-tanh", 9, 0.1, 0)  # the classic cnn-tanh frontier: 9 at lr 0.1
    assert default.trial_config(*cell).hash() in keys
    assert named.trial_config(*cell).hash() == default.trial_config(*cell).hash()
    assert named.lrs == default.lrs == DEFAULT_LRS and named.points() == default.points()
    both = FrontierConfig(max_depth=300, optimizers=("sgd", "adam"))
    assert both.trial_config("cnn-tanh", 9, OptimizerLr("sgd", 0.1), 0).hash() in keys
    assert both.trial_config("cnn-tanh", 9, OptimizerLr("adam", 0.1), 0).hash() not in keys
    assert hashlib.md5(CARRIED.read_bytes()).hexdigest() == before


def test_sgd_alone_keeps_its_outputs_and_the_fixes_experiment_its_trials():
    from depthlab.experiments.fixes import ARMS, PROTOCOL, QUICK, TAT_ARM
    from depthlab.experiments.parts import Context
    from depthlab.experiments.sweeps import Frontier

    ARMS = tuple(a for a in ARMS if a != TAT_ARM)  # the "fixes" part: TAT has a part of its own

    config = FrontierConfig()
    assert config.points() == DEFAULT_LRS and not config.names_optimizer and config.changes() == {}
    assert FrontierConfig.quick().lrs == (0.01, 0.1, 1.0)
    # The table searches SGD and Adam; its SGD trials are the SGD-only table's (the stored ones).
    assert PROTOCOL["optimizers"] == ("sgd", "adam")
    for quick, sgd_grid in ((False, (0.003, 0.01, 0.03, 0.1, 0.3)), (True, (0.01, 0.1))):
        ctx = Context(quick=quick)
        both = Frontier("fixes", ARMS, config=PROTOCOL, quick=QUICK).frontier_config(ctx)
        plain = dict(PROTOCOL, lrs=sgd_grid, seeds=1)
        plain.pop("optimizers")
        alone = Frontier("fixes", ARMS, config=plain, quick=dict(QUICK, lrs=sgd_grid)).frontier_config(ctx)
        assert both.grids()["sgd"] == alone.lrs == sgd_grid
        for model in ARMS:
            for lr in sgd_grid:
                assert (
                    both.trial_config(model, 9, OptimizerLr("sgd", lr), 0).hash()
                    == alone.trial_config(model, 9, lr, 0).hash()
                )
            assert (
                both.trial_config(model, 9, OptimizerLr("adam", 1e-3), 0).hash()
                != alone.trial_config(model, 9, 1e-3, 0).hash()
            )
    both = Frontier("fixes", ARMS, config=dict(PROTOCOL, optimizers=("sgd", "adam")), quick=QUICK)
    fc = both.frontier_config(Context(quick=True))
    assert fc.grids() == {"sgd": (0.01, 0.1), "adam": (1e-3,)}


# ---------------------------------------------------------------------------------------------
# The grammar and the defaults


def test_the_grid_grammar():
    assert parse_optimizer_lrs(()) is None
    assert parse_optimizer_lrs(["0.01,0.1"]) == (0.01, 0.1)  # plain: the single optimizer's grid
    assert parse_optimizer_lrs(["adam=log:1e-5:1e-2:7"]) == {"adam": ADAPTIVE_LRS}
    assert parse_optimizer_lrs(["sgd=0.01,0.1", "ADAM=1e-3"]) == {"sgd": (0.01, 0.1), "adam": (1e-3,)}
    assert parse_optimizers("sgd, adam") == ("sgd", "adam")
    assert FrontierConfig(optimizers=("adam",)).lrs == ADAPTIVE_LRS  # each optimizer's own default
    assert FrontierConfig(optimizers=("adam",), lrs=(1e-3, 1e-2)).points() == (
        OptimizerLr("adam", 1e-3),
        OptimizerLr("adam", 1e-2),
    )
    two = FrontierConfig(optimizers=("sgd", "adamw"), lrs={"adamw": (1e-3,)})
    assert two.grids() == {"sgd": DEFAULT_LRS, "adamw": (1e-3,)} and two.widest_grid() == 7
    assert FrontierConfig.quick(optimizers=("sgd", "adam")).grids() == {
        "sgd": (0.01, 0.1, 1.0),
        "adam": (1e-4, 1e-3, 1e-2),
    }


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(optimizers=("sgd", "adam"), lrs=(0.01, 0.1)), "name each grid"),
        (dict(optimizers=("sgd",), lrs={"adam": (1e-3,)}), "not among the optimizers"),
        (dict(optimizers=("rmsprop",)), "unknown optimizer"),
        (dict(optimizers=("sgd", "sgd")), "duplicates"),
        (dict(optimizers=()), "non-empty"),
        (dict(optimizers=("sgd", "adam"), lrs={"adam": ()}), "adam's learning-rate grid is empty"),
        (dict(optimizers=("sgd", "adam"), lrs={"adam": (1e-3, 1e-3)}), "duplicates"),
        (dict(optimizers=("sgd", "adam"), lrs={"adam": 0.001}), "must be a list"),
    ],
)
def test_bad_optimizer_settings_are_one_config_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        FrontierConfig(**changes)


@pytest.mark.parametrize(
    "values, message",
    [
        (["0.01", "0.1"], "each names its optimizer"),
        (["rmsprop=0.1"], "unknown optimizer"),
        (["adam=0.1", "adam=0.2"], "twice"),
        (["adam=log:1:0.1:3"], "bad --lrs for adam"),
    ],
)
def test_bad_grids_are_one_config_error(values, message):
    with pytest.raises(ConfigError, match=message):
        parse_optimizer_lrs(values)


# ---------------------------------------------------------------------------------------------
# The plan


def test_the_dry_run_plan_counts_every_optimizers_grid():
    from depthlab.cli.plan import plan_lines

    costs = {"plain": 3e-3, "bn": 6e-3}  # the bounds in minutes, to compare them
    sgd = FrontierConfig(max_depth=12, lrs=(0.01, 0.1))
    both = FrontierConfig(
        max_depth=12, optimizers=("sgd", "adam"), lrs={"sgd": (0.01, 0.1), "adam": (1e-4, 1e-3, 1e-2)}
    )
    one, two = plan_lines(["cnn-tanh"], sgd, costs, 1000), plan_lines(["cnn-tanh"], both, costs, 1000)
    assert "lrs 0.01, 0.1;" in one[0] and "optimizer" not in one[0]
    assert "sgd lrs 0.01, 0.1; adam lrs 0.0001, 0.001, 0.01 (5 (optimizer, lr) points)" in two[0]

    def bound(line: str) -> str:
        return line.split(" to ")[1].split(" (")[0]

    # the bound trains every point of every probed depth: 5 points cost 5/2 of 2
    assert float(bound(two[1]).split()[0]) == pytest.approx(2.5 * float(bound(one[1]).split()[0]), rel=0.05)


# ---------------------------------------------------------------------------------------------
# The command and the API on real MNIST (tiny)


def test_cli_and_api_search_two_optimizers_resume_and_report_them(mnist, data_root, tmp_path, capsys):
    import depthlab
    from depthlab.cli import main

    store = tmp_path / "f.db"
    fields = dict(depths=(3,), epochs=1, train_size=500, eval_size=200, evals_per_epoch=1, device="cpu")
    found = depthlab.frontier(
        "cnn-tanh",
        store=store,
        progress=False,
        data=mnist,
        optimizers=["sgd", "adam"],
        lrs={"sgd": [0.1], "adam": [1e-3]},
        **fields,
    )
    m = found.models[0]
    assert m.trials >= 1 and m.lr is None or m.lr.optimizer in ("sgd", "adam")
    args = [
        "frontier",
        "--models",
        "cnn-tanh",
        "--depths",
        "3",
        "--epochs",
        "1",
        "--train-size",
        "500",
        "--eval-size",
        "200",
        "--evals-per-epoch",
        "1",
        "--device",
        "cpu",
        "--optimizers",
        "sgd,adam",
        "--lrs",
        "sgd=0.1",
        "--lrs",
        "adam=1e-3",
        "--store",
        str(store),
        "--data-dir",
        str(data_root),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    again = doc["models"][0]
    assert again["trials_reused"] == again["trials"] == m.trials  # resumed: every trial read back
    assert again["depths"]["3"] == m.depths[3].to_dict()
    assert (tmp_path / "out" / "frontier.csv").read_text().splitlines()[0].endswith(",optimizer")
    assert main(args[:-2] + ["--status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)["models"][0]
    assert status["depths"] == doc["models"][0]["depths"] and status.get("optimizer") == again.get(
        "optimizer"
    )
