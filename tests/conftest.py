"""Fixtures: the real datasets in $CXR_DATA (../shared/data) and damaged copies made per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cxr.settings import data_root


@pytest.fixture(scope="session")
def data() -> Path:
    root = data_root()
    assert (root / "chest_xray" / "train").is_dir(), f"shared data missing at {root.resolve()}"
    return root


@pytest.fixture()
def damaged_folder(tmp_path: Path, data: Path) -> Path:
    """A class folder with four good images and exactly three bad ones."""
    folder = tmp_path / "ds" / "NORMAL"
    folder.mkdir(parents=True)
    good = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:4]
    for path in good:
        shutil.copy(path, folder / path.name)
    whole = good[0].read_bytes()
    (folder / "truncated.jpeg").write_bytes(whole[: len(whole) // 2])
    (folder / "empty.jpeg").write_bytes(b"")
    (folder / "notes.png").write_text("this is a text file, not a PNG\n")
    (folder / "README.txt").write_text("ignored: not an image suffix")
    return tmp_path / "ds"


def save_tiny_model(path: Path, calibration: str = "temperature") -> Path:
    """A seeded, untrained cxr_cnn with a complete binary card (threshold 0.5 on PNEUMONIA, a
    temperature of 1.5 or none): real weights and a real file, for tests that need a model but
    not a good one."""
    import dataclasses

    import torch

    from cxr.metrics.calibration import Calibration
    from cxr.models import create_model, save_model
    from cxr.models.card import Threshold

    torch.manual_seed(0)
    model = create_model("cxr_cnn").eval()
    model.card = dataclasses.replace(
        model.card,
        classes=("NORMAL", "PNEUMONIA"),
        threshold=Threshold(0.5, "fixed:0.5", "PNEUMONIA"),
        calibration=Calibration("temperature", (1 / 1.5, 1 / 1.5), (0.0, 0.0))
        if calibration == "temperature"
        else Calibration(),
        data_fingerprint="0123456789abcdef",
        metrics={"tuning_auroc": 0.5},
    )
    return save_model(path, model)
