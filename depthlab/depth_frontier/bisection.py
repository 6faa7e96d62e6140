"""Where the frontier search probes between a trainable and a failing depth: the split that
minimises the expected cost of finding the boundary (pure functions of the flags, never of
timings, so a resumed search walks the same path)."""

from __future__ import annotations

import functools
import math

from .protocol import FrontierConfig


def split_point(lo: int, hi: int, fail_over_ok: float) -> int:
    """Where to probe between ``lo`` (trains) and ``hi`` (fails), in units of 3 depth layers: the
    split that minimises the expected cost of finding the boundary, with the boundary equally
    likely anywhere between and a probe at n costing n if it trains and ``fail_over_ok * n`` if
    it fails (cost grows with depth; a failing depth runs every lr for the whole budget, a
    trainable one usually one trial that stops early). With a ratio of 1 it is the midpoint;
    the costlier failures are, the closer to ``lo`` it probes. Pure: the same interval and
    ratio give the same probe, so a resumed search walks the same path."""

    @functools.cache
    def expected(a: int, b: int) -> tuple[float, int]:
        # candidates a+1..b-1; the boundary (last trainable) is one of a..b-1, equally likely
        if b - a <= 1:
            return 0.0, a
        best = (math.inf, a + 1)
        positions = b - a
        for k in range(a + 1, b):
            p_ok = (b - k) / positions  # boundary at k or above: k trains
            cost = p_ok * (k + expected(k, b)[0]) + (1 - p_ok) * (fail_over_ok * k + expected(a, k)[0])
            if cost < best[0] - 1e-12:
                best = (cost, k)
        return best

    return expected(lo, hi)[1]


def failure_cost_ratio(config: FrontierConfig) -> float:
    """How much more a failing depth costs than a trainable one, in the search's own terms: a
    failing depth trains every lr for the whole budget; a trainable one usually trains its first
    lr (the one that trained the depth below), which meets the criterion about half-way (the
    full protocol's trainable trials stopped after 0.2-2.8 of 3 epochs: BENCHMARKS.md). Fixed by
    the flags, never by timings, so the probe order is reproducible. With several optimizers
    "every lr" is every point of every optimizer's grid."""
    return 2.0 * len(config.points())
