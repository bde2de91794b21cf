"""Two interchangeable backends behind one interface: the PyTorch checkpoint and its ONNX export
(onnxruntime). Both take normalised (N, 1, S, S) float32 batches and return calibrated
probabilities, and both carry the model card, so no caller cares which file it was given."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cxr.errors import CxrError
from cxr.inference.gradcam import GradCam
from cxr.inference.probabilities import probabilities
from cxr.models.card import ModelCard
from cxr.models.io import load_model
from cxr.models.probe import check_probe, probe_batch
from cxr.models.registry import spec_of
from cxr.models.signing import check_trusted

ONNX_META_KEY = "cxr"


class Predictor:
    card: ModelCard
    source: Path

    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TorchPredictor(Predictor):
    """A checkpoint, and the one Grad-CAM explainer hooked on it (built on the first heat map):
    the page, `cxr predict --cam` and the DICOM node all explain through `explain`."""

    def __init__(self, model: torch.nn.Module, source: Path) -> None:
        """`model` as read from its file `source`, or still in memory from training it there."""
        self.model = model.to(memory_format=torch.channels_last)
        self.card, self.source = self.model.card, source
        self._explainer: GradCam | None = None
        self._building = threading.Lock()

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        return probabilities(self.model, _tensor(batch)).numpy()

    @property
    def explainer(self) -> GradCam:
        """Built on the first heat map, under a lock: two first calls at once hook it once."""
        with self._building:
            if self._explainer is None:
                self._explainer = GradCam(self.model, spec_of(self.card).target_layer)
            return self._explainer

    def explain(self, batch: np.ndarray, classes: Sequence[int]) -> np.ndarray:
        """Grad-CAM maps (N, S, S) in [0, 1] of the batch `predict` scored, image i's evidence
        for class index `classes[i]`; safe to call from several threads at once."""
        return self.explainer(_tensor(batch), classes)


def _tensor(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)


def onnx_providers(available: list[str]) -> list[str]:
    """CUDA first where this onnxruntime build has it (onnxruntime-gpu; onnxruntime falls back to
    the CPU, warning, if no GPU answers), else the CPU alone."""
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxPredictor(Predictor):
    """onnxruntime with every graph optimisation; on the CPU `threads` 0 is one per core, and
    `spin` lets idle worker threads busy-wait for the next operator (onnxruntime's default)."""

    def __init__(self, path: Path, threads: int = 0, spin: bool = True) -> None:
        import onnxruntime as ort

        meta = read_onnx_meta(path)
        try:
            self.card = ModelCard.from_dict({k: v for k, v in meta.items() if k != "sha256"})
        except Exception as exc:
            raise CxrError(f"{path}: its cxr metadata is not a model card ({exc})"[:300]) from exc
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=onnx_providers(ort.get_available_providers())
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise CxrError(f"{path}: not a usable ONNX model ({type(exc).__name__})") from exc
        self.source = path
        self.input = self.session.get_inputs()[0].name
        probe = self.predict(probe_batch(self.card.preprocessing))
        check_probe(probe, self.card.classes, str(path))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: batch.astype(np.float32)})[0]


def onnx_digest(graph, meta: dict) -> str:
    """SHA-256 of an ONNX model without its metadata, and of cxr's metadata as sorted JSON."""
    bare = type(graph)()
    bare.CopyFrom(graph)
    del bare.metadata_props[:]
    body = {k: v for k, v in meta.items() if k != "sha256"}
    payload = bare.SerializeToString() + json.dumps(body, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()


def write_onnx_meta(path: Path, meta: dict) -> Path:
    """The model card and its checksum, as the ONNX file's `cxr` metadata entry (replacing any)."""
    import onnx

    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    entry = graph.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, json.dumps({**meta, "sha256": onnx_digest(graph, meta)})
    onnx.save(graph, str(path))
    return path


def read_onnx_meta(path: Path) -> dict:
    """cxr's metadata of an exported model, after checking the file against its checksum."""
    import onnx

    try:
        graph = onnx.load(str(path))
        custom = {p.key: p.value for p in graph.metadata_props}
    except Exception as exc:  # protobuf decode errors and the like
        raise CxrError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from exc
    if ONNX_META_KEY not in custom:
        raise CxrError(f"{path}: an ONNX model not exported by cxr (no '{ONNX_META_KEY}' metadata)")
    try:
        meta = json.loads(custom[ONNX_META_KEY])
    except ValueError as exc:
        raise CxrError(f"{path}: damaged cxr metadata in the ONNX model (not JSON)") from exc
    classes = meta.get("classes") if isinstance(meta, dict) else None
    if not isinstance(classes, list) or len(classes) < 2:
        raise CxrError(f"{path}: damaged cxr metadata in the ONNX model: needs 2+ classes")
    if not isinstance(meta.get("preprocessing"), dict) or "sha256" not in meta:
        raise CxrError(f"{path}: damaged cxr metadata in the ONNX model: fields missing")
    if meta["sha256"] != onnx_digest(graph, meta):
        raise CxrError(
            f"{path}: damaged ONNX model: the graph or metadata do not match their checksum"
        )
    return meta


def load_predictor(path: Path) -> Predictor:
    path = Path(path)
    if not path.is_file():
        raise CxrError(f"{path}: no such model file")
    check_trusted(path)  # before anything in the file is read: $CXR_TRUSTED_KEY, if set
    if path.suffix == ".onnx":
        return OnnxPredictor(path)
    return TorchPredictor(load_model(path), path)
