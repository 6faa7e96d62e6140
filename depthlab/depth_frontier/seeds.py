"""Frontiers with error bars: re-checking the boundary of a one-seed search with more seeds.

A frontier found with one seed is one draw: near the boundary a verdict can flip with the seed
(the README's ``cnn-elu`` trained at 66 in one run and failed at 69, and another run moved the
line by 20 layers). ``--seeds auto`` therefore runs the search with one seed, then re-checks the
two verdicts that define the answer, the deepest trainable depth and the first failing one, at
the deciding lr and its neighbours in the grid, with more seeds, until each verdict is backed by
a majority of ``SeedPolicy.min_seeds`` seeds (adding seeds up to ``max_seeds`` while the vote is
close). Where a verdict flips, the bracket moves (down a step when the deepest trainable depth
fails by majority, up a step when the first failing one trains) and the new boundary is
re-checked the same way. The answer is the majority frontier with a band: from the deepest
depth at which every seed trained to the deepest depth at which any seed trained.

Everything here is a pure function of a table of verdicts ``{(depth, lr, seed): trained}``;
`next_cells` says which trials to run next and `summarise` reads the answer off the table, so the
logic is tested on synthetic tables and the search runs the trials (`depthlab.depth_frontier.search`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError
from .points import optimizer_of

Cell = tuple[int, float, int]  # (depth, lr, seed)
Verdicts = Mapping[Cell, bool]


@dataclass(frozen=True)
class SeedPolicy:
    """How many seeds back a boundary verdict: at least ``min_seeds`` per (depth, lr) checked,
    more (up to ``max_seeds``) while the vote is within one seed of a tie."""

    min_seeds: int = 3
    max_seeds: int = 5
    first_seed: int = 0
    neighbours: bool = True  # re-check the deciding lr's grid neighbours too, or the deciding lr alone

    def validate(self) -> None:
        if not (
            isinstance(self.min_seeds, int)
            and isinstance(self.max_seeds, int)
            and 2 <= self.min_seeds <= self.max_seeds <= 50
        ):
            raise ConfigError(
                f"--seeds auto needs 2 <= min seeds <= max seeds <= 50, got {self.min_seeds}, "
                f"{self.max_seeds}"
            )

    def seeds(self, count: int) -> list[int]:
        return list(range(self.first_seed, self.first_seed + count))


@dataclass(frozen=True)
class DepthVote:
    """The seeds' vote at one depth: for each lr checked, how many seeds trained out of how many."""

    depth: int
    votes: dict[float, tuple[int, int]]  # lr -> (trained, seeds)

    @property
    def trains(self) -> bool:
        """A strict majority of seeds trained at some lr."""
        return any(2 * t > n for t, n in self.votes.values())

    @property
    def fraction(self) -> float:
        """The best fraction of seeds that trained, over the lrs checked."""
        return max((t / n for t, n in self.votes.values() if n), default=0.0)

    @property
    def lr(self) -> float | None:
        """The lr with the best fraction (the smallest such lr on ties)."""
        scored = [(t / n, -lr, lr) for lr, (t, n) in self.votes.items() if n]
        return max(scored)[2] if scored else None

    def all_seeds_train(self) -> bool:
        return any(t == n and n > 0 for t, n in self.votes.values())

    def any_seed_trains(self) -> bool:
        return any(t > 0 for t, _ in self.votes.values())


@dataclass
class SeededFrontier:
    """The majority frontier with its band and the per-depth vote."""

    max_trainable_depth: int | None
    first_failing_depth: int | None
    band: tuple[int | None, int | None]  # (every seed trains up to here, some seed trains up to here)
    depths: dict[int, DepthVote] = field(default_factory=dict)
    monotone: bool = True

    def label(self, capped: bool = False) -> str:
        """``66 [51–72]`` (every seed trains up to 51, some seed up to 72); ``3 [none–3]`` when
        no depth trains with every seed; ``none`` when no depth trains by majority. A frontier
        at its cap reads like an unseeded one, ``≥ 24 (cap)``, with its band only when some
        seed failed below the cap (``≥ 24 (cap) [12–24]``)."""
        if self.max_trainable_depth is None:
            return "none"
        lo, hi = self.band
        if capped:
            head = f"≥ {self.max_trainable_depth} (cap)"
            return (
                head
                if lo == hi == self.max_trainable_depth
                else f"{head} [{'none' if lo is None else lo}–{hi}]"
            )
        return f"{self.max_trainable_depth} [{'none' if lo is None else lo}–{'none' if hi is None else hi}]"


def vote(verdicts: Verdicts, depth: int, lrs: Sequence[float] | None = None) -> DepthVote:
    """The vote at ``depth`` over ``lrs`` (default: every lr with a verdict there)."""
    counts: dict[float, list[int]] = {}
    for (d, lr, _), trained in verdicts.items():
        if d == depth and (lrs is None or lr in lrs):
            c = counts.setdefault(lr, [0, 0])
            c[0] += bool(trained)
            c[1] += 1
    return DepthVote(depth, {lr: (t, n) for lr, (t, n) in sorted(counts.items())})


def neighbours(lr: float, grid: Sequence[float]) -> list[float]:
    """``lr`` and the lrs next to it in the sorted grid (its own optimizer's grid, when the grid
    holds several optimizers' `OptimizerLr` points)."""
    grid = sorted(g for g in grid if optimizer_of(g) == optimizer_of(lr))
    i = grid.index(lr)
    return grid[max(0, i - 1) : i + 2]


def _boundary(verdicts: Verdicts, step: int, max_depth: int) -> tuple[int | None, int | None]:
    """(deepest depth that trains by majority below the shallowest depth that fails by majority,
    that failing depth), from the depths in the table."""
    depths = sorted({d for d, _, _ in verdicts})
    failing = [d for d in depths if not vote(verdicts, d).trains]
    first_fail = failing[0] if failing else None
    ok = [d for d in depths if vote(verdicts, d).trains and (first_fail is None or d < first_fail)]
    return (ok[-1] if ok else None), first_fail


def _short(verdicts: Verdicts, depth: int, lrs: Sequence[float], policy: SeedPolicy) -> list[Cell]:
    """The seeds still needed at ``depth`` for each lr in ``lrs``: up to ``min_seeds``, then one
    more at a time while the vote is within one seed of a tie (up to ``max_seeds``)."""
    out = []
    for lr in lrs:
        done = sorted(s for d, l_, s in verdicts if d == depth and l_ == lr)
        trained = sum(bool(verdicts[(depth, lr, s)]) for s in done)
        n = len(done)
        if n < policy.min_seeds:
            want = policy.min_seeds
        elif n < policy.max_seeds and abs(2 * trained - n) <= 1:
            want = n + 1
        else:
            continue
        out += [(depth, lr, s) for s in policy.seeds(policy.max_seeds) if s not in done][: want - n]
    return out


def next_cells(
    verdicts: Verdicts, grid: Sequence[float], *, step: int, max_depth: int, policy: SeedPolicy = SeedPolicy()
) -> list[Cell]:
    """The trials to run next to back the boundary of ``verdicts`` with seeds (empty: done).

    The boundary is re-derived from the table each time, so a verdict that flips under more
    seeds moves it: the checks then go to the new deepest trainable or first failing depth, and
    a first failing depth that trains by majority makes the next depth up the new candidate."""
    ok, fail = _boundary(verdicts, step, max_depth)
    if ok is None and fail is None:
        return []
    anchor = vote(verdicts, ok).lr if ok is not None else vote(verdicts, fail).lr
    lrs = sorted(grid) if anchor is None else neighbours(anchor, grid) if policy.neighbours else [anchor]
    if ok is not None:
        todo = _short(verdicts, ok, lrs, policy)
        if todo:
            return todo
    if fail is not None:
        todo = _short(verdicts, fail, lrs, policy)
        if todo:
            return todo
    if ok is not None and fail is None and ok + step <= max_depth:
        return _short(verdicts, ok + step, lrs, policy)  # the deepest depth tried trains: probe above it
    if ok is not None and fail is not None and fail - ok > step:
        middle = ok + ((fail - ok) // (2 * step)) * step  # a gap opened by a flip: bisect it
        return _short(verdicts, middle, lrs, policy)
    return []


def summarise(verdicts: Verdicts, *, step: int, max_depth: int) -> SeededFrontier:
    """The majority frontier of ``verdicts``, its band and the per-depth votes."""
    depths = sorted({d for d, _, _ in verdicts})
    votes = {d: vote(verdicts, d) for d in depths}
    ok, fail = _boundary(verdicts, step, max_depth)
    every = [
        d
        for d in depths
        if votes[d].all_seeds_train() and all(votes[e].all_seeds_train() for e in depths if e <= d)
    ]
    some = [d for d in depths if votes[d].any_seed_trains()]
    trains = [votes[d].trains for d in depths]
    monotone = all(a or not b for a, b in zip(trains, trains[1:]))  # no failing depth below a trainable one
    return SeededFrontier(
        ok, fail, (every[-1] if every else None, some[-1] if some else None), votes, monotone
    )


def recheck(
    trials: Sequence,
    run: Callable[[list[Cell]], Sequence],
    grid: Sequence[float],
    *,
    step: int,
    max_depth: int,
    policy: SeedPolicy = SeedPolicy(),
    into: list | None = None,
) -> dict[Cell, bool]:
    """Back the boundary of a finished one-seed search with seeds: ask `next_cells`, run what it
    asks for with ``run(cells) -> verdicts`` (objects with depth, lr, seed, trained: the search's
    `TrialVerdict`), until it asks for nothing. ``trials`` are the search's verdicts; the new
    ones are appended to ``into`` as they come (kept if ``run`` raises). Returns the table."""
    table: dict[Cell, bool] = {(t.depth, t.lr, t.seed): bool(t.trained) for t in trials}
    into = [] if into is None else into
    while cells := next_cells(table, grid, step=step, max_depth=max_depth, policy=policy):
        for t in run(cells):
            table[(t.depth, t.lr, t.seed)] = bool(t.trained)
            into.append(t)
        missing = [c for c in cells if c not in table]
        if missing:
            raise RuntimeError(f"the trial runner did not answer {missing}")
    return table
