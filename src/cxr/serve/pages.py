"""The two pages as served: each static HTML file with the one shared number format inlined
(`static/numbers.js`), so the case page and the worklist print a probability alike."""

from __future__ import annotations

from functools import cache
from pathlib import Path

STATIC = Path(__file__).with_name("static")


@cache
def page(name: str) -> str:
    shared = (STATIC / "numbers.js").read_text()
    return (STATIC / name).read_text().replace("/* numbers.js */", shared)
