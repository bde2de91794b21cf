"""Where training data comes from: patient-grouped split, the pixel cache, augmentation."""

from __future__ import annotations

from collections import Counter

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler
from torchvision.transforms import v2

from cxr.data.cache import PixelCache
from cxr.data.discovery import Record, discover
from cxr.data.labels import LabelScheme
from cxr.data.preprocess import Preprocessing
from cxr.data.split import split_fingerprint, training_split
from cxr.data.xrays import CachedXrays
from cxr.settings import resolve_data
from cxr.training.config import DataConfig


def augmentation(size: int, hflip: bool) -> v2.Transform:
    """Small geometric and exposure changes a radiograph can really show; no flip by default."""
    steps = [
        v2.RandomAffine(degrees=7, translate=(0.05, 0.05), scale=(0.95, 1.05)),
        v2.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True),
        v2.ColorJitter(brightness=0.2, contrast=0.2),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


class XrayDataModule(L.LightningDataModule):
    features_only = False  # True where a subclass serves backbone features instead of images

    def __init__(self, cfg: DataConfig, prep: Preprocessing) -> None:
        super().__init__()
        self.cfg, self.prep = cfg, prep
        dataset = discover(resolve_data(cfg.root), LabelScheme(cfg.scheme, cfg.negative))
        self.train_records, self.val_records = training_split(
            dataset, cfg.val_fraction, cfg.seed, cfg.limit
        )
        self.classes = sorted({r.label for r in dataset.records if r.split in {"train", None}})
        self.root = dataset.root

    def setup(self, stage: str | None = None) -> None:
        cache = PixelCache(self.prep.size, self.prep.resize)
        augment = self.cfg.augment and not self.features_only
        self.train_set = self._dataset(cache, self.train_records, augment=augment)
        self.val_set = self.val_images = self._dataset(cache, self.val_records, augment=False)

    def _dataset(self, cache: PixelCache, records: list[Record], augment: bool) -> CachedXrays:
        images = cache.load([r.path for r in records], workers=self.cfg.workers)
        label = {r.path: r.label for r in records}
        targets = [self.classes.index(label[p]) for p in images.paths]
        transform = augmentation(self.prep.size, self.cfg.hflip) if augment else None
        return CachedXrays(images, targets, self.prep, transform)

    def class_weights(self) -> torch.Tensor:
        """Inverse class frequency, normalised to mean 1: the default answer to imbalance."""
        counts = Counter(r.label for r in self.train_records)
        weights = np.array([len(self.train_records) / counts[c] for c in self.classes])
        return torch.tensor(weights / weights.mean(), dtype=torch.float32)

    def fingerprint(self) -> str:
        return split_fingerprint(self.train_records, self.val_records, self.root)

    def train_dataloader(self) -> DataLoader:
        sampler, shuffle = None, True
        if self.cfg.balance == "sampler":
            per_class = self.class_weights()
            weights = [float(per_class[t]) for t in self.train_set.targets]
            sampler, shuffle = WeightedRandomSampler(weights, len(weights)), False
        return self._loader(self.train_set, shuffle, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False, None)

    def _loader(self, dataset, shuffle, sampler) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.cfg.workers,
            persistent_workers=self.cfg.workers > 0,
        )
