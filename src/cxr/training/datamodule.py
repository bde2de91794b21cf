"""Where training data comes from: patient-grouped split, the pixel cache, augmentation."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from torchvision.transforms import v2

from cxr.data.cache import CachedImages, PixelCache
from cxr.data.discovery import Record, discover
from cxr.data.labels import LabelScheme
from cxr.data.preprocess import Preprocessing
from cxr.data.split import grouped_split
from cxr.errors import DatasetError
from cxr.settings import data_root
from cxr.training.config import DataConfig


def resolve_root(root: str) -> Path:
    path = Path(root).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return data_root() / path


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


class CachedXrays(Dataset):
    def __init__(
        self,
        images: CachedImages,
        targets: list[int],
        prep: Preprocessing,
        transform: v2.Transform | None,
    ) -> None:
        self.images, self.targets, self.prep, self.transform = images, targets, prep, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[index])[None]  # (1, size, size) uint8
        if self.transform is not None:
            x = self.transform(x)
        x = (x.float() / 255.0 - self.prep.mean) / self.prep.std
        return x, self.targets[index]


class XrayDataModule(L.LightningDataModule):
    features_only = False  # True where a subclass serves backbone features instead of images

    def __init__(self, cfg: DataConfig, prep: Preprocessing) -> None:
        super().__init__()
        self.cfg, self.prep = cfg, prep
        dataset = discover(resolve_root(cfg.root), LabelScheme(cfg.scheme, cfg.negative))
        pool = [r for r in dataset.records if r.split in {"train", None}]
        if not pool:
            raise DatasetError(
                f"{dataset.root}: no training images (a train/ split or class folders)"
            )
        self.classes = sorted({r.label for r in pool})
        self.train_records, self.val_records = grouped_split(pool, cfg.val_fraction, cfg.seed)
        if cfg.limit:  # a seeded random subset keeps every class present
            rng = random.Random(cfg.seed)
            self.train_records = rng.sample(
                self.train_records, min(cfg.limit, len(self.train_records))
            )
            n_val = min(max(cfg.limit // 2, 8), len(self.val_records))
            self.val_records = rng.sample(self.val_records, n_val)
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
        """Which training and validation files, with which labels: enough to tell two runs apart."""
        digest = hashlib.sha256()
        for side, records in (("train", self.train_records), ("val", self.val_records)):
            for r in sorted(records, key=lambda r: str(r.path)):
                digest.update(f"{side}\t{r.path.relative_to(self.root)}\t{r.label}\n".encode())
        return digest.hexdigest()[:16]

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
