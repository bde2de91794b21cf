"""DICOM decoding for the reader: modality LUT, VOI LUT / window, MONOCHROME1, and honest refusals.

Kept apart from `reader` because it is the only code that touches pydicom datasets, and so the only
place that must take care never to let a patient-identifying field out.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from cxr.data.image import RASTER_SUFFIXES, ImageInfo, stretch_to_uint8
from cxr.errors import ImageProblem, ImageReadError

OPTIONAL_DECODERS = "pylibjpeg and pylibjpeg-libjpeg (pip install 'cxr[dicom]') or python-gdcm"
_NO_DECODER = re.compile(r"missing dependencies|does not support|no pixel data decoders", re.I)


def has_magic(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def decode(data: bytes, label: str, max_pixels: int) -> tuple[np.ndarray, ImageInfo]:
    """Return (uint8 pixels, ImageInfo) for a single-frame DICOM image."""
    ds = _parse(data, label)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageReadError(
            label,
            ImageProblem.UNSUPPORTED,
            f"multi-frame DICOM ({frames} frames); cxr reads "
            "single-frame radiographs: export the frame you want as its own file",
        )
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > max_pixels:
        raise ImageReadError(
            label, ImageProblem.TOO_LARGE, f"{cols}x{rows} px exceeds {max_pixels:,} pixels"
        )
    raw = _pixel_array(ds, label)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        grey = raw[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        pixels = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    else:
        pixels = _grey_to_uint8(raw, ds)
    syntax = _syntax(ds)
    info = ImageInfo(
        source_format="dicom",
        width=pixels.shape[1],
        height=pixels.shape[0],
        mode=str(ds.get("PhotometricInterpretation", "")),
        bits=int(ds.get("BitsStored", 8) or 8),
        is_colour=samples != 1,
        modality=_text(ds, "Modality"),
        body_part=_text(ds, "BodyPartExamined"),
        view_position=_text(ds, "ViewPosition"),
        patient_position=_text(ds, "PatientPosition"),
        transfer_syntax=syntax.name if syntax is not None else None,
        group_key=_pseudonym(ds),
        age_years=_age_years(ds),
    )
    return pixels, info


def read_group_key(path: Path) -> str | None:
    """Patient pseudonym from a DICOM header alone (no pixels); None for other files."""
    if path.suffix.lower() in RASTER_SUFFIXES:
        return None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"], force=True)
    except Exception:  # an unreadable header is reported when the image is read, not here
        return None
    return _pseudonym(ds)


def _parse(data: bytes, label: str) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_magic(data))
    except InvalidDicomError as exc:
        raise ImageReadError(label, ImageProblem.NOT_AN_IMAGE, f"not DICOM: {exc}") from exc
    except Exception as exc:  # pydicom signals truncation with many exception types
        raise ImageReadError(
            label, ImageProblem.CORRUPT, f"DICOM header unreadable: {exc}"
        ) from exc
    if "PixelData" not in ds:
        raise ImageReadError(label, ImageProblem.NOT_AN_IMAGE, "DICOM file holds no pixel data")
    return ds


def _pixel_array(ds: pydicom.Dataset, label: str) -> np.ndarray:
    syntax = _syntax(ds)
    try:
        return ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        # pydicom says "missing dependencies" when no plugin is installed and "does not support"
        # when the installed ones (Pillow) cannot do this bit depth: both mean "install a decoder".
        if syntax is not None and syntax.is_compressed and _NO_DECODER.search(str(exc)):
            raise ImageReadError(
                label,
                ImageProblem.UNSUPPORTED,
                f"no installed decoder handles {syntax.name}; install {OPTIONAL_DECODERS}",
            ) from exc
        raise ImageReadError(label, ImageProblem.CORRUPT, str(exc)) from exc
    except Exception as exc:  # truncated pixel data surfaces as ValueError, EOFError, ...
        raise ImageReadError(label, ImageProblem.CORRUPT, f"pixel data unreadable: {exc}") from exc


def _grey_to_uint8(raw: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Modality LUT, then VOI (LUT or window) mapped over 0-255; MONOCHROME1 inverted last."""
    values = apply_modality_lut(raw, ds)
    if ds.get("VOILUTSequence"):
        pixels = stretch_to_uint8(apply_voi_lut(values, ds))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        lo, hi = _modality_range(ds)
        pixels = stretch_to_uint8(apply_voi_lut(values, ds, prefer_lut=False), lo, hi)
    elif raw.dtype == np.uint8 and values is raw:
        pixels = raw  # plain 8-bit data is already display values: keep it bit-exact
    else:
        pixels = stretch_to_uint8(values)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        pixels = 255 - pixels
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def _modality_range(ds: pydicom.Dataset) -> tuple[float, float]:
    """The range pydicom's windowing maps onto (DICOM PS3.3 C.11.2.1.2), so it can go to 0-255."""
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, 2.0**bits - 1
    else:
        lo, hi = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    return lo, hi


def _syntax(ds: pydicom.Dataset):
    meta = getattr(ds, "file_meta", None)
    return meta.get("TransferSyntaxUID") if meta is not None else None


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value).strip() or None if value is not None else None


AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


def _age_years(ds: pydicom.Dataset) -> float | None:
    """PatientAge ("081Y", "006M", or a bare number as some writers store it) in years; None
    when absent or malformed. Only the age is kept, never the birth date."""
    text = str(ds.get("PatientAge", "") or "").strip().upper()
    unit = AGE_UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    try:
        return float(number) * (unit or 1.0) if number else None
    except ValueError:
        return None


def _pseudonym(ds: pydicom.Dataset) -> str | None:
    """Group images by patient without keeping the ID: a truncated SHA-256 of PatientID."""
    patient = str(ds.get("PatientID", "") or "").strip()
    if not patient:
        return None
    return "dcm-" + hashlib.sha256(patient.encode()).hexdigest()[:16]
