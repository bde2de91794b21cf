"""Two interchangeable backends behind one interface: the PyTorch checkpoint and its ONNX export
(onnxruntime). Both take normalised (N, 1, S, S) float32 batches and return calibrated
probabilities, and both carry the model card, so no caller cares which file it was given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from cxr.errors import CxrError
from cxr.inference.probabilities import probabilities
from cxr.models.card import ModelCard
from cxr.models.io import load_model

ONNX_META_KEY = "cxr"


class Predictor:
    card: ModelCard
    source: Path

    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TorchPredictor(Predictor):
    def __init__(self, path: Path) -> None:
        self.model = load_model(path).to(memory_format=torch.channels_last)
        self.card, self.source = self.model.card, path

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        return probabilities(self.model, x).numpy()


class OnnxPredictor(Predictor):
    """onnxruntime with every graph optimisation for this CPU; `threads` 0 is one per core, and
    `spin` lets idle worker threads busy-wait for the next operator (onnxruntime's default)."""

    def __init__(self, path: Path, threads: int = 0, spin: bool = True) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise CxrError(f"{path}: not a readable ONNX model ({exc})") from exc
        custom = self.session.get_modelmeta().custom_metadata_map
        if ONNX_META_KEY not in custom:
            raise CxrError(
                f"{path}: an ONNX model not exported by cxr (no '{ONNX_META_KEY}' metadata)"
            )
        try:
            self.card = ModelCard.from_dict(json.loads(custom[ONNX_META_KEY]))
        except (ValueError, CxrError) as exc:
            raise CxrError(f"{path}: its cxr metadata is not a model card ({exc})") from exc
        self.source = path
        self.input = self.session.get_inputs()[0].name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: batch.astype(np.float32)})[0]


def load_predictor(path: Path) -> Predictor:
    path = Path(path)
    if not path.is_file():
        raise CxrError(f"{path}: no such model file")
    if path.suffix == ".onnx":
        return OnnxPredictor(path)
    return TorchPredictor(path)
