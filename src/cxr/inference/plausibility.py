"""Is this plausibly a frontal chest radiograph, and like the training images? `flags` says why an
image is probably not a frontal chest X-ray (the worklist keeps it out of the ranking, in a "not
scored" group); `out_of_population` says why an X-ray's score deserves less trust (still ranked)."""

from __future__ import annotations

import numpy as np

from cxr.data.image import XrayImage
from cxr.data.population import COVERAGE, STATISTICS, image_statistics

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


def out_of_population(image: XrayImage, population: dict | None) -> list[str]:
    """Warnings, in words, for an X-ray unlike the training images (the model card's
    `population`: see cxr.data.population): a patient older or younger than any in training, or
    grey-level statistics outside their range. The image is still ranked, with the warning."""
    if not population:
        return []
    out = []
    age, ages = image.info.age_years, population.get("age_years")
    if age is not None and ages and not ages[0] <= age <= ages[1]:
        shown = "90 years or older" if age >= 90 else f"{age:g} years"  # over 89 identify (HIPAA)
        out.append(f"patient age {shown}, outside the training data's {ages[0]:g}–{ages[1]:g}")
    low, high = population.get("coverage", COVERAGE)
    for key, value in image_statistics(image.pixels).items():
        lo_hi = population.get(key)
        if lo_hi and not lo_hi[0] <= value <= lo_hi[1]:
            out.append(
                f"{STATISTICS[key]} {value:.0f}, outside the {lo_hi[0]:.0f}–{lo_hi[1]:.0f} "
                f"of {high - low:g} % of the training images"
            )
    return out
