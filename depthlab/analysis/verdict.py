"""The vanishing / exploding / healthy verdict of a net's per-layer statistics at initialisation
(`judge`), and the thresholds it applies. `depthlab.analysis.diagnostics` computes the statistics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Verdict thresholds: three orders of magnitude between the first and the last layer (or a
# forward signal that has grown/collapsed as much) is far outside what trains with one lr.
RATIO_LIMIT = 1e3

# ... or, over a shallower net, ten times (`SHALLOW_RATIO_LIMIT`) at a steady rate of over 1.5x per
# layer (`PER_LAYER_LIMIT`): a 7-layer MLP whose backprop signal first/last is 0.0253 loses
# 1.8x per layer and is vanishing, while a 30-layer BN net at 65.5 (1.16x per layer) is healthy.
SHALLOW_RATIO_LIMIT = 10.0
PER_LAYER_LIMIT = 1.5


# ||dL/dW|| / ||W|| above this at init: one SGD step at lr 0.01 would move a layer by its own size.
RELATIVE_GRAD_LIMIT = 100.0


@dataclass
class Verdict:
    """vanishing / exploding / healthy, from the statistics at initialisation."""

    label: str
    grad_ratio: float  # ||dL/dW|| first layer / last layer
    signal_ratio: float  # ||dL/dh|| first layer / last layer (backprop signal)
    std_ratio: float  # activation std last layer / first layer (forward signal)
    max_relative_grad: float  # max over layers of ||dL/dW|| / ||W||
    reasons: list[str] = field(default_factory=list)

    def line(self) -> str:
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        return (
            f"verdict: {self.label}{why}: gradient norm first/last layer {self.grad_ratio:.3g}, "
            f"backprop signal first/last {self.signal_ratio:.3g}, activation std last/first {self.std_ratio:.3g}"
        )

    def to_json(self) -> dict:
        def clean(v):
            return v if isinstance(v, float) and math.isfinite(v) else None

        return {
            "label": self.label,
            "grad_ratio": clean(self.grad_ratio),
            "signal_ratio": clean(self.signal_ratio),
            "std_ratio": clean(self.std_ratio),
            "max_relative_grad": clean(self.max_relative_grad),
            "reasons": self.reasons,
        }


def _ratio(a: float, b: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.nan
    if b == 0.0:
        return math.inf if a > 0 else math.nan
    return a / b


def judge(
    grad_norm: Sequence[float],
    signal_norm: Sequence[float],
    act_std: Sequence[float],
    weight_norm: Sequence[float],
    *,
    diverged: bool = False,
) -> Verdict:
    """The verdict for one set of per-layer statistics (first layer first)."""
    g, s, a, w = (np.asarray(v, dtype=float) for v in (grad_norm, signal_norm, act_std, weight_norm))
    grad_ratio, signal_ratio, std_ratio = _ratio(g[0], g[-1]), _ratio(s[0], s[-1]), _ratio(a[-1], a[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(w > 0, g / w, np.nan)
    max_rel = float(np.nanmax(relative)) if np.isfinite(relative).any() else math.nan
    reasons: list[str] = []
    exploding = diverged or not all(np.isfinite(x).all() for x in (g, s, a))
    if diverged:
        reasons.append("loss became non-finite")
    elif exploding:
        reasons.append("non-finite statistics")
    if signal_ratio > RATIO_LIMIT:
        exploding = True
        reasons.append(f"backprop signal grows {signal_ratio:.2g}x towards the input")
    if std_ratio > RATIO_LIMIT:
        exploding = True
        reasons.append(f"activations grow {std_ratio:.2g}x with depth")
    if max_rel > RELATIVE_GRAD_LIMIT:
        exploding = True
        reasons.append(f"a layer's gradient is {max_rel:.2g}x its weights")
    vanishing = False
    if not exploding:
        if signal_ratio < 1 / RATIO_LIMIT:
            vanishing = True
            reasons.append(
                f"backprop signal shrinks to {signal_ratio:.2g} of its last-layer size at the first layer"
            )
        if std_ratio < 1 / RATIO_LIMIT:
            vanishing = True
            reasons.append(f"activations shrink to {std_ratio:.2g} of their first-layer size")
    if not (exploding or vanishing):
        exploding, vanishing = _steady_drift(signal_ratio, std_ratio, len(s), reasons)
    label = "exploding" if exploding else "vanishing" if vanishing else "healthy"
    return Verdict(label, grad_ratio, signal_ratio, std_ratio, max_rel, reasons)


def _steady_drift(
    signal_ratio: float, std_ratio: float, layers: int, reasons: list[str]
) -> tuple[bool, bool]:
    """(exploding, vanishing) of a signal that changes by over `SHALLOW_RATIO_LIMIT` between the
    first and the last layer at over `PER_LAYER_LIMIT` per layer on average; reasons appended."""
    exploding = vanishing = False
    steps = max(layers - 1, 1)
    for ratio, what in ((signal_ratio, "backprop signal"), (std_ratio, "activation std")):
        if not math.isfinite(ratio) or ratio <= 0:
            continue
        per_layer = ratio ** (1 / steps)
        towards = " towards the input" if what == "backprop signal" else ""  # that ratio is first/last
        if ratio > SHALLOW_RATIO_LIMIT and per_layer > PER_LAYER_LIMIT:
            exploding = True
            reasons.append(
                f"{what} grows {per_layer:.2g}x per layer{towards} ({ratio:.3g} over {layers} layers)"
            )
        elif ratio < 1 / SHALLOW_RATIO_LIMIT and per_layer < 1 / PER_LAYER_LIMIT:
            vanishing = True
            reasons.append(
                f"{what} shrinks {1 / per_layer:.2g}x per layer ({ratio:.3g} over {layers} layers)"
            )
    return exploding, vanishing
