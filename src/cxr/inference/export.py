"""`cxr export`: the checkpoint as an ONNX file that stands alone: probabilities out (calibration
and softmax inside the graph), dynamic batch, the model card in its metadata."""

from __future__ import annotations

import dataclasses
import random
import tempfile
import warnings
from pathlib import Path

import torch

from cxr.data.preprocess import Preprocessing
from cxr.data.reader import read_image
from cxr.errors import CxrError
from cxr.inference.predictor import write_onnx_meta
from cxr.inference.probabilities import Calibrated
from cxr.inference.static_padding import with_static_padding
from cxr.models.card import ModelCard
from cxr.models.io import load_model, read_card
from cxr.outputs import must_be_new


def export_onnx(
    checkpoint: Path,
    out: Path,
    int8_calibration: list[Path] | None = None,
    as_traced: bool = False,
) -> Path:
    """With `int8_calibration` (real training images), onnxruntime's static INT8 quantization
    (QDQ, per-channel weights) calibrated on them, its threshold re-chosen on the tuning split.

    The fp32 graph is written after onnxruntime's basic optimisations (constants folded, batch
    norm folded into the convolutions, the now-static "same" padding folded into their pads):
    plain ONNX operators only, so any runtime reads it. `as_traced` keeps the graph as PyTorch
    traced it, run-time padding included: the benchmark's "before"."""
    must_be_new(out)
    if int8_calibration is not None:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(checkpoint, Path(tmp) / "fp32.onnx")
            return _quantize(fp32, out, int8_calibration)
    model = load_model(checkpoint)
    size = model.card.preprocessing.size
    wrapped = Calibrated(model if as_traced else with_static_padding(model, size)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        traced = out if as_traced else Path(tmp) / "traced.onnx"
        with warnings.catch_warnings():  # a strided Slice: onnxruntime folds it (below)
            warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
            torch.onnx.export(
                wrapped,
                (torch.zeros(2, 1, size, size),),
                str(traced),
                input_names=["image"],
                output_names=["probabilities"],
                dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        if not as_traced:
            _basic_optimisations(traced, out)
    return _write_card(out, model.card)


def _basic_optimisations(source: Path, out: Path) -> None:
    """onnxruntime's level-1 graph rewrites, saved: hardware-independent (the higher levels add
    blocked-layout operators for this CPU only, so they are left to each session)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def _write_card(path: Path, card: ModelCard) -> Path:
    """The model card and its checksum, as the ONNX file's `cxr` metadata entry."""
    return write_onnx_meta(path, card.to_dict())


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

    from cxr.inference.agreement import rechoose_for_int8
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
    card, note = source.card, f"int8, {len(images)} calibration images"
    try:
        card, agreement = rechoose_for_int8(source, OnnxPredictor(_write_card(out, card)))
        note += "; " + agreement.summary()
    except CxrError as exc:  # no tuning split recorded, or its images are gone
        note += f"; threshold NOT re-chosen ({exc}): check it with cxr evaluate before use"
    return _write_card(out, dataclasses.replace(card, recipe={**card.recipe, "quantized": note}))


def training_images(checkpoint: Path, count: int, seed: int = 0) -> list[Path]:
    """Calibration images from the model's own training part, never its tuning or test patients."""
    card = read_card(checkpoint)
    if not card.data:
        raise CxrError(f"{checkpoint} records no training data; give the IMAGES to calibrate on")
    train = card.protocol().train
    return [r.path for r in random.Random(seed).sample(train, min(count, len(train)))]
