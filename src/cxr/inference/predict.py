"""`cxr predict` and the service's triage: files and folders in, a worklist out, most urgent first.
Images that are probably not frontal chest X-rays are never ranked among them: they go to a "not
scored" group. A bad file is listed with its reason and skipped; it never stops the batch."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from cxr.data.image import XrayImage
from cxr.data.reader import IMAGE_SUFFIXES, read_image
from cxr.errors import CxrError, ImageReadError
from cxr.inference.plausibility import flags, out_of_population
from cxr.inference.predictor import Predictor
from cxr.models.card import normal_index


def expand(inputs: Sequence[Path]) -> list[Path]:
    """Files as given, folders searched recursively for image suffixes, in a stable order."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += sorted(
                p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif item.is_file():
            out.append(item)
        else:
            raise CxrError(f"{item}: no such file or folder")
    return out


class _Inputs(Dataset):
    """Read and preprocess in DataLoader workers; a failure comes back as its reason."""

    def __init__(self, paths: list[Path], predictor: Predictor) -> None:
        self.paths, self.prep = paths, predictor.card.preprocessing
        self.population = predictor.card.population

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            image = read_image(self.paths[i])
        except ImageReadError as exc:
            return i, None, str(exc)
        return i, self.prep.to_array(image.pixels), notes(image, self.population)


def _collate(items):
    return items


@dataclass
class Notes:
    flags: list[str]  # why it is probably not a frontal chest X-ray: then it is not ranked
    warnings: list[str]  # why an X-ray is unlike the training population: ranked, with a warning


def notes(image: XrayImage, population: dict | None) -> Notes:
    """`population`: the model card's training ranges (see cxr.data.population), if recorded."""
    return Notes(flags(image), out_of_population(image, population))


@dataclass
class Row:
    path: str
    probs: np.ndarray
    predicted: str
    urgency: float
    flags: list[str]
    warnings: list[str] = field(default_factory=list)
    rank: int = 0  # 1 = most urgent; 0 = not scored (see `flags`)

    @property
    def scored(self) -> bool:
        return not self.flags


@dataclass
class Worklist:
    """`rows`: the X-rays, ranked; `not_scored`: images flagged as probably not frontal chest
    X-rays, unranked; `failures`: files that could not be read, with the reason."""

    classes: list[str]
    rows: list[Row]
    failures: list[tuple[str, str]] = field(default_factory=list)
    urgency_of: str = ""
    not_scored: list[Row] = field(default_factory=list)

    def write(self, out: Path, fmt: str) -> None:
        if fmt == "json":
            out.write_text(json.dumps(self.to_dicts(), indent=2))
            return
        out.write_text(self.csv_text())

    def csv_text(self) -> str:
        records = self.to_dicts()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, list(records[0]) if records else ["rank"])
        writer.writeheader()
        writer.writerows(records)
        return buffer.getvalue()

    def _named(self, probs: np.ndarray):
        return zip(self.classes, probs, strict=True)

    def to_dicts(self) -> list[dict]:
        """One record per file, in the order a reader works: the ranked X-rays, then the images
        not scored (no probabilities: they would mean nothing), then the skipped files with the
        reason in `flags`."""
        blank = {f"p_{c}": "" for c in self.classes} | {"predicted": "", "urgency": ""}
        ranked = [
            {
                "rank": r.rank,
                "group": "ranked",
                "path": r.path,
                **{f"p_{c}": round(float(v), 6) for c, v in self._named(r.probs)},
                "predicted": r.predicted,
                "urgency": round(r.urgency, 6),
                "flags": "",
                "warnings": "; ".join(r.warnings),
            }
            for r in self.rows
        ]
        unscored = [
            {"rank": "", "group": "not scored", "path": r.path, **blank,
             "flags": "; ".join(r.flags), "warnings": "; ".join(r.warnings)}
            for r in self.not_scored
        ]  # fmt: skip
        skipped = [
            {"rank": "", "group": "skipped", "path": path, **blank, "flags": why, "warnings": ""}
            for path, why in self.failures
        ]
        return ranked + unscored + skipped


def known_class(predictor: Predictor, name: str) -> str:
    classes = predictor.card.classes
    if name not in classes:
        raise CxrError(f"no class {name!r} in this model; it predicts {', '.join(classes)}")
    return name


def explained_class(predictor: Predictor, probs: np.ndarray, chosen: str | None = None) -> str:
    """The class a heat map explains: `chosen` if given, else the positive class of a binary
    model (a NORMAL image then shows what evidence for disease there is, not why it is normal),
    else the most probable class that is not normal."""
    card = predictor.card
    if chosen is not None:
        return known_class(predictor, chosen)
    if card.positive_class is not None:
        return card.positive_class
    normal = normal_index(card.classes)
    candidates = [i for i in range(len(card.classes)) if i != normal]
    return card.classes[max(candidates, key=lambda i: probs[i])]


def cam_caption(classes: list[str] | tuple[str, ...], probs: np.ndarray, explained: str) -> str:
    p = float(probs[list(classes).index(explained)])
    return f"Grad-CAM evidence for {explained}, P({explained}) = {100 * p:.1f} %"


def score(
    predictor: Predictor, names: list[str], arrays: list[np.ndarray], notes: list[Notes]
) -> list[Row]:
    """One batch of preprocessed images to unranked worklist rows; the card decides and ranks."""
    card = predictor.card
    probs = predictor.predict(np.stack(arrays))
    decided, urgency = card.decide(probs), card.urgency(probs)
    return [
        Row(name, p, card.classes[d], float(u), n.flags, n.warnings)
        for name, p, d, u, n in zip(names, probs, decided, urgency, notes, strict=True)
    ]


def ranked(predictor: Predictor, rows: list[Row], failures: list[tuple[str, str]]) -> Worklist:
    """Rank the X-rays by urgency; set the flagged images apart, in the order given."""
    xrays = sorted((r for r in rows if r.scored), key=lambda r: -r.urgency)
    for k, row in enumerate(xrays, 1):
        row.rank = k
    card = predictor.card
    what = f"P({card.positive_class})" if card.binary else "P(not normal)"
    others = [r for r in rows if not r.scored]
    return Worklist(list(card.classes), xrays, failures, what, others)


def predict_paths(
    predictor: Predictor,
    inputs: Sequence[Path],
    batch_size: int = 32,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Worklist:
    paths = expand(inputs)
    loader = DataLoader(
        _Inputs(paths, predictor), batch_size=batch_size, num_workers=workers, collate_fn=_collate
    )
    rows, failures = [], []
    for items in loader:
        good = [(i, x, f) for i, x, f in items if x is not None]
        failures += [(str(paths[i]), reason) for i, x, reason in items if x is None]
        if good:
            names = [str(paths[i]) for i, _, _ in good]
            rows += score(predictor, names, [x for _, x, _ in good], [f for _, _, f in good])
        if progress:
            progress(len(items))
    return ranked(predictor, rows, failures)
