"""The resize rule every path shares: the cache, training, prediction and the web app."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cxr.errors import CxrError

RESIZE_RULES = ("squash",)
MIN_SIZE, MAX_SIZE = 16, 2048  # pixels a side a model may ask for


def resize_square(pixels: np.ndarray, size: int, rule: str = "squash") -> np.ndarray:
    """Whole image to `size` x `size`, aspect ratio not kept, nothing cropped.

    Pillow's antialiased bilinear filter reproduces the shared Kermany 224 px copies best (mean
    difference 2.1 grey levels over the 60 originals, bicubic 2.6, the rest being JPEG noise), so a
    full-resolution original and its copy give the model the same input.
    """
    if rule not in RESIZE_RULES:
        raise ValueError(f"unknown resize rule {rule!r}; choose one of {RESIZE_RULES}")
    if pixels.shape == (size, size):
        return pixels
    image = Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects of its input; it travels in the model file so no caller re-states it.

    Grey images are fed as one channel: pretrained RGB stems are summed to one input channel, so
    `mean`/`std` are single numbers (the average of the RGB statistics the weights learnt with).
    """

    size: int = 224
    mean: float = 0.5
    std: float = 0.25
    resize: str = "squash"

    def __post_init__(self) -> None:
        """A model file's card is input too: a size of 0, a std of 0 or NaN would reach the model
        as NaN or a crash, so each is refused here with its own message."""
        if not isinstance(self.size, int) or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise CxrError(
                f"preprocessing size {self.size!r}: a whole number of pixels "
                f"from {MIN_SIZE} to {MAX_SIZE}"
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CxrError(f"preprocessing {name} {value!r}: not a number")
            if not math.isfinite(value):
                raise CxrError(f"preprocessing {name} {value!r}: not a finite number")
        if self.std <= 0:
            raise CxrError(f"preprocessing std {self.std!r}: must be above 0 (it divides)")
        if self.resize not in RESIZE_RULES:
            raise CxrError(f"unknown resize rule {self.resize!r}; one of {RESIZE_RULES}")

    def to_array(self, pixels: np.ndarray) -> np.ndarray:
        """Grey uint8 (H, W) of any size -> normalised float32 (1, size, size)."""
        return self.normalise(resize_square(pixels, self.size, self.resize))[None]

    def normalise(self, square: np.ndarray) -> np.ndarray:
        """uint8 pixels already at `size` (one image or a stack) -> normalised float32."""
        return (square.astype(np.float32) / 255.0 - self.mean) / self.std
