"""The frontier under parallelism (issue 8): lr waves, concurrent models, process workers, fused
groups and Ray give the answer of the one-trial-at-a-time search."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from depthlab.cli import main
from depthlab.depth_frontier.criterion import TrialVerdict
from depthlab.depth_frontier.protocol import FrontierConfig
from depthlab.depth_frontier.search import evaluate_depth, find_frontier, find_frontiers, search_width
from depthlab.store.sqlite import Store
from depthlab.sweep.driver import TrialRunner
from depthlab.sweep.executors import InProcessExecutor, ProcessExecutor

# ---------------------------------------------------------------------------------------------
# The logic, on verdict tables


@st.composite
def any_tables(draw):
    """Arbitrary verdicts (monotone or not) for depths 3..3*top, a grid of lrs and some seeds."""
    top = draw(st.integers(1, 12))
    lrs = sorted(draw(st.sets(st.sampled_from([0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]), min_size=1)))
    seeds = list(range(draw(st.integers(1, 3))))
    table = {(3 * n, lr, s): draw(st.booleans()) for n in range(1, top + 1) for lr in lrs for s in seeds}
    explicit = draw(st.booleans())
    return top, lrs, seeds, table, explicit


def verdict(table, depth, lr, seed) -> TrialVerdict:
    ok = table[(depth, lr, seed)]
    return TrialVerdict(depth, lr, seed, ok, 0.1 if ok else 0.9 - 0.01 * seed, 1.0, "done", 0.0)


@settings(max_examples=200, deadline=None)
@given(any_tables(), st.integers(1, 7), st.randoms(use_true_random=False))
def test_waves_of_lrs_give_the_sequential_answer_for_any_table(case, width, rng):
    """Any verdicts, any width, and any part of the grid already in the store (a resumed
    search): the waves' answer and reported trials are the one-at-a-time search's, and no wave
    goes on past an lr whose stored trials already decide the depth."""
    top, lrs, seeds, table, explicit = case
    in_store = {cell for cell in table if rng.random() < 0.3}
    config = FrontierConfig(
        max_depth=3 * top,
        lrs=tuple(lrs),
        seeds=len(seeds),
        depths=tuple(range(3, 3 * top + 1, 3)) if explicit else None,
    )
    one_by_one = find_frontier("cnn-tanh", config, None, trial=lambda d, lr, s: verdict(table, d, lr, s))
    batches = []

    def cells(batch):
        batches.append(batch)
        return [verdict(table, *cell) for cell in batch]

    def stored(batch):
        return [verdict(table, *cell) if cell in in_store else None for cell in batch]

    waves = find_frontier("cnn-tanh", config, None, cells=cells, width=width, stored=stored)
    strip = lambda r: {k: v for k, v in r.to_dict().items() if k != "seconds"}  # noqa: E731
    assert strip(waves) == strip(one_by_one)
    assert [t.__dict__ for d in waves.depths.values() for t in d.trials] == [
        t.__dict__ for d in one_by_one.depths.values() for t in d.trials
    ]
    assert all(len(b) <= width * len(seeds) for b in batches)
    for b in batches:  # cells come lr by lr, all seeds of an lr together
        lrs_in_batch = list(dict.fromkeys(lr for _, lr, _ in b))
        decided = [
            2 * sum((d, lr, s) in in_store and table[(d, lr, s)] for d, x, s in b if x == lr) > len(seeds)
            for lr in lrs_in_batch
        ]
        assert not any(decided[:-1]), "a wave went on past a stored winner"


def test_a_wave_stops_at_a_stored_winner():
    lrs = (0.001, 0.01, 0.03, 0.1, 0.3, 1.0)
    batches = []

    def cells(batch):
        batches.append([lr for _, lr, _ in batch])
        return [TrialVerdict(d, lr, s, lr == 0.01, 0.1, 1.0, "done", 0.0) for d, lr, s in batch]

    def stored(batch):  # 0.01 already trained at this depth
        return [
            TrialVerdict(d, lr, s, True, 0.1, 1.0, "done", 0.0, reused=True) if lr == 0.01 else None
            for d, lr, s in batch
        ]

    result = evaluate_depth(12, lrs, None, [0], cells=cells, width=6, stored=stored)
    assert batches == [[0.1, 0.03, 0.3, 0.01]]  # lr_order: 0.1, 0.03, 0.3, 0.01, 1.0, 0.001
    assert result.trainable and result.lr == 0.01

    # The store said 0.01 trains, but when the wave ran it did not (another process retrained
    # it since): the lrs cut from the wave come next, as in the one-at-a-time search.
    batches.clear()

    def cells_where_only_1_trains(batch):
        batches.append([lr for _, lr, _ in batch])
        return [TrialVerdict(d, lr, s, lr == 1.0, 0.1, 1.0, "done", 0.0) for d, lr, s in batch]

    result = evaluate_depth(12, lrs, None, [0], cells=cells_where_only_1_trains, width=6, stored=stored)
    assert batches == [[0.1, 0.03, 0.3, 0.01], [1.0, 0.001]]
    assert result.trainable and result.lr == 1.0


def test_the_previous_winner_leads_alone_then_waves_of_width():
    lrs = (0.001, 0.01, 0.03, 0.1, 0.3, 1.0)
    batches = []

    def cells(batch):
        batches.append(sorted({lr for _, lr, _ in batch}))
        return [TrialVerdict(d, lr, s, False, 0.9, 1.0, "done", 0.0) for d, lr, s in batch]

    evaluate_depth(12, lrs, 0.1, [0, 1], cells=cells, width=4)
    assert batches == [[0.1], [0.01, 0.03, 0.3, 1.0], [0.001]]  # lr_order: 0.1, 0.03, 0.3, 0.01, 1.0, 0.001
    batches.clear()
    evaluate_depth(3, lrs, None, [0], cells=cells, width=4)  # no winner yet: full waves
    assert [len(b) for b in batches] == [4, 2]
    batches.clear()
    evaluate_depth(3, lrs, 0.1, [0], cells=cells, width=1)
    assert [len(b) for b in batches] == [1] * 6


def test_search_width():
    config = FrontierConfig(lrs=(0.01, 0.1, 1.0))
    assert search_width(parallelism=1, fuse=1, models=8, config=config) == 1  # sequential: no speculation
    assert search_width(parallelism=2, fuse=1, models=8, config=config) == 1  # models fill the workers
    assert search_width(parallelism=2, fuse=1, models=1, config=config) == 2  # one model: two lrs at once
    assert search_width(parallelism=16, fuse=8, models=2, config=config) == 3  # fused: the whole grid
    assert search_width(parallelism=4, fuse=1, models=1, config=FrontierConfig(lrs=(0.1, 1.0), seeds=2)) == 2


# ---------------------------------------------------------------------------------------------
# Real training on real MNIST

SMALL = dict(
    max_depth=9,
    train_size=1000,
    epochs=1,
    eval_size=300,
    evals_per_epoch=4,
    lrs=(0.03, 0.3, 1.0),
    threshold=0.6,
    device="cpu",
)
MODELS = ["cnn-elu-bn", "cnn-tanh"]


def answers(result, exact: bool = True):
    out = []
    for m in result.models:
        d = m.to_dict()
        d.pop("seconds")
        d.pop("trial_seconds")  # wall-clock, like seconds
        if not exact:  # fused members round differently: compare verdicts, not error digits
            d = {
                "model": d["model"],
                "max": d["max_trainable_depth"],
                "lr": d["lr"],
                "first_failing": d["first_failing_depth"],
                "map": {k: (v["trainable"], v["lr"], sorted(v["lrs_tried"])) for k, v in d["depths"].items()},
            }
        out.append(d)
    return out


@pytest.fixture(scope="module")
def sequential_answer(mnist):
    return find_frontiers(MODELS, FrontierConfig(**SMALL), None, mnist)


@pytest.mark.slow
def test_process_workers_find_the_sequential_frontier(mnist, sequential_answer, tmp_path):
    with Store(tmp_path / "p.db") as store, ProcessExecutor(workers=2, threads=1) as pool:
        runner = TrialRunner(pool, store, mnist)
        got = find_frontiers(MODELS, FrontierConfig(**SMALL), store, mnist, runner=runner)
        assert answers(got) == answers(sequential_answer)
        assert answers(sequential_answer)[0]["max_trainable_depth"] is not None  # a real search happened
        assert store.count() == runner.trials_run == sum(m.trials for m in got.models)  # width 1: no extras
        again = find_frontiers(
            MODELS, FrontierConfig(**SMALL), store, mnist, runner=TrialRunner(pool, store, mnist)
        )
        assert all(m.trials == m.trials_reused for m in again.models)
        assert store.count() == runner.trials_run


def test_one_model_speculates_lrs_and_reports_only_the_search(mnist, sequential_answer, tmp_path):
    """Width 3 on one model: the three lrs of a depth at once (after the first depth, the previous
    winner alone first); the extra trials are stored but the answer and the trials reported are
    the sequential ones."""
    with Store(tmp_path / "w.db") as store, InProcessExecutor() as pool:
        runner = TrialRunner(pool, store, mnist)
        got = find_frontier(MODELS[0], FrontierConfig(**SMALL), store, mnist, runner=runner, width=3)
        want = sequential_answer.models[0]
        strip = lambda m: {k: v for k, v in m.to_dict().items() if k not in ("seconds", "trial_seconds")}  # noqa: E731
        assert strip(got) == strip(want)
        expected, led = 0, False
        for r in got.depths.values():  # in probe order
            expected += 1 if led and r.trials[0].trained else 3  # a winner alone, else all 3 lrs
            led = led or r.trainable
        assert store.count() == expected > got.trials  # speculative trials, recorded


def test_a_resumed_wide_search_launches_nothing_the_stored_search_decided(mnist, tmp_path):
    """The store holds a finished one-at-a-time search; the same search with 3 lrs per wave
    finds every verdict it needs there and trains nothing (each wave stops at its stored winner
    instead of launching the lrs after it)."""
    with Store(tmp_path / "r.db") as store, InProcessExecutor() as pool:
        first = find_frontier(
            MODELS[0], FrontierConfig(**SMALL), store, mnist, runner=TrialRunner(pool, store, mnist)
        )
        runner = TrialRunner(pool, store, mnist)
        again = find_frontier(MODELS[0], FrontierConfig(**SMALL), store, mnist, runner=runner, width=3)
        assert again.max_trainable_depth == first.max_trainable_depth is not None
        assert any(
            len(r.trials) < 3 and r.trainable for r in first.depths.values()
        )  # some waves would speculate
        assert runner.trials_run == 0 and store.count() == first.trials


def test_fused_lr_groups_find_the_sequential_frontier(mnist, sequential_answer, tmp_path):
    with Store(tmp_path / "f.db") as store, InProcessExecutor() as pool:
        runner = TrialRunner(pool, store, mnist, fuse=3)
        got = find_frontiers(MODELS, FrontierConfig(**SMALL), store, mnist, runner=runner)
        assert answers(got, exact=False) == answers(sequential_answer, exact=False)
        fused = [r.result for r in store.runs() if r.result.get("fused")]
        # the first depth's 3 lrs as one group; later, a failed lead's 2 neighbours
        assert {f["fused"]["members"] for f in fused} == {2, 3}


def test_fused_waves_cancel_the_lrs_after_a_winner_and_keep_the_sequential_answer(
    mnist, sequential_answer, tmp_path
):
    """A wave of 3 lrs fused: once one trains, the lrs after it in search order are cancelled
    (their verdicts cannot matter), never stored, and the answer is the sequential one. The
    same search run again from that store trains nothing."""
    config = FrontierConfig(**{**SMALL, "evals_per_epoch": 8})
    want = find_frontier(MODELS[0], config, None, mnist)
    with Store(tmp_path / "c.db") as store, InProcessExecutor() as pool:
        runner = TrialRunner(pool, store, mnist, fuse=3)
        got = find_frontier(MODELS[0], config, store, mnist, runner=runner, width=3)
        assert answers(_frontiers(got), exact=False) == answers(_frontiers(want), exact=False)
        assert runner.trials_cancelled > 0  # the first depth: its middle lr trains, the two after it stop
        assert store.count() == runner.trials_run
        assert all(r.status != "cancelled" for r in store.runs())
        again = TrialRunner(pool, store, mnist, fuse=3)
        assert (
            find_frontier(MODELS[0], config, store, mnist, runner=again, width=3).max_trainable_depth
            == got.max_trainable_depth
        )
        assert again.trials_run == 0 and again.trials_cancelled == 0


def _frontiers(model_frontier):
    from types import SimpleNamespace

    return SimpleNamespace(models=[model_frontier])


@pytest.mark.slow
def test_ray_finds_the_sequential_frontier(mnist, sequential_answer, tmp_path):
    """A real local Ray instance with 2 CPUs: the frontier of two models (the criterion monitor
    runs on the Ray workers), resume from the store, and a fused group as one Ray task."""
    ray = pytest.importorskip("ray")
    from depthlab.engine.config import TrainConfig
    from depthlab.sweep.executors import RayExecutor
    from depthlab.sweep.jobs import Job

    with Store(tmp_path / "r.db") as store, RayExecutor(num_cpus=2) as pool:
        assert ray.is_initialized() and pool.slots == 2
        runner = TrialRunner(pool, store, mnist)
        got = find_frontiers(MODELS, FrontierConfig(**SMALL), store, mnist, runner=runner)
        assert answers(got) == answers(sequential_answer)
        assert {r.kind for r in store.runs()} == {"frontier"} and store.count() == runner.trials_run
        stopped = [r for r in store.runs() if r.result["stopped_early"]]
        assert any(len(r.result["checkpoints"]) < 4 for r in stopped)  # the monitor stopped one mid-epoch
        again = find_frontiers(
            MODELS, FrontierConfig(**SMALL), store, mnist, runner=TrialRunner(pool, store, mnist)
        )
        assert all(m.trials == m.trials_reused for m in again.models)
        jobs = [
            Job(
                TrainConfig(
                    model="cnn-elu-bn",
                    model_args={"depth": 3},
                    train_size=500,
                    test_size=200,
                    epochs=1,
                    lr=lr,
                )
            )
            for lr in (0.05, 0.2)
        ]
        fused = TrialRunner(pool, store, mnist, fuse=2).run(jobs)
        assert [f.fused["members"] for f in fused] == [2, 2] and all(f.status == "done" for f in fused)
    assert not ray.is_initialized()


# ---------------------------------------------------------------------------------------------
# The CLI

TINY = [
    "frontier",
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
    "--json",
]


@pytest.mark.slow
def test_frontier_cli_workers_and_fuse_agree_with_one_worker(data_root, tmp_path, capsys):
    docs = []
    for i, flags in enumerate((["--workers", "1"], ["--workers", "2"], ["--workers", "1", "--fuse", "2"])):
        code = main(
            [
                *TINY,
                *flags,
                "--store",
                str(tmp_path / f"{i}.db"),
                "--out",
                str(tmp_path / f"o{i}"),
                "--data-dir",
                str(data_root),
            ]
        )
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "trials run on local" in out.err
        docs.append(json.loads(out.out)["models"])
    verdicts = [
        [(m["model"], m["max_trainable_depth"], m["first_failing_depth"], m["lr"]) for m in d] for d in docs
    ]
    assert verdicts[0] == verdicts[1] == verdicts[2]
    for m in docs[0] + docs[1]:
        m.pop("seconds")
        m.pop("trial_seconds")  # wall-clock too
    assert docs[0] == docs[1]


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--workers", "0"], "--workers"),
        (["--workers", "two"], "--workers"),
        (["--fuse", "0"], "--fuse"),
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
        (["--gpus-per-trial", "0.5"], "--gpus-per-trial needs --executor ray"),
        (["--executor", "ray", "--workers", "2"], "--workers is for --executor local"),
        (["--executor", "ray", "--gpus-per-trial", "-1"], "non-negative"),
        (["--executor", "dask"], "dask"),
    ],
)
def test_bad_executor_flags_are_one_line_exit_2_and_store_untouched(flags, message, tmp_path, capsys):
    store, out = tmp_path / "untouched.db", tmp_path / "out"
    code = main(["frontier", "--store", str(store), "--out", str(out), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("depthlab: error: ") and err.count("\n") == 1 and message in err, err
    assert not store.exists() and not out.exists()
