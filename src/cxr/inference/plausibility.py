"""Is this plausibly a frontal chest radiograph? Flags, not refusals: the image is still scored,
but the worklist says why its score should not be trusted."""

from __future__ import annotations

import numpy as np

from cxr.data.image import XrayImage

RADIOGRAPHY = {"CR", "DX"}
FRONTAL = {"PA", "AP"}
MAX_ASPECT = 2.0
MIN_CONTRAST = 8.0  # grey levels of standard deviation: below, the image is nearly constant


def flags(image: XrayImage) -> list[str]:
    info, out = image.info, []
    if info.is_colour:
        out.append("colour image (a photo?)")
    if _contrast(image.pixels) < MIN_CONTRAST:
        out.append("nearly constant image")
    aspect = max(info.width, info.height) / max(min(info.width, info.height), 1)
    if aspect > MAX_ASPECT:
        out.append(f"aspect ratio {aspect:.1f}:1")
    if info.modality and info.modality.upper() not in RADIOGRAPHY:
        out.append(f"DICOM Modality {info.modality} (not CR/DX)")
    if info.body_part and info.body_part.upper() != "CHEST":
        out.append(f"DICOM BodyPartExamined {info.body_part} (not CHEST)")
    if info.view_position and info.view_position.upper() not in FRONTAL:
        out.append(f"DICOM ViewPosition {info.view_position} (not frontal)")
    if info.patient_position and info.patient_position.upper() not in FRONTAL:
        out.append(f"DICOM PatientPosition {info.patient_position} (unknown view)")
    return out


def _contrast(pixels: np.ndarray) -> float:
    """Standard deviation of about a million evenly spread pixels: np.std over a whole 8000 px
    image would make a 512 MB float64 copy to say the same thing."""
    step = max(1, int(np.sqrt(pixels.size / 1_000_000)))
    return float(np.std(pixels[::step, ::step]))
