"""`cxr export`: the checkpoint as an ONNX file that stands alone: probabilities out (temperature
and softmax inside the graph), dynamic batch, classes/threshold/preprocessing in its metadata."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import onnx
import torch
from torch import nn

from cxr.data.discovery import discover
from cxr.data.labels import LabelScheme
from cxr.data.preprocess import Preprocessing
from cxr.data.reader import read_image
from cxr.data.split import training_split
from cxr.errors import CxrError
from cxr.inference.predictor import ONNX_META_KEY
from cxr.models.io import load_model, run_data_settings
from cxr.settings import resolve_data


class _Probabilities(nn.Module):
    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model(x) / self.temperature).softmax(1)


def export_onnx(checkpoint: Path, out: Path, int8_calibration: list[Path] | None = None) -> Path:
    """With `int8_calibration` (real training images), onnxruntime's static INT8 quantization
    (QDQ, per-channel weights) calibrated on them; keep it only if validation AUROC holds."""
    if out.exists():
        raise CxrError(f"{out} exists; cxr never overwrites (choose another --out)")
    if int8_calibration is not None:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(checkpoint, Path(tmp) / "fp32.onnx")
            return _quantize(fp32, out, int8_calibration)
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
    meta = {
        **model.meta,
        "data": model.meta.get("data") or run_data_settings(Path(checkpoint)),
        "temperature": model.temperature,
        "exported_from": Path(checkpoint).name,
    }
    return _write_meta(out, meta)


def _write_meta(path: Path, meta: dict) -> Path:
    """The model's own description, as the ONNX file's `cxr` metadata entry (replacing any)."""
    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    entry = graph.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, json.dumps(meta)
    onnx.save(graph, str(path))
    return path


class _Calibration:
    """onnxruntime's CalibrationDataReader over real images, preprocessed as the model wants."""

    def __init__(self, paths: list[Path], prep: Preprocessing, input_name: str) -> None:
        self.batches = iter(
            [{input_name: prep.to_array(read_image(p).pixels)[None]} for p in paths]
        )

    def get_next(self):
        return next(self.batches, None)


def _quantize(fp32: Path, out: Path, images: list[Path]) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from cxr.inference.predictor import OnnxPredictor

    source = OnnxPredictor(fp32)
    prepared = fp32.with_name("prepared.onnx")
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(
        str(prepared),
        str(out),
        _Calibration(images, source.preprocessing, source.input),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    graph = onnx.load(str(out))
    del graph.metadata_props[:]
    entry = graph.metadata_props.add()
    entry.key = ONNX_META_KEY
    entry.value = json.dumps(
        {**source.meta, "quantized": f"int8, {len(images)} calibration images"}
    )
    onnx.save(graph, str(out))
    return out


def training_images(checkpoint: Path, count: int, seed: int = 0) -> list[Path]:
    """Calibration images from the model's own training split, never its validation patients."""
    meta = load_model(checkpoint).meta
    settings = meta.get("data") or run_data_settings(Path(checkpoint))
    if not settings:
        raise CxrError(f"{checkpoint} records no training data; give --calibration FOLDER")
    dataset = discover(
        resolve_data(settings["root"]),
        LabelScheme(settings.get("scheme", "folder"), settings.get("negative")),
    )
    train, _ = training_split(
        dataset, settings["val_fraction"], settings["seed"], settings["limit"]
    )
    return [r.path for r in random.Random(seed).sample(train, min(count, len(train)))]
