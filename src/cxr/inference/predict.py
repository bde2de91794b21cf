"""`cxr predict` and the service's triage: files and folders in, a worklist out, most urgent first.
Images that are probably not frontal chest X-rays are never ranked among them: they go to a "not
scored" group. A bad file is listed with its reason and skipped; it never stops the batch."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from torch.utils.data import DataLoader, Dataset

from cxr.data.image import XrayImage
from cxr.data.reader import IMAGE_SUFFIXES, read_image
from cxr.errors import CxrError, ImageReadError
from cxr.inference.plausibility import flags, out_of_population
from cxr.inference.predictor import Predictor
from cxr.models.card import ModelCard, normal_index
from cxr.numbers import percent, versus
from cxr.outputs import write_new_file
from cxr.progress import Stages, silent
from cxr.spreadsheet import csv_text


def expand(inputs: Sequence[Path]) -> list[Path]:
    """Files as given, folders searched recursively for image suffixes, in a stable order.

    Anything with an image suffix that is not a folder is kept, broken links, link loops, FIFOs
    and devices too, so the reader reports it as a skipped file ("not a regular file: FIFO")
    rather than it vanishing from the batch; nothing here opens a file.
    """
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += sorted(
                p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
            )
        elif os.path.lexists(item):
            out.append(item)
        else:
            raise CxrError(f"{item}: no such file or folder")
    return out


def pseudonym(name: str) -> str:
    """A stable stand-in for a file name (which often holds a patient's name): `file-<hash>`."""
    return "file-" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()[:16]


class Beside(Protocol):
    """Work done on each scored batch from what scoring already holds (heat maps): `keep` runs
    in the loader's workers on each decoded image, the call on each batch's rows, model-size
    arrays and what `keep` returned, so nothing is read from disk twice."""

    def keep(self, image: XrayImage) -> Any: ...

    def __call__(self, rows: list[Row], arrays: list[np.ndarray], kept: list[Any]) -> None: ...


class _Inputs(Dataset):
    """Read and preprocess in DataLoader workers; a failure comes back as its reason."""

    def __init__(
        self,
        paths: list[Path],
        names: list[str],
        predictor: Predictor,
        keep: Callable[[XrayImage], Any] | None = None,
    ) -> None:
        self.paths, self.names, self.prep = paths, names, predictor.card.preprocessing
        self.population, self.keep = predictor.card.population, keep

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            image = read_image(self.paths[i], self.names[i])
        except ImageReadError as exc:
            return i, None, f"{exc.problem.value}: {exc.detail}", None
        kept = self.keep(image) if self.keep is not None else None
        return i, self.prep.to_array(image.pixels), notes(image, self.population), kept


def _collate(items):
    return items


@dataclass
class Notes:
    flags: list[str]  # why it is probably not a frontal chest X-ray: then it is not ranked
    warnings: list[str]  # why an X-ray is unlike the training population: ranked, with a warning


def notes(image: XrayImage, population: dict | None) -> Notes:
    """`population`: the model card's training ranges (see cxr.data.population), if recorded."""
    return Notes(flags(image), out_of_population(image, population))


def decision_text(card: ModelCard, probs: np.ndarray) -> str:
    """The decision with what it rests on, e.g. "NORMAL: P(PNEUMONIA) 0.789 < threshold 0.933",
    so no reader has to guess why a high-looking probability came out negative."""
    probs = np.asarray(probs, dtype=float)
    if card.binary and card.threshold is not None:
        pos = card.positive
        p, t = float(probs[pos]), card.threshold.value
        shown_p, shown_t = versus(p, t)
        sign = ">=" if p >= t else "<"
        called = card.classes[pos] if p >= t else card.classes[1 - pos]
        return f"{called}: P({card.classes[pos]}) {shown_p} {sign} threshold {shown_t}"
    k = int(probs.argmax())
    return f"{card.classes[k]}: the most probable class, P {probs[k]:.3f}"


@dataclass
class Row:
    path: str
    probs: np.ndarray
    predicted: str
    urgency: float
    flags: list[str]
    warnings: list[str] = field(default_factory=list)
    rank: int = 0  # 1 = most urgent; 0 = not scored (see `flags`)
    decision: str = ""  # `decision_text`: the class and the comparison that chose it
    threshold: float | None = None  # the card's, for a binary model
    score_anyway: bool = False  # the user asked for the number of a flagged image (--score-anyway)
    error: str = ""  # the model gave no usable output for it (NaN): skipped, never a decision

    @property
    def scored(self) -> bool:
        return not self.flags and not self.error

    @property
    def shows_score(self) -> bool:
        """Whether any output may print this image's probabilities: an image flagged as probably
        not a frontal chest X-ray shows none (a reader remembers the number, not the flag)
        unless the user insisted, and then the flag travels beside it."""
        return self.scored or self.score_anyway

    @property
    def reason(self) -> str:
        """Why it is not scored, in the words every output uses."""
        return "not scored, probably not a frontal chest X-ray: " + "; ".join(self.flags)

    def to_json(self, classes: list[str]) -> dict:
        """One image's answer, the same in `cxr predict --format json` and the API. An image not
        scored has no rank, probabilities or decision (null), the reason instead."""
        shown = self.shows_score
        return {
            "rank": self.rank,
            "filename": self.path,
            "probabilities": {c: float(p) for c, p in zip(classes, self.probs, strict=True)}
            if shown
            else None,
            "predicted": self.predicted if shown else None,
            "decision": (self.decision if self.scored else f"{self.decision} ({self.reason})")
            if shown
            else None,
            "threshold": self.threshold,
            "urgency": self.urgency if shown else None,
            "flags": self.flags,
            "warnings": self.warnings,
            "not_a_frontal_xray": bool(self.flags),
            "not_scored_reason": self.reason if self.flags else None,
            "scored_anyway": bool(self.flags) and self.score_anyway,
        }


NON_FINITE = "model produced a non-finite output (NaN or infinity): no decision"
NOTE_COLUMNS = ("flags", "warnings", "error")  # why not scored; why less trusted; why skipped


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
        write_new_file(out, self.json_text() if fmt == "json" else self.csv_text())

    def to_json(self) -> dict:
        """The worklist as `cxr predict --format json` writes it and `/api/triage` answers."""
        return {
            "urgency": self.urgency_of,
            "worklist": [row.to_json(self.classes) for row in self.rows],
            "not_scored": [row.to_json(self.classes) for row in self.not_scored],
            "skipped": [{"filename": name, "reason": why} for name, why in self.failures],
        }

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def columns(self) -> list[str]:
        probs = [f"p_{c}" for c in self.classes]
        return ["rank", "group", "path", *probs, "predicted", "threshold", "decision", "urgency",
                *NOTE_COLUMNS]  # fmt: skip

    def csv_text(self) -> str:
        return csv_text(self.columns(), self.to_dicts())

    def to_dicts(self) -> list[dict]:
        """One record per file, in the order a reader works: the ranked X-rays, then the images
        not scored (no probabilities: they would mean nothing), then the skipped files with the
        reason in `error`."""
        ranked = [self._scored(r, "ranked") for r in self.rows]
        unscored = [
            self._scored(r, "not scored") if r.score_anyway else
            {"group": "not scored", "path": r.path, "flags": "; ".join(r.flags),
             "warnings": "; ".join(r.warnings)}
            for r in self.not_scored
        ]  # fmt: skip
        skipped = [{"group": "skipped", "path": p, "error": why} for p, why in self.failures]
        return ranked + unscored + skipped

    def _scored(self, r: Row, group: str) -> dict:
        """A row with its numbers; a flagged one scored anyway keeps its flags beside them."""
        return {
            "rank": r.rank or "",
            "group": group,
            "path": r.path,
            **{f"p_{c}": round(float(p), 6) for c, p in zip(self.classes, r.probs, strict=True)},
            "predicted": r.predicted,
            "threshold": "" if r.threshold is None else r.threshold,
            "decision": r.decision,
            "urgency": round(r.urgency, 6),
            "flags": "; ".join(r.flags),
            "warnings": "; ".join(r.warnings),
        }


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


def cam_caption(row: Row, classes: list[str] | tuple[str, ...], explained: str) -> str:
    """What a heat map explains and the decision beside it; a flagged image scored anyway says
    so first."""
    p = float(row.probs[list(classes).index(explained)])
    text = f"Grad-CAM evidence for {explained} (P({explained}) {percent(p)}) · {row.decision}"
    return text if row.scored else f"NOT SCORED: {'; '.join(row.flags)} · {text}"


def score(
    predictor: Predictor, names: list[str], arrays: list[np.ndarray], notes: list[Notes]
) -> list[Row]:
    """One batch of preprocessed images to unranked worklist rows; the card decides and ranks."""
    card = predictor.card
    probs = predictor.predict(np.stack(arrays))
    decided, urgency = card.decide(probs), card.urgency(probs)
    threshold = card.threshold.value if card.binary and card.threshold else None
    finite = np.isfinite(probs).all(axis=1)  # NaN >= threshold is False: it would read NORMAL
    return [
        Row(name, p, card.classes[d], float(u), n.flags, n.warnings,
            decision=decision_text(card, p), threshold=threshold)
        if ok else Row(name, p, "", 0.0, n.flags, n.warnings, error=NON_FINITE)
        for name, p, d, u, n, ok in zip(names, probs, decided, urgency, notes, finite, strict=True)
    ]  # fmt: skip


def ranked(
    predictor: Predictor,
    rows: list[Row],
    failures: list[tuple[str, str]],
    score_anyway: bool = False,
) -> Worklist:
    """Rank the X-rays by urgency; set the flagged images apart, in the order given, without
    their numbers unless `score_anyway` (then with their flags beside them, still unranked)."""
    failures = failures + [(r.path, r.error) for r in rows if r.error]
    rows = [r for r in rows if not r.error]
    for row in rows:
        row.score_anyway = score_anyway
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
    progress: Stages = silent,
    pseudonymize: bool = False,
    score_anyway: bool = False,
    beside: Beside | None = None,
) -> Worklist:
    """Score every image under `inputs`; with `pseudonymize`, each path is replaced by
    `pseudonym(path)` in the rows and in the reasons of skipped files; `score_anyway` keeps the
    numbers of images flagged as probably not frontal chest X-rays (beside their flags);
    `beside` works on each batch once it is scored."""
    paths = expand(inputs)
    step = progress("predicting", len(paths))
    shown = [pseudonym(str(p)) if pseudonymize else str(p) for p in paths]
    loader = DataLoader(
        _Inputs(paths, shown, predictor, beside.keep if beside is not None else None),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
    )
    rows, failures = [], []
    for items in loader:
        good = [item for item in items if item[1] is not None]
        failures += [(shown[i], reason) for i, x, reason, _ in items if x is None]
        if good:
            indices, arrays, noted, kept = (list(column) for column in zip(*good, strict=True))
            scored = score(predictor, [shown[i] for i in indices], arrays, noted)
            if beside is not None:
                beside(scored, arrays, kept)
            rows += scored
        step(len(items))
    return ranked(predictor, rows, failures, score_anyway)
