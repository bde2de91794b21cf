"""Cached pixels as a torch Dataset: (normalised tensor, class index), optionally augmented.
Training, evaluation and feature extraction all feed models through it."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from cxr.data.cache import CachedImages
from cxr.data.preprocess import Preprocessing


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
