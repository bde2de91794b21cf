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
