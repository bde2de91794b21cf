"""Test-time augmentation as plain tensor operations (so an ONNX export holds it too): a model's
logits averaged over the views its card names (`cxr.data.views.Views`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from cxr.data.views import Views


def averaged_logits(
    forward: Callable[[torch.Tensor], torch.Tensor], views: Views, x: torch.Tensor
) -> torch.Tensor:
    """`forward`'s float logits, averaged over `views` (the plain pass for the default view)."""
    if views == Views():
        return forward(x).float()
    total = None
    for scale in views.scales:
        zoomed = _zoom(x, scale)
        for view in (zoomed, zoomed.flip(-1)) if views.hflip else (zoomed,):
            out = forward(view).float()
            total = out if total is None else total + out
    return total / views.count


def _zoom(x: torch.Tensor, scale: float) -> torch.Tensor:
    """The centre 1/scale of each image, resized back to the input's size."""
    if scale == 1.0:
        return x
    h, w = (int(d) for d in x.shape[-2:])  # constants in an export: the input size is fixed
    top, left = round(h * (1 - 1 / scale) / 2), round(w * (1 - 1 / scale) / 2)
    crop = x[..., top : h - top, left : w - left]  # as many rows cut at each side: a mirror
    # of the image gives the mirror of its zoom
    return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
