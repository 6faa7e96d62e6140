"""``capped`` is one fact, computed once (`ModelFrontier.capped`): the JSON, the CSV and
`FrontierResult.to_frame()` all read it, so a search still in progress (``--status``, a
budget spent) is never called capped in one of them and not in another."""

import pytest

from depthlab.depth_frontier.outputs import table_rows
from depthlab.depth_frontier.protocol import FrontierConfig
from depthlab.depth_frontier.results import FrontierResult, ModelFrontier

pytest.importorskip("pandas")


def _frontier(model: str, deepest: int | None, failing: int | None, next_trial=None) -> ModelFrontier:
    return ModelFrontier(
        model,
        deepest,
        0.1 if deepest else None,
        0.2,
        failing,
        1.0,
        {},
        True,
        1.0,
        1,
        0,
        next_trial=next_trial,
    )


def test_capped_agrees_in_the_property_the_json_the_csv_and_the_frame():
    models = [
        _frontier("finished-at-cap", 12, None),
        _frontier("bounded", 6, 12),
        _frontier("nothing-trains", None, 3),
        # a search in progress: every depth so far trains, the next trial is deeper. The frame
        # once called it capped while the property, the JSON and the CSV did not.
        _frontier("in-progress", 6, None, next_trial=(12, 0.1, 0)),
    ]
    result = FrontierResult(FrontierConfig(max_depth=12), models, 1.0)
    expected = [True, False, False, False]
    assert [m.capped for m in models] == expected
    assert [m["capped"] for m in result.to_dict()["models"]] == expected
    assert [row[2] for row in table_rows(result)] == expected
    assert [bool(c) for c in result.to_frame()["capped"]] == expected
