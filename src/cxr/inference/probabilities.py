"""The one way from a model's output to probabilities: every command (training's final pass,
evaluate, predict, the service, the ONNX graph) goes through here so the card's calibration is
never skipped."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cxr.models.views import averaged_logits


def probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """softmax(calibrated logits), the calibration being the one in `model.card`."""
    return model.card.calibration.logits(logits(model, x)).softmax(1)


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Uncalibrated logits, averaged over the test-time views `model.card` names, if any."""
    return averaged_logits(model, model.card.views, x)


class Calibrated(nn.Module):
    """A model whose output is its calibrated probabilities: what the ONNX export contains."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.card = model, model.card

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return probabilities(self.model, x)


@torch.inference_mode()
def logits_of(model: nn.Module, images: Dataset, batch_size: int = 64) -> np.ndarray:
    """Uncalibrated logits (averaged over the card's views) of (tensor, target) pairs, in order."""
    model.eval()
    out = [logits(model, x) for x, _ in DataLoader(images, batch_size=batch_size)]
    return torch.cat(out).numpy()
