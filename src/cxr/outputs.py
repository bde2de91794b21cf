"""Where commands write: a new file or folder every time, so nothing a user made is overwritten."""

from __future__ import annotations

from pathlib import Path

from cxr.errors import CxrError


class OutputExists(CxrError, FileExistsError):
    """An output path is taken; cxr never overwrites what is there."""


def must_be_new(path: Path) -> Path:
    """`path` if nothing is there yet; else the one refusal every command and function gives."""
    if path.exists():
        raise OutputExists(f"{path} exists; cxr never overwrites (choose another --out)")
    return path


OUTPUTS = Path("outputs")  # where a command writes when it is not told where


def default_output_dir(verb: str, name: str) -> Path:
    """`outputs/<verb>/<name>` (numbered if taken): every command's default, in one place."""
    return new_output_dir(OUTPUTS / verb, name)


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
