"""Patient-grouped, class-stratified validation split: no patient on both sides, never from test."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from cxr.data.discovery import Dataset, Record
from cxr.errors import DatasetError


def grouped_split(
    records: Sequence[Record], val_fraction: float = 0.15, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """Hold out about `val_fraction` of the patients, class proportions kept.

    scikit-learn's StratifiedGroupKFold does the work, so the held-out share is one fold of
    k = round(1 / val_fraction): 0.15 gives 1/7 (14.3 %), 0.2 gives exactly 20 %.
    """
    if not 0 < val_fraction < 1:
        raise DatasetError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    test = [r.path for r in records if r.split == "test"]
    if test:
        raise DatasetError(
            f"validation must not draw from a test split "
            f"({len(test)} test files given, e.g. {test[0]})"
        )
    n_splits = max(2, round(1 / val_fraction))
    labels = np.array([r.label for r in records])
    groups = np.array([r.group for r in records])
    if len(set(groups)) < n_splits:
        raise DatasetError(
            f"{len(set(groups))} patients are too few for a {val_fraction:.0%} split"
        )
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, val_idx = next(folds.split(np.zeros(len(records)), labels, groups))
    return [records[i] for i in train_idx], [records[i] for i in val_idx]


def training_split(
    dataset: Dataset, val_fraction: float, seed: int, limit: int | None = None
) -> tuple[list[Record], list[Record]]:
    """A training run's train and validation records, rebuilt the same way by `cxr evaluate`:
    the train split (or an unsplit folder) grouped by patient, then a seeded subset if `limit`."""
    pool = [r for r in dataset.records if r.split in {"train", None}]
    if not pool:
        raise DatasetError(f"{dataset.root}: no training images (a train/ split or class folders)")
    train, val = grouped_split(pool, val_fraction, seed)
    if limit:  # a seeded random subset keeps every class present
        rng = random.Random(seed)
        train = rng.sample(train, min(limit, len(train)))
        val = rng.sample(val, min(max(limit // 2, 8), len(val)))
    return train, val


def split_fingerprint(train: Sequence[Record], val: Sequence[Record], root: Path) -> str:
    """Which training and validation files, with which labels: enough to tell two runs apart, and
    to check that `cxr evaluate` rebuilt the very validation split a model was chosen on."""
    digest = hashlib.sha256()
    for side, records in (("train", train), ("val", val)):
        for r in sorted(records, key=lambda r: str(r.path)):
            digest.update(f"{side}\t{r.path.relative_to(root)}\t{r.label}\n".encode())
    return digest.hexdigest()[:16]
