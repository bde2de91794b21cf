"""The self-describing model file: the card and the weights in one `torch.save` dict."""

from __future__ import annotations

import pickle
import platform
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cxr.errors import CxrError
from cxr.models.card import ModelCard
from cxr.models.registry import create_model

FORMAT = "cxr-model/2"


def save_model(path: Path, model: nn.Module, card: ModelCard | None = None) -> Path:
    """`card` (default: the model's own) goes in with the versions that wrote the file."""
    import dataclasses

    import cxr

    card = dataclasses.replace(
        card or model.card,
        versions={
            "cxr": cxr.__version__,
            "torch": str(torch.__version__),
            "python": platform.python_version(),
        },
    )
    payload = {
        "format": FORMAT,
        "card": card.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    torch.save(payload, path)
    return path


def read_model_file(path: str | Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise CxrError(f"{path}: not a readable cxr model file ({exc})") from exc
    found = payload.get("format") if isinstance(payload, dict) else None
    if found == "cxr-model/1":
        raise CxrError(
            f"{path}: written by an earlier cxr (cxr-model/1, no model card, no internal test "
            "split); train it again with this version"
        )
    if found != FORMAT:
        raise CxrError(f"{path}: not a cxr model file (expected format {FORMAT})")
    return payload


def read_card(path: str | Path, payload: dict[str, Any] | None = None) -> ModelCard:
    """The card of a model file (or of its already-read `payload`)."""
    payload = payload if payload is not None else read_model_file(path)
    try:
        return ModelCard.from_dict(payload["card"])
    except (KeyError, CxrError) as exc:
        raise CxrError(f"{path}: {exc}") from exc


def load_model(path: str | Path) -> nn.Module:
    """A ready-to-predict model (eval mode) from the file alone; `model.card` says the rest."""
    payload = read_model_file(path)
    card = read_card(path, payload)
    model = create_model(card.architecture, pretrained=False, **card.args)
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise CxrError(f"{path}: weights do not fit {card.architecture} ({exc})") from exc
    model.card = card
    return model.eval()
