"""What an archive run scores, as a stream in a stable order: files and folders, a listing file of
paths, or the instances of studies on a DICOMweb server (a PACS such as Orthanc). Each rank and
each DataLoader worker walks the same stream and keeps its own part of it, so no process ever
holds the whole archive's names."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cxr.data.reader import IMAGE_SUFFIXES, read_file
from cxr.errors import CxrError, ImageProblem, ImageReadError
from cxr.inference.predict import pseudonym


def walk(folder: Path) -> Iterator[Path]:
    """The files `cxr predict`'s `expand` finds under `folder`, in its order (sorted paths), one
    directory in memory at a time."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            yield from walk(path)
        elif path.suffix.lower() in IMAGE_SUFFIXES and not path.is_dir():
            yield path


def listed_paths(listing: Path) -> Iterator[Path]:
    """The paths of a listing file: one per line, or a CSV with a `path` column; relative paths
    are relative to the listing's folder, so a listing travels with its archive."""
    try:
        fh = listing.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise CxrError(f"--list {listing}: cannot be read ({exc.strerror})") from None
    with fh:
        first = fh.readline()
        rest: Iterator[str]
        if "path" in next(csv.reader([first]), []):
            column = next(csv.reader([first])).index("path")
            rest = (row[column] for row in csv.reader(fh) if len(row) > column)
        else:
            rest = (line.rstrip("\r\n") for line in _chain(first, fh))
        for text in rest:
            if text.strip():
                yield listing.parent / text.strip()


def _chain(first: str, fh: io.TextIOBase) -> Iterator[str]:
    yield first
    yield from fh


@dataclass(frozen=True)
class Files:
    """Files, folders (searched recursively) and listing files; `name` shows a path as
    `cxr predict` does (or its pseudonym)."""

    inputs: tuple[str, ...] = ()
    listings: tuple[str, ...] = ()
    pseudonymize: bool = False
    stable_names: bool = False  # a path may hold new content: identify files by their digest

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for item in map(Path, self.inputs):
            paths = walk(item) if item.is_dir() else iter([item])
            yield from ((self.name(p), str(p)) for p in paths)
        for listing in map(Path, self.listings):
            yield from ((self.name(p), str(p)) for p in listed_paths(listing))

    def name(self, path: Path) -> str:
        return pseudonym(str(path)) if self.pseudonymize else str(path)

    def fetch(self, locator: str, name: str) -> bytes:
        return read_file(Path(locator), name)


@dataclass(frozen=True)
class DicomWeb:
    """The instances of `studies` on a DICOMweb server (QIDO-RS to list, WADO-RS to fetch).
    A SOP Instance UID never names other content, so a done instance is skipped unfetched."""

    url: str
    studies: tuple[str, ...]
    stable_names: bool = True

    def __iter__(self) -> Iterator[tuple[str, str]]:
        client = _client(self.url)
        for study in self.studies:
            for series, instance in sorted(self._instances(client, study)):
                locator = f"studies/{study}/series/{series}/instances/{instance}"
                yield locator, locator

    def _instances(self, client, study: str) -> Iterator[tuple[str, str]]:
        offset, page = 0, 500
        while True:
            try:
                found = client.search_for_instances(study, offset=offset, limit=page)
            except Exception as exc:  # requests' and the server's errors, one line to the user
                raise CxrError(f"--dicomweb {self.url}: study {study}: {exc}"[:300]) from None
            for item in found:
                yield item["0020000E"]["Value"][0], item["00080018"]["Value"][0]
            if len(found) < page:
                return
            offset += page

    def fetch(self, locator: str, name: str) -> bytes:
        import pydicom

        _, study, _, series, _, instance = locator.split("/")
        try:
            dataset = _client(self.url).retrieve_instance(study, series, instance)
        except Exception as exc:  # a missing or refused instance is one skipped image
            raise ImageReadError(name, ImageProblem.UNREADABLE, str(exc)[:200]) from None
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
        return buffer.getvalue()


@cache
def _client(url: str):
    """One HTTP session per process (each DataLoader worker opens its own)."""
    try:
        from dicomweb_client.api import DICOMwebClient
    except ImportError:
        raise CxrError("--dicomweb needs dicomweb-client: pip install 'cxr[pacs]'") from None
    return DICOMwebClient(url=url)


Listing = Files | DicomWeb


def listing_for(
    inputs: Sequence[Path],
    listings: Sequence[Path],
    url: str | None,
    studies: Sequence[str],
    pseudonymize: bool = False,
) -> Listing:
    """One source per run: local files (folders and listing files together) or a DICOMweb query."""
    if url is not None:
        if inputs or listings or not studies:
            raise CxrError("--dicomweb scores studies: give --study UID, and no IMAGES or --list")
        return DicomWeb(url.rstrip("/"), tuple(studies))
    if studies:
        raise CxrError("--study needs --dicomweb URL")
    if not inputs and not listings:
        raise CxrError("nothing to score: give IMAGES, --list FILE or --dicomweb URL --study UID")
    return Files(tuple(map(str, inputs)), tuple(map(str, listings)), pseudonymize)
