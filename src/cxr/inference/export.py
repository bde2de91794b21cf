"""`cxr export`: the checkpoint as an ONNX file that stands alone: probabilities out (calibration
and softmax inside the graph), dynamic batch, the model card in its metadata."""

from __future__ import annotations

import dataclasses
import json
import random
import tempfile
from pathlib import Path

import onnx
import torch

from cxr.data.preprocess import Preprocessing
from cxr.data.reader import read_image
from cxr.errors import CxrError
from cxr.inference.predictor import ONNX_META_KEY
from cxr.inference.probabilities import Calibrated
from cxr.models.card import ModelCard
from cxr.models.io import load_model, read_card


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
    size = model.card.preprocessing.size
    wrapped = Calibrated(model).eval()
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
    return _write_card(out, model.card)


def _write_card(path: Path, card: ModelCard) -> Path:
    """The model card, as the ONNX file's `cxr` metadata entry (replacing any)."""
    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    entry = graph.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, json.dumps(card.to_dict())
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
        _Calibration(images, source.card.preprocessing, source.input),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    recipe = {**source.card.recipe, "quantized": f"int8, {len(images)} calibration images"}
    return _write_card(out, dataclasses.replace(source.card, recipe=recipe))


def training_images(checkpoint: Path, count: int, seed: int = 0) -> list[Path]:
    """Calibration images from the model's own training part, never its tuning or test patients."""
    card = read_card(checkpoint)
    if not card.data:
        raise CxrError(f"{checkpoint} records no training data; give --calibration FOLDER")
    train = card.protocol().train
    return [r.path for r in random.Random(seed).sample(train, min(count, len(train)))]
