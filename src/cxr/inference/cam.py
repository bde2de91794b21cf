"""Grad-CAM heat maps (the `grad-cam` package) over the layer each model names in the registry,
drawn on the full-size image the user gave. A heat map always says which class it explains: the
colours are that class's evidence, relative within the image (brightest = strongest), never a
probability; faint evidence stays transparent so the film shows through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from cxr.data.image import XrayImage

COLOUR_MAP = "jet"  # blue (weak) to red (strong): how Grad-CAM is read in the literature
OPACITY = 0.6  # of the strongest evidence; weaker evidence is proportionally more transparent


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


def heat_layer(cam: np.ndarray) -> Image.Image:
    """The heat map alone as RGBA: the colour map's colour, alpha growing with the evidence, so
    a page can lay it over the X-ray at any opacity."""
    rgba = colormaps[COLOUR_MAP](cam)
    rgba[..., 3] = cam
    return Image.fromarray(np.rint(rgba * 255).astype(np.uint8), mode="RGBA")


def colour_bar(width: int = 256, height: int = 14) -> Image.Image:
    """The legend of `heat_layer`: weak (left, transparent) to strong (right) evidence."""
    return heat_layer(np.tile(np.linspace(0, 1, width), (height, 1)))


def overlay(image: XrayImage, cam: np.ndarray, opacity: float = OPACITY) -> Image.Image:
    """The X-ray in grey, the heat map over it at `opacity` where the evidence is strongest."""
    return _laid_over(Image.fromarray(image.pixels), heat_layer(cam), opacity)


def _laid_over(grey: Image.Image, layer: Image.Image, opacity: float) -> Image.Image:
    alpha = np.asarray(layer)[..., 3].astype(np.float32) * opacity
    layer.putalpha(Image.fromarray(np.rint(alpha).astype(np.uint8)))
    return Image.alpha_composite(grey.convert("RGBA"), layer).convert("RGB")


def explained_figure(image: XrayImage, cam: np.ndarray, caption: str) -> Figure:
    """The original beside the overlay, a colour bar and a caption naming the class and its
    probability: what a CLI heat-map file shows, readable without this program."""
    height, width = image.pixels.shape
    fig = Figure(
        figsize=(10, 5 * height / width + 1.3), dpi=min(200, max(100, width // 5)),
        layout="constrained",
    )  # fmt: skip
    grid = fig.add_gridspec(2, 2, height_ratios=[5 * height / width, 0.35])
    for column, (title, picture) in enumerate(
        (("original", Image.fromarray(image.pixels)), ("heat map", overlay(image, cam)))
    ):
        ax = fig.add_subplot(grid[0, column])
        ax.imshow(picture, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    bar = fig.add_subplot(grid[1, :])
    bar.imshow(_laid_over(Image.new("L", (256, 14), 128), colour_bar(), OPACITY), aspect="auto")
    bar.set_yticks([])
    bar.set_xticks([0, 255], labels=["weak", "strong"], fontsize=8)
    bar.set_xlabel("evidence, relative within this image (not a probability)", fontsize=8)
    fig.suptitle(caption, fontsize=11)
    return fig


def save_explained(image: XrayImage, cam: np.ndarray, caption: str, out: Path) -> Path:
    explained_figure(image, cam, caption).savefig(out)
    return out
