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


# pixel data as decoded (8000 x 8000 x 16 bits fits), any format or frames: with the copies decoding
# and conversion make, a request then peaks near 4x this (docs/benchmarks.md)
MAX_DECODED_BYTES = 128 * 2**20
BLOCK_PIXELS = 1 << 20  # pixels converted at a time: a full-size float copy is never made


def row_blocks(shape: tuple[int, ...]) -> list[slice]:
    """Slices of about BLOCK_PIXELS pixels over the first axis, to convert an image piecewise."""
    step = max(1, BLOCK_PIXELS // max(1, int(np.prod(shape[1:]))))
    return [slice(i, i + step) for i in range(0, shape[0], step)]


def lookup(table: np.ndarray, values: np.ndarray, first: int) -> np.ndarray:
    """`table[values - first]` as uint8, a block of rows at a time (no full-size index array)."""
    out = np.empty(values.shape, dtype=np.uint8)
    for rows in row_blocks(values.shape):
        out[rows] = table[values[rows].astype(np.int64) - first]
    return out


def stretch_to_uint8(
    values: np.ndarray, lo: float | None = None, hi: float | None = None
) -> np.ndarray:
    """Map [lo, hi] (default: the data's own range) linearly onto 0-255, clipping outside it.

    Memory stays near the output's size: 8/16-bit integers go through a table of their levels,
    anything else is scaled a block of rows at a time.
    """
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    if values.dtype.kind in "iub" and values.dtype.itemsize <= 2:
        first = int(values.min())
        levels = np.arange(first, int(values.max()) + 1, dtype=np.float64)
        return lookup(_scale(levels, lo, hi), values, first)
    out = np.empty(values.shape, dtype=np.uint8)
    for rows in row_blocks(values.shape):
        out[rows] = _scale(values[rows].astype(np.float64), lo, hi)
    return out


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
