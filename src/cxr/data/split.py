"""Patient-grouped, class-stratified validation split: no patient on both sides, never from test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from cxr.data.discovery import Record
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
