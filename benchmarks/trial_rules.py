"""Fewer trials for the same answer? Rules that skip or stop a frontier trial, checked on a store.

A failing, non-diverging trial runs its whole budget, and at the full protocol such trials are most
of the cost. A rule that stops or skips one is only worth having if its verdict was implied. This
script replays every frontier trial of a store (default: the carried full frontier,
``runs/frontier-full/store.db``, opened read-only) under each rule and reports:

* ``trials changed``: trials whose verdict (trained or not, under the criterion they ran with:
  error below 20%, train or test) the rule would have changed;
* ``depths changed``: (model, depth) cells whose verdict (some lr trains) would change;
* ``saved``: the trial seconds the rule saves, and their share of all trial seconds. A trial stopped
  at epoch ``e`` of ``E`` saves ``(1 - e / E)`` of its seconds (a trial's cost is even over its
  epochs); a skipped trial saves all of them.

Rules:

* ``plateau F X``: stop a trial at its first evaluation point at or after epoch ``F`` whose
  criterion error is at least ``X`` (it is still near chance, 90%, with a third of its budget left).
  The product's rule (`depthlab.depth_frontier.criterion.PlateauStop`, the frontier's default
  ``--plateau-stop auto`` = 2:0.85), replayed here through the frontier's own monitor.
* ``lr-monotone``: skip (model, lr, seed) at a depth when the same lr already failed at a shallower
  depth earlier in the search (the depth search's own monotonicity, applied per lr).

    python benchmarks/trial_rules.py [--store runs/frontier-full/store.db]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass

from depthlab.depth_frontier.criterion import CriterionMonitor, PlateauStop
from depthlab.records.record import StopReason

THRESHOLD = 0.2  # the classic criterion: either error below 20%
CRITERION = "either"


@dataclass
class Trial:
    order: int
    model: str
    depth: int
    lr: float
    seed: int
    epochs: int
    points: list[dict]
    seconds: float

    def error(self, point: dict) -> float:
        return min(point["train_error"], point["eval_error"])

    def trained(self, points: list[dict] | None = None) -> bool:
        return any(self.error(p) < THRESHOLD for p in (self.points if points is None else points))


def read_trials(path: str) -> list[Trial]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    trials = []
    for order, (config, result, seconds) in enumerate(
        conn.execute(
            "SELECT config, result, seconds FROM runs WHERE kind = 'frontier' AND result IS NOT NULL ORDER BY id"
        )
    ):
        c, r = json.loads(config), json.loads(result)
        trials.append(
            Trial(
                order,
                c["model"],
                c["model_args"]["depth"],
                c["lr"],
                c["seed"],
                c["epochs"],
                r.get("checkpoints") or [],
                seconds or 0.0,
            )
        )
    conn.close()
    return trials


def plateau(trials: list[Trial], at: float, level: float) -> dict[int, tuple[bool, float]]:
    """Per changed trial order: (its verdict under the rule, seconds saved). The frontier's monitor
    with the rule decides where each stored curve stops; a trial it stops on the plateau does not
    train and saves the rest of its budget."""
    monitor = CriterionMonitor(CRITERION, THRESHOLD, PlateauStop(at, level))
    out = {}
    for t in trials:
        stop = monitor.first_stop(t.points)
        if stop is not None and stop[1] == StopReason.PLATEAU:
            out[t.order] = (False, t.seconds * max(0.0, 1 - t.points[stop[0]]["epoch"] / t.epochs))
    return out


def lr_monotone(trials: list[Trial]) -> dict[int, tuple[bool, float]]:
    out = {}
    for t in trials:
        if any(
            u.order < t.order
            and (u.model, u.lr, u.seed) == (t.model, t.lr, t.seed)
            and u.depth < t.depth
            and not u.trained()
            for u in trials
        ):
            out[t.order] = (False, t.seconds)
    return out


def report(name: str, trials: list[Trial], ruled: dict[int, tuple[bool, float]]) -> str:
    total = sum(t.seconds for t in trials)
    changed = [t for t in trials if t.order in ruled and ruled[t.order][0] != t.trained()]
    cells = defaultdict(list)
    for t in trials:
        cells[(t.model, t.depth)].append(t)
    depths = sum(
        1
        for ts in cells.values()
        if any(t.trained() for t in ts) != any(ruled.get(t.order, (t.trained(),))[0] for t in ts)
    )
    saved = sum(s for _, s in ruled.values())
    return f"{name:<22} {len(changed):>14} {depths:>14} {saved:>10,.0f} s {saved / total:>7.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="runs/frontier-full/store.db")
    args = parser.parse_args()
    trials = read_trials(args.store)
    print(
        f"{args.store}: {len(trials)} frontier trials, {sum(t.seconds for t in trials):,.0f} trial seconds, "
        f"{sum(not t.trained() for t in trials)} failed"
    )
    print(f"{'rule':<22} {'trials changed':>14} {'depths changed':>14} {'saved':>12} {'share':>7}")
    for at, level in ((1.0, 0.85), (1.4, 0.85), (2.0, 0.85), (2.0, 0.8), (2.0, 0.7)):
        print(report(f"plateau {at:g} {level:g}", trials, plateau(trials, at, level)))
    print(report("lr-monotone", trials, lr_monotone(trials)))


if __name__ == "__main__":
    main()
