"""The self-describing model file: the card and the weights in one `torch.save` dict.

The file carries a SHA-256 of its weights and card, checked at every load: a zip container does
not stop a flipped byte inside a tensor (such a model called every image NORMAL with p = 1.00),
and whatever is wrong with a file comes out as one CxrError naming it, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cxr.errors import CxrError
from cxr.models.card import ModelCard
from cxr.models.probe import check_probe, probe_batch
from cxr.models.registry import create_model

FORMAT = "cxr-model/2"
MODEL_FILE = "model.pt"  # a training run's model, inside its run folder


def run_name(path: str | Path) -> str:
    """What a model is called in tables and reports: its run folder's name for a run's
    `model.pt`, else the file's own name without its suffix."""
    path = Path(path)
    return path.parent.name if path.name == MODEL_FILE else path.stem


def stamped(card: ModelCard) -> ModelCard:
    """`card` with the versions that write it: what a model file holds."""
    import dataclasses

    import cxr

    return dataclasses.replace(
        card,
        versions={
            "cxr": cxr.__version__,
            "torch": str(torch.__version__),
            "python": platform.python_version(),
        },
    )


def save_model(path: Path, model: nn.Module, card: ModelCard | None = None) -> Path:
    """`card` (default: the model's own) goes in with the versions that wrote the file."""
    card = stamped(card or model.card)
    payload = {
        "format": FORMAT,
        "card": card.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return write_model_file(path, payload)


def write_model_file(path: Path, payload: dict[str, Any]) -> Path:
    """`payload` sealed with a fresh checksum: the one way a model file is written."""
    torch.save({**payload, "sha256": digest(payload)}, path)
    return path


def digest(payload: dict[str, Any]) -> str:
    """SHA-256 over every tensor (name, dtype, shape, bytes) and the rest as sorted JSON."""
    sha = hashlib.sha256()
    for name, tensor in sorted(payload["state_dict"].items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        sha.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(flat.view(torch.uint8).numpy())
    rest = {k: v for k, v in payload.items() if k not in {"state_dict", "sha256"}}
    sha.update(json.dumps(rest, sort_keys=True, default=str).encode())
    return sha.hexdigest()


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The verified contents of a model file, or a CxrError saying what is wrong with it."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, pickle and storage errors of every kind: all mean "damaged"
        raise CxrError(f"{path}: not a readable cxr model file ({type(exc).__name__})") from exc
    found = payload.get("format") if isinstance(payload, dict) else None
    if found == "cxr-model/1":
        raise CxrError(
            f"{path}: written by an earlier cxr (cxr-model/1, no model card, no internal test "
            "split); train it again with this version"
        )
    if found != FORMAT:
        raise CxrError(f"{path}: not a cxr model file (expected format {FORMAT})")
    for key, kind in {"card": dict, "state_dict": dict, "sha256": str}.items():
        if not isinstance(payload.get(key), kind):
            raise CxrError(f"{path}: damaged model file: '{key}' missing or not a {kind.__name__}")
    if not all(isinstance(t, torch.Tensor) for t in payload["state_dict"].values()):
        raise CxrError(f"{path}: damaged model file: 'state_dict' holds non-tensors")
    if digest(payload) != payload["sha256"]:
        raise CxrError(
            f"{path}: damaged model file: the weights or card do not match their checksum"
        )
    return payload


def read_card(path: str | Path, payload: dict[str, Any] | None = None) -> ModelCard:
    """The card of a model file (or of its already-read `payload`)."""
    payload = payload if payload is not None else read_model_file(path)
    try:
        card = ModelCard.from_dict(payload["card"])
    except CxrError as exc:
        raise CxrError(f"{path}: {exc}") from exc
    except Exception as exc:  # a crafted card: wrong types, missing fields
        raise CxrError(f"{path}: damaged model card ({type(exc).__name__}: {exc})"[:300]) from exc
    if len(card.classes) < 2:
        raise CxrError(f"{path}: damaged model card: needs two or more classes, has {card.classes}")
    return card


def load_model(path: str | Path) -> nn.Module:
    """A ready-to-predict model (eval mode) from the file alone; `model.card` says the rest."""
    payload = read_model_file(path)
    card = read_card(path, payload)
    try:
        model = create_model(card.architecture, pretrained=False, **card.args)
    except CxrError as exc:
        raise CxrError(f"{path}: {exc}") from exc
    except Exception as exc:  # an argument this cxr does not know, say
        detail = f"{type(exc).__name__}: {exc}"[:300]
        raise CxrError(f"{path}: cannot rebuild {card.architecture} ({detail})") from exc
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise CxrError(f"{path}: weights do not fit {card.architecture} ({exc})") from exc
    model.card = card
    model.eval()
    with torch.inference_mode():
        logits = model(torch.from_numpy(probe_batch(card.preprocessing))).float().numpy()
    check_probe(logits, card.classes, str(path))
    check_probe(card.probabilities(logits), card.classes, str(path))
    return model
