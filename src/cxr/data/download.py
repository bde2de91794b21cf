"""Fetch the Kermany archive (resumable, checksummed); unpack a local copy into the standard layout.

Written on the standard library: one streamed HTTP GET with a Range header is all a resume needs.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cxr.data.discovery import SPLIT_NAMES
from cxr.data.reader import IMAGE_SUFFIXES
from cxr.errors import DownloadError

CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteArchive:
    name: str
    url: str
    sha256: str | None
    source: str


KERMANY = RemoteArchive(
    name="ChestXRay2017.zip",
    url="https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
    "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded",
    # As published alongside the same URL by a public project; override with --sha256 if Mendeley
    # re-packs the archive.
    sha256="13efc055629733dbab07877f8b3c9f81097840dbcdaa326a8542322c2281ce36",
    source="Mendeley Data, doi:10.17632/rscbjbr9sj.2 (CC BY 4.0)",
)
ARCHIVES = {"kermany": KERMANY}


def fetch(
    archive: RemoteArchive,
    folder: Path,
    timeout: float = 20.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download into `folder`, resuming a `.part` file left by an interrupted run."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / archive.name
    if target.exists():
        _verify(target, archive)
        return target
    part = folder / (archive.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(
        archive.url, headers={"Range": f"bytes={have}-"} if have else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = response.status == 206
            total = response.length + (have if resumed else 0) if response.length else None
            with part.open("ab" if resumed else "wb") as fh:
                done = have if resumed else 0
                while block := response.read(CHUNK):
                    fh.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"could not download {archive.name} from {archive.url}: {reason}. "
            f"Without network access, download it from {archive.source} on another machine and run "
            f"`cxr data download kermany --from-archive PATH/{archive.name} --out DIR`; "
            f"an interrupted download resumes from {part}"
        ) from exc
    _verify(part, archive)
    part.rename(target)
    return target


def _verify(path: Path, archive: RemoteArchive) -> None:
    if archive.sha256 is None:
        return
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    if digest.hexdigest() != archive.sha256:
        raise DownloadError(
            f"{path}: SHA-256 {digest.hexdigest()} does not match the expected {archive.sha256}; "
            "the file is incomplete or not the published archive (delete it to start again, "
            "or pass --sha256 if the publisher changed it)"
        )


def unpack(zip_path: Path, to: Path) -> Counter[tuple[str, str]]:
    """Extract `<split>/<class>/<image>` members into `to`, whatever folders wrap them in the zip.

    macOS metadata and non-images are skipped; an existing different file is never overwritten.
    """
    if not zipfile.is_zipfile(zip_path):
        raise DownloadError(f"{zip_path}: not a zip archive")
    counts: Counter[tuple[str, str]] = Counter()
    with zipfile.ZipFile(zip_path) as zf:
        for member in zf.infolist():
            dest = _destination(PurePosixPath(member.filename))
            if member.is_dir() or dest is None:
                continue
            target = to.joinpath(*dest.parts)
            if target.exists():
                if target.stat().st_size != member.file_size or target.read_bytes() != zf.read(
                    member
                ):
                    raise DownloadError(f"{target}: exists with other content; not overwritten")
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            counts[dest.parts[0], dest.parts[1]] += 1
    if not counts:
        raise DownloadError(f"{zip_path}: holds no <split>/<class>/<image> files")
    return counts


def _destination(name: PurePosixPath) -> PurePosixPath | None:
    parts = name.parts
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
        return None
    for i, part in enumerate(parts[:-2]):
        if part.lower() in SPLIT_NAMES and i + 3 == len(parts):
            return PurePosixPath(SPLIT_NAMES[part.lower()], parts[i + 1], parts[i + 2])
    return None
