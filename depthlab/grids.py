"""The one parser of every list and grid option (``--lrs``, ``--sigma-w2``, ``--check-widths``,
``--depths``, ``--compare-depths``): `parse_grid`, with its grammar `GRID_GRAMMAR`.

It returns the values in the order given, repeats included; a caller that wants them sorted or
distinct says so where it calls (``sorted(set(parse_grid(...)))``), and a caller with its own
range (a model's depth step, the theory's variance cap) checks it after. Every refusal is one
`ConfigError` line naming the flag, so bad input exits 2 with no traceback."""

from __future__ import annotations

import math

from .errors import ConfigError

MAX_GRID = 1000  # more values than this in a grid range is a typo (and would never finish)

# The grammar of every grid option (--lrs, --sigma-w2, --check-widths), in the help texts.
GRID_GRAMMAR = (
    "a list 0.01,0.1, log:LOW:HIGH:COUNT (log-spaced) or lin:LOW:HIGH:COUNT (evenly spaced; "
    "LOW:HIGH:COUNT too)"
)

WHOLE_NUMBERS = "whole numbers like 6,12,24"


def parse_grid(
    text: str,
    what: str,
    noun: str,
    *,
    whole: bool = False,
    positive: bool = True,
    max_count: int = MAX_GRID,
    upper: float | None = None,
) -> tuple:
    """A list or grid option's values (``what``: the flag; ``noun``: what one value is).

    Numbers (the default): ``0.01,0.1,1`` as listed, ``log:0.001:1:7`` (7 log-spaced values from
    0.001 to 1), ``lin:1:4:13`` (13 evenly spaced values, 1 to 4; ``1:4:13`` is the same), every
    one positive and finite. ``whole``: a comma-separated list of ints (depths), no ranges;
    ``positive=False`` lets zero and negatives through to a caller whose own check names the
    valid values. ``upper``: the largest value allowed. Empty items (``0.1,,1``) are skipped."""
    text = (text or "").strip()
    kind, _, rest = text.partition(":")
    if not whole and (
        kind in ("log", "lin") or (rest and ":" in rest)
    ):  # a range: log:, lin:, LOW:HIGH:COUNT
        values = _parse_range(text, what, max_count)
    else:
        values = _parse_list(text, what, noun, whole, positive)
    if upper is not None and max(values) > upper:
        raise ConfigError(f"bad {what} {text!r}: values must be at most {upper:g}")
    return values


def _parse_range(text: str, what: str, max_count: int) -> tuple[float, ...]:
    """``log:LOW:HIGH:COUNT``, ``lin:LOW:HIGH:COUNT`` or ``LOW:HIGH:COUNT`` (evenly spaced)."""
    kind, _, rest = text.partition(":")
    named = kind in ("log", "lin")
    parts = (rest if named else text).split(":")
    form = f"{kind}:LOW:HIGH:COUNT" if named else "LOW:HIGH:COUNT"
    try:
        lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
    except (ValueError, IndexError):
        raise ConfigError(
            f"bad {what} {text!r}: expected {form}, e.g. {kind if named else 'log'}:0.001:1:7"
        ) from None
    if len(parts) != 3 or not (0 < lo < hi < math.inf) or not 2 <= n <= max_count:
        raise ConfigError(f"bad {what} {text!r}: need 0 < LOW < HIGH and 2 <= COUNT <= {max_count}")
    if kind == "log":
        return tuple(round(lo * (hi / lo) ** (i / (n - 1)), 8) for i in range(n))
    return tuple(round(lo + (hi - lo) * i / (n - 1), 10) for i in range(n))


def _parse_list(text: str, what: str, noun: str, whole: bool, positive: bool) -> tuple:
    """Comma-separated numbers (ints when ``whole``), in the order given."""
    values = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            value = int(part) if whole else float(part)
        except ValueError:
            expected = WHOLE_NUMBERS if whole else GRID_GRAMMAR
            raise ConfigError(
                f"bad {what} {text!r}: bad {noun} {part.strip()!r}; expected {expected}"
            ) from None
        if positive and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"bad {what} {text!r}: {noun}s must be positive, got {part.strip()}")
        values.append(value)
    if not values:
        raise ConfigError(
            f"bad {what} {text!r}: the {noun.replace(' value', '').replace(' ', '-')} grid is empty"
        )
    return tuple(values)
