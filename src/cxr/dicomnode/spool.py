"""The spool: every accepted instance on disk before it is acknowledged, written atomically
(temporary file, fsync, rename), with patient names, birth date and other demographics emptied.
PatientID stays in the file (results must be filed to the same patient in the PACS); the database
only ever sees its pseudonym."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from PIL import Image
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
PATIENT_GROUP = 0x0010
KEPT_PATIENT_TAGS = {0x00100020}  # PatientID


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.previews = self.root / "previews"
        for folder in (self.root, self.previews):
            folder.mkdir(parents=True, exist_ok=True)

    def store(self, dataset: Dataset, file_meta: FileMetaDataset) -> Path:
        """Write one received instance as `<SOP Instance UID>_<digest>.dcm`; when this returns,
        it survives a crash. The same instance sent twice lands on the same file."""
        sop = str(dataset.get("SOPInstanceUID", ""))
        if not UID.match(sop) or len(sop) > 64:
            raise ValueError(f"{sop[:80]!r} is not a valid SOP Instance UID")
        dataset = strip_demographics(dataset)
        target = self.root / f"{sop}_{content_digest(dataset)}.dcm"
        dataset.file_meta = file_meta
        with _atomic(target) as handle:
            dataset.save_as(handle, enforce_file_format=True)
        return target

    def files(self) -> list[Path]:
        """The spooled instances; only regular files (a FIFO placed here would block catch-up)."""
        return sorted(p for p in self.root.glob("*.dcm") if p.is_file())

    def save_preview(self, spooled: Path, kind: str, picture: Image.Image) -> Path:
        """`image` (the radiograph as seen) or `cam` (the heat-map overlay), as PNG."""
        target = preview(spooled, kind)
        picture = picture.copy()
        picture.thumbnail((1024, 1024))
        with _atomic(target) as handle:
            picture.save(handle, format="PNG")
        return target


def key(spooled: Path) -> tuple[str, str]:
    """(SOP Instance UID, content digest) from a spooled file's name."""
    sop, _, digest = spooled.stem.partition("_")
    return sop, digest


def preview(spooled: Path, kind: str) -> Path:
    return spooled.parent / "previews" / f"{spooled.stem}.{kind}.png"


def content_digest(dataset: Dataset) -> str:
    """What makes two arrivals the same instance: every element's tag and value, pixels included
    (independent of the transfer's file meta), hashed."""
    digest = hashlib.sha256()
    for element in dataset.iterall():
        if element.VR == "SQ":
            continue  # its items' elements come next in iterall
        value = element.value
        digest.update(f"{element.tag}{element.VR}".encode())
        digest.update(value if isinstance(value, bytes) else str(value).encode())
    return digest.hexdigest()[:16]


def strip_demographics(dataset: Dataset) -> Dataset:
    """Empty every person name (VR PN, at any depth) and the patient module except PatientID.
    Emptied rather than deleted: they are type 2 attributes, present but without a value."""

    def blank(_ds: Dataset, element) -> None:
        if element.VR == "PN" or (
            element.tag.group == PATIENT_GROUP and int(element.tag) not in KEPT_PATIENT_TAGS
        ):
            element.value = [] if element.VR == "SQ" else None

    dataset.walk(blank)
    return dataset


@contextmanager
def _atomic(target: Path) -> Iterator[BinaryIO]:
    """A hidden temporary file beside `target`, fsynced and renamed over it on success."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)
