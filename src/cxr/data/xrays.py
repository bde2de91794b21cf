"""Cached pixels as a torch Dataset of (normalised tensor, class index): evaluation and the final
pass of training feed models through it."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from cxr.data.cache import CachedImages
from cxr.data.preprocess import Preprocessing


class CachedXrays(Dataset):
    def __init__(self, images: CachedImages, targets: list[int], prep: Preprocessing) -> None:
        self.images, self.targets, self.prep = images, targets, prep

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[index])[None]  # (1, size, size) uint8
        return (x.float() / 255.0 - self.prep.mean) / self.prep.std, self.targets[index]
