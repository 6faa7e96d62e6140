"""`EvaluationPoint`: the metrics at one evaluation point, stored under the record's key
``checkpoints`` so that every stored record reads back (the carried stores' JSON is checked
record by record in tests/test_records.py)."""

from depthlab.records.record import EvaluationPoint, RunResult


def test_evaluation_points_are_stored_under_the_key_every_stored_record_has():
    record = RunResult({"model": "m"}, "done", [], 1.0, evaluation_points=[EvaluationPoint(0.2, 0.5, 0.4)])
    stored = record.to_dict()
    assert stored["checkpoints"] == [{"epoch": 0.2, "train_error": 0.5, "eval_error": 0.4}]
    assert "evaluation_points" not in stored
    assert RunResult.from_dict(stored).evaluation_points == record.evaluation_points
