"""Grad-CAM heat maps drawn: over the X-ray for the page and the DICOM node, beside it for
`cxr predict --cam` (the maps themselves: `TorchPredictor.explain`).

The map is computed at the model's input resolution (that is all the information it has) and only
upsampled when drawn, onto the image reduced to display size: an 8000 px file costs a display-size
overlay, not several full-size float copies. A heat map always says which class it explains: the
colours are that class's evidence, relative within the image (brightest = strongest), never a
probability; faint evidence stays transparent so the film shows through.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from cxr.data.image import XrayImage
from cxr.inference.predict import Row, Worklist, cam_caption, explained_class, predict_paths
from cxr.inference.predictor import TorchPredictor
from cxr.outputs import new_folder
from cxr.progress import Stages, silent

DISPLAY_SIDE = 2048  # longest side of a drawn overlay
COLOUR_MAP = "jet"  # blue (weak) to red (strong): how Grad-CAM is read in the literature
OPACITY = 0.6  # of the strongest evidence; weaker evidence is proportionally more transparent


def reduced(image: XrayImage, longest: int = DISPLAY_SIDE) -> XrayImage:
    """The image at display size, its header kept: all a drawing needs, in a fraction of the
    memory (drawing it again at display size changes nothing)."""
    return XrayImage(np.asarray(display_image(image, longest)), image.info)


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


class _Figures:
    """`Beside` for `predict_paths`: one figure per image that shows a score, drawn as its batch
    is scored, from the array the prediction made and the decoded image at display size; named
    by rank once the worklist is ranked."""

    def __init__(
        self, predictor: TorchPredictor, partial: Path, chosen: str | None, score_anyway: bool
    ) -> None:
        self.predictor, self.partial = predictor, partial
        self.chosen, self.score_anyway = chosen, score_anyway
        self.drawn: dict[int, Path] = {}  # id(row) -> its figure, under a temporary name

    keep = staticmethod(reduced)

    def __call__(self, rows: list[Row], arrays: list[np.ndarray], kept: list[XrayImage]) -> None:
        classes = self.predictor.card.classes
        for row, array, image in zip(rows, arrays, kept, strict=True):
            if row.error or not (row.scored or self.score_anyway):
                continue  # its colours would read as a finding
            explained = explained_class(self.predictor, row.probs, self.chosen)
            (cam,) = self.predictor.explain(array[None], [classes.index(explained)])
            caption = f"{Path(row.path).name} · {cam_caption(row, classes, explained)}"
            figure = self.partial / f"{len(self.drawn):06d}.png"
            explained_figure(image, cam, caption).savefig(figure)
            self.drawn[id(row)] = figure

    def name_by_rank(self, worklist: Worklist) -> None:
        """Rank-prefixed names, so the folder lists in worklist order; `not-scored_` for an image
        scored anyway (its caption starts with its flags)."""
        for row in worklist.rows + worklist.not_scored:
            if (figure := self.drawn.get(id(row))) is not None:
                prefix = f"{row.rank:04d}" if row.rank else "not-scored"
                figure.rename(self.partial / f"{prefix}_{Path(row.path).stem}.png")


def predict_with_heat_maps(
    predictor: TorchPredictor,
    inputs: Sequence[Path],
    folder: Path,
    chosen: str | None = None,
    batch_size: int = 32,
    workers: int = 0,
    progress: Stages = silent,
    pseudonymize: bool = False,
    score_anyway: bool = False,
) -> Worklist:
    """`predict_paths`, and a new folder with one figure per ranked X-ray explaining `chosen` or
    else the positive class. An image not scored gets no heat map, unless scored anyway. The
    folder appears under its name only once complete."""
    with new_folder(folder) as partial:
        figures = _Figures(predictor, partial, chosen, score_anyway)
        worklist = predict_paths(
            predictor, inputs, batch_size, workers, progress, pseudonymize, score_anyway, figures
        )
        figures.name_by_rank(worklist)
    return worklist
