"""The run record (`RunResult`) and its status enum: one typed record from the trainer to the store,
whose JSON is what the store has always held."""

import json
import sqlite3
from pathlib import Path

import pytest

from depthlab.records.record import EpochMetrics, EvaluationPoint, RunResult, RunStatus

CARRIED = Path(__file__).resolve().parents[2] / "runs" / "frontier-full" / "store.db"


def test_statuses_are_the_strings_they_always_were():
    assert RunStatus.DONE == "done" and RunStatus("diverged") is RunStatus.DIVERGED
    assert f"{RunStatus.CANCELLED}" == "cancelled" and str(RunStatus.FAILED) == "failed"
    assert json.dumps({"status": RunStatus.RUNNING}) == '{"status": "running"}'
    assert {s.value for s in RunStatus} >= {"done", "diverged", "failed", "running", "cancelled"}


def test_a_record_round_trips_through_its_json():
    record = RunResult(
        {"model": "cnn-elu", "lr": 0.1},
        "done",
        [EpochMetrics(0, 0.5, 0.4, 1.2, 0.1, 3.0), EpochMetrics(1, 0.3, 0.2, 0.8, 0.1, 3.1, [0.3, 0.2])],
        6.1234567,
        stopped_early=True,
        reason="monitor stopped the run",
        test_error=0.2,
        parameters=1234,
        device="cpu",
        threads=2,
        evaluation_points=[EvaluationPoint(1.0, 0.3, 0.2)],
        extras={"gate_mean": 0.5},
        fused={"members": 4, "seconds": 24.5},
        reused=True,
    )
    assert record.status is RunStatus.DONE  # a plain string is taken as its status
    d = json.loads(json.dumps(record.to_dict()))
    assert "reused" not in d and "model" not in d and d["seconds"] == 6.123 and d["status"] == "done"
    back = RunResult.from_dict(d)
    assert back.to_dict() == d and not back.reused and back.epochs == record.epochs
    assert (
        back.evaluation_points == record.evaluation_points
        and back.fused == record.fused
        and back.extras == record.extras
    )
    assert RunResult.from_dict(d, reused=True).reused


def test_a_failed_record_has_no_metrics_and_a_short_reason():
    failed = RunResult.failed({"model": "m"}, 1.5, "x" * 900, device="cuda", threads=None)
    assert failed.status is RunStatus.FAILED and failed.epochs == [] and failed.test_error is None
    assert len(failed.reason) == 500 and failed.to_dict()["threads"] is None


def test_unknown_stored_keys_are_kept():
    d = {"status": "done", "epochs": [], "config": {}, "seconds": 1.0, "from_the_future": [1, 2]}
    assert RunResult.from_dict(d).to_dict()["from_the_future"] == [1, 2]


@pytest.mark.skipif(not CARRIED.exists(), reason="the carried frontier store is not in this checkout")
def test_every_record_of_the_carried_store_loads_and_writes_back_the_same_json():
    db = sqlite3.connect(f"file:{CARRIED}?mode=ro", uri=True)  # read-only: the file must not change
    try:
        rows = db.execute("SELECT status, result FROM runs WHERE result IS NOT NULL").fetchall()
    finally:
        db.close()
    assert len(rows) > 200
    for status, text in rows:
        stored = json.loads(text)
        record = RunResult.from_dict(stored)
        assert record.status == status and record.to_dict() == stored
