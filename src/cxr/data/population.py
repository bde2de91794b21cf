"""The training population in numbers a new image can be checked against: the range of grey-level
statistics over the training images, and of patient age where the data records it. Training
stores the result in the model card; the worklist warns when an image falls outside it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from cxr.data.reader import read_image
from cxr.errors import DatasetError, ImageReadError

COVERAGE = (0.5, 99.5)  # percentiles: the range leaves out the most extreme 1 % of images
SIZE = (224, 224)  # where the statistics are measured
STATISTICS = {"pixel_mean": "mean grey level", "pixel_std": "contrast (grey-level spread)"}


def image_statistics(pixels: np.ndarray) -> dict[str, float]:
    """The statistics of one image's grey levels (0-255) that the ranges are made of, taken at
    one common size so that a full-size film and a small copy of it measure alike (shrinking
    smooths, and lowers the contrast)."""
    small = Image.fromarray(np.asarray(pixels, np.uint8)).resize(SIZE, Image.Resampling.BOX)
    grey = np.asarray(small, np.float32)
    return {"pixel_mean": float(grey.mean()), "pixel_std": float(grey.std())}


def intensity_ranges(
    paths: Iterable[Path],
    age_years: tuple[float, float] | None = None,
    coverage: tuple[float, float] = COVERAGE,
) -> dict:
    """{"pixel_mean": [lo, hi], "pixel_std": [lo, hi], "age_years": [lo, hi] | None,
    "images": n, "coverage": [p_lo, p_hi]} (the keys of training's own summary) over the
    readable images among `paths` (training lists the unreadable ones itself). `age_years`: the
    dataset's documented age range, for data without DICOM ages (Kermany: 1-5); otherwise the
    range of the DICOM PatientAge values found."""
    values: dict[str, list[float]] = {k: [] for k in STATISTICS}
    ages: list[float] = []
    for path in paths:
        try:
            image = read_image(path)
        except ImageReadError:
            continue
        for key, value in image_statistics(image.pixels).items():
            values[key].append(value)
        if image.info.age_years is not None:
            ages.append(image.info.age_years)
    if not values["pixel_mean"]:
        raise DatasetError("no readable image to compute the training population's ranges from")
    ranges: dict = {
        key: [float(np.percentile(v, coverage[0])), float(np.percentile(v, coverage[1]))]
        for key, v in values.items()
    }
    if age_years is None and ages:
        age_years = (min(ages), max(ages))
    ranges["age_years"] = [float(age_years[0]), float(age_years[1])] if age_years else None
    ranges["images"] = len(values["pixel_mean"])
    ranges["coverage"] = list(coverage)
    return ranges
