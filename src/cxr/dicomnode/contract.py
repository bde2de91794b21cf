"""The listener's contract, checked on the header alone (before any pixel is decoded): which
storage SOP classes it scores, which it keeps as "not scored" (a study forwarded whole still
files completely), which it refuses, and which headers describe an image it cannot score."""

from __future__ import annotations

import re

from pydicom import Dataset
from pynetdicom import sop_class as sop

SCORED = {  # radiographs, and Secondary Captures (how converters wrap a radiograph)
    sop.ComputedRadiographyImageStorage: "CR",
    sop.DigitalXRayImageStorageForPresentation: "DX",
    sop.DigitalXRayImageStorageForProcessing: "DX (for processing)",
    sop.SecondaryCaptureImageStorage: "SC",
}
NOT_SCORED = {  # other imaging a chest study may hold: kept, listed, never scored
    sop.CTImageStorage: "CT",
    sop.EnhancedCTImageStorage: "enhanced CT",
    sop.MRImageStorage: "MR",
    sop.EnhancedMRImageStorage: "enhanced MR",
    sop.NuclearMedicineImageStorage: "NM",
    sop.PositronEmissionTomographyImageStorage: "PET",
    sop.UltrasoundImageStorage: "US",
    sop.UltrasoundMultiFrameImageStorage: "US multi-frame",
    sop.XRayAngiographicImageStorage: "XA",
    sop.XRayRadiofluoroscopicImageStorage: "RF",
    sop.DigitalMammographyXRayImageStorageForPresentation: "MG",
    sop.MultiFrameGrayscaleByteSecondaryCaptureImageStorage: "multi-frame SC (8 bits)",
    sop.MultiFrameGrayscaleWordSecondaryCaptureImageStorage: "multi-frame SC (16 bits)",
}
RADIOGRAPHY = {"CR", "DX"}
GREYSCALE = {"MONOCHROME1", "MONOCHROME2"}
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
UIDS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def accepted(sop_class: str) -> bool:
    return sop_class in SCORED or sop_class in NOT_SCORED


def describe() -> str:
    return (
        f"scores {', '.join(SCORED.values())}; stores as not scored "
        f"{', '.join(NOT_SCORED.values())}; refuses other SOP classes (status 0x0122)"
    )


def uid_problem(keyword: str, value: object) -> str | None:
    """PS3.5 9.1: at most 64 characters, digits and dots, no empty component. The reason names
    the rule, never echoes the value (any sender controls it)."""
    text = "" if value is None else str(value)
    if not text:
        return f"{keyword} missing"
    if len(text) > 64:
        return f"{keyword} of {len(text)} characters (a UID has at most 64)"
    if not UID.match(text):
        return f"{keyword} holds characters other than digits and single dots (not a UID)"
    return None


def header_problems(header: Dataset) -> list[str]:
    """Why this header rules out scoring, without decoding: an NM 12-bit JPEG is 'NM, not
    CR/DX', not 'install a decoder'."""
    problems = [p for k in UIDS if (p := uid_problem(k, header.get(k)))]
    sop_class = str(header.get("SOPClassUID", ""))
    if sop_class in NOT_SCORED:
        problems.append(f"SOP class {NOT_SCORED[sop_class]} (cxr scores CR, DX and SC)")
    modality = str(header.get("Modality", "") or "").strip().upper()
    if modality and modality not in RADIOGRAPHY:
        problems.append(f"DICOM Modality {_shown(modality)} (not CR/DX)")
    photometric = str(header.get("PhotometricInterpretation", "") or "").strip().upper()
    if photometric and photometric not in GREYSCALE:
        problems.append(f"PhotometricInterpretation {_shown(photometric)} (not greyscale)")
    frames = str(header.get("NumberOfFrames", "") or "1").strip()
    if frames not in ("", "1"):
        problems.append("multi-frame image (cxr scores single radiographs)")
    return problems


def _shown(value: str) -> str:
    """A code string as a reason may show it: 16 printable characters at most."""
    return "".join(c if c.isprintable() else "?" for c in value[:16])
