"""The depth-frontier search (depthlab.depth_frontier) and `depthlab frontier`."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from depthlab.cli import main
from depthlab.depth_frontier.criterion import TrialVerdict, first_met, point_error, run_trial
from depthlab.depth_frontier.outputs import depth_label
from depthlab.depth_frontier.protocol import DEFAULT_LRS, FrontierConfig, parse_lrs
from depthlab.depth_frontier.results import DepthResult, ModelFrontier
from depthlab.depth_frontier.search import (
    PendingTrial,
    failure_cost_ratio,
    find_frontier,
    lr_order,
    search_depths,
    split_point,
)
from depthlab.engine.checkpoints import CHECKPOINT_FORMAT, save_checkpoint
from depthlab.engine.loop import train
from depthlab.errors import ConfigError
from depthlab.store.sqlite import Store

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# The search logic against an exhaustive grid, with a fake trial function


def fake_trials(table: dict, calls: list):
    """A trial function reading verdicts from ``table[(depth, lr, seed)]``."""

    def trial(depth, lr, seed):
        calls.append((depth, lr, seed))
        ok = table[(depth, lr, seed)]
        return TrialVerdict(depth, lr, seed, ok, 0.1 if ok else 0.9, 1.0, "done", 0.0)

    return trial


def exhaustive(table, depths, lrs, seeds):
    """Every (depth, lr) cell for the full budget: the ground truth the search must match."""
    ok = {d: any(2 * sum(table[(d, lr, s)] for s in seeds) > len(seeds) for lr in lrs) for d in depths}
    good = [d for d in depths if ok[d]]
    bad = [d for d in depths if not ok[d]]
    return ok, (max(good) if good else None), (min(bad) if bad else None)


@st.composite
def monotone_tables(draw):
    top = draw(st.integers(1, 40))  # max depth = 3 * top
    boundary = draw(st.integers(0, top))  # depths 3..3*boundary train
    lrs = sorted(draw(st.sets(st.sampled_from([0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]), min_size=1)))
    nseeds = draw(st.integers(1, 3))
    seeds = list(range(nseeds))
    table = {}
    for n in range(1, top + 1):
        d = 3 * n
        working = draw(st.sets(st.sampled_from(lrs), min_size=1)) if n <= boundary else set()
        for lr in lrs:
            for s in seeds:
                # trainable cells: all seeds train; others: a random minority at most
                table[(d, lr, s)] = lr in working or (draw(st.booleans()) and s == 0 and nseeds > 1)
    return top, lrs, seeds, table


@settings(max_examples=150, deadline=None)
@given(monotone_tables())
def test_search_equals_exhaustive_grid_when_trainability_is_monotone(case):
    top, lrs, seeds, table = case
    calls = []
    config = FrontierConfig(max_depth=3 * top, lrs=tuple(lrs), seeds=len(seeds))
    result = find_frontier("cnn-tanh", config, None, trial=fake_trials(table, calls))
    depths = [3 * n for n in range(1, top + 1)]
    ok, max_ok, first_bad = exhaustive(table, depths, lrs, seeds)
    assert result.max_trainable_depth == max_ok
    assert result.first_failing_depth == (
        max_ok + 3 if max_ok is not None and max_ok < 3 * top else (3 if max_ok is None else None)
    )
    assert result.first_failing_depth == first_bad
    for d, r in result.depths.items():
        assert r.trainable == ok[d]
        if r.trainable:  # the reported lr really trains that depth, with a majority of seeds
            assert 2 * sum(table[(d, r.lr, s)] for s in seeds) > len(seeds)
            assert r.fraction == sum(table[(d, r.lr, s)] for s in seeds) / len(seeds)
    assert len(set(calls)) == len(calls)  # no trial twice
    assert len(calls) <= len(depths) * len(lrs) * len(seeds)


@settings(max_examples=100, deadline=None)
@given(monotone_tables(), st.integers(0, 400))
def test_an_interrupted_search_reports_its_decided_prefix_and_next_trial(case, cut):
    """A trial function that stops at the k-th trial (what `frontier --status` does where the
    store ends) gives the depths the full search had decided by then and names trial k."""
    top, lrs, seeds, table = case
    config = FrontierConfig(max_depth=3 * top, lrs=tuple(lrs), seeds=len(seeds))
    calls = []
    full = find_frontier("cnn-tanh", config, None, trial=fake_trials(table, calls))
    cut = cut % (len(calls) + 1)
    known = fake_trials(table, [])

    def stops_at_cut(depth, lr, seed):
        if (depth, lr, seed) not in calls[:cut]:
            raise PendingTrial((depth, lr, seed))
        return known(depth, lr, seed)

    partial = find_frontier("cnn-tanh", config, None, trial=stops_at_cut)
    if cut == len(calls):
        assert partial.next_trial is None and partial.to_dict()["depths"] == full.to_dict()["depths"]
        return
    assert partial.next_trial == calls[cut]
    assert partial.to_dict()["next_trial"] == dict(zip(("depth", "lr", "seed"), calls[cut]))
    decided = {
        d
        for d, r in full.depths.items()
        if all(t in calls[:cut] for t in [(t.depth, t.lr, t.seed) for t in r.trials])
    }
    assert set(partial.depths) == decided
    for d in decided:
        assert partial.depths[d].to_dict() == full.depths[d].to_dict()


def test_search_shape_grows_geometrically_then_bisects():
    table = {(3 * n, lr, 0): 3 * n <= 27 for n in range(1, 101) for lr in (0.01, 0.1)}
    calls = []
    result = find_frontier(
        "cnn-tanh", FrontierConfig(max_depth=300, lrs=(0.01, 0.1)), None, trial=fake_trials(table, calls)
    )
    assert (result.max_trainable_depth, result.first_failing_depth) == (27, 30)
    probed = list(dict.fromkeys(d for d, _, _ in calls))
    assert probed[:5] == [3, 6, 12, 24, 48]  # geometric growth to the first failure
    assert set(probed[5:]) <= set(range(27, 48, 3)) and {27, 30} <= set(probed)
    assert len(calls) < 20  # versus 200 cells in the full grid
    # a trainable depth costs one trial when its predecessor's lr works
    assert sum(1 for d, _, _ in calls if d == 24) == 1


def test_search_reaches_the_cap_and_handles_total_failure():
    calls = []
    everything = {(3 * n, 0.1, 0): True for n in range(1, 11)}
    r = find_frontier(
        "cnn-tanh", FrontierConfig(max_depth=30, lrs=(0.1,)), None, trial=fake_trials(everything, calls)
    )
    assert (r.max_trainable_depth, r.first_failing_depth) == (30, None)
    assert [d for d, _, _ in calls] == [3, 6, 12, 24, 30]
    nothing = {k: False for k in everything}
    r = find_frontier(
        "cnn-tanh", FrontierConfig(max_depth=30, lrs=(0.1,)), None, trial=fake_trials(nothing, [])
    )
    assert (r.max_trainable_depth, r.first_failing_depth, r.lr, r.error) == (None, 3, None, None)
    assert r.to_dict()["max_trainable_depth"] is None


def test_explicit_depths_try_every_depth_and_flag_non_monotone_maps():
    table = {(d, 0.1, 0): d in (3, 9) for d in (3, 6, 9)}
    r = find_frontier(
        "cnn-tanh", FrontierConfig(depths=(3, 6, 9), lrs=(0.1,)), None, trial=fake_trials(table, [])
    )
    assert (r.max_trainable_depth, r.first_failing_depth, r.monotone) == (9, 6, False)
    assert sorted(r.depths) == [3, 6, 9]


def test_majority_of_seeds_and_fraction():
    # 2 of 3 seeds train at 0.1: trainable with fraction 2/3; 1 of 3 at depth 6: not trainable
    table = {(3, 0.1, s): s < 2 for s in range(3)} | {(6, 0.1, s): s < 1 for s in range(3)}
    r = find_frontier(
        "cnn-tanh", FrontierConfig(max_depth=6, lrs=(0.1,), seeds=3), None, trial=fake_trials(table, [])
    )
    assert (r.max_trainable_depth, r.first_failing_depth) == (3, 6)
    assert r.fraction == pytest.approx(2 / 3)
    assert r.depths[6].fraction == pytest.approx(1 / 3)


def test_lr_order_starts_from_the_previous_lr_then_outward_smaller_first():
    assert lr_order([0.001, 0.01, 0.1, 1.0], 0.1) == [0.1, 0.01, 1.0, 0.001]
    assert lr_order([0.001, 0.01, 0.1, 1.0], 0.001) == [0.001, 0.01, 0.1, 1.0]
    assert lr_order([1.0, 0.1, 0.01], None) == [0.1, 0.01, 1.0]  # the middle first


def test_default_grid_and_lr_parsing():
    assert DEFAULT_LRS[0] == 0.001 and DEFAULT_LRS[-1] == 1.0 and len(DEFAULT_LRS) == 7
    assert DEFAULT_LRS[3] == pytest.approx(10**-1.5, rel=1e-5)
    assert parse_lrs("0.1, 1") == (0.1, 1.0)
    assert parse_lrs("log:0.001:1:4") == pytest.approx((0.001, 0.01, 0.1, 1.0))
    for bad in ("", ",", "0.1,-1", "0,0.1", "abc", "log:1:0.1:3", "log:0.1:1", "nan"):
        with pytest.raises(ConfigError):
            parse_lrs(bad)


def test_criterion_definition():
    p = {"epoch": 0.5, "train_error": 0.3, "eval_error": 0.15}
    assert (
        point_error(p, "either") == 0.15 and point_error(p, "train") == 0.3 and point_error(p, "test") == 0.15
    )
    points = [
        {"epoch": 0.25, "train_error": 0.5, "eval_error": 0.25},
        p,
        {"epoch": 1.0, "train_error": 0.1, "eval_error": float("nan")},
    ]
    assert first_met(points, "either", 0.2) is p
    assert first_met(points, "train", 0.2)["epoch"] == 1.0
    assert first_met(points, "test", 0.1) is None  # NaN never meets it


# ---------------------------------------------------------------------------------------------
# Real training on real MNIST


SMALL = dict(
    train_size=2000, epochs=2, eval_size=300, evals_per_epoch=4, lrs=(0.03, 0.1), threshold=0.4, device="cpu"
)


@pytest.mark.slow
def test_search_with_early_stopping_equals_the_full_budget_exhaustive_grid(mnist, tmp_path):
    """The real thing: early-stopped trials + search vs every (depth, lr) cell trained for the
    whole budget with the verdict read from all its evaluation points afterwards."""
    config = FrontierConfig(max_depth=12, **SMALL)
    with Store(tmp_path / "s.db") as store:
        result = find_frontier("cnn-elu", config, store, mnist)
    truth = {}
    for d in (3, 6, 9, 12):
        truth[d] = {}
        for lr in config.lrs:
            full = train(config.trial_config("cnn-elu", d, lr, 0), mnist)  # no monitor: full budget
            assert not full.stopped_early
            truth[d][lr] = first_met(
                [vars(c) for c in full.evaluation_points], config.criterion, config.threshold
            )
    trainable = {d: any(hit is not None for hit in truth[d].values()) for d in truth}
    good = [d for d in truth if trainable[d]]
    bad = [d for d in truth if not trainable[d]]
    assert good and bad and max(good) < min(bad), f"the small case must be monotone and interior: {trainable}"
    assert result.max_trainable_depth == max(good)
    assert result.first_failing_depth == min(bad)
    for d, r in result.depths.items():
        assert r.trainable == trainable[d]
        if r.trainable:
            hit = truth[d][r.lr]
            assert hit is not None
            assert r.epochs == hit["epoch"] and r.error == point_error(hit, config.criterion)
    stopped = [t for dr in result.depths.values() for t in dr.trials if t.trained]
    assert any(t.epochs < config.epochs for t in stopped)  # early stopping did save compute


def test_stored_trials_are_reused_and_a_stricter_criterion_retrains(mnist, tmp_path):
    config = FrontierConfig(
        max_depth=3,
        train_size=1000,
        epochs=1,
        eval_size=300,
        evals_per_epoch=4,
        lrs=(0.1,),
        threshold=0.6,
        device="cpu",
    )
    with Store(tmp_path / "s.db") as store:
        first = run_trial("cnn-elu-bn", 3, 0.1, 0, config, store, mnist)
        again = run_trial("cnn-elu-bn", 3, 0.1, 0, config, store, mnist)
        assert first.trained and not first.reused and again.reused
        assert (again.trained, again.error, again.epochs) == (first.trained, first.error, first.epochs)
        # same trial config, stricter threshold: the stored run stopped too early to know
        strict = FrontierConfig(**{**config.__dict__, "threshold": 0.05})
        redo = run_trial("cnn-elu-bn", 3, 0.1, 0, strict, store, mnist)
        assert not redo.reused and not redo.trained
        # ...and that full-budget run answers the looser criterion again without training
        loose = run_trial("cnn-elu-bn", 3, 0.1, 0, config, store, mnist)
        assert loose.reused and loose.trained
        assert {r.kind for r in store.runs()} == {"frontier"}


# ---------------------------------------------------------------------------------------------
# The CLI


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


TINY = [
    "--models",
    "cnn-elu-bn,cnn-tanh",
    "--train-size",
    "1000",
    "--epochs",
    "1",
    "--lrs",
    "0.1,1",
    "--max-depth",
    "6",
    "--eval-size",
    "300",
    "--device",
    "cpu",
    "--threshold",
    "0.6",
]


@pytest.mark.slow
def test_frontier_cli_table_json_csv_plots_and_resume(mnist, data_root, tmp_path, capsys):
    store, out = tmp_path / "f.db", tmp_path / "out"
    args = ["frontier", *TINY, "--store", str(store), "--out", str(out), "--data-dir", str(data_root)]
    code, text, err = run_cli(args, capsys)
    assert code == 0, err
    assert "max trainable depth" in text and "cnn-elu-bn" in text
    assert {p.name for p in out.iterdir()} >= {
        "frontier.csv",
        "frontier-depths.csv",
        "frontier.json",
        "frontier-error.png",
        "frontier-depth.png",
    }
    assert (
        (out / "frontier.csv").read_text().splitlines()[0]
        == "model,max trainable depth,capped,lr,criterion error (fraction),first failing depth,seeds trained (fraction)"
    )
    assert (out / "frontier-error.png").stat().st_size < 200_000
    assert not (tmp_path / "f.db-checkpoints").exists()  # trials' checkpoints are gone once they are stored
    with Store(store) as s:
        n_runs = s.count()
    code, text, err = run_cli(args + ["--json"], capsys)
    assert code == 0
    doc = json.loads(text)
    assert [m["model"] for m in doc["models"]] == ["cnn-elu-bn", "cnn-tanh"]
    for m in doc["models"]:
        assert set(m) >= {
            "model",
            "max_trainable_depth",
            "lr",
            "error",
            "first_failing_depth",
            "fraction",
            "depths",
        }
        assert m["trials"] == m["trials_reused"]  # everything came from the store
    assert "stored" in err
    with Store(store) as s:
        assert s.count() == n_runs  # nothing trained twice


def test_frontier_status_replays_the_store_and_names_the_next_trial(data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a default --out would go
    store, out = tmp_path / "s.db", tmp_path / "out"
    args = ["frontier", *TINY, "--store", str(store), "--data-dir", str(data_root)]
    code, text, err = run_cli(args + ["--out", str(out), "--json"], capsys)
    assert code == 0, err
    ran = json.loads(text)["models"]
    code, text, err = run_cli(args + ["--status", "--json"], capsys)
    assert code == 0 and err == "", err
    status = json.loads(text)["models"]
    timing = ("seconds", "trials_reused", "next_trial_epochs_saved")
    same = lambda m: {k: v for k, v in m.items() if k not in timing}  # noqa: E731
    assert [same(m) for m in status] == [same(m) for m in ran]  # the same answer, from the store
    assert all(m["trial_seconds"] > 0 for m in status)  # ...and the same training time
    assert all(m["next_trial"] is None for m in status)

    # The search interrupted before its last trial was recorded: status names that trial.
    with Store(store) as s:
        last = s.runs(limit=1)[0]
    con = sqlite3.connect(store)
    with con:
        con.execute("DELETE FROM epochs WHERE run_id = ?", (last.id,))
        con.execute("DELETE FROM runs WHERE id = ?", (last.id,))
    con.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    code, text, err = run_cli(args + ["--status"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # without --out nothing is written
    code, _, err = run_cli(args + ["--status", "--out", str(tmp_path / "partial")], capsys)
    assert code == 0, err
    partial = json.loads((tmp_path / "partial" / "frontier.json").read_text())["models"]
    assert [m["next_trial"] is None for m in partial].count(False) == 1
    assert (tmp_path / "partial" / "frontier-depth.png").stat().st_size > 0
    model = last.config["model"]
    nxt = f"depth {last.config['model_args']['depth']} lr {last.config['lr']:g} seed {last.config['seed']}"
    row = next(line for line in text.splitlines() if line.startswith(model + " "))
    assert nxt in row and "saved" not in row, text
    assert "1 of 2 searches finished" in text
    with Store(store) as s:
        assert s.count() == sum(m["trials"] for m in ran) - 1  # status trained nothing

    # That trial in flight, its first epoch saved by its worker: status says how far it got.
    save_checkpoint(
        tmp_path / "s.db-checkpoints" / "group.pt",
        {"format": CHECKPOINT_FORMAT, "config_hash": last.config_hash, "epoch": 1},
    )
    (tmp_path / "s.db-checkpoints" / "torn.pt").write_bytes(b"half a file")  # skipped, not an error
    code, text, err = run_cli(args + ["--status"], capsys)
    assert code == 0, err
    row = next(line for line in text.splitlines() if line.startswith(model + " "))
    assert f"{nxt} (1 of 1 epochs saved)" in row, text
    code, text, err = run_cli(args + ["--status", "--json"], capsys)
    assert {m["model"]: m["next_trial_epochs_saved"] for m in json.loads(text)["models"]} == {
        m["model"]: (1 if m["model"] == model else None) for m in ran
    }
    # Saved at an evaluation point inside its second epoch: the fraction of that epoch counts.
    save_checkpoint(
        tmp_path / "s.db-checkpoints" / "group.pt",
        {
            "format": CHECKPOINT_FORMAT,
            "config_hash": last.config_hash,
            "epoch": 1,
            "mid_epoch": {"step": 2, "steps": 5},
        },
    )
    code, text, err = run_cli(args + ["--status"], capsys)
    row = next(line for line in text.splitlines() if line.startswith(model + " "))
    assert code == 0 and f"{nxt} (1.4 of 1 epochs saved)" in row, text


def test_frontier_status_needs_an_existing_store(tmp_path, capsys):
    missing = tmp_path / "missing.db"
    code, text, err = run_cli(["frontier", "--status", "--store", str(missing)], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not missing.exists()


@pytest.mark.slow
def test_frontier_resumes_after_kill_9(data_root, tmp_path):
    store, out = tmp_path / "k.db", tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "depthlab",
        "frontier",
        *TINY,
        "--store",
        str(store),
        "--out",
        str(out),
        "--data-dir",
        str(data_root),
        "--json",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.time() + 60
    finished = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if store.exists():
            try:
                con = sqlite3.connect(store)
                finished = con.execute("SELECT COUNT(*) FROM runs WHERE status != 'running'").fetchone()[0]
                con.close()
            except sqlite3.OperationalError:
                continue
            if finished >= 2:
                break
    assert proc.poll() is None, "the search finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = finished
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert sum(m["trials_reused"] for m in doc["models"]) >= done_before
    con = sqlite3.connect(store)
    rows = con.execute("SELECT config_hash, status FROM runs").fetchall()
    con.close()
    finished_hashes = [h for h, status in rows if status != "running"]
    assert len(finished_hashes) == len(set(finished_hashes))  # no trial recorded twice
    assert not [h for h, status in rows if status == "running"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--models", "cnn-nope"], "unknown model"),
        (["--models", ""], "--models is empty"),
        (["--act", "swish"], "unknown activation"),
        (["--norm", "ln"], "unknown norm"),
        (["--init", "lecun"], "unknown init"),
        (["--depths", "3,10"], "multiple"),
        (["--depths", "0"], "multiple"),
        (["--depths", ""], "empty"),
        (["--lrs", ""], "empty"),
        (["--lrs", "0.1,-0.5"], "positive"),
        (["--lrs", "0"], "positive"),
        (["--threshold", "0"], "threshold"),
        (["--threshold", "1.5"], "threshold"),
        (["--max-depth", "2"], "at least 3"),
        (["--max-depth", "10"], "multiple"),
        (["--seeds", "0"], "seeds"),
        (["--epochs", "0"], "epochs"),
        (["--eval-size", "x"], "eval-size"),
        (["--depth", "9"], "No such option '--depth'"),  # the frontier searches the depth: not offered
        (["--criterion", "val"], "criterion"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_store_untouched(extra, message, tmp_path, capsys):
    store = tmp_path / "untouched.db"
    out = tmp_path / "out"
    code, text, err = run_cli(["frontier", "--store", str(store), "--out", str(out), *extra], capsys)
    assert code == 2
    assert err.startswith("depthlab: error: ") and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err and text == ""
    assert not store.exists() and not out.exists()


def test_quick_sets_the_quick_protocol_and_flags_override_it(data_root, tmp_path, capsys):
    out = tmp_path / "out"
    code, text, err = run_cli(
        [
            "frontier",
            "--quick",
            "--models",
            "cnn-elu-bn",
            "--max-depth",
            "3",
            "--train-size",
            "1000",
            "--device",
            "cpu",
            "--store",
            str(tmp_path / "q.db"),
            "--out",
            str(out),
            "--data-dir",
            str(data_root),
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    config = json.loads((out / "frontier.json").read_text())["config"]
    assert (config["train_size"], config["epochs"], config["lrs"], config["max_depth"]) == (
        1000,
        1,
        [0.01, 0.1, 1.0],
        3,
    )
    assert (config["eval_size"], config["evals_per_epoch"], config["threshold"]) == (1000, 4, 0.2)
    assert json.loads(text)["models"][0]["model"] == "cnn-elu-bn"


def test_split_point_is_the_midpoint_for_equal_costs_and_leans_to_the_cheap_side():
    for lo, hi in ((1, 3), (2, 4), (16, 32), (32, 64), (22, 100)):
        points = [split_point(lo, hi, ratio) for ratio in (1.0, 2.0, 6.0, 14.0, 40.0)]
        assert all(lo < k < hi for k in points)
        assert points == sorted(points, reverse=True)  # costlier failures: probe nearer the trainable end
    assert split_point(32, 64, 1.0) == 48 and split_point(16, 32, 1.0) == 24


def test_the_cost_weighted_bisection_finds_every_boundary_for_less():
    """Every boundary between a trainable 96 and a failing 192: the same answer as the plain
    midpoint bisection, for less expected training when failing depths cost what they do (every
    lr for the whole budget, against one trial stopping half-way for a trainable depth)."""
    lrs = (0.001, 0.01, 0.1, 1.0)
    ratio = failure_cost_ratio(FrontierConfig(lrs=lrs))

    def cost_of_search(boundary: int, fail_over_ok: float | None) -> tuple[int, float]:
        spent = 0.0

        def evaluate(depth: int, start_lr):
            nonlocal spent
            ok = depth <= boundary
            spent += depth * (1.5 if ok else 3.0 * len(lrs))  # in epochs x depth
            return DepthResult(depth, ok, 0.1 if ok else None, None, float(ok), None)

        found = search_depths(300, evaluate, fail_over_ok)
        return max(d for d, r in found.items() if r.trainable), spent

    weighted, midpoint = [], []
    for boundary in range(96, 192, 3):
        (answer, cost), (plain_answer, plain_cost) = (
            cost_of_search(boundary, ratio),
            cost_of_search(boundary, None),
        )
        assert answer == plain_answer == boundary
        weighted.append(cost)
        midpoint.append(plain_cost)
    assert sum(weighted) < 0.9 * sum(midpoint)


def test_midpoint_bisection_is_kept_for_stores_it_filled():
    """``bisection="midpoint"`` (``--bisection midpoint``) probes exactly the midpoints, so a
    store filled by a search started before the cost-weighted split is continued, not re-probed."""
    table = {(3 * n, lr, 0): 3 * n <= 27 for n in range(1, 101) for lr in (0.01, 0.1)}
    calls: list = []
    result = find_frontier(
        "cnn-tanh",
        FrontierConfig(max_depth=300, lrs=(0.01, 0.1), bisection="midpoint"),
        None,
        trial=fake_trials(table, calls),
    )
    assert (result.max_trainable_depth, result.first_failing_depth) == (27, 30)
    assert list(dict.fromkeys(d for d, _, _ in calls)) == [3, 6, 12, 24, 48, 36, 30, 27]
    with pytest.raises(ConfigError, match="unknown bisection"):
        FrontierConfig(bisection="golden").validate()


def test_the_frontier_plot_labels_a_running_search_as_a_lower_bound():
    def frontier(best, first_fail, next_trial=None):
        return ModelFrontier("m", best, 0.1, 0.1, first_fail, 1.0, {}, True, 0.0, 0, 0, next_trial)

    assert depth_label(frontier(9, 12)) == "9"
    assert depth_label(frontier(300, None)) == "≥ 300 (cap)"  # the cap reached
    assert depth_label(frontier(None, 3)) == "none"
    assert depth_label(frontier(48, None, (96, 0.01, 0))) == "≥ 48 so far"  # `--status` of a running search
    assert depth_label(frontier(51, 96, (54, 0.01, 0))) == "≥ 51 so far"
