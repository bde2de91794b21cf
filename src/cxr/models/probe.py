"""The probe every loaded model answers before it may decide anything.

A checksum proves a file is intact, not that it is sane: a re-sealed file can hold NaN weights
(every image then compares False with the threshold and is called NORMAL) or a card naming three
classes for a two-output head. One forward pass on a plain grey image at load shows both, for the
PyTorch file and the ONNX export alike.
"""

from __future__ import annotations

import numpy as np

from cxr.data.preprocess import Preprocessing
from cxr.errors import CxrError

PROBE_GREY = 128  # a flat mid-grey film: every sane model gives finite outputs for it


def probe_batch(prep: Preprocessing) -> np.ndarray:
    """One normalised (1, 1, size, size) float32 image, as every predictor takes it."""
    pixels = np.full((prep.size, prep.size), PROBE_GREY, dtype=np.uint8)
    return prep.to_array(pixels)[None]


def check_probe(outputs: np.ndarray, classes: tuple[str, ...], label: str) -> None:
    """CxrError unless the probe's outputs are one finite row per image, one column per class."""
    outputs = np.asarray(outputs)
    if outputs.ndim != 2 or outputs.shape[1] != len(classes):
        raise CxrError(
            f"{label}: the model gives {outputs.shape[-1]} outputs per image but its card names "
            f"{len(classes)} classes {list(classes)}"
        )
    if not np.isfinite(outputs).all():
        raise CxrError(
            f"{label}: the model produces non-finite outputs (NaN or infinity) on a plain grey "
            "probe image; its weights, preprocessing or calibration are broken"
        )
