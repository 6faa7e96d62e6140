"""``--seeds auto`` end to end on a fake trial function: the one-seed search, then the boundary
re-checked with seeds through the same trial function (or batch runner); a stable boundary gets
its seeds and stays, a flipped one is re-checked and moves, and the result carries the band."""

from __future__ import annotations

import pytest

from depthlab.cli import main
from depthlab.depth_frontier.criterion import TrialVerdict
from depthlab.depth_frontier.outputs import depth_label, table_rows
from depthlab.depth_frontier.protocol import FrontierConfig, parse_seeds
from depthlab.depth_frontier.results import FrontierResult
from depthlab.depth_frontier.search import PendingTrial, find_frontier, search_width
from depthlab.errors import ConfigError

LRS = (0.01, 0.1, 1.0)
CONFIG = FrontierConfig(max_depth=48, lrs=LRS, seeds="auto")


def verdict(truth, calls):
    def trial(depth, lr, seed):
        calls.append((depth, lr, seed))
        ok = truth(depth, lr, seed)
        return TrialVerdict(depth, lr, seed, ok, 0.1 if ok else 0.9, 0.5, "done", 1.0)

    return trial


def rechecked(calls):
    return {d for d, _, s in calls if s > 0}


def test_a_stable_boundary_is_backed_by_seeds_and_not_moved():
    calls = []
    m = find_frontier("cnn-tanh", CONFIG, None, trial=verdict(lambda d, lr, s: d <= 15 and lr == 0.1, calls))
    assert (m.max_trainable_depth, m.first_failing_depth, m.lr) == (15, 18, 0.1)
    assert m.band == (15, 15) and m.label == "15 [15–15]" and m.monotone
    assert rechecked(calls) == {15, 18}  # only the two boundary depths, nothing else re-run
    assert len(calls) == len(set(calls))  # no trial ran twice
    assert m.depths[15].fraction == 1.0 and m.depths[18].fraction == 0.0
    assert m.depths[15].to_dict()["lrs_tried"]["0.1"] == {"trained": 3, "seeds": 3, "errors": [0.1] * 3}
    d = m.to_dict()
    assert d["band"] == [15, 15] and d["label"] == "15 [15–15]" and d["seed_fractions"]["15"] == 1.0
    result = FrontierResult(CONFIG, [m], 0.0)
    assert table_rows(result)[0][1] == "15 [15–15]" and depth_label(m) == "15 [15–15]"
    assert result.to_dict()["config"]["seeds"] == "auto"


def test_a_flipped_boundary_is_rechecked_and_moves_down():
    # seed 0 is lucky at 15: the other seeds train only to 12
    truth = lambda d, lr, s: lr == 0.1 and (d <= 12 or (d == 15 and s == 0))  # noqa: E731
    calls = []
    one_seed = find_frontier(
        "cnn-tanh", FrontierConfig(max_depth=48, lrs=LRS), None, trial=verdict(truth, [])
    )
    assert one_seed.max_trainable_depth == 15 and one_seed.band is None and one_seed.label is None
    m = find_frontier("cnn-tanh", CONFIG, None, trial=verdict(truth, calls))
    assert (m.max_trainable_depth, m.first_failing_depth) == (12, 15)
    assert m.band == (12, 15) and m.label == "12 [12–15]"
    assert 12 in rechecked(calls) and 15 in rechecked(calls)  # the new boundary got its seeds too
    assert m.depths[15].fraction == pytest.approx(1 / 4) and not m.depths[15].trainable
    assert m.trials == len(calls)


def test_a_first_failing_depth_that_trains_by_majority_moves_up_through_a_batch_runner():
    truth = lambda d, lr, s: lr == 0.1 and d <= 21 and not (d == 18 and s == 0)  # noqa: E731
    batches = []

    def cells(batch):
        batches.append(list(batch))
        return [verdict(truth, [])(*c) for c in batch]

    m = find_frontier("cnn-tanh", CONFIG, None, cells=cells, width=3)
    assert (m.max_trainable_depth, m.first_failing_depth) == (21, 24)
    asked = [c for b in batches for c in b]
    assert any(s > 0 for _, _, s in asked) and any(d == 21 for d, _, _ in asked)
    assert len(asked) == len(set(asked))


def test_seeds_auto_stops_at_a_missing_trial_in_status_mode():
    table = {}

    def from_store(depth, lr, seed):  # the one-seed search is stored, the re-checks are not
        if seed > 0:
            raise PendingTrial((depth, lr, seed))
        table[(depth, lr, seed)] = depth <= 15 and lr == 0.1
        return verdict(lambda *c: table[c], [])(depth, lr, seed)

    m = find_frontier("cnn-tanh", CONFIG, None, trial=from_store)
    assert m.next_trial is not None and m.next_trial[2] > 0 and m.max_trainable_depth == 15


def test_the_seeds_flag():
    assert parse_seeds("auto") == "auto" and parse_seeds("3") == 3 and parse_seeds(" AUTO ") == "auto"
    with pytest.raises(ConfigError, match="positive integer or auto"):
        parse_seeds("many")
    with pytest.raises(ConfigError, match="positive integer or auto"):
        FrontierConfig(seeds="some").validate()
    assert CONFIG.seed_count() == 1 and FrontierConfig(seeds=3).seed_count() == 3
    assert search_width(8, 1, 1, CONFIG) == 3


def test_frontier_cli_takes_seeds_auto(tmp_path, capsys):
    args = [
        "frontier",
        "--models",
        "cnn-tanh",
        "--max-depth",
        "6",
        "--seeds",
        "auto",
        "--status",
        "--store",
        str(tmp_path / "s.db"),
        "--json",
    ]
    from depthlab.store.sqlite import Store

    with Store(tmp_path / "s.db"):
        pass
    assert main(args) == 0
    out = capsys.readouterr().out
    assert '"next_trial": {"depth": 3' in out
    assert main(["frontier", "--seeds", "x", "--store", str(tmp_path / "t.db")]) == 2
    assert "--seeds must be a positive integer or auto" in capsys.readouterr().err
