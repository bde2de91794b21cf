"""What makes two arrivals the same instance, whatever the transfer syntax: the pixels (native
pixel bytes in little-endian order without padding, or the compressed frames as sent) and the
header attributes that say what those pixels show. Implicit or explicit VR, OB or OW, one
fragmentation or another: the same digest. The same pixels under another modality, body part or
view are another instance (a reused UID is flagged, not merged)."""

from __future__ import annotations

import hashlib

import numpy as np
from pydicom import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import (
    UID,
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from cxr.data.dicom import check_stream_size
from cxr.data.image import MAX_DECODED_BYTES

LOSSLESS = {
    RLELossless,
    JPEGLSLossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEG2000Lossless,
    HTJ2KLossless,
}
DIGEST_LENGTH = 16  # hex characters: the worklist's content_digest column
MEANING = ("StudyInstanceUID", "SeriesInstanceUID", "PatientID", "SOPClassUID", "Modality",
           "BodyPartExamined", "ViewPosition", "PatientPosition", "PatientOrientation",
           "ImageLaterality", "PhotometricInterpretation", "Rows", "Columns", "SamplesPerPixel",
           "PlanarConfiguration", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
           "NumberOfFrames", "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter",
           "WindowWidth", "VOILUTFunction")  # fmt: skip


def content_digest(dataset: Dataset, syntax: UID) -> str:
    digest = hashlib.sha256()
    for keyword in MEANING:
        value = dataset.get(keyword)
        text = "" if value is None else str(value)
        digest.update(f"{keyword}={text}\n".encode("utf-8", "surrogatepass"))
    digest.update(pixel_bytes(dataset, syntax))
    return digest.hexdigest()[:DIGEST_LENGTH]


def pixel_bytes(dataset: Dataset, syntax: UID) -> bytes:
    data = dataset.get("PixelData")
    if not isinstance(data, bytes):
        return b""
    frames = _int(dataset, "NumberOfFrames", 1)
    if syntax in LOSSLESS and (native := _decoded(dataset, frames)) is not None:
        return native  # the same bytes the uncompressed instance gives: one row, not two
    if syntax.is_encapsulated:
        try:
            return b"".join(generate_frames(data, number_of_frames=frames))
        except Exception:  # malformed encapsulation: the bytes as sent; decoding will say why
            return data
    bits = _int(dataset, "BitsAllocated", 8)
    size = -(-_samples(dataset, frames) * bits // 8)  # packed: 1-bit pixels fill bytes
    data = data[:size] if 0 < size <= len(data) else data  # without the even-length pad byte
    if not syntax.is_little_endian and bits in (16, 32) and len(data) % (bits // 8) == 0:
        data = np.frombuffer(data, dtype=f">u{bits // 8}").byteswap().tobytes()
    return data


def _decoded(dataset: Dataset, frames: int) -> bytes | None:
    """A lossless frame decoded to native little-endian bytes, within the reader's budget (the
    stream's own header must agree with the DICOM one, as the reader requires); None when it
    cannot be decoded here (no decoder for the syntax, a damaged stream): the frames as sent."""
    declared = _samples(dataset, frames) * -(-_int(dataset, "BitsAllocated", 8) // 8)  # decoded
    if not 0 < declared <= MAX_DECODED_BYTES:
        return None
    try:
        first = next(generate_frames(dataset.PixelData, number_of_frames=frames))
        check_stream_size(first, dataset, "received instance")
        pixels = dataset.pixel_array
    except Exception:  # ImageReadError, no decoder, damaged data: not decoded here
        return None
    return pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()


def _samples(dataset: Dataset, frames: int) -> int:
    """Pixel samples the header declares: rows x columns x samples per pixel x frames."""
    return (
        _int(dataset, "Rows", 0) * _int(dataset, "Columns", 0)
        * _int(dataset, "SamplesPerPixel", 1) * frames
    )  # fmt: skip


def _int(dataset: Dataset, keyword: str, default: int) -> int:
    try:
        return max(int(dataset.get(keyword) or default), 0)
    except (TypeError, ValueError):
        return default
