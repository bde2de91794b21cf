"""Which evaluated images are the model's own (training, tuning, internal test): the same
radiograph, re-encoded, resized or re-windowed or not.

The card carries one 63-bit content key per image of its data (16 hex characters: about 100 KB
for 5,000 images), so the check runs where the training data is not; a card written before the
keys existed falls back to re-reading the data, and says so when neither is possible.
"""

from __future__ import annotations

import numpy as np

from cxr.data.cache import CachedImages, PixelCache
from cxr.data.duplicates import near_duplicates, thumbnails
from cxr.errors import CxrError

INTERNAL_TEST = "internal-test"  # the model's own held-out patients, rebuilt from its card
SEEN_PARTS = ("training", "tuning", INTERNAL_TEST)  # the `seen` column's answers, besides "no"
LEARNED_FROM = ("training", "tuning")  # what the weights, threshold or calibration saw

KEY = "dct63"  # how the card's keys were made; a card with other keys is checked on the data
# Bits two keys may differ by and still be one radiograph: re-encoded, re-windowed and MONOCHROME1
# copies of Kermany films (dicom_cxr/kermany_wrapped) differ by <= 2, distinct films by >= 8; on
# the 720 COVID-DB images against 5,216 Kermany ones (48 and 224 px) it finds the same 418 as
# thumbnail correlation >= 0.99 on the pixels (cxr.data.duplicates.near_duplicates)
MATCH = 3
_CHUNK = 512  # rows per batch: 5,000 images at 224 px would otherwise need a gigabyte of floats
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _dct(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (rows: frequencies)."""
    k, x = np.arange(n)[:, None], np.arange(n)[None]
    basis = np.cos(np.pi * (x + 0.5) * k / n) * np.sqrt(2 / n)
    basis[0] /= np.sqrt(2)
    return basis


_LOW = _dct(16)[:8]


def _coefficients(images: CachedImages) -> np.ndarray:
    """(N, 63): the 8 x 8 lowest spatial frequencies, but the mean, of each image's zero-mean,
    unit-length 16 x 16 thumbnail (so contrast and windowing drop out)."""
    out = []
    for start in range(0, len(images), _CHUNK):
        rows = np.stack([images[i] for i in range(start, min(start + _CHUNK, len(images)))])
        small = thumbnails(rows).reshape(-1, 16, 16)
        out.append((_LOW @ small @ _LOW.T).reshape(-1, 64)[:, 1:])
    return np.concatenate(out) if out else np.zeros((0, 63))


def _keys(coefficients: np.ndarray, center: np.ndarray) -> np.ndarray:
    """One uint64 per image: which coefficients lie above the training images' median (balanced
    bits: chest films all look alike at this scale, so a per-image median would waste them)."""
    bits = (coefficients > center).astype(np.uint64)
    return (bits << np.arange(63, dtype=np.uint64)).sum(1, dtype=np.uint64)


def card_keys(parts: dict[str, CachedImages]) -> dict:
    """What the card stores: the key scheme, the medians it thresholds at (the training part's)
    and each part's keys as 16 hex characters."""
    coefficients = {name: _coefficients(images) for name, images in parts.items()}
    center = np.round(np.median(coefficients["training"], 0), 5)
    return {
        "key": KEY,
        "center": center.tolist(),
        **{
            name: [f"{k:016x}" for k in _keys(c, center).tolist()]
            for name, c in coefficients.items()
        },
    }


def _near(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each query key, whether some reference key is within MATCH bits of it."""
    found = np.zeros(len(query), bool)
    if not len(reference):
        return found
    for start in range(0, len(query), 256):
        apart = query[start : start + 256, None] ^ reference[None]
        bits = _POPCOUNT[apart.view(np.uint8)].reshape(*apart.shape, 8).sum(-1)
        found[start : start + 256] = bits.min(1) <= MATCH
    return found


def _from_keys(stored: dict, images: CachedImages) -> np.ndarray:
    query = _keys(_coefficients(images), np.asarray(stored["center"]))
    seen = np.full(len(images), "no", dtype=object)
    for name in SEEN_PARTS:
        reference = np.array([int(k, 16) for k in stored.get(name, ())], dtype=np.uint64)
        seen[(seen == "no") & _near(query, reference)] = name
    return seen


def _from_data(card, images: CachedImages, workers: int) -> np.ndarray:
    """The older way, for cards without keys: the training data re-read, thumbnails compared."""
    protocol = card.protocol()
    rows = lambda cached: np.stack([cached[i] for i in range(len(cached))])  # noqa: E731
    query = rows(images)
    seen = np.full(len(images), "no", dtype=object)
    parts = (protocol.train, protocol.tune, protocol.test)
    for name, records in zip(SEEN_PARTS, parts, strict=True):
        reference = PixelCache(images.size).load([r.path for r in records], workers=workers)
        if len(reference):
            seen[(seen == "no") & near_duplicates(query, rows(reference))] = name
    return seen


def seen_in(card, images: CachedImages, workers: int) -> tuple[list[str], str | None]:
    """Per image, which part of the model's own data it is: "training", "tuning",
    "internal-test" or "no"; "unknown" for all when the card has no keys and the training data
    cannot be rebuilt, with the warning that says the check did not run."""
    if card.overlap.get("key") == KEY:
        seen = _from_keys(card.overlap, images)
    else:
        try:
            seen = _from_data(card, images, workers)
        except CxrError as exc:
            return ["unknown"] * len(images), (
                f"overlap check not run ({exc}): the model file stores no digests of its "
                "training images, so some of these may be its own training radiographs; run "
                f"where the training data ({card.data.get('root', '?')}) is reachable, or set "
                "CXR_DATA"
            )
    learned = int(np.isin(seen, LEARNED_FROM).sum())
    if not learned:
        return list(seen), None
    counts = ", ".join(f"{int((seen == n).sum())} {n}" for n in LEARNED_FROM if (seen == n).any())
    return list(seen), (
        f"{learned} of {len(images)} images are the model's own training or tuning radiographs "
        f"({counts}; the same pixels, perhaps re-encoded or resized): these numbers are not a "
        "held-out measurement (predictions.csv marks them in `seen`; --unseen-only leaves them "
        "out)"
    )
