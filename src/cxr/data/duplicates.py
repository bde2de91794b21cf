"""Duplicates: the same bytes twice (content hash) inflate counts and leak across splits; the same
radiograph re-encoded (thumbnail correlation) makes an evaluation look held out when it is not."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cxr.data.discovery import Record


def content_hash(data: bytes) -> str:
    """SHA-256 of a file's bytes: what "the same image" means to the cache, duplicate detection
    and `cxr compare`, whatever the file is called or however its path was typed."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class DuplicateGroup:
    digest: str
    records: tuple[Record, ...]

    @property
    def redundant(self) -> int:
        return len(self.records) - 1

    @property
    def crosses_splits(self) -> bool:
        return len({r.split for r in self.records}) > 1

    @property
    def crosses_labels(self) -> bool:
        return len({r.label for r in self.records}) > 1


def find_duplicates(records: Sequence[Record], digests: Sequence[str]) -> list[DuplicateGroup]:
    by_digest: dict[str, list[Record]] = defaultdict(list)
    for record, digest in zip(records, digests, strict=True):
        by_digest[digest].append(record)
    return [DuplicateGroup(d, tuple(rs)) for d, rs in sorted(by_digest.items()) if len(rs) > 1]


def thumbnails(rows: np.ndarray, side: int = 16) -> np.ndarray:
    """(N, S, S) uint8 images as (N, side*side) zero-mean, unit-length vectors: a near-duplicate
    fingerprint that survives re-encoding, resizing and a change of window or contrast."""
    x = torch.from_numpy(np.ascontiguousarray(rows)).float()[:, None]
    small = F.adaptive_avg_pool2d(x, side).flatten(1)
    small = small - small.mean(1, keepdim=True)
    return (small / small.norm(dim=1, keepdim=True).clamp_min(1e-6)).numpy()


def near_duplicates(
    query: np.ndarray, reference: np.ndarray, similarity: float = 0.99
) -> np.ndarray:
    """For each query row, whether some reference row has a thumbnail correlation of at least
    `similarity` (the same radiograph re-encoded, resized or re-windowed)."""
    if not len(query) or not len(reference):
        return np.zeros(len(query), bool)
    q, r = thumbnails(query), thumbnails(reference)
    best = np.concatenate([(q[i : i + 256] @ r.T).max(1) for i in range(0, len(q), 256)])
    return best >= similarity
