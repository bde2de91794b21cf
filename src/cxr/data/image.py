"""What the reader returns: grey uint8 pixels and the non-identifying facts about their source."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RASTER_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
DICOM_SUFFIXES = {".dcm", ".dicom"}


@dataclass(frozen=True)
class ImageInfo:
    """What later steps may know about a file; never a patient-identifying DICOM field."""

    source_format: str
    width: int
    height: int
    mode: str
    bits: int
    is_colour: bool = False
    modality: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    patient_position: str | None = None
    transfer_syntax: str | None = None
    group_key: str | None = None  # one-way pseudonym of DICOM PatientID, for patient grouping
    age_years: float | None = None  # DICOM PatientAge: checked against the training population


@dataclass(frozen=True)
class XrayImage:
    pixels: np.ndarray  # (height, width) uint8
    info: ImageInfo


def stretch_to_uint8(
    values: np.ndarray, lo: float | None = None, hi: float | None = None
) -> np.ndarray:
    """Map [lo, hi] (default: the data's own range) linearly onto 0-255, clipping outside it."""
    values = values.astype(np.float64)
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
