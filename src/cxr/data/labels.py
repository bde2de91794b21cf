"""Label schemes and patient/study ids: how a file's folder and name become a label and a group."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cxr.errors import DatasetError

SCHEMES = ("folder", "kermany3")
KERMANY3 = ("normal", "bacterial", "viral")

_PERSON = re.compile(r"person(\d+)_", re.IGNORECASE)
_STUDY = re.compile(r"((?:NORMAL2-)?IM-\d+)-", re.IGNORECASE)


@dataclass(frozen=True)
class LabelScheme:
    """`folder` keeps folder names; `kermany3` splits pneumonia into bacterial/viral by file name.

    With `negative` set, any scheme becomes binary: that class against everything else (`positive`).
    """

    name: str = "folder"
    negative: str | None = None
    positive: str = "abnormal"

    def __post_init__(self) -> None:
        if self.name not in SCHEMES:
            raise DatasetError(f"unknown label scheme {self.name!r}; choose one of {SCHEMES}")

    def label(self, folder_label: str, path: Path) -> str:
        label = self._base(folder_label, path)
        if self.negative is None:
            return label
        return label if label.lower() == self.negative.lower() else self.positive

    def _base(self, folder_label: str, path: Path) -> str:
        if self.name == "folder":
            return folder_label
        if folder_label.lower() in KERMANY3:  # already decided, e.g. a reviewer's label
            return folder_label.lower()
        name = path.name.lower()
        if "_bacteria_" in name:
            return "bacterial"
        if "_virus_" in name:
            return "viral"
        raise DatasetError(
            f"{path}: kermany3 needs '_bacteria_' or '_virus_' in a pneumonia file's name"
        )


def group_from_name(path: Path) -> str | None:
    """Kermany `personN_...` is patient N; `IM-XXXX-...` / `NORMAL2-IM-XXXX-...` is a study."""
    if match := _PERSON.search(path.name):
        return f"person{int(match.group(1))}"
    if match := _STUDY.search(path.name):
        return match.group(1).upper()
    return None
