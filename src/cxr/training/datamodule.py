"""Where training data comes from: the train / tuning / internal-test protocol (plus any
`data.extra_train` folders, in the training part only) and the pixel cache.

Images are served as uint8 tensors held in memory (a 224 px Kermany training part is about 180 MB);
augmentation and normalisation happen on whole batches in the LightningModule.
"""

from __future__ import annotations

from collections import Counter

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch.utils.data import DataLoader, WeightedRandomSampler
from torch.utils.data import Dataset as TorchDataset

from cxr.data.cache import CachedImages, PixelCache
from cxr.data.discovery import Dataset, Record
from cxr.data.split import split_fingerprint
from cxr.errors import DatasetError
from cxr.models.card import ModelCard
from cxr.training.config import DataConfig


class PixelTensors(TorchDataset):
    """(uint8 (1, S, S) tensor, class index) pairs from cached rows, all in memory."""

    def __init__(self, images: CachedImages, targets: list[int]) -> None:
        self.images, self.targets = images, targets
        rows = np.stack([images[i] for i in range(len(images))]) if len(images) else None
        self.pixels = torch.from_numpy(rows)[:, None] if rows is not None else None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.pixels[index], self.targets[index]


def training_classes(dataset: Dataset) -> list[str]:
    """What a model trained on `dataset` learns: the labels of its training pool, sorted."""
    return sorted({r.label for r in dataset.records if r.split in {"train", None}})


class XrayDataModule(L.LightningDataModule):
    """The parts of `dataset` that `card.protocol` gives (the one split rule, which evaluation
    uses too); every `data.extra_train` folder must be there."""

    def __init__(self, cfg: DataConfig, card: ModelCard, dataset: Dataset) -> None:
        super().__init__()
        self.cfg, self.prep, self.classes = cfg, card.preprocessing, list(card.classes)
        self.extra = card.extra_training(present_only=False)
        self.protocol = card.protocol(dataset, self.extra)
        self.root = dataset.root
        self.fingerprint = split_fingerprint(self.protocol, self.root)

    def _cache(self) -> PixelCache:
        return PixelCache(self.prep.size, self.prep.resize)

    def prepare_data(self) -> None:
        """Decode and resize every training and tuning image once per machine (rank 0 only)."""
        records = self.protocol.train + self.protocol.tune
        self._cache().load([r.path for r in records], workers=self.cfg.workers)

    def setup(self, stage: str | None = None) -> None:
        cache = self._cache()
        self.train_set = self.train_images = self._tensors(cache, self.protocol.train)
        self.tune_set = self.tune_images = self._tensors(cache, self.protocol.tune)

    def _tensors(self, cache: PixelCache, records: list[Record]) -> PixelTensors:
        images = cache.load([r.path for r in records])
        for failure in images.failures:  # one bad file never stops a run
            rank_zero_warn(f"{failure.path}: skipped ({failure.reason})")
        if not len(images):
            raise DatasetError(f"{self.root}: none of {len(records)} images could be read")
        label = {r.path: r.label for r in records}
        return PixelTensors(images, [self.classes.index(label[p]) for p in images.paths])

    def class_weights(self) -> torch.Tensor:
        """Inverse class frequency, normalised to mean 1: the default answer to imbalance."""
        counts = Counter(r.label for r in self.protocol.train)
        weights = np.array([len(self.protocol.train) / counts[c] for c in self.classes])
        return torch.tensor(weights / weights.mean(), dtype=torch.float32)

    def _pinned(self) -> bool:
        """Pinned (page-locked) batches on a CUDA run: Lightning copies them to the GPU with
        `non_blocking=True`, which overlaps the copy with the step only from pinned memory."""
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def train_dataloader(self) -> DataLoader:
        sampler, shuffle = None, True
        if self.cfg.balance == "sampler":
            per_class = self.class_weights()
            weights = [float(per_class[t]) for t in self.train_set.targets]
            sampler, shuffle = WeightedRandomSampler(weights, len(weights)), False
        return DataLoader(
            self.train_set,
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=len(self.train_set) > self.cfg.batch_size,
            pin_memory=self._pinned(),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.tune_set, batch_size=self.cfg.batch_size * 2, pin_memory=self._pinned()
        )
