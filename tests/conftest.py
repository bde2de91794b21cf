"""Fixtures: the real datasets in $CXR_DATA (../shared/data) and damaged copies made per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cxr.settings import data_root


@pytest.fixture(scope="session")
def data() -> Path:
    root = data_root()
    assert (root / "chest_xray" / "train").is_dir(), f"shared data missing at {root.resolve()}"
    return root


@pytest.fixture()
def damaged_folder(tmp_path: Path, data: Path) -> Path:
    """A class folder with four good images and exactly three bad ones."""
    folder = tmp_path / "ds" / "NORMAL"
    folder.mkdir(parents=True)
    good = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:4]
    for path in good:
        shutil.copy(path, folder / path.name)
    whole = good[0].read_bytes()
    (folder / "truncated.jpeg").write_bytes(whole[: len(whole) // 2])
    (folder / "empty.jpeg").write_bytes(b"")
    (folder / "notes.png").write_text("this is a text file, not a PNG\n")
    (folder / "README.txt").write_text("ignored: not an image suffix")
    return tmp_path / "ds"
