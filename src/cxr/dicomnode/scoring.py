"""One spooled instance to one worklist entry: only images that pass the plausibility checks
(a frontal chest radiograph by header and pixels) are scored; the rest are recorded as not
scored with the reason. Scored images get a Grad-CAM overlay for the page and the PACS."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import Dataset

from cxr.data.image import XrayImage
from cxr.data.population import image_statistics
from cxr.data.reader import read_image
from cxr.dicomnode.contract import header_problems
from cxr.dicomnode.spool import key
from cxr.errors import ImageReadError
from cxr.inference.cam import overlay
from cxr.inference.predict import Row, explained_class, notes, score
from cxr.inference.predictor import Predictor, TorchPredictor
from cxr.store.models import Status
from cxr.store.worklist import Received

SHOWN_SIDE = 1024  # previews, heat maps and Secondary Captures: enough to read, 4x cheaper


@dataclass
class Assessment:
    received: Received
    image: XrayImage | None = None
    row: Row | None = None
    overlay: Image.Image | None = None  # Grad-CAM on the image; None for ONNX models
    explained: str | None = None  # the class the heat map shows evidence for


def fingerprint(path: Path) -> str:
    """The model's identity in the worklist and the SR: the SHA-256 of its file, shortened."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def not_scored(
    path: Path, header: Dataset, patient: str | None = None, reason: str | None = None
) -> Received:
    """A spooled instance's row as far as its file name and the header's UIDs tell (`fitted`
    checks them): not scored until an assessment says otherwise."""
    sop, digest = key(path)
    return Received(
        sop_instance_uid=sop,
        content_digest=digest,
        study_instance_uid=str(header.get("StudyInstanceUID", "")),
        series_instance_uid=str(header.get("SeriesInstanceUID", "")),
        patient_pseudonym=patient,
        spool_path=str(path.resolve()),
        status=Status.NOT_SCORED,
        reason=reason,
    )


class Scorer:
    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.model_name = f"{predictor.card.architecture} ({predictor.source.name})"
        self.fingerprint = fingerprint(predictor.source)

    def assess(
        self, path: Path, header: Dataset, patient: str | None, refusal: str | None = None
    ) -> Assessment:
        """Check the header, then read, check and (unless `refusal` or a check says why not)
        score. `patient`: the keyed pseudonym."""
        received = not_scored(path, header, patient)
        if problems := header_problems(header):  # before decoding: no decoder, no CPU spent
            received.reason = "; ".join(filter(None, [refusal, *problems]))
            return Assessment(received)
        try:
            image = read_image(path)
        except ImageReadError as exc:
            received.reason = "; ".join(
                filter(None, [refusal, f"{exc.problem.value}: {exc.detail}"])
            )
            return Assessment(received)
        received.width, received.height = image.info.width, image.info.height
        # measured as the card's training ranges were (one common size): the monitor compares them
        stats = image_statistics(image.pixels)
        received.pixel_mean, received.pixel_std = stats["pixel_mean"], stats["pixel_std"]
        age = image.info.age_years  # stored as 90 from 90 on: older ages identify (HIPAA), and
        received.age_years = None if age is None else min(age, 90.0)  # the monitor shows them
        noted = notes(image, self.predictor.card.population)  # as `cxr predict` notes it
        received.flags, received.warnings = noted.flags, noted.warnings
        reasons = [refusal] if refusal else []
        if received.flags:
            reasons.append("not a frontal chest radiograph: " + "; ".join(received.flags))
        if reasons:
            received.reason = "; ".join(reasons)
            return Assessment(received, image)
        predictor, card = self.predictor, self.predictor.card
        array = card.preprocessing.to_array(image.pixels)
        (row,) = score(predictor, [received.sop_instance_uid], [array], [noted])
        if row.error:
            received.reason = row.error
            return Assessment(received, image)
        received.status = Status.SCORED
        received.model_name, received.model_fingerprint = self.model_name, self.fingerprint
        received.classes = list(card.classes)
        received.probabilities = [round(float(p), 6) for p in row.probs]
        received.predicted, received.urgency = row.predicted, round(row.urgency, 6)
        received.threshold = dataclasses.asdict(card.threshold) if card.threshold else None
        picture, explained = None, None
        if isinstance(predictor, TorchPredictor):  # the heat map of the array just scored
            explained = explained_class(predictor, row.probs)  # the positive class's evidence
            (cam,) = predictor.explain(array[None], [card.classes.index(explained)])
            picture = overlay(_shown(image), cam)
        return Assessment(received, image, row, picture, explained)


def _shown(image: XrayImage) -> XrayImage:
    """The image at most SHOWN_SIDE px a side (the model sees 224 px either way)."""
    picture = Image.fromarray(image.pixels)
    picture.thumbnail((SHOWN_SIDE, SHOWN_SIDE), Image.Resampling.BILINEAR)
    return XrayImage(np.asarray(picture), image.info)
