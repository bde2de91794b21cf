"""Inference speed of every backend in one process, interleaved, so the ratios hold on a shared
machine: PyTorch eager (fp32, NCHW) as the baseline, PyTorch channels-last with inference mode in
fp32 and bf16, onnxruntime on the graph as traced (the export before issue 17), on the export
(static padding folded, basic optimisations saved) with its thread settings, and on the INT8
export. Decoding is timed apart from the model."""

from __future__ import annotations

import copy
import random
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cxr.data.reader import read_image
from cxr.errors import CxrError
from cxr.inference.export import export_onnx, training_images
from cxr.inference.predict import expand
from cxr.inference.predictor import OnnxPredictor
from cxr.models import create_model, load_model, save_model
from cxr.progress import Stages, silent
from cxr.settings import data_root
from cxr.speed import forward_gflop

BACKENDS = (
    "torch-eager",
    "torch-fast",
    "torch-bf16",
    "onnx-as-traced",
    "onnx",
    "onnx-1thread",
    "onnx-nospin",
    "onnx-int8",
)
_ONNX_SETTINGS = {"onnx": {}, "onnx-1thread": {"threads": 1}, "onnx-nospin": {"spin": False}}
INT8_CALIBRATION_IMAGES = 100


@dataclass(frozen=True)
class InferSpeed:
    backend: str
    batch: int
    images_per_s: float
    gflop_per_image: float
    achieved_gflops: float
    peak_rss_mib: float  # the process's peak so far: backends run in order, so it only grows

    def to_dict(self) -> dict:
        return asdict(self)


def _model_file(name_or_path: str, folder: Path) -> Path:
    """A checkpoint as given, or a registered architecture saved with random weights: speed does
    not depend on the weights' values."""
    if Path(name_or_path).is_file():
        return Path(name_or_path)
    torch.manual_seed(0)
    model = create_model(name_or_path).eval()
    model.card = replace(model.card, classes=("NORMAL", "PNEUMONIA"))
    return save_model(folder / "model.pt", model)


def _calibration(model_file: Path) -> list[Path]:
    """The model's own training images, or (an untrained architecture) Kermany train's."""
    try:
        return training_images(model_file, INT8_CALIBRATION_IMAGES)
    except CxrError:
        found = expand([data_root() / "chest_xray" / "train"])
        return random.Random(0).sample(found, min(INT8_CALIBRATION_IMAGES, len(found)))


def _runner(backend: str, model_file: Path | None, onnx_file: Path):
    if backend == "onnx-int8":
        return OnnxPredictor(onnx_file.with_name("int8.onnx")).predict
    if backend == "onnx-as-traced":
        return OnnxPredictor(onnx_file.with_name("as-traced.onnx")).predict
    if backend in _ONNX_SETTINGS:
        return OnnxPredictor(onnx_file, **_ONNX_SETTINGS[backend]).predict
    model = load_model(model_file)
    if backend == "torch-eager":

        def run(x: np.ndarray) -> None:
            with torch.no_grad():
                model(torch.from_numpy(x))

        return run
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    bf16 = backend == "torch-bf16"

    def run_fast(x: np.ndarray) -> None:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            fast(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))

    return run_fast


def model_throughput(
    name_or_path: str,
    backends: tuple[str, ...] = BACKENDS,
    batches: tuple[int, ...] = (1, 8, 32),
    seconds: float = 2.0,
    rounds: int = 2,
    progress: Stages = silent,
) -> list[InferSpeed]:
    with tempfile.TemporaryDirectory() as tmp:
        if Path(name_or_path).suffix == ".onnx":  # an export as it is, INT8 included
            model_file, onnx_file, backends = None, Path(name_or_path), ("onnx",)
            card = OnnxPredictor(onnx_file).card
            model = create_model(card.architecture, **card.args)
            size = card.preprocessing.size
        else:
            model_file = _model_file(name_or_path, Path(tmp))
            model = load_model(model_file)
            size = model.card.preprocessing.size
            onnx_file = Path(tmp) / "model.onnx"
            fp32 = bool(set(_ONNX_SETTINGS) & set(backends))
            traced = "onnx-as-traced" in backends
            step = progress("exporting", fp32 + traced + ("onnx-int8" in backends))
            if fp32:
                export_onnx(model_file, onnx_file)
                step(1)
            if traced:
                export_onnx(model_file, onnx_file.with_name("as-traced.onnx"), as_traced=True)
                step(1)
            if "onnx-int8" in backends:
                export_onnx(model_file, Path(tmp) / "int8.onnx", _calibration(model_file))
                step(1)
        gflop = forward_gflop(model, size)
        runners, rss = {}, {}
        for backend in backends:
            runners[backend] = _runner(backend, model_file, onnx_file)
            runners[backend](np.zeros((2, 1, size, size), np.float32))  # warm-up
            rss[backend] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        inputs = {
            b: np.random.default_rng(0).normal(size=(b, 1, size, size)).astype(np.float32)
            for b in batches
        }
        best: dict[tuple[str, int], float] = {}
        step = progress("timing", rounds * len(batches) * len(runners))
        for _ in range(rounds):
            for batch in batches:
                for backend, run in runners.items():
                    run(inputs[batch])
                    done, start = 0, time.perf_counter()
                    while time.perf_counter() - start < seconds / rounds:
                        run(inputs[batch])
                        done += batch
                    rate = done / (time.perf_counter() - start)
                    best[backend, batch] = max(best.get((backend, batch), 0.0), rate)
                    step(1)
                    rss[backend] = max(
                        rss[backend], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    )
    return [
        InferSpeed(b, n, round(r, 1), round(gflop, 3), round(r * gflop, 1), round(rss[b], 0))
        for (b, n), r in best.items()
    ]


def decode_throughput(paths: list[Path], size: int) -> float:
    """Images/s for read + decode + resize + normalise, one process: the part before the model."""
    from cxr.data.preprocess import Preprocessing

    prep = Preprocessing(size=size)
    start = time.perf_counter()
    for path in paths:
        prep.to_array(read_image(path).pixels)
    return len(paths) / (time.perf_counter() - start)
