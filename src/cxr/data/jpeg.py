"""Is a JPEG stream whole? Pillow decodes a file cut short (with an end marker put back) or with
altered bytes without a word, filling the missing part with flat grey that a model then scores
with confidence. libjpeg-turbo reports such damage as a warning, and simplejpeg's strict mode
turns the warning into an error: the reader asks it about every JPEG, DICOM frames included.
"""

from __future__ import annotations

import re

import simplejpeg

from cxr.errors import ImageProblem, ImageReadError

_DAMAGE = re.compile(r"corrupt|premature|bogus|invalid|unexpected|huffman|progression", re.I)
SOS = b"\xff\xda"  # start of scan: inside entropy-coded data a 0xFF is always followed by 0 or RSTn
# libjpeg's own progressive scripts use 6 scans (grey) or 10 (colour). Decoding time grows with
# scans x blocks, so a flat 8000 x 8000 image whose last scan is repeated 500 times costs about
# 40 s of CPU in 300 KiB; at this limit the worst case is about 1 s (docs/benchmarks.md).
MAX_JPEG_SCANS = 16


def check_jpeg_stream(data: bytes, label: str) -> None:
    """ImageReadError when a JPEG stream would cost too much to decode or is damaged.

    The scans are counted first, in microseconds, before any decoding (an upper bound: a
    thumbnail's scan in an APP segment counts too). Then the stream is decoded at 1/8 scale, which
    still reads all the entropy-coded data, with libjpeg-turbo's warnings as errors: damaged data
    and an inconsistent progression (a repeated refinement scan) are refused. Any other complaint
    (a colour space simplejpeg does not convert, say) is left to the decoder that reads the pixels.
    """
    scans = data.count(SOS)
    if scans > MAX_JPEG_SCANS:
        raise ImageReadError(
            label,
            ImageProblem.TOO_LARGE,
            f"JPEG stream with {scans} scans; at most {MAX_JPEG_SCANS} are decoded "
            "(each scan costs a full pass over the image)",
        )
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True, min_factor=8)
    except ValueError as exc:
        if _DAMAGE.search(str(exc)):
            raise ImageReadError(label, ImageProblem.CORRUPT, f"JPEG data damaged: {exc}") from exc
