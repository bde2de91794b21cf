"""Augmentation a radiologist would accept, applied to whole batches of tensors.

One affine grid per batch does the random resized crop, the small rotation and the shift for every
image at once (torch's `affine_grid` / `grid_sample`), then exposure changes (brightness, contrast,
gamma) and acquisition noise and blur. Per-sample torchvision transforms in DataLoader workers cost
a core on a 2-core machine; this costs a few milliseconds of the training step. No horizontal flip
unless asked for: the heart is on the left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AugmentPolicy:
    crop_area: tuple[float, float]  # random resized crop: share of the image kept
    aspect: tuple[float, float]
    degrees: float
    translate: float  # share of the side
    brightness: float  # multiplicative, 1 +- this
    contrast: float
    gamma: float  # log-uniform in [1 / (1 + g), 1 + g]
    noise: float  # largest Gaussian noise sigma (grey levels / 255), applied to half the images
    blur: float  # largest Gaussian blur sigma (pixels), applied to a quarter of the images
    hflip: bool = False


POLICIES = {
    "light": AugmentPolicy((0.8, 1.0), (0.9, 1.1), 7, 0.05, 0.2, 0.2, 0.0, 0.0, 0.0),
    "radiograph": AugmentPolicy((0.75, 1.0), (0.9, 1.1), 10, 0.05, 0.2, 0.2, 0.2, 0.02, 1.0),
}


def _uniform(n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


class BatchAugment(nn.Module):
    def __init__(self, policy: AugmentPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 1, H, W) floats in [0, 1]; returns the same shape, still in [0, 1]."""
        p, n, dev = self.policy, x.shape[0], x.device
        area = _uniform(n, *p.crop_area, dev)
        ratio = torch.exp(_uniform(n, math.log(p.aspect[0]), math.log(p.aspect[1]), dev))
        sx, sy = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
        if p.hflip:
            sx = sx * torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0)
        angle = torch.deg2rad(_uniform(n, -p.degrees, p.degrees, dev))
        cos, sin = torch.cos(angle), torch.sin(angle)
        # the crop may sit anywhere it fits, plus the shift
        tx = (1 - sx.abs()) * _uniform(n, -1, 1, dev) + _uniform(n, -2, 2, dev) * p.translate
        ty = (1 - sy) * _uniform(n, -1, 1, dev) + _uniform(n, -2, 2, dev) * p.translate
        theta = torch.stack(
            [torch.stack([sx * cos, -sy * sin, tx], 1), torch.stack([sx * sin, sy * cos, ty], 1)],
            1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        shape = (n, 1, 1, 1)
        mean = x.mean((1, 2, 3), keepdim=True)
        contrast = _uniform(n, 1 - p.contrast, 1 + p.contrast, dev).view(shape)
        brightness = _uniform(n, 1 - p.brightness, 1 + p.brightness, dev).view(shape)
        x = ((x - mean) * contrast + mean) * brightness
        x = x.clamp(0, 1)
        if p.gamma:
            g = math.log1p(p.gamma)
            x = x.clamp_min(1e-6) ** torch.exp(_uniform(n, -g, g, dev)).view(shape)
        if p.blur:
            x = self._blur(x, torch.rand(n, device=dev) < 0.25)
        if p.noise:
            sigma = _uniform(n, 0, p.noise, dev) * (torch.rand(n, device=dev) < 0.5)
            x = x + torch.randn_like(x) * sigma.view(shape)
        return x.clamp(0, 1)

    def _blur(self, x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        if not which.any():
            return x
        sigma = float(torch.empty(1).uniform_(0.3, self.policy.blur))
        radius = max(1, math.ceil(2 * sigma))
        t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        kernel = torch.exp(-(t**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        picked = F.pad(x[which], (radius, radius, radius, radius), mode="replicate")
        picked = F.conv2d(picked, kernel.view(1, 1, 1, -1))
        picked = F.conv2d(picked, kernel.view(1, 1, -1, 1))
        out = x.clone()
        out[which] = picked
        return out


def batch_augment(level: str, hflip: bool) -> BatchAugment | None:
    if level == "none":
        return None
    policy = POLICIES[level]
    if hflip:
        from dataclasses import replace

        policy = replace(policy, hflip=True)
    return BatchAugment(policy)
