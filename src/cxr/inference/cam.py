"""Grad-CAM heat maps (the `grad-cam` package) over the layer each model names in the registry,
drawn on the full-size image the user gave."""

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
from cxr.progress import Stages, silent


def heat_map(model: nn.Module, image: XrayImage, class_index: int) -> np.ndarray:
    """Grad-CAM for `class_index`, in [0, 1], at the image's own height and width."""
    prep = model.card.preprocessing
    x = torch.from_numpy(prep.to_array(image.pixels))[None]
    layer = model.get_submodule(model.card.spec.target_layer)
    with GradCAM(model=model, target_layers=[layer]) as cam:
        small = cam(input_tensor=x, targets=[ClassifierOutputTarget(class_index)])[0]
    height, width = image.pixels.shape
    full = Image.fromarray(small.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(full), 0, 1)


def overlay(image: XrayImage, cam: np.ndarray) -> Image.Image:
    grey = image.pixels.astype(np.float32) / 255.0
    rgb = np.repeat(grey[..., None], 3, axis=2)
    return Image.fromarray(show_cam_on_image(rgb, cam, use_rgb=True, image_weight=0.6))


def save_overlay(image: XrayImage, cam: np.ndarray, out: Path) -> Path:
    overlay(image, cam).save(out)
    return out


def save_overlays(
    model: nn.Module, worklist: Worklist, folder: Path, progress: Stages = silent
) -> Path:
    """A new folder with one overlay per worklist row, explaining the class the row predicts;
    files are named by rank so the folder lists in worklist order."""
    folder.mkdir(parents=True)
    step = progress("Grad-CAM", len(worklist.rows))
    for row in worklist.rows:
        image = read_image(row.path)
        cam = heat_map(model, image, worklist.classes.index(row.predicted))
        save_overlay(image, cam, folder / f"{row.rank:04d}_{Path(row.path).stem}.png")
        step(1)
    return folder
