"""Grad-CAM (Selvaraju et al.) as MONAI's `ModelWithHooks` does it: one forward hook on the layer
the registry names, put on the model once. The hook keeps activations only for a heat map being
computed, and only in that call's own thread, so predictions share the model untouched and
concurrent heat maps need neither a lock nor a copy of the model. The arithmetic is the `grad-cam`
package's (channel weights = mean gradient, ReLU, min-max scaling, bilinear resize), so the maps
are the ones it draws."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import torch
from pytorch_grad_cam.utils.image import scale_cam_image
from torch import nn


class GradCam:
    def __init__(self, model: nn.Module, layer: str) -> None:
        self.model = model
        self._calls = threading.local()  # `kept`: the running call's activations, else absent
        model.get_submodule(layer).register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        kept = getattr(self._calls, "kept", None)
        if kept is not None:
            kept.append(output)

    def __deepcopy__(self, memo: dict) -> GradCam:
        """A copy of the hooked model keeps this (idle) hook: thread-local state cannot be
        copied, and the copy's forward passes are never a call of this explainer."""
        return self

    def __call__(self, x: torch.Tensor, classes: Sequence[int]) -> np.ndarray:
        """(N, S, S) maps in [0, 1] at the input's size: image i's evidence for `classes[i]`."""
        self._calls.kept = kept = []
        try:
            with torch.enable_grad():
                logits = self.model(x.detach().requires_grad_(True))
                target = logits[torch.arange(len(classes)), list(classes)].sum()
                (grads,) = torch.autograd.grad(target, kept[0])
        finally:
            del self._calls.kept
        activations = kept[0].detach().cpu().numpy()
        weights = np.mean(grads.cpu().numpy(), axis=(2, 3))
        cam = np.maximum((weights[:, :, None, None] * activations).sum(axis=1), 0)
        size = (x.shape[-1], x.shape[-2])
        return np.clip(scale_cam_image(np.maximum(scale_cam_image(cam, size), 0)), 0, 1)
