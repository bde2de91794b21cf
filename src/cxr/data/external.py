"""External judges: labelled images from another source than the training data, with every image
whose pixels are a Kermany training radiograph left out (matched by content key, however
re-encoded or resized), so that a model's figures on them say how it does outside its own
hospital. The internal test shares the training split's hospital, scanner and age; it rewards
fitting them (issue 28).

`covid-db` on the shared data: of the COVID-19 Radiography Database's 720 images, 418 are Kermany
training films (178 of 240 Normal, all 240 Viral Pneumonia) and 22 COVID films repeat another one
under a second name (thumbnail correlation >= 0.99): the judge is the other 280, 62 normals
against 218 COVID-19 films (adults from other sites). Its pneumonia class is therefore COVID-19
only, and its 62 normals bound what it can say about specificity (see cxr.evaluation.external
for the interval widths).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cxr.data.cache import PixelCache
from cxr.data.content_keys import coefficients, keys, near
from cxr.data.discovery import Record, discover
from cxr.data.duplicates import thumbnails
from cxr.errors import DatasetError
from cxr.settings import data_root

NORMAL, PNEUMONIA = "NORMAL", "PNEUMONIA"  # the binary task's labels, as Kermany's folders say
KEY_SIZE = 48  # pixels the content keys are taken at: they find the same copies as at 224 px
# thumbnail correlation at which two judge images are one radiograph (near_duplicates' rule):
# a repeat would count one film twice and narrow the intervals falsely
SAME_FILM = 0.99


@dataclass(frozen=True)
class Source:
    folder: str  # under the data root
    labels: dict[str, str]  # the source's classes -> the binary task's; other classes left out
    reference: tuple[str, ...]  # folders whose radiographs the judge must not contain


JUDGES = {
    "covid-db": Source(
        "COVID-19_Radiography_Dataset",
        {"Normal": NORMAL, "COVID": PNEUMONIA, "Viral Pneumonia": PNEUMONIA},
        ("chest_xray/train", "chest_xray_originals"),
    ),
}


@dataclass
class ExternalJudge:
    name: str
    root: Path
    records: list[Record]  # the judge, labelled NORMAL / PNEUMONIA
    copies: list[Record] = field(default_factory=list)  # left out, with the source's labels
    repeats: list[Record] = field(default_factory=list)  # an earlier judge image's film again
    unmapped: int = 0  # images of classes the binary task has no label for (Lung_Opacity)

    def counts(self) -> dict[str, int]:
        """Images per binary label."""
        return dict(sorted(Counter(r.label for r in self.records).items()))

    def summary(self) -> dict:
        """What the judge is, in numbers: its size, per class, and what was left out."""
        copied = Counter(r.label for r in self.copies)
        return {
            "judge": self.name,
            "images": len(self.records),
            **self.counts(),
            "kermany_copies": len(self.copies),
            "kermany_copies_by_class": dict(sorted(copied.items())),
            "repeats": len(self.repeats),
            "unmapped": self.unmapped,
        }


def external_judge(name: str, data: Path | None = None, workers: int = 0) -> ExternalJudge:
    """The judge `name` built from the data root (`$CXR_DATA`): the source's images with mapped
    labels, less those whose content key is within `MATCH` bits of a reference image's (Kermany
    copies) and less repeats of a film already in (`SAME_FILM`)."""
    if name not in JUDGES:
        raise DatasetError(f"unknown external judge {name!r}; choose one of {list(JUDGES)}")
    source, data = JUDGES[name], Path(data or data_root())
    found = discover(data / source.folder).records
    mapped = [r for r in found if r.label in source.labels]
    if not mapped:
        raise DatasetError(f"{data / source.folder}: no images of classes {list(source.labels)}")
    reference = [r.path for folder in source.reference for r in discover(data / folder).records]
    cache = PixelCache(KEY_SIZE)
    judged, known = cache.load([r.path for r in mapped], workers), cache.load(reference, workers)
    unreadable = judged.failures + known.failures
    if unreadable:
        first = unreadable[0]
        raise DatasetError(
            f"external judge {name}: {len(unreadable)} unreadable images, so copies cannot be "
            f"ruled out ({first.path}: {first.reason})"
        )
    known_values = coefficients(known)
    center = np.median(known_values, 0)
    copy = near(keys(coefficients(judged), center), keys(known_values, center))
    rows = np.stack([judged[i] for i in range(len(judged))])
    repeat = _repeats(rows, ~copy)
    return ExternalJudge(
        name=name,
        root=data / source.folder,
        records=[
            replace(r, label=source.labels[r.label])
            for r, c, again in zip(mapped, copy, repeat, strict=True)
            if not (c or again)
        ],
        copies=[r for r, c in zip(mapped, copy, strict=True) if c],
        repeats=[r for r, again in zip(mapped, repeat, strict=True) if again],
        unmapped=len(found) - len(mapped),
    )


def _repeats(rows: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Whether each image is the same film as an earlier one among the `kept` (in the source's
    order, so the first name of a film stays)."""
    small = thumbnails(rows) * kept[:, None]  # the others correlate with nothing
    out = np.zeros(len(rows), bool)
    for start in range(0, len(rows), 256):
        block = small[start : start + 256] @ small[: start + 256].T
        later = np.arange(start, start + len(block))[:, None] > np.arange(block.shape[1])[None]
        out[start : start + len(block)] = ((block >= SAME_FILM) & later).any(1)
    return out
