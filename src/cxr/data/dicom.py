"""DICOM decoding for the reader: modality LUT, VOI LUT / window, MONOCHROME1, and honest refusals.

Kept apart from `reader` because it is the only code that touches pydicom datasets, and so the only
place that must take care never to let a patient-identifying field out.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import zlib
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
)

from cxr.data.image import (
    MAX_DECODED_BYTES,
    RASTER_SUFFIXES,
    ImageInfo,
    lookup,
    row_blocks,
    stretch_to_uint8,
)
from cxr.data.jpeg import check_jpeg_stream
from cxr.errors import ImageProblem, ImageReadError

# pydicom's value checks warn with the offending value ("Invalid value for VR LO: '<PatientID>'"),
# into warnings and its logger: a header field would reach our logs. The reader checks what it
# uses itself, so those warnings are off for reading.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
OPTIONAL_DECODERS = "pylibjpeg and pylibjpeg-libjpeg (pip install 'cxr[dicom]') or python-gdcm"
_NO_DECODER = re.compile(r"missing dependencies|does not support|no pixel data decoders", re.I)
INFLATE_CHUNK = 2**20
JPEG_8BIT = {JPEGBaseline8Bit, JPEGExtended12Bit}
LUMA = np.array([0.299, 0.587, 0.114])


def has_magic(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def decode(data: bytes, label: str, max_pixels: int) -> tuple[np.ndarray, ImageInfo]:
    """Return (uint8 pixels, ImageInfo) for a single-frame DICOM image.

    The header's declared size is checked before any pixel is decoded, and the display mapping
    (modality LUT, VOI, MONOCHROME1) is computed on a table of the stored levels, then applied:
    a 16-bit image costs its own size and the output's, never a float64 copy.
    """
    ds = _parse(data, label)
    frames = _number(ds, "NumberOfFrames", 1, label)
    rows, cols = _number(ds, "Rows", 0, label), _number(ds, "Columns", 0, label)
    samples = _number(ds, "SamplesPerPixel", 1, label)
    sample_bytes = -(-_number(ds, "BitsAllocated", 8, label) // 8)
    declared = rows * cols * max(frames, 1) * max(samples, 1) * sample_bytes
    if declared > MAX_DECODED_BYTES:
        raise ImageReadError(
            label,
            ImageProblem.TOO_LARGE,
            f"{cols}x{rows} px x {frames} frame(s) x {samples * sample_bytes} bytes declared "
            f"= {declared / 2**20:,.0f} MiB; at most {MAX_DECODED_BYTES // 2**20} MiB decoded",
        )
    if frames > 1:
        raise ImageReadError(
            label,
            ImageProblem.UNSUPPORTED,
            f"multi-frame DICOM ({frames} frames); cxr reads "
            "single-frame radiographs: export the frame you want as its own file",
        )
    if rows * cols > max_pixels:
        raise ImageReadError(
            label, ImageProblem.TOO_LARGE, f"{cols}x{rows} px exceeds {max_pixels:,} pixels"
        )
    _check_decimals(ds, label)
    raw = _pixel_array(ds, label)
    if raw.ndim != (2 if samples == 1 else 3):  # more pixel bytes than the header declares
        raise ImageReadError(
            label, ImageProblem.CORRUPT, f"pixel data of shape {raw.shape} for a single frame"
        )
    palette = ds.get("PhotometricInterpretation") == "PALETTE COLOR"
    if palette:  # indices into a colour table, not intensities: look them up, flag as colour
        raw = _palette_to_uint8(raw, ds, label)
    pixels = _luma(raw) if samples != 1 or palette else _grey_to_uint8(raw, ds)
    syntax = _syntax(ds)
    info = ImageInfo(
        source_format="dicom",
        width=pixels.shape[1],
        height=pixels.shape[0],
        mode=str(ds.get("PhotometricInterpretation", "")),
        bits=_number(ds, "BitsStored", 8, label),
        is_colour=samples != 1 or palette,
        modality=_text(ds, "Modality"),
        body_part=_text(ds, "BodyPartExamined"),
        view_position=_text(ds, "ViewPosition"),
        patient_position=_text(ds, "PatientPosition"),
        transfer_syntax=syntax.name if syntax is not None else None,
        group_key=_pseudonym(ds),
        age_years=patient_age_years(ds),
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
    if has_magic(data):
        _check_inflated_size(data, label)
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
    if not ds.PixelData:  # present, zero bytes long: pydicom reads it as None
        raise ImageReadError(label, ImageProblem.CORRUPT, "DICOM PixelData element is empty")
    return ds


def _check_inflated_size(data: bytes, label: str) -> None:
    """A Deflated DICOM (a zip bomb in disguise: 1 MB can inflate to 1 GiB) is inflated here in
    bounded chunks, output discarded, and refused once it passes the limit; pydicom, which
    inflates the whole file at once, only ever sees one known to fit."""
    stream = io.BytesIO(data)
    try:
        read_preamble(stream, False)
        syntax = _read_file_meta_info(stream).get("TransferSyntaxUID")
    except Exception as exc:
        raise ImageReadError(
            label, ImageProblem.CORRUPT, f"DICOM file meta unreadable: {exc}"
        ) from exc
    if syntax != DeflatedExplicitVRLittleEndian:
        return
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    view = memoryview(data)[stream.tell() :]
    for start in range(0, len(view), INFLATE_CHUNK):
        pending = bytes(view[start : start + INFLATE_CHUNK])
        while pending and not inflater.eof:  # a pad byte may follow the end of the stream
            try:
                total += len(inflater.decompress(pending, INFLATE_CHUNK))
            except zlib.error as exc:
                raise ImageReadError(label, ImageProblem.CORRUPT, f"deflate: {exc}") from exc
            if total > MAX_DECODED_BYTES:
                raise ImageReadError(
                    label,
                    ImageProblem.TOO_LARGE,
                    f"Deflated DICOM inflates past {MAX_DECODED_BYTES // 2**20} MiB",
                )
            pending = inflater.unconsumed_tail


def _check_decimals(ds: pydicom.Dataset, label: str) -> None:
    """The decimal fields the display mapping uses must hold numbers (a window width above 0)."""
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        value = ds.get(keyword)
        values = value if isinstance(value, list | pydicom.multival.MultiValue) else [value]
        try:
            numbers = [float(v) for v in values if v not in (None, "")]
        except (TypeError, ValueError) as exc:
            raise _not_a_number(label, keyword, value) from exc
        if not all(math.isfinite(v) and abs(v) < 1e9 for v in numbers):  # NaN, inf, 1e308:
            raise _not_a_number(label, keyword, value)  # overflow in the display mapping
        if keyword == "WindowWidth" and any(not w >= 1 for w in numbers):
            raise ImageReadError(label, ImageProblem.CORRUPT, f"DICOM WindowWidth {value} < 1")


def _not_a_number(label: str, keyword: str, value: object) -> ImageReadError:
    """A damaged header field: its first 40 characters, quoted, so a crafted value stays short."""
    return ImageReadError(
        label, ImageProblem.CORRUPT, f"DICOM {keyword} {str(value)[:40]!r} is not a number"
    )


def _number(ds: pydicom.Dataset, keyword: str, default: int, label: str) -> int:
    """An integer header field, or a clear refusal when a damaged header holds something else."""
    value = ds.get(keyword, default)
    try:
        number = int(value if value not in (None, "") else default)
    except (TypeError, ValueError) as exc:
        raise _not_a_number(label, keyword, value) from exc
    if number < 0:
        raise ImageReadError(label, ImageProblem.CORRUPT, f"DICOM {keyword} {number} < 0")
    return number


def _pixel_array(ds: pydicom.Dataset, label: str) -> np.ndarray:
    syntax = _syntax(ds)
    if syntax is not None and syntax.is_transfer_syntax and syntax.is_encapsulated:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1), b"")
        check_stream_size(frame, ds, label)
        if syntax in JPEG_8BIT:  # decoded by Pillow, which hides a damaged stream
            check_jpeg_stream(frame, label)
    try:
        return ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        # pydicom says "missing dependencies" when no plugin is installed and "does not support"
        # when the installed ones (Pillow) cannot do this bit depth: both mean "install a decoder".
        if syntax is not None and not syntax.is_transfer_syntax:
            raise ImageReadError(
                label, ImageProblem.UNSUPPORTED, f"unknown transfer syntax {str(syntax)[:64]}"
            ) from exc
        if syntax is not None and syntax.is_compressed and _NO_DECODER.search(str(exc)):
            raise ImageReadError(
                label,
                ImageProblem.UNSUPPORTED,
                f"no installed decoder handles {syntax.name}; install {OPTIONAL_DECODERS}",
            ) from exc
        raise ImageReadError(label, ImageProblem.CORRUPT, str(exc)) from exc
    except Exception as exc:  # truncated pixel data surfaces as ValueError, EOFError, ...
        raise ImageReadError(label, ImageProblem.CORRUPT, f"pixel data unreadable: {exc}") from exc


def check_stream_size(frame: bytes, ds: pydicom.Dataset, label: str) -> None:
    """The decoder allocates what the compressed stream's own header says, not the DICOM header:
    a 3 KB JPEG 2000 stream of 13000 x 13000 px in a 512 x 512 header costs about 1 GB before any
    check on the result. Pillow reads only the stream's header here; a stream it cannot parse is
    left to the decoder."""
    try:
        with Image.open(io.BytesIO(frame)) as stream:
            width, height = stream.size
    except Image.DecompressionBombError as exc:
        raise ImageReadError(label, ImageProblem.TOO_LARGE, f"compressed frame: {exc}") from exc
    except Exception:  # JPEG-LS, lossless JPEG...: formats Pillow does not know
        return
    if (width, height) != (int(ds.Columns), int(ds.Rows)):
        raise ImageReadError(
            label,
            ImageProblem.CORRUPT,
            f"the compressed frame is {width}x{height} px but the header says "
            f"{ds.Columns}x{ds.Rows}",
        )


def _grey_to_uint8(raw: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Modality LUT, then VOI (LUT or window) mapped over 0-255; MONOCHROME1 inverted last.

    For integer data up to 16 bits the chain runs once per stored level, between the image's
    darkest and brightest, and the resulting table is then looked up block by block.
    """
    narrow = raw.dtype.kind in "iu" and raw.dtype.itemsize <= 2
    first = int(raw.min()) if narrow else 0
    levels = np.arange(first, int(raw.max()) + 1, dtype=raw.dtype) if narrow else raw
    values = apply_modality_lut(levels, ds)
    if ds.get("VOILUTSequence"):
        table = stretch_to_uint8(apply_voi_lut(values, ds))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        lo, hi = _modality_range(ds)
        table = stretch_to_uint8(apply_voi_lut(values, ds, prefer_lut=False), lo, hi)
    elif raw.dtype == np.uint8 and values is levels:
        table = levels  # plain 8-bit data is already display values: keep it bit-exact
    else:
        table = stretch_to_uint8(values)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        table = 255 - table
    table = np.asarray(table, dtype=np.uint8)
    return lookup(table, raw, first) if narrow else np.ascontiguousarray(table)


def _palette_to_uint8(raw: np.ndarray, ds: pydicom.Dataset, label: str) -> np.ndarray:
    try:
        rgb = apply_color_lut(raw, ds)
    except Exception as exc:  # a missing or malformed palette descriptor
        raise ImageReadError(label, ImageProblem.CORRUPT, f"PALETTE COLOR: {exc}"[:200]) from exc
    top = float(rgb.max()) or 1.0
    return stretch_to_uint8(rgb, 0.0, top) if rgb.dtype != np.uint8 else rgb


def _luma(raw: np.ndarray) -> np.ndarray:
    """Colour to grey (ITU-R BT.601 weights), a block of rows at a time."""
    out = np.empty(raw.shape[:2], dtype=np.uint8)
    for rows in row_blocks(raw.shape):
        grey = raw[rows][..., :3].astype(np.float64) @ LUMA
        out[rows] = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return out


def _modality_range(ds: pydicom.Dataset) -> tuple[float, float]:
    """The range pydicom's windowing maps onto (DICOM PS3.3 C.11.2.1.2), so it can go to 0-255."""
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0) or 0) == 0:
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
# DICOM's AS is nnnY/M/W/D; bare and decimal numbers as some writers store them; ASCII digits only
AGE = re.compile(r"(?P<number>[0-9]{1,3}(\.[0-9]+)?) ?(?P<unit>[YMWD]?)", re.ASCII)


def patient_age_years(ds: pydicom.Dataset) -> float | None:
    """PatientAge ("081Y", "006M", or a bare number as some writers store it) in years; None
    when absent or malformed (a sign, NaN, "1_0": Python's float() would take them). Only the
    age is kept, never the birth date."""
    text = str(ds.get("PatientAge", "") or "").strip().upper()
    found = AGE.fullmatch(text)
    if not found:
        return None
    return float(found["number"]) * AGE_UNITS.get(found["unit"], 1.0)


def _pseudonym(ds: pydicom.Dataset) -> str | None:
    """Group images by patient without keeping the ID: a truncated SHA-256 of PatientID."""
    patient = str(ds.get("PatientID", "") or "").strip()
    if not patient:
        return None
    return "dcm-" + hashlib.sha256(patient.encode()).hexdigest()[:16]
