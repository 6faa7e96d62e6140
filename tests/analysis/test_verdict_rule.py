"""The health rule (issue 32): a signal that changes tenfold at a steady rate of over 1.5x per layer
is vanishing or exploding even when it stays inside the 1000x limit, so a 7-layer net whose
backprop signal first/last is 0.0253 is not `healthy`; a deep BN net drifting 1.16x per layer is."""

import numpy as np

from depthlab.analysis.diagnostics import judge


def _verdict(signal_first_over_last: float, layers: int, std_last_over_first: float = 1.0):
    signal = np.geomspace(signal_first_over_last, 1.0, layers)  # first layer first
    std = np.geomspace(1.0, std_last_over_first, layers)
    flat = np.ones(layers)
    return judge(flat, signal, std, flat)


def test_a_seven_layer_net_losing_40x_of_its_backprop_signal_is_vanishing():
    verdict = _verdict(0.0253, 7)
    assert verdict.label == "vanishing", verdict.line()
    assert "backprop signal shrinks 1.8x per layer (0.0253 over 7 layers)" in verdict.reasons


def test_a_deep_net_drifting_slowly_stays_healthy_and_a_fast_one_explodes():
    assert _verdict(65.5, 30).label == "healthy"  # 1.16x per layer
    assert _verdict(1.0, 7, std_last_over_first=40.0).label == "exploding"
    assert _verdict(0.5, 2).label == "healthy"  # one layer halving: not tenfold


def test_the_old_limits_still_decide_what_they_decided():
    assert _verdict(5.9e-13, 30).label == "vanishing"
    assert _verdict(2e3, 30).label == "exploding"
