"""Exact duplicates by content hash: the same bytes twice inflate counts and leak across splits."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from cxr.data.discovery import Record


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


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
