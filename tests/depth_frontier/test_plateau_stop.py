"""The plateau stop (`depthlab.depth_frontier.criterion.PlateauStop`): where it stops a trial, that
it never changes a verdict where it claims not to (synthetic curves and every stored curve of the
carried full frontier), that a plateau stop cancels no fused member, and how a stored run it
stopped is reused."""

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from depthlab.depth_frontier.criterion import (
    CriterionMonitor,
    PlateauStop,
    criterion_error,
    frontier_monitor,
    needs_retraining,
    run_trial,
)
from depthlab.depth_frontier.protocol import DEFAULT_PLATEAU_STOP, FrontierConfig
from depthlab.engine.callbacks import LambdaCallback
from depthlab.engine.config import TrainConfig
from depthlab.engine.fused import train_fused
from depthlab.records.record import EvaluationPoint, RunResult, RunStatus, StopReason
from depthlab.store.sqlite import Store

REPO = Path(__file__).resolve().parents[2]
CARRIED = REPO / "runs" / "frontier-full" / "store.db"
CARRIED_MD5 = "6592b15d0e691fb0e0f9a2f46765cb16"

RULE = CriterionMonitor("either", 0.2, PlateauStop(*DEFAULT_PLATEAU_STOP))


def point(epoch: float, train: float, test: float | None = None) -> dict:
    return {"epoch": epoch, "train_error": train, "eval_error": train if test is None else test}


# ---------------------------------------------------------------------------------------------
# Where it stops


def test_it_stops_at_the_first_point_from_its_epoch_still_at_its_level():
    curve = [point(1.0, 0.9), point(1.8, 0.9), point(2.0, 0.84), point(2.2, 0.86), point(3.0, 0.1)]
    assert RULE.first_stop(curve) == (3, StopReason.PLATEAU)  # not at 1.8 (too early), nor 2.0 (below 0.85)
    assert RULE.first_stop([point(1.0, 0.9), point(2.0, 0.1)]) == (1, StopReason.CRITERION)
    assert RULE.first_stop([point(1.0, 0.9), point(2.0, 0.5), point(3.0, 0.4)]) is None


def test_the_criterion_wins_at_a_point_where_both_hold_and_nan_never_stops():
    either = CriterionMonitor("either", 0.2, PlateauStop(2.0, 0.85))
    assert either(EvaluationPoint(2.0, 0.95, 0.1)) == StopReason.CRITERION  # test error met it: "either"
    train_only = CriterionMonitor("train", 0.2, PlateauStop(2.0, 0.85))
    assert (
        train_only(EvaluationPoint(2.0, 0.95, 0.1)) == StopReason.PLATEAU
    )  # the train error is what it reads
    assert train_only(EvaluationPoint(2.0, float("nan"), 0.1)) is None


def test_without_a_rule_the_monitor_is_the_criterion_it_was():
    plain = CriterionMonitor("either", 0.2)
    assert (
        plain(EvaluationPoint(2.5, 0.99, 0.99)) is None
        and plain(EvaluationPoint(0.2, 0.1, 0.9)) == StopReason.CRITERION
    )
    assert plain.describe() == {
        "criterion": "either",
        "threshold": 0.2,
    }  # what stores recorded before the rule
    assert RULE.describe()["plateau"] == {"epoch": 2.0, "error": 0.85}


curves = st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)), min_size=1, max_size=15)


@settings(max_examples=300, deadline=None)
@given(curves, st.sampled_from([0.5, 1.0, 2.0]), st.floats(0.3, 1.0))
def test_on_synthetic_curves_a_stop_changes_a_verdict_only_for_a_trial_that_left_the_plateau(raw, at, level):
    """Reading the curve up to the monitor's stop gives the full curve's verdict, except exactly
    where a point still at the plateau level, past its epoch, is followed by one meeting the
    criterion (the slow starters the rule is tuned to leave alone: no such trial in the carried
    store, `test_the_default_rule_changes_no_verdict_of_the_carried_store`)."""
    points = [point(0.2 * (i + 1), a, b) for i, (a, b) in enumerate(raw)]
    monitor = CriterionMonitor("either", 0.2, PlateauStop(at, level))
    stop = monitor.first_stop(points)
    seen = points if stop is None else points[: stop[0] + 1]
    full, ruled = criterion_error(points, "either", 0.2)[0], criterion_error(seen, "either", 0.2)[0]
    if stop is None or stop[1] == StopReason.CRITERION:
        assert ruled == full  # the criterion's own stop never changes a verdict
    else:
        assert not ruled
        assert full == any(min(p["train_error"], p["eval_error"]) < 0.2 for p in points[stop[0] + 1 :])


# ---------------------------------------------------------------------------------------------
# The carried store: every stored learning curve


@pytest.mark.skipif(not CARRIED.exists(), reason="the carried frontier store is not in this checkout")
def test_the_default_rule_changes_no_verdict_of_the_carried_store(tmp_path):
    """The default rule replayed over every stored frontier trial of a copy of the carried full
    frontier (264 trials): it stops some (the failing ones it saves), and every trial it stops
    failed with its full budget too."""
    copy = tmp_path / "store.db"
    shutil.copy(CARRIED, copy)
    db = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT config, result FROM runs WHERE kind = 'frontier' AND result IS NOT NULL"
        ).fetchall()
    finally:
        db.close()
    monitor = frontier_monitor(FrontierConfig())
    stopped = 0
    for config, result in rows:
        recorded = json.loads(config).get("monitor") or {"criterion": "either", "threshold": 0.2}
        assert (recorded["criterion"], recorded["threshold"]) == (monitor.criterion, monitor.threshold)
        points = json.loads(result).get("checkpoints") or []
        stop = monitor.first_stop(points)
        if stop is not None and stop[1] == StopReason.PLATEAU:
            stopped += 1
            assert not criterion_error(points, monitor.criterion, monitor.threshold)[0]
    assert len(rows) == 264 and stopped == 66  # benchmarks/trial_rules.py: 19.2% of the trial seconds
    assert hashlib.md5(CARRIED.read_bytes()).hexdigest() == CARRIED_MD5


# ---------------------------------------------------------------------------------------------
# In the engine: a typed reason, and no rank cancellation


class PlateauAt:
    """A monitor stopping its run on a plateau at the first point from ``epoch``."""

    def __init__(self, epoch: float):
        self.epoch = epoch

    def __call__(self, checkpoint) -> StopReason | None:
        return StopReason.PLATEAU if checkpoint.epoch >= self.epoch - 1e-9 else None


def test_a_plateau_stop_in_a_ranked_fused_group_cancels_nothing(mnist, tmp_path):
    """Rank 0 stops on a plateau at 0.5 epochs: it did not train, so ranks 1 and 2 (which a
    criterion stop would cancel, tests/test_fused.py) run their whole budget, to the results they
    reach without ranks. Killed after the stop, the group resumes from its checkpoint to the same
    results (the checkpoint keeps the reason, `checkpoint_resumable` checks it)."""
    base = dict(
        model="cnn-elu",
        model_args={"depth": 3},
        evals_per_epoch=2,
        train_size=1024,
        test_size=500,
        epochs=2,
        batch_size=256,
    )
    configs = [TrainConfig(**base, lr=lr) for lr in (0.01, 0.02, 0.05)]
    monitors = [PlateauAt(0.5), None, None]
    ranked = train_fused(configs, mnist, monitors=monitors, ranks=[0, 1, 2])
    assert [r.status for r in ranked] == [RunStatus.DONE] * 3
    assert (
        ranked[0].stopped_early
        and ranked[0].reason == StopReason.PLATEAU == "plateau stop: the error was still near chance"
    )
    assert [c.epoch for c in ranked[0].evaluation_points] == [0.5]
    for r in ranked[1:]:
        assert not r.stopped_early and [c.epoch for c in r.evaluation_points] == [0.5, 1.0, 1.5, 2.0]
    path = tmp_path / "group.pt"

    def kill(loop, step):
        if (loop.state.epoch, step) == (1, 1):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fused(
            configs,
            mnist,
            monitors=monitors,
            ranks=[0, 1, 2],
            checkpoint_path=path,
            callbacks=[LambdaCallback(on_step_end=kill)],
        )
    resumed = train_fused(configs, mnist, monitors=monitors, ranks=[0, 1, 2], checkpoint_path=path)
    assert [(r.status, r.reason, [vars(c) for c in r.evaluation_points]) for r in resumed] == [
        (r.status, r.reason, [vars(c) for c in r.evaluation_points]) for r in ranked
    ]


# ---------------------------------------------------------------------------------------------
# Reuse of stored runs


def stored(points: list[dict], reason: str | None) -> RunResult:
    return RunResult(
        {},
        RunStatus.DONE,
        [],
        1.0,
        reason,
        reason is not None,
        evaluation_points=[EvaluationPoint(**p) for p in points],
        reused=True,
    )


def test_a_run_the_rule_stopped_is_reused_only_under_a_rule_that_stops_it_too():
    plateaued = stored([point(1.0, 0.9), point(2.0, 0.88)], StopReason.PLATEAU.value)
    assert not needs_retraining(plateaued, RULE)
    assert not needs_retraining(plateaued, CriterionMonitor("either", 0.2, PlateauStop(1.0, 0.85)))
    assert needs_retraining(plateaued, CriterionMonitor("either", 0.2))  # rule off: its curve is cut short
    assert needs_retraining(plateaued, CriterionMonitor("either", 0.2, PlateauStop(2.0, 0.9)))  # would go on
    full = stored([point(1.0, 0.9), point(2.0, 0.9), point(3.0, 0.1)], None)  # trained late, rule off
    assert not needs_retraining(full, RULE)  # a whole budget is reused as it is: its verdict the full one's


def test_a_search_without_the_rule_retrains_a_trial_the_rule_stopped(mnist, tmp_path):
    """Through the store: with the rule a hopeless trial (lr 1e-5) stops at its plateau; a search
    with the rule off trains it again to its whole budget; with the rule on again that full run is
    read back (not trained a third time), with the same verdict."""
    base = dict(
        max_depth=3, train_size=1024, epochs=2, eval_size=300, evals_per_epoch=2, lrs=(1e-5,), device="cpu"
    )
    on, off = FrontierConfig(**base, plateau_stop="1:0.85"), FrontierConfig(**base, plateau_stop="off")
    with Store(tmp_path / "s.db") as store:
        ruled = run_trial("cnn-tanh", 3, 1e-5, 0, on, store, mnist)
        assert (
            not ruled.trained and not ruled.reused and ruled.epochs == 1.0 and ruled.status == RunStatus.DONE
        )
        assert run_trial("cnn-tanh", 3, 1e-5, 0, on, store, mnist).reused  # the rule's own stop: reused
        full = run_trial("cnn-tanh", 3, 1e-5, 0, off, store, mnist)
        assert not full.reused and not full.trained and full.epochs == 2.0
        again = run_trial("cnn-tanh", 3, 1e-5, 0, on, store, mnist)
        assert again.reused and not again.trained and again.epochs == 2.0
        recorded = [r.config["monitor"] for r in store.runs()]
        assert {"epoch": 1.0, "error": 0.85} in [m.get("plateau") for m in recorded]


def test_auto_is_the_default_rule_below_its_level_and_off_above():
    assert FrontierConfig().plateau_stop == DEFAULT_PLATEAU_STOP == (2.0, 0.85)
    assert FrontierConfig(threshold=0.9).plateau_stop is None
    assert FrontierConfig(plateau_stop="off").plateau_stop is None
    assert FrontierConfig(plateau_stop="1.5:0.9").plateau_stop == (1.5, 0.9)
    assert FrontierConfig().changes() == {} and FrontierConfig.quick().plateau_stop == DEFAULT_PLATEAU_STOP
