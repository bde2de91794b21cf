"""Grad-CAM heat maps (the `grad-cam` package) over the layer each model names in the registry.

The map is computed at the model's input resolution (that is all the information it has) and only
upsampled when drawn, onto the image reduced to display size: an 8000 px file costs a display-size
overlay, not several full-size float copies. A heat map always says which class it explains: the
colours are that class's evidence, relative within the image (brightest = strongest), never a
probability; faint evidence stays transparent so the film shows through.
"""

from __future__ import annotations

import textwrap
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
from cxr.data.reader import read_image
from cxr.inference.predict import Worklist, cam_caption, explained_class
from cxr.inference.predictor import TorchPredictor
from cxr.models.registry import spec_of
from cxr.outputs import new_folder
from cxr.progress import Stages, silent

DISPLAY_SIDE = 2048  # longest side of a drawn overlay
COLOUR_MAP = "jet"  # blue (weak) to red (strong): how Grad-CAM is read in the literature
OPACITY = 0.6  # of the strongest evidence; weaker evidence is proportionally more transparent


def heat_map(model: nn.Module, image: XrayImage, class_index: int) -> np.ndarray:
    """Grad-CAM for `class_index`, in [0, 1], at the model's input size (square)."""
    prep = model.card.preprocessing
    x = torch.from_numpy(prep.to_array(image.pixels))[None]
    layer = model.get_submodule(spec_of(model.card).target_layer)
    with GradCAM(model=model, target_layers=[layer]) as cam:
        small = cam(input_tensor=x, targets=[ClassifierOutputTarget(class_index)])[0]
    return np.clip(small.astype(np.float32), 0, 1)


def display_size(width: int, height: int, longest: int = DISPLAY_SIDE) -> tuple[int, int]:
    """(width, height) scaled down so the longer side is at most `longest`, aspect kept."""
    scale = min(1.0, longest / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def display_image(image: XrayImage, longest: int = DISPLAY_SIDE) -> Image.Image:
    """The X-ray in grey at display size."""
    size = display_size(image.info.width, image.info.height, longest)
    return Image.fromarray(image.pixels).resize(size, Image.Resampling.BILINEAR)


def heat_layer(cam: np.ndarray, size: tuple[int, int] | None = None) -> Image.Image:
    """The heat map alone as RGBA, upsampled to `size` (width, height): the colour map's colour,
    alpha growing with the evidence, so a page can lay it over the X-ray at any opacity."""
    if size is not None:
        resized = Image.fromarray(cam.astype(np.float32), mode="F").resize(
            size, Image.Resampling.BILINEAR
        )
        cam = np.clip(np.asarray(resized), 0, 1)
    rgba = colormaps[COLOUR_MAP](cam)
    rgba[..., 3] = cam
    return Image.fromarray(np.rint(rgba * 255).astype(np.uint8), mode="RGBA")


def colour_bar(width: int = 256, height: int = 14) -> Image.Image:
    """The legend of `heat_layer`: weak (left, transparent) to strong (right) evidence."""
    return heat_layer(np.tile(np.linspace(0, 1, width), (height, 1)))


def overlay(
    image: XrayImage, cam: np.ndarray, longest: int = DISPLAY_SIDE, opacity: float = OPACITY
) -> Image.Image:
    """The X-ray in grey at display size, the heat map over it at `opacity` where the evidence
    is strongest."""
    grey = display_image(image, longest)
    return _laid_over(grey, heat_layer(cam, grey.size), opacity)


def _laid_over(grey: Image.Image, layer: Image.Image, opacity: float) -> Image.Image:
    alpha = np.asarray(layer)[..., 3].astype(np.float32) * opacity
    layer.putalpha(Image.fromarray(np.rint(alpha).astype(np.uint8)))
    return Image.alpha_composite(grey.convert("RGBA"), layer).convert("RGB")


def explained_figure(image: XrayImage, cam: np.ndarray, caption: str) -> Figure:
    """The original beside the overlay, a colour bar and a caption naming the class and its
    probability: what a CLI heat-map file shows, readable without this program."""
    grey = display_image(image)
    width, height = grey.size
    fig = Figure(
        figsize=(10, 5 * height / width + 1.3), dpi=min(200, max(100, width // 5)),
        layout="constrained",
    )  # fmt: skip
    grid = fig.add_gridspec(2, 2, height_ratios=[5 * height / width, 0.35])
    for column, (title, picture) in enumerate(
        (("original", grey), ("heat map", _laid_over(grey, heat_layer(cam, grey.size), OPACITY)))
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
    fig.suptitle("\n".join(textwrap.wrap(caption, 110)), fontsize=11)
    return fig


def save_heat_maps(
    predictor: TorchPredictor,
    worklist: Worklist,
    folder: Path,
    chosen: str | None = None,
    progress: Stages = silent,
    sources: dict[str, Path] | None = None,
) -> Path:
    """A new folder with one figure per ranked X-ray explaining `chosen` or else the positive
    class; files are named by rank so the folder lists in worklist order. An image not scored
    gets no heat map (its colours would read as a finding), unless scored anyway: then a
    `not-scored_` file whose caption starts with its flags. The folder appears under its name
    only once complete. `sources`: the real file behind each (pseudonymized) row name."""
    rows = worklist.rows + [r for r in worklist.not_scored if r.shows_score]
    step = progress("Grad-CAM", len(rows))
    with new_folder(folder) as partial:
        for row in rows:
            image = read_image((sources or {}).get(row.path, row.path), row.path)
            explained = explained_class(predictor, row.probs, chosen)
            cam = heat_map(predictor.model, image, worklist.classes.index(explained))
            caption = cam_caption(row, worklist.classes, explained)
            caption = f"{Path(row.path).name} · {caption}"
            prefix = f"{row.rank:04d}" if row.rank else "not-scored"
            explained_figure(image, cam, caption).savefig(
                partial / f"{prefix}_{Path(row.path).stem}.png"
            )
            step(1)
    return folder
