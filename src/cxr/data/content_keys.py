"""A 63-bit content key per radiograph, stored in the model card for its training, tuning and
internal-test images: the same film re-encoded, resized or re-windowed keeps (nearly) the same
key, so `cxr evaluate` can tell a model's own images where its training data is not."""

from __future__ import annotations

import numpy as np

from cxr.data.cache import CachedImages
from cxr.data.duplicates import thumbnails

KEY = "dct63"  # how the card's keys were made; a card with other keys is checked on the data
_CHUNK = 512  # rows per batch: 5,000 images at 224 px would otherwise need a gigabyte of floats


def _dct(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (rows: frequencies)."""
    k, x = np.arange(n)[:, None], np.arange(n)[None]
    basis = np.cos(np.pi * (x + 0.5) * k / n) * np.sqrt(2 / n)
    basis[0] /= np.sqrt(2)
    return basis


_LOW = _dct(16)[:8]


def coefficients(images: CachedImages) -> np.ndarray:
    """(N, 63): the 8 x 8 lowest spatial frequencies, but the mean, of each image's zero-mean,
    unit-length 16 x 16 thumbnail (so contrast and windowing drop out)."""
    out = []
    for start in range(0, len(images), _CHUNK):
        rows = np.stack([images[i] for i in range(start, min(start + _CHUNK, len(images)))])
        small = thumbnails(rows).reshape(-1, 16, 16)
        out.append((_LOW @ small @ _LOW.T).reshape(-1, 64)[:, 1:])
    return np.concatenate(out) if out else np.zeros((0, 63))


def keys(values: np.ndarray, center: np.ndarray) -> np.ndarray:
    """One uint64 per image: which coefficients lie above the training images' median (balanced
    bits: chest films all look alike at this scale, so a per-image median would waste them)."""
    bits = (values > center).astype(np.uint64)
    return (bits << np.arange(63, dtype=np.uint64)).sum(1, dtype=np.uint64)


# Bits two keys may differ by and still be one radiograph: re-encoded, re-windowed and MONOCHROME1
# copies of Kermany films (dicom_cxr/kermany_wrapped) differ by <= 2, distinct films by >= 8; on
# the 720 COVID-DB images against 5,216 Kermany ones (48 and 224 px) it finds the same 418 as
# thumbnail correlation >= 0.99 on the pixels (cxr.data.duplicates.near_duplicates)
MATCH = 3
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def near(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each query key, whether some reference key is within MATCH bits of it."""
    found = np.zeros(len(query), bool)
    if not len(reference):
        return found
    for start in range(0, len(query), 256):
        apart = query[start : start + 256, None] ^ reference[None]
        bits = _POPCOUNT[apart.view(np.uint8)].reshape(*apart.shape, 8).sum(-1)
        found[start : start + 256] = bits.min(1) <= MATCH
    return found


def card_keys(parts: dict[str, CachedImages]) -> dict:
    """What the card stores: the key scheme, the medians it thresholds at (the training part's)
    and each part's keys as 16 hex characters."""
    found = {name: coefficients(images) for name, images in parts.items()}
    center = np.round(np.median(found["training"], 0), 5)
    return {
        "key": KEY,
        "center": center.tolist(),
        **{name: [f"{k:016x}" for k in keys(c, center).tolist()] for name, c in found.items()},
    }
