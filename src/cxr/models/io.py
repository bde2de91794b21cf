"""The self-describing model file: everything needed to predict, in one `torch.save` dict."""

from __future__ import annotations

import dataclasses
import pickle
import platform
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from cxr.data.preprocess import Preprocessing
from cxr.errors import CxrError
from cxr.models.registry import create_model

FORMAT = "cxr-model/1"


def save_model(path: Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """`meta`: classes, label scheme, threshold, data fingerprint, metrics; the rest is ours."""
    import cxr

    payload = {
        "format": FORMAT,
        "architecture": model.cxr_name,
        "args": model.cxr_args,
        "preprocessing": dataclasses.asdict(model.preprocessing),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "versions": {
            "cxr": cxr.__version__,
            "torch": str(torch.__version__),
            "python": platform.python_version(),
        },
        **meta,
    }
    torch.save(payload, path)
    return path


def read_model_file(path: str | Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise CxrError(f"{path}: not a readable cxr model file ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CxrError(f"{path}: not a cxr model file (expected format {FORMAT})")
    return payload


def load_model(path: str | Path) -> nn.Module:
    """Rebuild a ready-to-predict model (eval mode) from the file alone; the rest: `model.meta`."""
    payload = read_model_file(path)
    model = create_model(payload["architecture"], pretrained=False, **payload["args"])
    model.load_state_dict(payload["state_dict"])
    model.preprocessing = Preprocessing(**payload["preprocessing"])
    model.meta = {k: v for k, v in payload.items() if k != "state_dict"}
    model.temperature = float(payload.get("temperature") or 1.0)
    return model.eval()


def run_data_settings(model_file: Path) -> dict | None:
    """A model's data settings (root, split fraction, seed): in the file, or its run's config."""
    config = model_file.parent / "config.yaml"
    if config.is_file():
        return (yaml.safe_load(config.read_text()) or {}).get("data")
    return None
