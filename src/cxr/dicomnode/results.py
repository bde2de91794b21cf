"""What goes back to the PACS for a scored instance, built with highdicom in the study's own
Study Instance UID: a Secondary Capture of the heat-map overlay under a burned-in "research use,
not a diagnosis" banner, and a Comprehensive SR with class, probabilities, threshold and rule,
and the model's name and fingerprint. UIDs derive from the source instance and the model, so a
resend replaces rather than duplicates."""

from __future__ import annotations

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.uid import generate_uid

from cxr.store.worklist import Received

BANNER = "RESEARCH USE ONLY - NOT A DIAGNOSIS"
MANUFACTURER = "cxr (research software)"
SCHEME = "99CXR"  # private coding scheme for this model's outputs
SC_SERIES, SR_SERIES = 9901, 9902
MAX_SIDE = 1024


TYPE2_STUDY = ("PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
               "StudyDate", "StudyTime", "ReferringPhysicianName")  # fmt: skip


def reference(header: Dataset) -> Dataset:
    """The source's header with the type 2 patient and study attributes highdicom copies present
    (empty where the modality left them out, as the spool leaves every demographic field)."""
    reference = Dataset(header)
    for keyword in TYPE2_STUDY:
        if keyword not in reference:
            setattr(reference, keyword, None)
    return reference


def _uid(*parts: str) -> str:
    return generate_uid(entropy_srcs=list(parts))


def _concept(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning[:64])


def with_banner(picture: Image.Image, entry: Received) -> np.ndarray:
    """The overlay, at most MAX_SIDE px, under a black band that says what it is and is not."""
    picture = picture.convert("RGB")
    picture.thumbnail((MAX_SIDE, MAX_SIDE))
    band = max(28, picture.height // 12)
    font = ImageFont.load_default(size=max(12, band // 3))
    canvas = Image.new("RGB", (picture.width, picture.height + band), "black")
    canvas.paste(picture, (0, band))
    draw = ImageDraw.Draw(canvas)
    p = max(entry.probabilities or [0.0])
    draw.text((8, 4), BANNER, fill="white", font=font)
    draw.text((8, band // 2 + 2), f"cxr: {entry.predicted} (p={p:.2f})", fill="yellow", font=font)
    return np.asarray(canvas)


def secondary_capture(source: Dataset, entry: Received, picture: Image.Image) -> hd.sc.SCImage:
    key = (entry.sop_instance_uid, entry.content_digest, entry.model_fingerprint or "")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference(source),
        pixel_array=with_banner(picture, entry),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        patient_orientation=_orientation(source),
        series_instance_uid=_uid(entry.study_instance_uid, key[2], "sc-series"),
        series_number=SC_SERIES,
        sop_instance_uid=_uid(*key, "sc"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description="cxr heat map (research use, not a diagnosis)",
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


def structured_report(source: Dataset, entry: Received) -> hd.sr.ComprehensiveSR:
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
    if entry.threshold:
        items += [
            hd.sr.NumContentItem(
                _concept("CXR-THR", f"Threshold on P({entry.threshold['positive_class']})"),
                float(entry.threshold["value"]),
                hd.sr.CodedConcept("1", "UCUM", "no units"),
                relationship_type=contains,
            ),
            hd.sr.TextContentItem(
                _concept("CXR-RULE", "Threshold rule"), str(entry.threshold["rule"]), contains
            ),
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
    root = hd.sr.ContainerContentItem(_concept("CXR-RESULT", "Chest X-ray classifier result"))
    root.ContentSequence = hd.sr.ContentSequence(items, is_root=False)
    key = (entry.sop_instance_uid, entry.content_digest, entry.model_fingerprint or "")
    return hd.sr.ComprehensiveSR(
        evidence=[reference(source)],
        content=root,
        series_instance_uid=_uid(entry.study_instance_uid, key[2], "sr-series"),
        series_number=SR_SERIES,
        sop_instance_uid=_uid(*key, "sr"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        series_description="cxr result (research use, not a diagnosis)",
    )
