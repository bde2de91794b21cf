"""`cxr predict`: files and folders in, a triage worklist out, most urgent first. A bad file is
listed with its reason and skipped; it never stops the batch."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from cxr.data.reader import IMAGE_SUFFIXES, read_image
from cxr.errors import CxrError, ImageReadError
from cxr.inference.plausibility import flags
from cxr.inference.predictor import Predictor
from cxr.outputs import write_new_file
from cxr.progress import Stages, silent
from cxr.spreadsheet import csv_text


def expand(inputs: Sequence[Path]) -> list[Path]:
    """Files as given, folders searched recursively for image suffixes, in a stable order.

    Anything with an image suffix that is not a folder is kept, broken links and link loops too,
    so the reader reports it as a skipped file rather than it vanishing from the batch.
    """
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += sorted(
                p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
            )
        elif item.is_file() or item.is_symlink():
            out.append(item)
        else:
            raise CxrError(f"{item}: no such file or folder")
    return out


def pseudonym(name: str) -> str:
    """A stable stand-in for a file name (which often holds a patient's name): `file-<hash>`."""
    return "file-" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()[:16]


class _Inputs(Dataset):
    """Read and preprocess in DataLoader workers; a failure comes back as its reason."""

    def __init__(self, paths: list[Path], names: list[str], predictor: Predictor) -> None:
        self.paths, self.names, self.prep = paths, names, predictor.card.preprocessing

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            image = read_image(self.paths[i], self.names[i])
        except ImageReadError as exc:
            return i, None, f"{exc.problem.value}: {exc.detail}"
        return i, self.prep.to_array(image.pixels), flags(image)


def _collate(items):
    return items


@dataclass
class Row:
    path: str
    probs: np.ndarray
    predicted: str
    urgency: float
    flags: list[str]
    rank: int = 0

    def to_json(self, classes: list[str]) -> dict:
        """One image's answer, the same in `cxr predict --format json` and the API."""
        return {
            "rank": self.rank,
            "filename": self.path,
            "probabilities": {c: float(p) for c, p in zip(classes, self.probs, strict=True)},
            "predicted": self.predicted,
            "urgency": self.urgency,
            "flags": self.flags,
            "not_a_frontal_xray": bool(self.flags),
        }


@dataclass
class Worklist:
    classes: list[str]
    rows: list[Row]
    failures: list[tuple[str, str]] = field(default_factory=list)
    urgency_of: str = ""

    def write(self, out: Path, fmt: str) -> None:
        write_new_file(out, self.json_text() if fmt == "json" else self.csv_text())

    def to_json(self) -> dict:
        """The worklist as `cxr predict --format json` writes it and `/api/triage` answers."""
        return {
            "urgency": self.urgency_of,
            "worklist": [row.to_json(self.classes) for row in self.rows],
            "skipped": [{"filename": name, "reason": why} for name, why in self.failures],
        }

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def columns(self) -> list[str]:
        probs = [f"p_{c}" for c in self.classes]
        return ["rank", "path", *probs, "predicted", "urgency", "flags", "error"]

    def csv_text(self) -> str:
        return csv_text(self.columns(), self.to_dicts())

    def to_dicts(self) -> list[dict]:
        """Scored images, most urgent first, then each skipped file with the reason."""
        scored = [
            {
                "rank": r.rank,
                "path": r.path,
                **{
                    f"p_{c}": round(float(v), 6) for c, v in zip(self.classes, r.probs, strict=True)
                },
                "predicted": r.predicted,
                "urgency": round(r.urgency, 6),
                "flags": "; ".join(r.flags),
                "error": "",
            }
            for r in self.rows
        ]
        return scored + [{"path": path, "error": reason} for path, reason in self.failures]


def score(
    predictor: Predictor, names: list[str], arrays: list[np.ndarray], notes: list[list[str]]
) -> list[Row]:
    """One batch of preprocessed images to unranked worklist rows; the card decides and ranks."""
    card = predictor.card
    probs = predictor.predict(np.stack(arrays))
    decided, urgency = card.decide(probs), card.urgency(probs)
    return [
        Row(name, p, card.classes[d], float(u), f)
        for name, p, d, u, f in zip(names, probs, decided, urgency, notes, strict=True)
    ]


def ranked(predictor: Predictor, rows: list[Row], failures: list[tuple[str, str]]) -> Worklist:
    rows = sorted(rows, key=lambda r: -r.urgency)
    for k, row in enumerate(rows, 1):
        row.rank = k
    card = predictor.card
    what = f"P({card.positive_class})" if card.binary else "P(not normal)"
    return Worklist(list(card.classes), rows, failures, what)


def predict_paths(
    predictor: Predictor,
    inputs: Sequence[Path],
    batch_size: int = 32,
    workers: int = 0,
    progress: Stages = silent,
    pseudonymize: bool = False,
) -> Worklist:
    """Score every image under `inputs`; with `pseudonymize`, each path is replaced by
    `pseudonym(path)` in the rows and in the reasons of skipped files."""
    paths = expand(inputs)
    step = progress("predicting", len(paths))
    shown = [pseudonym(str(p)) if pseudonymize else str(p) for p in paths]
    loader = DataLoader(
        _Inputs(paths, shown, predictor),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
    )
    rows, failures = [], []
    for items in loader:
        good = [(i, x, f) for i, x, f in items if x is not None]
        failures += [(shown[i], reason) for i, x, reason in items if x is None]
        if good:
            names = [shown[i] for i, _, _ in good]
            rows += score(predictor, names, [x for _, x, _ in good], [f for _, _, f in good])
        step(len(items))
    return ranked(predictor, rows, failures)
