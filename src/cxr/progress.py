"""How far long work has got. A job names each stage and its size, then steps through it; the CLI
draws each stage as a progress bar, while a call from Python draws nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Step = Callable[[int], None]  # called with how many items were just finished


class Stages(Protocol):
    def __call__(self, description: str, total: int | None) -> Step: ...


def silent(description: str, total: int | None) -> Step:
    """The default: no bars, for library callers and tests."""
    return _nothing


def _nothing(n: int) -> None:
    return None
