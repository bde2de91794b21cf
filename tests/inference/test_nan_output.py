"""A model that passes the load-time probe (finite on a flat grey film) but gives NaN on a real
radiograph: that image is an error row ("non-finite output"), never a NORMAL decision (issue 30;
`p >= threshold` is False for NaN)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import torch
from tests.conftest import save_tiny_model

from cxr.inference.predictor import load_predictor
from cxr.models.io import digest


def _nan_on_edges(path: Path) -> Path:
    """An edge filter of 1e30 in the first conv (zero on a flat image, overflow on a real one),
    amplified by the next conv into infinities that mixed-sign weights turn into NaN."""
    payload = torch.load(save_tiny_model(path), weights_only=True)
    weights = payload["state_dict"]
    first = torch.zeros_like(weights["features.stage0.0.weight"])
    first[:, :, 0, 0], first[:, :, 0, 1] = 1e30, -1e30
    weights["features.stage0.0.weight"] = first
    weights["features.stage0.3.weight"] = weights["features.stage0.3.weight"] * 1e15
    payload["sha256"] = digest(payload)
    torch.save(payload, path)
    return path


def test_a_nan_output_is_an_error_row_not_a_decision(tmp_path, data):
    model = _nan_on_edges(tmp_path / "model.pt")
    load_predictor(model)  # the probe passes: only the per-image check can catch it
    image = sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[0]
    result = subprocess.run(
        [sys.executable, "-m", "cxr", "predict", str(model), str(image), "--out",
         str(tmp_path / "w.csv")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "Traceback" not in result.stdout + result.stderr
    (row,) = list(csv.DictReader((tmp_path / "w.csv").open()))
    assert row["group"] == "skipped" and "non-finite output" in row["error"], row
    assert row["predicted"] == "" and row["p_PNEUMONIA"] == "", row
