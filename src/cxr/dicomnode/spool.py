"""The spool: every accepted instance on disk before it is acknowledged, written atomically
(temporary file, fsynced, renamed), with person names and the patient module emptied except
PatientID. What result routing needs besides lives beside it only until the results are sent:
the emptied patient fields (`routing/`, so the Secondary Capture and SR are filed with the right
patient) and the results themselves (`outbox/`, computed once, resent as they are). The database
only ever sees a keyed pseudonym of PatientID. Instances that cannot be stored in the database
are moved to `quarantine/` with their reason."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pydicom
from PIL import Image
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset

from cxr.dicomnode.identity import content_digest
from cxr.store.deidentify import strip_demographics

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
FOLDERS = ("previews", "routing", "outbox", "quarantine")


class Spool:
    def __init__(self, root: Path, keep_routing: bool = True) -> None:
        self.root = Path(root)
        self.keep_routing = keep_routing  # only when results go back to a PACS
        for folder in (self.root, *(self.root / name for name in FOLDERS)):
            folder.mkdir(parents=True, exist_ok=True)
        self.previews = self.root / "previews"
        for partial in self.root.rglob(".*.part"):  # a write cut by a kill: never acknowledged
            partial.unlink(missing_ok=True)
        for kept in (self.root / "routing").glob("*.json"):  # its instance never landed
            if not keep_routing or not (self.root / f"{kept.stem}.dcm").is_file():
                kept.unlink(missing_ok=True)

    def store(self, dataset: Dataset, file_meta: FileMetaDataset) -> Path:
        """Write one received instance as `<SOP Instance UID>_<digest>.dcm`; when this returns,
        it survives a crash. The same image sent again, in any transfer syntax, lands on the
        same file."""
        sop = str(dataset.get("SOPInstanceUID", ""))
        if not UID.match(sop) or len(sop) > 64:
            raise ValueError("the SOP Instance UID is not a valid UID (PS3.5)")
        dataset.file_meta = file_meta  # a lossless frame is decoded for the digest
        digest = content_digest(dataset, file_meta.TransferSyntaxUID)
        target = self.root / f"{sop}_{digest}.dcm"
        routing = strip_demographics(dataset)
        if self.keep_routing and len(routing):
            with _atomic(self.routing(target)) as handle:
                handle.write(routing.to_json().encode())
        with _atomic(target) as handle:
            dataset.save_as(handle, enforce_file_format=True)
        return target

    def files(self) -> list[Path]:
        """The spooled instances; only regular files (a FIFO placed here would block catch-up)."""
        return sorted(p for p in self.root.glob("*.dcm") if p.is_file())

    def bytes_used(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def routing(self, spooled: Path) -> Path:
        return self.root / "routing" / f"{spooled.stem}.json"

    def header(self, spooled: Path) -> Dataset:
        """The spooled header with the patient fields routing kept put back: what results copy."""
        header = pydicom.dcmread(spooled, stop_before_pixels=True)
        kept = self.routing(spooled)
        if kept.is_file():
            for element in Dataset.from_json(kept.read_text()):
                header[element.tag] = element
        return header

    def save_results(self, spooled: Path, results: list[Dataset]) -> None:
        for n, result in enumerate(results):
            with _atomic(self.root / "outbox" / f"{spooled.stem}.{n}.dcm") as handle:
                result.save_as(handle, enforce_file_format=True)

    def results(self, spooled: Path) -> list[Dataset]:
        """The results computed for `spooled` and not yet sent, in their order."""
        files = sorted((self.root / "outbox").glob(f"{spooled.stem}.*.dcm"))
        return [pydicom.dcmread(f) for f in files]

    def sent(self, spooled: Path) -> None:
        """Results delivered (or none to deliver): forget the outbox and the patient fields."""
        for done in (self.root / "outbox").glob(f"{spooled.stem}.*.dcm"):
            done.unlink(missing_ok=True)
        self.routing(spooled).unlink(missing_ok=True)

    def forget(self, done: set[str]) -> None:
        """`sent` for every stem in `done` at once (a crash between sending and forgetting)."""
        kept = [(p, p.stem) for p in (self.root / "routing").glob("*.json")]
        kept += [(p, p.name.rsplit(".", 2)[0]) for p in (self.root / "outbox").glob("*.dcm")]
        for path, stem in kept:  # outbox: <stem>.<n>.dcm, and stems hold dots (UIDs)
            if stem in done:
                path.unlink(missing_ok=True)

    def quarantine(self, spooled: Path, reason: str) -> Path:
        """Out of the catch-up for good, with why beside it (an admin may move it back)."""
        target = self.root / "quarantine" / spooled.name
        os.replace(spooled, target)
        target.with_suffix(".reason.txt").write_text(reason + "\n")
        self.sent(spooled)
        return target

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


@contextmanager
def _atomic(target: Path) -> Iterator[BinaryIO]:
    """A hidden temporary file beside `target` (owner-only), fsynced and renamed over it."""
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
