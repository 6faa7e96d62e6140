"""The adaptive-seed logic of ``--seeds auto`` on synthetic verdict tables: a stable boundary is
backed by seeds and not moved, a flipped one is re-checked and the bracket extended."""

from __future__ import annotations

import pytest

from depthlab.depth_frontier.seeds import SeedPolicy, next_cells, summarise, vote
from depthlab.errors import ConfigError

GRID = (0.01, 0.1, 1.0)
POLICY = SeedPolicy(min_seeds=3, max_seeds=5)


def single_seed_search(frontier: int, lr: float = 0.1, probes=(3, 6, 12, 24, 48)):
    """What a one-seed search leaves: trains up to ``frontier`` at ``lr``, fails beyond at every lr."""
    table = {}
    for d in sorted(set(probes) | {frontier, frontier + 3}):
        if d <= frontier:
            table[(d, lr, 0)] = True
        else:
            table.update({(d, r, 0): False for r in GRID})
    return table


def run(table, truth, max_depth=48, limit=500):
    """Play the loop: ask for cells, answer them from ``truth(depth, lr, seed)``, until done."""
    table = dict(table)
    for _ in range(limit):
        cells = next_cells(table, GRID, step=3, max_depth=max_depth, policy=POLICY)
        if not cells:
            return table
        for cell in cells:
            assert cell not in table, f"asked twice for {cell}"
            table[cell] = truth(*cell)
    raise AssertionError("did not finish")


def test_a_stable_boundary_gets_its_seeds_and_is_not_moved():
    table = run(single_seed_search(15), lambda d, lr, s: d <= 15 and lr == 0.1)
    result = summarise(table, step=3, max_depth=48)
    assert (result.max_trainable_depth, result.first_failing_depth) == (15, 18)
    assert result.band == (15, 15) and result.label() == "15 [15–15]"
    checked = {d for d, _, s in table if s > 0}
    assert checked == {15, 18}  # only the two boundary depths were re-checked
    for d in (15, 18):  # at the deciding lr and its neighbours, with three seeds each
        assert all(vote(table, d, [lr]).votes[lr][1] == 3 for lr in GRID)


def test_a_deepest_depth_that_fails_by_majority_moves_the_bracket_down():
    # seed 0 was lucky at 15: only seed 0 trains there; every seed trains at 12 and below
    truth = lambda d, lr, s: lr == 0.1 and (d <= 12 or (d == 15 and s == 0))  # noqa: E731
    table = run(single_seed_search(15), truth)
    result = summarise(table, step=3, max_depth=48)
    assert (result.max_trainable_depth, result.first_failing_depth) == (12, 15)
    assert result.band == (12, 15)  # every seed trains to 12, some seed to 15
    assert result.depths[15].votes[0.1] == (1, 4)  # 1 of 3 is one seed from a majority: a fourth seed decided
    assert {d for d, _, s in table if s > 0} >= {12, 15}


def test_a_first_failing_depth_that_trains_by_majority_extends_the_bracket_up():
    # seed 0 was unlucky at 18: the other seeds train to 21
    truth = lambda d, lr, s: lr == 0.1 and (d <= 21 and not (d == 18 and s == 0))  # noqa: E731
    table = run(single_seed_search(15), truth)
    result = summarise(table, step=3, max_depth=48)
    assert (result.max_trainable_depth, result.first_failing_depth) == (21, 24)
    assert any(d == 21 for d, _, _ in table)  # a depth the one-seed search never tried


def test_a_close_vote_adds_seeds_up_to_the_maximum():
    truth = lambda d, lr, s: lr == 0.1 and (d <= 15 or (d == 18 and s in (1, 3)))  # noqa: E731
    table = run(single_seed_search(15), truth)
    assert vote(table, 18, [0.1]).votes[0.1] == (2, 5)  # 1 of 3, 2 of 4: close, so up to five seeds
    assert summarise(table, step=3, max_depth=48).first_failing_depth == 18


def test_a_non_monotone_map_is_flagged():
    table = {(3, 0.1, 0): True, (6, 0.1, 0): False, (9, 0.1, 0): True, (12, 0.1, 0): False}
    result = summarise(table, step=3, max_depth=12)
    assert not result.monotone and result.max_trainable_depth == 3


def test_nothing_trains():
    table = run({(3, r, 0): False for r in GRID}, lambda d, lr, s: False)
    result = summarise(table, step=3, max_depth=48)
    assert result.max_trainable_depth is None and result.label() == "none"


def test_the_policy_is_validated():
    with pytest.raises(ConfigError):
        SeedPolicy(min_seeds=4, max_seeds=3).validate()


def test_labels_at_the_cap_and_without_a_depth_every_seed_trains():
    """A capped frontier reads ``≥ 24 (cap)`` as an unseeded one does (it read ``24 [24–24]``), and
    a missing end of the band is ``none`` (it read ``3 [-–3]``)."""
    from depthlab.depth_frontier.seeds import SeededFrontier

    at_cap = SeededFrontier(max_trainable_depth=24, first_failing_depth=None, band=(24, 24))
    assert at_cap.label(capped=True) == "≥ 24 (cap)"
    shaky = SeededFrontier(max_trainable_depth=24, first_failing_depth=None, band=(12, 24))
    assert shaky.label(capped=True) == "≥ 24 (cap) [12–24]"
    no_floor = SeededFrontier(max_trainable_depth=3, first_failing_depth=6, band=(None, 3))
    assert no_floor.label() == "3 [none–3]"


def test_the_winner_policy_rechecks_the_deciding_lr_alone_at_a_third_of_the_cost():
    winner = SeedPolicy(min_seeds=3, max_seeds=5, neighbours=False)
    table = dict(single_seed_search(15))
    while cells := next_cells(table, GRID, step=3, max_depth=48, policy=winner):
        for cell in cells:
            assert cell[1] == 0.1, f"re-checked {cell}, not at the deciding lr"
            table[cell] = cell[0] <= 15
    extra = [c for c in table if c[2] > 0]
    full = [c for c in run(single_seed_search(15), lambda d, lr, s: d <= 15 and lr == 0.1) if c[2] > 0]
    assert len(extra) == 4 and len(full) == 12  # 2 more seeds at 2 depths: at 1 lr, against 3
    result = summarise(table, step=3, max_depth=48)
    assert (result.max_trainable_depth, result.first_failing_depth, result.band) == (15, 18, (15, 15))


def test_the_frontier_config_names_its_recheck_policy():
    from depthlab.depth_frontier.protocol import FrontierConfig

    assert FrontierConfig(seeds="auto").seed_policy() == SeedPolicy(first_seed=0, neighbours=True)
    assert FrontierConfig(seeds="auto", seed=7, recheck_lrs="winner").seed_policy() == SeedPolicy(
        first_seed=7, neighbours=False
    )
    with pytest.raises(ConfigError, match="unknown recheck_lrs 'all'"):
        FrontierConfig(recheck_lrs="all")
