"""Patient-grouped, class-stratified splits: no patient on two sides, none from a test split."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from cxr.data.discovery import Dataset, Record, discover
from cxr.data.labels import LabelScheme
from cxr.errors import DatasetError
from cxr.settings import resolve_data


@dataclass(frozen=True)
class Protocol:
    """Which patients do what: `train` fits weights; `tune` chooses the epoch, the calibration and
    the threshold; `test` (the internal test) is touched by evaluation only, so its numbers are
    not graded by the same images that chose them."""

    train: list[Record]
    tune: list[Record]
    test: list[Record]

    def part(self, name: str) -> list[Record]:
        if name not in PARTS:
            raise DatasetError(f"unknown part {name!r}; one of {', '.join(PARTS)}")
        return getattr(self, PARTS[name])


INTERNAL_TEST = "internal-test"  # the model's own held-out patients, rebuilt from its card
PARTS = {"train": "train", "tuning": "tune", INTERNAL_TEST: "test"}
_FOLD = 0.05  # held-out shares are whole numbers of 5 % patient folds


def protocol_split(
    dataset: Dataset,
    tune_fraction: float,
    test_fraction: float,
    seed: int,
    limit: int | None = None,
    fold: int | None = None,
    folds: int = 5,
) -> Protocol:
    """A training run's train / tune / internal-test records, rebuilt the same way by evaluation.

    Patients are stratified by class into 5 % folds (scikit-learn's StratifiedGroupKFold); the
    first `test_fraction` of them are the internal test, the next `tune_fraction` the tuning part.
    With `fold` (cross-validation), the internal test is patient fold `fold` of `folds` instead
    and the tuning part is drawn from the rest.
    """
    pool = [r for r in dataset.records if r.split in {"train", None}]
    if not pool:
        raise DatasetError(f"{dataset.root}: no training images (a train/ split or class folders)")
    for name, value in (("tune_fraction", tune_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise DatasetError(f"{name} must be between 0 and 1, got {value}")
    if fold is None:
        n_test = max(1, round(test_fraction / _FOLD))
        n_tune = max(1, round(tune_fraction / _FOLD))
        parts = _folds(pool, round(1 / _FOLD), seed)
        test = [r for part in parts[:n_test] for r in part]
        tune = [r for part in parts[n_test : n_test + n_tune] for r in part]
        train = [r for part in parts[n_test + n_tune :] for r in part]
    else:
        if not 0 <= fold < folds:
            raise DatasetError(f"fold {fold} is not among 0..{folds - 1}")
        parts = _folds(pool, folds, seed)
        test = parts[fold]
        rest = [r for i, part in enumerate(parts) if i != fold for r in part]
        n_tune = max(1, round(tune_fraction / (1 - 1 / folds) / _FOLD))
        inner = _folds(rest, round(1 / _FOLD), seed)
        tune = [r for part in inner[:n_tune] for r in part]
        train = [r for part in inner[n_tune:] for r in part]
    if limit:  # a seeded random subset keeps every class present
        rng = random.Random(seed)
        small = max(limit // 4, 8)
        train = rng.sample(train, min(limit, len(train)))
        tune = rng.sample(tune, min(small, len(tune)))
        test = rng.sample(test, min(small, len(test)))
    return Protocol(train, tune, test)


def extra_training(folders: Sequence[str], scheme: LabelScheme) -> dict[str, list[Record]]:
    """`data.extra_train`: every labelled image of each folder (any layout `discover` reads), by
    the folder as given."""
    return {folder: discover(resolve_data(folder), scheme).records for folder in folders}


def add_training(
    protocol: Protocol, extra: dict[str, list[Record]], classes: Sequence[str]
) -> Protocol:
    """`extra` labelled images (e.g. a `cxr reviews export`) join the training part only: reviewed
    cases were picked by the model's own disagreements, so tuning or testing on them would bias
    the threshold, the calibration and the internal-test figures."""
    extra = [r for records in extra.values() for r in records]
    for r in extra:
        if r.label not in classes:
            raise DatasetError(
                f"{r.path}: label {r.label!r} is not one of the classes {list(classes)} this "
                "model learns; extra training images must use the same labels"
            )
    held = {r.path.resolve() for r in protocol.tune + protocol.test}
    for r in extra:
        if r.path.resolve() in held:
            raise DatasetError(
                f"{r.path}: already in the tuning or internal-test part; an extra training "
                "image must not be one the model is tuned or tested on"
            )
    return replace(protocol, train=protocol.train + list(extra))


def _folds(records: Sequence[Record], k: int, seed: int) -> list[list[Record]]:
    """`k` patient-disjoint folds with the class proportions kept, in a seeded order."""
    labels = np.array([r.label for r in records])
    groups = np.array([r.group for r in records])
    if len(set(groups)) < k:
        raise DatasetError(f"{len(set(groups))} patients are too few for {k} patient folds")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        [records[i] for i in held]
        for _, held in splitter.split(np.zeros(len(records)), labels, groups)
    ]


def split_fingerprint(protocol: Protocol, root: Path) -> str:
    """Which training, tuning and internal-test files, with which labels: enough to tell two runs
    apart, and to check that `cxr evaluate` rebuilt the very parts a model was tuned on. Extra
    training files from outside `root` count by file name."""
    digest = hashlib.sha256()
    for side, records in (
        ("train", protocol.train),
        ("tune", protocol.tune),
        ("test", protocol.test),
    ):
        for r in sorted(records, key=lambda r: str(r.path)):
            name = r.path.relative_to(root) if r.path.is_relative_to(root) else r.path.name
            digest.update(f"{side}\t{name}\t{r.label}\n".encode())
    return digest.hexdigest()[:16]
