"""Typed errors: every failure a user can cause names the file (or thing) and the reason."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path


class CxrError(Exception):
    """Base of every error cxr raises on purpose; the CLI prints these without a traceback."""


class ImageProblem(StrEnum):
    """Why an image could not be read; stable codes that reports and the API can show."""

    EMPTY = "empty file"
    UNREADABLE = "cannot be opened"
    NOT_AN_IMAGE = "not an image"
    CORRUPT = "truncated or corrupt"
    TOO_SMALL = "too small"
    TOO_LARGE = "implausibly large"
    UNSUPPORTED = "unsupported"


class ImageReadError(CxrError, ValueError):
    """One image could not be read; `problem` says which kind of failure, `detail` the specifics."""

    def __init__(self, source: str | Path, problem: ImageProblem, detail: str) -> None:
        self.source = str(source)
        self.problem = problem
        self.detail = detail
        super().__init__(f"{self.source}: {problem.value}: {detail}")


class DatasetError(CxrError, ValueError):
    """A folder is not a dataset cxr can use, or a split request cannot be honoured."""


class DownloadError(CxrError, OSError):
    """A dataset or weight file could not be fetched or unpacked."""
