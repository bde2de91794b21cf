"""Which evaluated images are the model's own (training, tuning, internal test): the same
radiograph, re-encoded, resized or re-windowed or not.

The card carries one 63-bit content key per image of its data (16 hex characters: about 100 KB
for 5,000 images), so the check runs where the training data is not; a card written before the
keys existed falls back to re-reading the data, and says so when neither is possible.
"""

from __future__ import annotations

import numpy as np

from cxr.data.cache import CachedImages, PixelCache
from cxr.data.content_keys import KEY, coefficients, keys, near
from cxr.data.duplicates import near_duplicates
from cxr.data.split import INTERNAL_TEST
from cxr.errors import CxrError

SEEN_PARTS = ("training", "tuning", INTERNAL_TEST)  # the `seen` column's answers, besides "no"
LEARNED_FROM = ("training", "tuning")  # what the weights, threshold or calibration saw


def _from_keys(stored: dict, images: CachedImages) -> np.ndarray:
    query = keys(coefficients(images), np.asarray(stored["center"]))
    seen = np.full(len(images), "no", dtype=object)
    for name in SEEN_PARTS:
        reference = np.array([int(k, 16) for k in stored.get(name, ())], dtype=np.uint64)
        seen[(seen == "no") & near(query, reference)] = name
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
