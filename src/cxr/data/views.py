"""The views a model scores each image as (test-time augmentation), a field of its card. Here, not
in models/, so that the config can check them without loading torch."""

from __future__ import annotations

from dataclasses import dataclass

from cxr.errors import CxrError


@dataclass(frozen=True)
class Views:
    """Test-time augmentation: each image is scored as these views and the logits averaged before
    calibration, so the calibration, the threshold and every command see the averaged model.
    A scale above 1 zooms into the centre (crop, resized back); `hflip` adds each view mirrored."""

    hflip: bool = False
    scales: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        scales = self.scales
        if not isinstance(self.hflip, bool):
            raise CxrError(f"test-time hflip {self.hflip!r}: true or false")
        if not scales or any(
            isinstance(s, bool) or not isinstance(s, int | float) or not 1.0 <= s <= 2.0
            for s in scales
        ):
            raise CxrError(f"test-time scales {list(scales)}: one or more zooms from 1.0 to 2.0")
        if len(set(scales)) != len(scales):
            raise CxrError(f"test-time scales {list(scales)}: a scale is named twice")

    @property
    def count(self) -> int:
        return len(self.scales) * (2 if self.hflip else 1)

    def describe(self) -> str:
        zooms = ", ".join(f"{s:g}x" for s in self.scales)
        mirrored = ", each mirrored" if self.hflip else ""
        return f"{self.count} views averaged (zoom {zooms}{mirrored})"
