"""Grad-CAM heat maps (the `grad-cam` package) over the layer each model names in the registry.

The map is computed at the model's input resolution (that is all the information it has) and only
upsampled when drawn, onto the image reduced to display size: an 8000 px file costs a display-size
overlay, not several full-size float copies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from cxr.data.image import XrayImage
from cxr.data.reader import read_image
from cxr.inference.predict import Worklist
from cxr.outputs import new_folder
from cxr.progress import Stages, silent

DISPLAY_SIDE = 2048  # longest side of a drawn overlay


def heat_map(model: nn.Module, image: XrayImage, class_index: int) -> np.ndarray:
    """Grad-CAM for `class_index`, in [0, 1], at the model's input size (square)."""
    prep = model.card.preprocessing
    x = torch.from_numpy(prep.to_array(image.pixels))[None]
    layer = model.get_submodule(model.card.spec.target_layer)
    with GradCAM(model=model, target_layers=[layer]) as cam:
        small = cam(input_tensor=x, targets=[ClassifierOutputTarget(class_index)])[0]
    return np.clip(small.astype(np.float32), 0, 1)


def display_size(width: int, height: int, longest: int = DISPLAY_SIDE) -> tuple[int, int]:
    """(width, height) scaled down so the longer side is at most `longest`, aspect kept."""
    scale = min(1.0, longest / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def overlay(image: XrayImage, cam: np.ndarray, longest: int = DISPLAY_SIDE) -> Image.Image:
    """The heat map over the image, both at display size."""
    size = display_size(image.info.width, image.info.height, longest)
    grey = np.asarray(Image.fromarray(image.pixels).resize(size, Image.Resampling.BILINEAR))
    heat = Image.fromarray(cam.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR)
    rgb = np.repeat((grey.astype(np.float32) / 255.0)[..., None], 3, axis=2)
    return Image.fromarray(
        show_cam_on_image(rgb, np.clip(np.asarray(heat), 0, 1), use_rgb=True, image_weight=0.6)
    )


def save_overlay(image: XrayImage, cam: np.ndarray, out: Path) -> Path:
    overlay(image, cam).save(out)
    return out


def save_overlays(
    model: nn.Module,
    worklist: Worklist,
    folder: Path,
    progress: Stages = silent,
    sources: dict[str, Path] | None = None,
) -> Path:
    """A new folder with one overlay per worklist row, explaining the class the row predicts;
    files are named by rank so the folder lists in worklist order. The folder appears under its
    name only once complete. `sources`: the real file behind each (pseudonymized) row name."""
    step = progress("Grad-CAM", len(worklist.rows))
    with new_folder(folder) as partial:
        for row in worklist.rows:
            image = read_image((sources or {}).get(row.path, row.path), row.path)
            cam = heat_map(model, image, worklist.classes.index(row.predicted))
            save_overlay(image, cam, partial / f"{row.rank:04d}_{Path(row.path).stem}.png")
            step(1)
    return folder
