"""Where commands write: always a new name, so nothing a user made is overwritten, and only
complete outputs under their final name."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cxr.errors import CxrError


class OutputExists(CxrError, FileExistsError):
    """An output path is taken; cxr never overwrites what is there."""


def must_be_new(path: Path, remedy: str = "choose another --out") -> Path:
    """`path` if nothing is there yet; else the one refusal every command and function gives
    (`remedy`: what to do instead, where it is not another --out). A dangling link counts as
    taken: `exists()` says no, but writing would follow it elsewhere."""
    if os.path.lexists(path):
        raise OutputExists(f"{path} exists; cxr never overwrites ({remedy})")
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


def staged_dir(parent: Path, name: str) -> Path:
    """A hidden folder beside `parent/<name>` to fill before it earns that name (`publish`)."""
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f".{name}.partial-{os.getpid()}"
    path.mkdir()
    return path


def publish(staged: Path, parent: Path, name: str) -> Path:
    """`staged` renamed to `parent/<name>` (numbered if taken), once its content is complete."""
    final = new_output_dir(parent, name)
    os.rename(staged, final)  # onto the empty folder just claimed: atomic, never overwrites
    return final


def set_aside(staged: Path, parent: Path, name: str) -> Path:
    """A failed `staged` folder moved under `parent/.failed/`, kept for diagnosis, so that
    `parent/<name>` stays free for the rerun and never names a failed run."""
    failed = new_output_dir(parent / ".failed", name)
    os.rename(staged, failed)
    return failed


def write_new_file(path: Path, text: str) -> Path:
    """`text` written under a temporary name beside `path`, then renamed into place: an
    interrupted run leaves no half-written file that looks finished, and none is replaced."""
    must_be_new(path)
    return write_atomically(path, text)


def write_atomically(path: Path, text: str) -> Path:
    """`text` as `path`, whole or not at all (a temporary name beside it, then a rename)."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


@contextmanager
def new_folder(path: Path) -> Iterator[Path]:
    """A folder filled under a temporary name and renamed to `path` only once complete; on any
    failure or interruption the partial folder is removed, so a rerun is never blocked."""
    must_be_new(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True)
    try:
        yield partial
        os.rename(partial, path)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
