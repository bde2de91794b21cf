"""Where commands write: always a new folder, so nothing a user made is overwritten."""

from __future__ import annotations

from pathlib import Path


def new_output_dir(parent: Path, name: str) -> Path:
    """`parent/<name>`, or `<name>-2`, `-3`...: new output never overwrites an old run or report."""
    parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 10_000):
        path = parent / (name if k == 1 else f"{name}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: too many folders named {name}")
