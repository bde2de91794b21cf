"""What goes back to the PACS for a scored instance, built with highdicom in the study's own
Study Instance UID and with the source's patient and study modules (name, ID, birth date, sex,
accession), so the PACS files them with the study: a Secondary Capture of the heat-map overlay
under a burned-in banner (research use, the decision with the probability of the class it
names and the threshold, the class the heat map explains, a colour bar), and a Comprehensive SR
with class, probabilities, threshold and rule, the model's name and fingerprint, and a
reference to the Secondary Capture. UIDs derive from the source instance and the model, so a
resend replaces rather than duplicates; `is_ours` recognises them when a PACS sends them back."""

from __future__ import annotations

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from cxr.inference.cam import OPACITY, colour_bar
from cxr.models.card import Threshold
from cxr.store.worklist import Received

BANNER = "RESEARCH USE ONLY - NOT A DIAGNOSIS"
MANUFACTURER = "cxr (research software)"
SCHEME = "99CXR"  # private coding scheme for this model's outputs
SC_SERIES, SR_SERIES = 9901, 9902
SC_CLASS, SR_CLASS = SecondaryCaptureImageStorage, ComprehensiveSRStorage
MAX_SIDE = 1024


TYPE2_STUDY = ("PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
               "StudyDate", "StudyTime", "ReferringPhysicianName")  # fmt: skip


def reference(header: Dataset) -> Dataset:
    """The source's header (with the patient fields the spool kept for routing put back) and the
    type 2 patient and study attributes highdicom copies present, empty where the modality
    left them out."""
    reference = Dataset(header)
    for keyword in TYPE2_STUDY:
        if keyword not in reference:
            setattr(reference, keyword, None)
    return reference


def _uid(*parts: str) -> str:
    return generate_uid(entropy_srcs=list(parts))


def _series(entry: Received, kind: str, number: int, description: str) -> dict:
    """Where a result object stands: its series and UIDs follow from the instance, its bytes and
    the model (the same three give the same UIDs, so a resend replaces rather than adds)."""
    key = (entry.sop_instance_uid, entry.content_digest, entry.model_fingerprint or "")
    return {
        "series_instance_uid": _uid(entry.study_instance_uid, key[2], f"{kind}-series"),
        "series_number": number,
        "sop_instance_uid": _uid(*key, kind),
        "instance_number": 1,
        "manufacturer": MANUFACTURER,
        "series_description": f"{description} (research use, not a diagnosis)",
    }


def _concept(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning[:64])


def is_ours(dataset: Dataset) -> bool:
    """One of cxr's own results coming back (a study-level C-MOVE, a forwarding rule)."""
    if str(dataset.get("SOPClassUID", "")) not in (SC_CLASS, SR_CLASS):
        return False
    series = (dataset.get("SeriesNumber"), str(dataset.get("SeriesDescription", "")))
    return str(dataset.get("Manufacturer", "")) == MANUFACTURER or (
        series[0] in (SC_SERIES, SR_SERIES) and series[1].startswith("cxr ")
    )


def _threshold(entry: Received) -> Threshold | None:
    """The card's threshold the entry was decided at, typed again (it travels as the store's
    JSON column holds it)."""
    return Threshold(**entry.threshold) if entry.threshold else None


def banner_lines(entry: Received, explained: str | None) -> list[str]:
    """What the Secondary Capture says above the image: the decision with the probability of
    the class it names (not the largest one), the rule, and what the colours explain."""
    probability = dict(zip(entry.classes or [], entry.probabilities or [], strict=True))
    decided = entry.predicted or "?"
    line = f"cxr: {decided}  P({decided}) = {probability.get(decided, float('nan')):.2f}"
    if threshold := _threshold(entry):
        positive = threshold.positive_class
        line += f"  (threshold: {positive} if P({positive}) >= {threshold.value:.2f})"
    lines = [BANNER, line]
    if explained:
        lines.append(f"heat map: evidence for {explained}, weak to strong:")
    return lines


def with_banner(picture: Image.Image, entry: Received, explained: str | None) -> np.ndarray:
    """The overlay, at most MAX_SIDE px, under a black band with `banner_lines` and, when there
    is a heat map, its colour bar (as the colours look over a mid-grey film)."""
    picture = picture.convert("RGB")
    picture.thumbnail((MAX_SIDE, MAX_SIDE))
    size = min(24, max(10, picture.width // 48))
    font, step = ImageFont.load_default(size=size), int(size * 1.4)
    lines = _wrapped(banner_lines(entry, explained), font, picture.width - 16)
    band = step * len(lines) + (step if explained else 0) + 8
    canvas = Image.new("RGB", (picture.width, picture.height + band), "black")
    canvas.paste(picture, (0, band))
    draw = ImageDraw.Draw(canvas)
    for n, line in enumerate(lines):
        draw.text((8, 4 + n * step), line, fill="white" if n == 0 else "yellow", font=font)
    if explained:
        bar = _legend(max(64, picture.width // 3), int(step * 0.7))
        top = 4 + len(lines) * step
        draw.text((8, top), "weak", fill="white", font=font)
        left = 16 + int(draw.textlength("weak", font=font))
        canvas.paste(bar, (left, top + 2))
        draw.text((left + bar.width + 8, top), "strong", fill="white", font=font)
    return np.asarray(canvas)


def _legend(width: int, height: int) -> Image.Image:
    grey = Image.new("RGBA", (width, height), (128, 128, 128, 255))
    layer = colour_bar(width, height)
    alpha = np.asarray(layer)[..., 3].astype(np.float32) * OPACITY
    layer.putalpha(Image.fromarray(np.rint(alpha).astype(np.uint8)))
    return Image.alpha_composite(grey, layer).convert("RGB")


def _wrapped(lines: list[str], font, width: int) -> list[str]:
    """Each line broken at spaces to fit `width` px (a narrow image keeps the whole text)."""
    out = []
    for line in lines:
        current = ""
        for word in line.split(" "):
            trial = f"{current} {word}" if current else word
            if current and font.getlength(trial) > width:
                out.append(current)
                trial = word
            current = trial
        out.append(current)
    return out


def secondary_capture(
    source: Dataset, entry: Received, picture: Image.Image, explained: str | None
) -> hd.sc.SCImage:
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference(source),
        pixel_array=with_banner(picture, entry, explained),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        patient_orientation=_orientation(source),
        **_series(entry, "sc", SC_SERIES, "cxr heat map"),
    )
    sc.BurnedInAnnotation = "YES"
    return sc


def _orientation(source: Dataset) -> tuple[str, str]:
    """The source's PatientOrientation, else the standard display of a frontal chest film
    (only frontal views are scored): rows run to the patient's left, columns to the feet."""
    given = source.get("PatientOrientation")
    if given is not None and len(given) == 2 and all(given):
        return str(given[0]), str(given[1])
    return "L", "F"


def structured_report(
    source: Dataset, entry: Received, heat_map: Dataset | None = None
) -> hd.sr.ComprehensiveSR:
    """The result as coded content; `heat_map`: the Secondary Capture sent with it."""
    classes, probs = entry.classes or [], entry.probabilities or []
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    items: list = [
        hd.sr.TextContentItem(_concept("CXR-USE", "Intended use"), BANNER, contains),
        hd.sr.CodeContentItem(
            _concept("CXR-CLASS", "Predicted class"),
            _concept(f"CXR-C{classes.index(entry.predicted)}", entry.predicted),
            contains,
        ),
    ]
    items += [
        hd.sr.NumContentItem(
            _concept(f"CXR-P{i}", f"Probability of {name}"),
            float(p),
            hd.sr.CodedConcept("1", "UCUM", "no units"),
            relationship_type=contains,
        )
        for i, (name, p) in enumerate(zip(classes, probs, strict=True))
    ]
    if threshold := _threshold(entry):
        items += [
            hd.sr.NumContentItem(
                _concept("CXR-THR", f"Threshold on P({threshold.positive_class})"),
                float(threshold.value),
                hd.sr.CodedConcept("1", "UCUM", "no units"),
                relationship_type=contains,
            ),
            hd.sr.TextContentItem(_concept("CXR-RULE", "Threshold rule"), threshold.rule, contains),
        ]
    items += [
        hd.sr.TextContentItem(_concept("CXR-MODEL", "Model"), entry.model_name or "", contains),
        hd.sr.TextContentItem(
            _concept("CXR-FPR", "Model fingerprint (SHA-256)"),
            entry.model_fingerprint or "",
            contains,
        ),
        hd.sr.ImageContentItem(
            hd.sr.CodedConcept("121112", "DCM", "Source of Measurement"),
            referenced_sop_class_uid=source.SOPClassUID,
            referenced_sop_instance_uid=source.SOPInstanceUID,
            relationship_type=contains,
        ),
    ]
    if heat_map is not None:
        items.append(
            hd.sr.ImageContentItem(
                _concept("CXR-MAP", "Heat map with the result (Secondary Capture)"),
                referenced_sop_class_uid=heat_map.SOPClassUID,
                referenced_sop_instance_uid=heat_map.SOPInstanceUID,
                relationship_type=contains,
            )
        )
    root = hd.sr.ContainerContentItem(_concept("CXR-RESULT", "Chest X-ray classifier result"))
    root.ContentSequence = hd.sr.ContentSequence(items, is_root=False)
    return hd.sr.ComprehensiveSR(
        evidence=[reference(source), *([heat_map] if heat_map is not None else [])],
        content=root,
        **_series(entry, "sr", SR_SERIES, "cxr result"),
    )
