"""The one image reader: training, prediction and the web app all go through `read_image`.

It turns JPEG, PNG and DICOM into one single-channel uint8 array plus the metadata later steps need,
and refuses anything it cannot read faithfully with an `ImageReadError` naming the file and reason.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxr.data import dicom
from cxr.errors import ImageProblem, ImageReadError

MIN_SIDE = 64
MAX_PIXELS = 64_000_000  # 8000 x 8000; a radiograph is at most ~4300 x 3500
MAX_FILE_BYTES = 512 * 1024 * 1024
RASTER_FORMATS = {"JPEG": "jpeg", "PNG": "png", "TIFF": "tiff", "BMP": "bmp"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".dcm", ".dicom"}
COLOUR_SPREAD = 12.0  # mean channel spread (grey levels) above which an RGB file is a colour photo


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


@dataclass(frozen=True)
class XrayImage:
    pixels: np.ndarray  # (height, width) uint8
    info: ImageInfo


def looks_like_image(path: Path) -> bool:
    """Image by suffix, or DICOM by magic bytes whatever the suffix (PACS exports may have none)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with path.open("rb") as fh:
            return dicom.has_magic(fh.read(132))
    except OSError:
        return False


def read_image(source: str | Path | bytes, name: str | None = None) -> XrayImage:
    """Read one file (or its bytes, e.g. an upload; `name` is then used in errors) as grey uint8."""
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    data = source if isinstance(source, bytes) else _read_bytes(Path(source), label)
    if not data:
        raise ImageReadError(label, ImageProblem.EMPTY, "the file has zero bytes")
    suffix = Path(label).suffix.lower()
    if dicom.has_magic(data) or suffix in {".dcm", ".dicom"}:
        pixels, info = dicom.decode(data, label, MAX_PIXELS)
    else:
        pixels, info = _decode_raster(data, label)
    _check_size(label, info.width, info.height)
    return XrayImage(pixels, info)


def _read_bytes(path: Path, label: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageReadError(label, ImageProblem.TOO_LARGE, f"{size} bytes on disk")
        return path.read_bytes()
    except IsADirectoryError as exc:
        raise ImageReadError(label, ImageProblem.NOT_AN_IMAGE, "it is a folder") from exc
    except FileNotFoundError as exc:
        raise ImageReadError(label, ImageProblem.NOT_AN_IMAGE, "no such file") from exc


def _check_size(label: str, width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise ImageReadError(
            label, ImageProblem.TOO_SMALL, f"{width}x{height} px; at least {MIN_SIDE} px a side"
        )
    if width * height > MAX_PIXELS:
        raise ImageReadError(
            label, ImageProblem.TOO_LARGE, f"{width}x{height} px exceeds {MAX_PIXELS:,} pixels"
        )


def _decode_raster(data: bytes, label: str) -> tuple[np.ndarray, ImageInfo]:
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageReadError(label, ImageProblem.NOT_AN_IMAGE, "no known image format") from exc
    except Image.DecompressionBombError as exc:
        raise ImageReadError(label, ImageProblem.TOO_LARGE, str(exc)) from exc
    fmt = RASTER_FORMATS.get(image.format or "")
    if fmt is None:
        raise ImageReadError(label, ImageProblem.UNSUPPORTED, f"{image.format} files are not read")
    _check_size(label, *image.size)  # before decoding: the decompression-bomb guard
    mode = image.mode
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(label, ImageProblem.CORRUPT, str(exc)) from exc
    pixels, bits, colour = _to_grey_uint8(image)
    info = ImageInfo(fmt, image.width, image.height, mode, bits, colour)
    return pixels, info


def _to_grey_uint8(image: Image.Image) -> tuple[np.ndarray, int, bool]:
    """Grey uint8; high-bit-depth data stretched over 0-255, colour folded to luma and flagged."""
    if image.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        raw = np.asarray(image)
        bits = 16 if image.mode.startswith("I;16") else 32
        return stretch_to_uint8(raw), bits, False
    if image.mode == "L":
        return np.asarray(image, dtype=np.uint8), 8, False
    rgb = image.convert("RGB")
    sample = np.asarray(rgb)[::4, ::4].astype(np.int16)
    spread = float((sample.max(axis=2) - sample.min(axis=2)).mean())
    return np.asarray(rgb.convert("L"), dtype=np.uint8), 8, spread > COLOUR_SPREAD


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
