"""The one image reader: training, prediction and the web app all go through `read_image`.

It turns JPEG, PNG and DICOM into one single-channel uint8 array plus the metadata later steps need,
and refuses anything it cannot read faithfully with an `ImageReadError` naming the file and reason.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageMode, ImageOps, UnidentifiedImageError

from cxr.data import dicom
from cxr.data.image import (
    DICOM_SUFFIXES,
    MAX_DECODED_BYTES,
    RASTER_SUFFIXES,
    ImageInfo,
    XrayImage,
    stretch_to_uint8,
)
from cxr.data.jpeg import check_jpeg_stream
from cxr.errors import ImageProblem, ImageReadError

__all__ = [
    "ImageInfo",
    "XrayImage",
    "looks_like_image",
    "read_file",
    "read_image",
    "stretch_to_uint8",
]

MIN_SIDE = 64
MAX_PIXELS = 64_000_000  # 8000 x 8000; a radiograph is at most ~4300 x 3500
MAX_FILE_BYTES = 512 * 1024 * 1024
RASTER_FORMATS = {"JPEG": "jpeg", "PNG": "png", "TIFF": "tiff", "BMP": "bmp"}
IMAGE_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES
COLOUR_SPREAD = 12.0  # mean channel spread (grey levels) above which an RGB file is a colour photo
SPECIAL_FILES = {
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}
# Never blocks on a FIFO, never makes a terminal ours; a regular file reads the same without it.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def looks_like_image(path: Path) -> bool:
    """Image by suffix, or DICOM by magic bytes whatever the suffix (PACS exports may have none)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with _open_regular(path, str(path)) as (fh, _):
            return dicom.has_magic(fh.read(132))
    except ImageReadError:  # a FIFO, a device, unreadable: not an image to discovery either
        return False


def read_image(source: str | Path | bytes, name: str | None = None) -> XrayImage:
    """Read one file (or its bytes, e.g. an upload; `name` is then used in errors) as grey uint8.

    This is the reader's one boundary: whatever a decoder raises on a hostile or damaged file
    (pydicom's ValueError on a bad header field, numpy's type errors, Pillow's SyntaxError...)
    comes out as an `ImageReadError`, so no caller needs to know the decoders' exception zoo.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        return _read(source, label)
    except ImageReadError:
        raise
    except MemoryError as exc:
        raise ImageReadError(label, ImageProblem.TOO_LARGE, "too large to decode") from exc
    except Exception as exc:
        raise ImageReadError(
            label, ImageProblem.CORRUPT, f"{type(exc).__name__}: {exc}"[:300]
        ) from exc


def _read(source: str | Path | bytes, label: str) -> XrayImage:
    data = source if isinstance(source, bytes) else read_file(Path(source), label)
    if not data:
        raise ImageReadError(label, ImageProblem.EMPTY, "the file has zero bytes")
    suffix = Path(label).suffix.lower()
    if dicom.has_magic(data) or suffix in DICOM_SUFFIXES:
        pixels, info = dicom.decode(data, label, MAX_PIXELS)
    else:
        pixels, info = _decode_raster(data, label)
    _check_size(label, info.width, info.height)
    return XrayImage(pixels, info)


def read_file(path: Path, label: str | None = None, limit: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes (links resolved), never more than `limit`; else an ImageReadError.

    `st_size` is only true of regular files: a FIFO would block the open and the read, a link to
    /dev/zero never ends. At most size + 1 bytes are read, so a file growing meanwhile is caught,
    not followed.
    """
    label = label or str(path)
    with _open_regular(path, label) as (fh, size):
        if size > limit:
            raise ImageReadError(label, ImageProblem.TOO_LARGE, f"{size} bytes on disk")
        data = fh.read(size + 1)
    if len(data) != size:
        raise ImageReadError(label, ImageProblem.UNREADABLE, "it changed while being read")
    return data


@contextmanager
def _open_regular(path: Path, label: str) -> Iterator[tuple[BinaryIO, int]]:
    """An open regular file and its size. The type is checked before opening (a device is never
    opened), the open cannot block, and the open descriptor is checked again, so a file swapped
    in between gains nothing."""
    try:
        _must_be_regular(os.stat(path).st_mode, label)
        with open(os.open(path, OPEN_FLAGS), "rb") as fh:
            st = os.fstat(fh.fileno())
            _must_be_regular(st.st_mode, label)
            yield fh, st.st_size
    except FileNotFoundError as exc:
        raise ImageReadError(label, ImageProblem.NOT_AN_IMAGE, "no such file") from exc
    except OSError as exc:  # permission denied, a symlink loop, an I/O error
        raise ImageReadError(label, ImageProblem.UNREADABLE, exc.strerror or str(exc)) from exc


def _must_be_regular(mode: int, label: str) -> None:
    if stat.S_ISDIR(mode):
        raise ImageReadError(label, ImageProblem.NOT_AN_IMAGE, "it is a folder")
    if not stat.S_ISREG(mode):
        kind = SPECIAL_FILES.get(stat.S_IFMT(mode), "special file")
        raise ImageReadError(label, ImageProblem.NOT_AN_IMAGE, f"not a regular file: {kind}")


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
    _check_decoded_bytes(label, image)
    frames = getattr(image, "n_frames", 1)
    if frames > 1:  # an animated PNG, a multi-page TIFF: which page is the radiograph?
        raise ImageReadError(
            label,
            ImageProblem.UNSUPPORTED,
            f"{frames} frames or pages in one {image.format} file; cxr reads single-frame "
            "radiographs, as for DICOM: save the one you want as its own file",
        )
    if fmt == "jpeg":
        check_jpeg_stream(data, label)
    mode = image.mode
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # a copy would double the peak memory
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(label, ImageProblem.CORRUPT, str(exc)) from exc
    width, height = image.size
    pixels, bits, colour = _to_grey_uint8(image)
    info = ImageInfo(fmt, width, height, mode, bits, colour)
    return pixels, info


def _check_decoded_bytes(label: str, image: Image.Image) -> None:
    """Pixels are not the whole cost: 8000 x 8000 RGBA decodes to 256 MiB where grey is 64."""
    mode = ImageMode.getmode(image.mode)
    per_pixel = len(mode.bands) * np.dtype(mode.typestr).itemsize
    width, height = image.size
    if width * height * per_pixel > MAX_DECODED_BYTES:
        raise ImageReadError(
            label,
            ImageProblem.TOO_LARGE,
            f"{width}x{height} px {image.mode} decodes to "
            f"{width * height * per_pixel / 2**20:,.0f} MiB; at most "
            f"{MAX_DECODED_BYTES // 2**20} MiB",
        )


def _to_grey_uint8(image: Image.Image) -> tuple[np.ndarray, int, bool]:
    """Grey uint8; high-bit-depth data stretched over 0-255, colour folded to luma and flagged."""
    if image.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        raw = np.asarray(image)
        bits = 16 if image.mode.startswith("I;16") else 32
        image.close()  # frees Pillow's copy of the pixels before the mapping allocates its own
        return stretch_to_uint8(raw), bits, False
    if image.mode in {"L", "LA", "La"}:
        return np.asarray(image.convert("L"), dtype=np.uint8), 8, False
    # straight to grey (a full RGB copy first would cost 3 bytes a pixel more); the colour check
    # looks at a 1/16 sample
    width, height = image.size
    small = image.resize((max(1, width // 4), max(1, height // 4)), Image.Resampling.NEAREST)
    sample = np.asarray(small.convert("RGB")).astype(np.int16)
    spread = float((sample.max(axis=2) - sample.min(axis=2)).mean())
    return np.asarray(image.convert("L"), dtype=np.uint8), 8, spread > COLOUR_SPREAD
