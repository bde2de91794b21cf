"""Is a JPEG stream whole? Pillow decodes a file cut short (with an end marker put back) or with
altered bytes without a word, filling the missing part with flat grey that a model then scores
with confidence. libjpeg-turbo reports such damage as a warning, and simplejpeg's strict mode
turns the warning into an error: the reader asks it about every JPEG, DICOM frames included.
"""

from __future__ import annotations

import re

import simplejpeg

from cxr.errors import ImageProblem, ImageReadError

_DAMAGE = re.compile(r"corrupt|premature|bogus|invalid|unexpected|huffman", re.I)


def check_jpeg_stream(data: bytes, label: str) -> None:
    """ImageReadError (CORRUPT) when libjpeg-turbo finds the compressed data damaged.

    Decoded at 1/8 scale, which still reads all the entropy-coded data; any other complaint (a
    colour space simplejpeg does not convert, say) is left to the decoder that reads the pixels.
    """
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True, min_factor=8)
    except ValueError as exc:
        if _DAMAGE.search(str(exc)):
            raise ImageReadError(label, ImageProblem.CORRUPT, f"JPEG data damaged: {exc}") from exc
