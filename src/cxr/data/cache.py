"""Decode and resize once: a memory-mapped uint8 store keyed by file content and target size.

Training epochs on a 2-core CPU would otherwise spend most of their time re-decoding JPEG/DICOM.
Rows live in append-only chunk files; `index.jsonl` maps a content hash to (chunk, row), so renamed
or copied files hit the cache and edited files miss it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxr.data.duplicates import content_hash
from cxr.data.preprocess import resize_square
from cxr.data.reader import read_file, read_image
from cxr.errors import ImageReadError
from cxr.settings import cache_root

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Failure:
    path: Path
    reason: str


@dataclass
class CachedImages:
    """Cached rows in the order of the paths asked for; failed files are left out and listed.

    It holds chunk paths, not open maps, so DataLoader workers each map the files themselves
    instead of receiving a pickled copy of every pixel.
    """

    paths: list[Path]
    digests: list[str]
    failures: list[Failure]
    size: int
    _rows: list[tuple[Path, int]]
    _maps: dict[Path, np.memmap] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> np.ndarray:
        chunk, row = self._rows[index]
        if chunk not in self._maps:
            rows = chunk.stat().st_size // (self.size * self.size)
            self._maps[chunk] = np.memmap(chunk, np.uint8, "r", shape=(rows, self.size, self.size))
        return np.array(self._maps[chunk][row])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}


class PixelCache:
    def __init__(self, size: int, rule: str = "squash", root: Path | None = None) -> None:
        self.size, self.rule = size, rule
        self.folder = (root or cache_root()) / f"{rule}-{size}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._index_file = self.folder / "index.jsonl"

    def load(
        self, paths: Sequence[Path], workers: int = 0, progress: Progress | None = None
    ) -> CachedImages:
        """Return every path's resized pixels, decoding only what the cache does not hold yet."""
        index = self._read_index()
        digests, missing, failures = [], [], []
        for path in paths:
            try:
                digest = content_hash(read_file(Path(path)))  # bounded; a FIFO cannot block it
            except ImageReadError as exc:
                failures.append(Failure(Path(path), f"{exc.problem.value}: {exc.detail}"))
                digests.append("")
                continue
            digests.append(digest)
            if digest in index:
                if progress:
                    progress(1)
            else:
                missing.append((Path(path), digest))
        failures += self._add(missing, index, workers, progress)
        failed = {f.path for f in failures}
        kept = [(Path(p), d) for p, d in zip(paths, digests, strict=True) if Path(p) not in failed]
        rows = [(self.folder / index[d][0], index[d][1]) for _, d in kept]
        return CachedImages([p for p, _ in kept], [d for _, d in kept], failures, self.size, rows)

    def _add(self, missing, index, workers, progress) -> list[Failure]:
        first: dict[str, Path] = {}
        for path, digest in missing:
            first.setdefault(digest, path)  # identical files are decoded once
        jobs = [(path, self.size, self.rule) for path in first.values()]
        results: dict[str, np.ndarray | str] = {}
        with ProcessPoolExecutor(workers) if workers > 0 else _Inline() as pool:
            for digest, result in zip(first, pool.map(_decode, jobs, chunksize=16), strict=True):
                results[digest] = result
                if progress:
                    progress(1)
        good = [(d, r) for d, r in results.items() if not isinstance(r, str)]
        if good:
            self._write_chunk(good, index)
        if progress and len(missing) > len(first):
            progress(len(missing) - len(first))
        return [Failure(p, results[d]) for p, d in missing if isinstance(results[d], str)]

    def _write_chunk(self, good: list[tuple[str, np.ndarray]], index: dict) -> None:
        name = f"chunk-{uuid.uuid4().hex[:12]}.u8"
        tmp = self.folder / (name + ".tmp")
        array = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(len(good), self.size, self.size))
        for row, (_, pixels) in enumerate(good):
            array[row] = pixels
        array.flush()
        del array
        os.replace(tmp, self.folder / name)
        rows = "".join(
            json.dumps({"digest": digest, "chunk": name, "row": row}) + "\n"
            for row, (digest, _) in enumerate(good)
        )
        with self._index_file.open("a") as fh:  # one append for the chunk's rows
            fh.write(rows)
        for row, (digest, _) in enumerate(good):
            index[digest] = (name, row)

    def _read_index(self) -> dict[str, tuple[str, int]]:
        if not self._index_file.exists():
            return {}
        index = {}
        *lines, _unfinished = self._index_file.read_text().split("\n")
        for line in lines:  # another process's append may be half written, or cut by a crash:
            try:  # such a row is decoded again, never read from the wrong place
                entry = json.loads(line)
                index[entry["digest"]] = (entry["chunk"], int(entry["row"]))
            except (ValueError, KeyError, TypeError):
                continue
        return index


class _Inline:
    """The executor interface without processes, for small jobs and for debugging."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def map(self, fn, items, chunksize: int = 1):
        return map(fn, items)


def _decode(job: tuple[Path, int, str]) -> np.ndarray | str:
    path, size, rule = job
    try:
        return resize_square(read_image(path).pixels, size, rule)
    except ImageReadError as exc:
        return f"{exc.problem.value}: {exc.detail}"
