"""The one way from a model's output to probabilities: every command (training's final pass,
evaluate, predict, the service) goes through here so the stored temperature is never skipped."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """softmax(logits / T), T the temperature fitted on validation (1 when there is none)."""
    return (model(x).float() / getattr(model, "temperature", 1.0)).softmax(1)


@torch.inference_mode()
def logits_of(model: nn.Module, images: Dataset, batch_size: int = 64) -> np.ndarray:
    """Raw logits over a dataset of (tensor, target) pairs, in order."""
    model.eval()
    out = [model(x).float() for x, _ in DataLoader(images, batch_size=batch_size)]
    return torch.cat(out).numpy()
