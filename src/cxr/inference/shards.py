"""An archive run's folder: each rank appends its results to its own part file, one JSON line per
batch, flushed and synced before the next batch starts, so a killed rank loses at most the batch
in flight (a torn last line is ignored). A rerun (`--resume`) reads what is done from every part;
the merge keeps each image once, the latest record of it, and ranks them as `cxr predict` does.

JSON lines rather than CSV: a batch is one line, written whole or recognisably torn, and floats
keep every bit, so the merged worklist is byte-identical to a one-process run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxr.errors import CxrError
from cxr.inference.predict import Notes, Worklist, ranked, score
from cxr.inference.predictor import Predictor

PARTS, PROGRESS, MANIFEST = "parts", "progress", "manifest.json"


@dataclass
class Record:
    """One image's result: the predictor's probabilities and the reader's notes, or why it was
    skipped (`reason`). Decisions and ranks are derived at the merge, as `cxr predict` derives
    them, so the worklist's columns stay the one-process run's."""

    index: int  # position in the listing: the merge restores the listing's order
    name: str
    digest: str  # SHA-256 of the bytes read; "" when they could not be read
    probs: list[float] | None = None
    dtype: str = "float32"
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reason: str = ""


class Replay(Predictor):
    """A predictor that answers with probabilities computed earlier: `score` turns them into
    worklist rows exactly as it does the live predictor's."""

    def __init__(self, card) -> None:
        self.card = card

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return batch


class PartWriter:
    """This rank's part file for this run: a new file per run, so no rank ever appends to a
    file another process (or a killed earlier run) may still hold."""

    def __init__(self, out: Path, rank: int) -> None:
        folder = out / PARTS
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{time.time_ns():020d}-rank{rank:05d}-{os.getpid()}.jsonl"
        self.fh = self.path.open("a", encoding="utf-8")

    def write(self, records: list[Record]) -> None:
        line = json.dumps([r.__dict__ for r in records], separators=(",", ":"))
        self.fh.write(line + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def records(out: Path) -> Iterator[Record]:
    """Every record of every part, oldest run first; a torn (unterminated) last line is the
    batch a killed rank was writing, and is skipped."""
    for part in sorted((out / PARTS).glob("*.jsonl")):
        with part.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break
                for item in json.loads(line):
                    yield Record(**item)


def done(out: Path) -> dict[str, str]:
    """Name -> digest of every image with a result: what `--resume` need not score again."""
    return {r.name: r.digest for r in records(out)}


def merge(out: Path, predictor: Predictor, score_anyway: bool = False) -> Worklist:
    """The worklist of every part, each image once (its latest record), in listing order, then
    scored and ranked exactly as a one-process `cxr predict` does."""
    latest = {r.name: r for r in records(out)}
    kept = sorted(latest.values(), key=lambda r: r.index)
    failures = [(r.name, r.reason) for r in kept if r.probs is None]
    good = [r for r in kept if r.probs is not None]
    rows = []
    if good:
        probs = [np.asarray(r.probs, dtype=r.dtype) for r in good]
        found = [Notes(r.flags, r.warnings) for r in good]
        rows = score(Replay(predictor.card), [r.name for r in good], probs, found)
    return ranked(predictor, rows, failures, score_anyway)


def write_progress(out: Path, rank: int, state: dict) -> None:
    """This rank's counts so far, replaced atomically: rank 0 sums them for one bar."""
    folder = out / PROGRESS
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".rank{rank}.{os.getpid()}"
    partial.write_text(json.dumps(state))
    os.replace(partial, folder / f"rank{rank}.json")


def read_progress(out: Path) -> list[dict]:
    states = []
    for path in sorted((out / PROGRESS).glob("rank*.json")):
        try:
            states.append(json.loads(path.read_text()))
        except (OSError, ValueError):  # replaced between the listing and the read
            continue
    return states


def check_manifest(out: Path, manifest: dict, resume: bool) -> None:
    """A new run writes what it scores with; `--resume` must score the same inputs with the
    same model, or the merge would mix two runs' answers."""
    path = out / MANIFEST
    if not resume:
        out.mkdir(parents=True)
        path.write_text(json.dumps(manifest, indent=2))
        return
    if not path.is_file():
        raise CxrError(f"--resume: {out} is not an archive run's folder (no {MANIFEST})")
    before = json.loads(path.read_text())
    changed = [k for k in manifest if before.get(k) != manifest[k]]
    if changed:
        raise CxrError(f"--resume: {out} was scored with other {', '.join(changed)}")
