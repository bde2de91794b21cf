"""Where data and caches live: the only place a default path is decided."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "CXR_DATA"
CACHE_ENV = "CXR_CACHE"


def data_root() -> Path:
    """`$CXR_DATA`, else `../shared/data` when it exists (the team's shared copy), else `./data`."""
    if env := os.environ.get(DATA_ENV):
        return Path(env).expanduser()
    shared = Path.cwd().parent / "shared" / "data"
    return shared if shared.is_dir() else Path("data")


def resolve_data(root: str | Path) -> Path:
    """A dataset path as given, else relative to `data_root()` ("chest_xray" in a config)."""
    path = Path(root).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return data_root() / path


def cache_root() -> Path:
    """`$CXR_CACHE`, else the user's cache folder: decoded pixels can be re-made."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cxr"


WORKLIST_DB = "sqlite:///cxr-worklist.db"  # `cxr listen` / `cxr serve --db`: one file beside you
