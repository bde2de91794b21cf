"""The one way a figure is written for people: the evaluate and compare tables, the CV table and
the report all print through here, so the same number reads the same to the last digit."""

from __future__ import annotations

import math

DIGITS = 4


def number(value: float | None, digits: int = DIGITS) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def interval(lo_hi: tuple[float, float] | list[float] | None, digits: int = DIGITS) -> str:
    """`lo–hi`, or nothing when there is no interval."""
    if not lo_hi:
        return ""
    return f"{number(lo_hi[0], digits)}–{number(lo_hi[1], digits)}"


def percent(p: float) -> str:
    """A probability as a percentage that never claims certainty: "> 99.9 %" rather than
    "100.0 %", "< 0.1 %" rather than "0.0 %"."""
    shown = round(100 * float(p), 1)
    if shown >= 100:
        return "> 99.9 %"
    if shown <= 0:
        return "< 0.1 %"
    return f"{shown:.1f} %"


def versus(p: float, threshold: float) -> tuple[str, str]:
    """`p` and `threshold` to as few decimals (3 at least) as keep them apart, so the printed
    comparison never contradicts the decision (0.9328 against 0.93261, not 0.933 < 0.933), and
    never write a probability that is not certain as 1.000 or 0.000 (0.99996, not 1.000)."""
    digits = 3

    def unclear() -> bool:
        same = round(p, digits) == round(threshold, digits) and p != threshold
        return same or (round(p, digits) in (0.0, 1.0) and p not in (0.0, 1.0))

    while digits < 8 and unclear():
        digits += 1
    shown = f"{p:.{digits}f}"
    if float(shown) in (0.0, 1.0) and p not in (0.0, 1.0):  # beyond 8 decimals
        shown = f"> {1 - 10**-digits:.{digits}f}" if p > 0.5 else f"< {10**-digits:.{digits}f}"
    return shown, f"{threshold:.{digits}f}"


def share(value: float) -> str:
    """A measured share (sensitivity, a confusion matrix's row share) to 3 decimals, or as many
    more as keep one that is not all or none off 1 and 0: 200 of 201 is 0.995, never 1.00."""
    return versus(value, value)[0]
