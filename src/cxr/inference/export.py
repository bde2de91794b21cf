"""`cxr export`: the checkpoint as an ONNX file that stands alone: probabilities out (temperature
and softmax inside the graph), dynamic batch, classes/threshold/preprocessing in its metadata."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import torch
from torch import nn

from cxr.errors import CxrError
from cxr.inference.predictor import ONNX_META_KEY
from cxr.models.io import load_model


class _Probabilities(nn.Module):
    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model(x) / self.temperature).softmax(1)


def export_onnx(checkpoint: Path, out: Path) -> Path:
    if out.exists():
        raise CxrError(f"{out} exists; cxr never overwrites (choose another --out)")
    model = load_model(checkpoint)
    size = model.preprocessing.size
    wrapped = _Probabilities(model, model.temperature).eval()
    example = torch.zeros(2, 1, size, size)
    torch.onnx.export(
        wrapped,
        (example,),
        str(out),
        input_names=["image"],
        output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    graph = onnx.load(str(out))
    meta = {
        "classes": model.meta["classes"],
        "threshold": model.meta.get("threshold"),
        "preprocessing": model.meta["preprocessing"],
        "temperature": model.temperature,
        "architecture": model.meta["architecture"],
        "data_fingerprint": model.meta.get("data_fingerprint"),
        "exported_from": str(Path(checkpoint).name),
    }
    entry = graph.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, json.dumps(meta)
    onnx.save(graph, str(out))
    return out
