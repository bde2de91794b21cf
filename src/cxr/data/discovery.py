"""Find a dataset's images, labels, splits and patient groups from a folder, without decoding."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cxr.data import dicom
from cxr.data.labels import LabelScheme, group_from_name
from cxr.data.layout import IGNORED_DIRS, LABELS_CSV, SPLIT_NAMES
from cxr.data.reader import looks_like_image
from cxr.errors import DatasetError
from cxr.spreadsheet import read_cell


@dataclass(frozen=True)
class Record:
    path: Path
    label: str
    split: str | None  # "train" / "val" / "test" from the folder layout, None when there is none
    group: str  # patient or study id; one group per file when nothing better is known


@dataclass
class Dataset:
    root: Path
    records: list[Record]
    scheme: LabelScheme = field(default_factory=LabelScheme)
    layout: str = "classes"

    @property
    def classes(self) -> list[str]:
        return sorted({r.label for r in self.records})

    @property
    def splits(self) -> list[str | None]:
        return sorted({r.split for r in self.records}, key=lambda s: (s is not None, s or ""))

    def counts(self) -> Counter[tuple[str | None, str]]:
        return Counter((r.split, r.label) for r in self.records)


def discover(root: str | Path, scheme: LabelScheme | None = None) -> Dataset:
    """Read a layout: `split/class/...`, `class/...` (an `images/` folder inside each is fine, a
    `masks/` sibling is skipped), or a folder of files with a `labels.csv` (file,label[,split])."""
    root = Path(root)
    scheme = scheme or LabelScheme()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    if (root / LABELS_CSV).is_file():
        records, layout = _from_csv(root, scheme), "labels.csv"
    else:
        split_dirs = [d for d in _subdirs(root) if d.name.lower() in SPLIT_NAMES]
        if split_dirs:
            records = [
                rec
                for d in split_dirs
                for rec in _from_class_dirs(d, SPLIT_NAMES[d.name.lower()], scheme)
            ]
            layout = "splits"
        else:
            records, layout = _from_class_dirs(root, None, scheme), "classes"
    if not records:
        raise DatasetError(
            f"{root}: no images found; expected class folders (optionally under train/val/test) "
            f"or a {LABELS_CSV} with columns file,label"
        )
    return Dataset(root, records, scheme, layout)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(
        d
        for d in folder.iterdir()
        if d.is_dir() and not d.name.startswith(".") and d.name.lower() not in IGNORED_DIRS
    )


def _image_files(folder: Path) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*")):
        parts = {p.lower() for p in path.relative_to(folder).parts[:-1]}
        if parts & IGNORED_DIRS or path.name.startswith(".") or path.is_dir() or not path.exists():
            continue  # a FIFO or device with an image name stays: reading it says why it is skipped
        if looks_like_image(path):
            found.append(path)
    return found


def _from_class_dirs(folder: Path, split: str | None, scheme: LabelScheme) -> list[Record]:
    return [
        _record(path, scheme.label(class_dir.name, path), split)
        for class_dir in _subdirs(folder)
        for path in _image_files(class_dir)
    ]


def _from_csv(root: Path, scheme: LabelScheme) -> list[Record]:
    with (root / LABELS_CSV).open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    if not {"file", "label"} <= set(reader.fieldnames or ()):
        raise DatasetError(f"{root / LABELS_CSV}: needs a header with columns 'file' and 'label'")
    if not rows:
        raise DatasetError(f"{root / LABELS_CSV}: lists no images (a header and no rows)")
    records = []
    for row in rows:  # read_cell: a cxr reviews export writes formula-like text as 'text
        path = root / read_cell(row["file"])
        split = SPLIT_NAMES.get((row.get("split") or "").lower())
        records.append(_record(path, scheme.label(read_cell(row["label"]), path), split))
    return records


def _record(path: Path, label: str, split: str | None) -> Record:
    header = dicom.read_group_key(path) if path.is_file() else None  # a FIFO would block
    group = header or group_from_name(path) or f"file:{path.name}"
    return Record(path, label, split, group)
