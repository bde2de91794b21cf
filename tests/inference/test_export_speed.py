"""Issue 17's inference side on real files: the export without run-time padding, INT8's threshold
re-chosen on the tuning patients, and the training-step profile."""

import dataclasses
import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import torch
from tests.conftest import save_tiny_model

from cxr.data.split import split_fingerprint
from cxr.inference.export import export_onnx
from cxr.inference.predict import predict_paths
from cxr.inference.predictor import load_predictor
from cxr.metrics.thresholds import choose_threshold
from cxr.models import create_model, load_model, save_model
from cxr.models.card import Threshold
from cxr.training.config import DataConfig


def _cxr(*args):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def _ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_lite0_export_folds_the_tf_padding_and_matches_pytorch(data, tmp_path):
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0").eval()
    model.card = dataclasses.replace(
        model.card,
        classes=("NORMAL", "PNEUMONIA"),
        threshold=Threshold(0.5, "fixed:0.5", "PNEUMONIA"),
    )
    checkpoint = save_model(tmp_path / "lite0.pt", model)
    traced = export_onnx(checkpoint, tmp_path / "traced.onnx", as_traced=True)
    assert {"Pad", "Shape"} <= _ops(traced)  # timm's run-time "same" padding, as it was
    with warnings.catch_warnings(record=True) as said:  # what `cxr export` would print
        warnings.simplefilter("always")
        exported = export_onnx(checkpoint, tmp_path / "lite0.onnx")
    shown = [w for w in said if not issubclass(w.category, DeprecationWarning)]  # Python hides
    assert not shown, [str(w.message)[:120] for w in shown]
    assert not {"Pad", "Shape", "BatchNormalization"} & _ops(exported)
    paths = sorted((data / "chest_xray_originals" / "train" / "PNEUMONIA").glob("*.jpeg"))[:6]
    torch_rows = predict_paths(load_predictor(checkpoint), paths).rows
    onnx_rows = {r.path: r.probs for r in predict_paths(load_predictor(exported), paths).rows}
    spread = np.ptp([r.probs[1] for r in torch_rows])
    assert spread > 1e-3  # the images give different answers, so equal answers mean something
    assert max(np.abs(onnx_rows[r.path] - r.probs).max() for r in torch_rows) < 1e-4


def test_int8_export_rechooses_its_threshold_on_the_tuning_patients(data, tmp_path):
    tiny = load_model(save_tiny_model(tmp_path / "tiny.pt"))
    settings = DataConfig(root=str(data / "chest_xray"), limit=48)
    card = dataclasses.replace(
        tiny.card,
        data=dataclasses.asdict(settings),
        threshold=Threshold(0.5, "sensitivity>=0.9", "PNEUMONIA"),
    )
    dataset = card.dataset_for()
    card = dataclasses.replace(
        card, data_fingerprint=split_fingerprint(card.protocol(dataset), dataset.root)
    )
    checkpoint = save_model(tmp_path / "model.pt", tiny, card)
    out = tmp_path / "int8.onnx"
    result = _cxr("export", checkpoint, "--out", out, "--to", "onnx-int8", "--max-images", 8)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical decisions" in " ".join(result.stdout.split())
    int8 = load_predictor(out)
    tune = card.protocol().tune
    assert int8.card.threshold.source == "tuning split, re-chosen for INT8"
    stored = int8.card.metrics["int8"]
    assert stored["images"] == len(tune) and 0 <= stored["identical_decisions"] <= 1
    assert stored["fp32_threshold"] == 0.5
    # the stored threshold is the rule applied to the INT8 file's own tuning probabilities
    rows = {r.path: r.probs for r in predict_paths(int8, [r.path for r in tune]).rows}
    truth = np.array([r.label == "PNEUMONIA" for r in tune], int)
    p = np.array([rows[str(r.path)][1] for r in tune])
    assert abs(int8.card.threshold.value - choose_threshold(truth, p, "sensitivity>=0.9")) < 1e-6
    assert "re-chosen" in int8.card.summary()["decision"]


def test_int8_export_without_its_tuning_patients_says_so(data, tmp_path):
    tiny = load_model(save_tiny_model(tmp_path / "tiny.pt"))  # its card records no training data
    elsewhere = dataclasses.replace(  # and this one's data no longer holds the same files
        tiny.card, data=dataclasses.asdict(DataConfig(root=str(data / "chest_xray"), limit=48))
    )
    for name, card in (("none", tiny.card), ("moved", elsewhere)):
        out = tmp_path / f"{name}.onnx"
        result = _cxr(
            "export", save_model(tmp_path / f"{name}.pt", tiny, card),
            data / "chest_xray" / "train", "--out", out, "--to", "onnx-int8", "--max-images", 4,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        said = " ".join(result.stdout.split())  # rich wraps long lines
        assert "threshold NOT re-chosen" in said
        assert load_predictor(out).card.threshold.value == 0.5
    assert "fingerprints differ" in said


def test_profile_charges_the_whole_step_to_operators_and_parts(tmp_path):
    out = tmp_path / "profile.json"
    result = _cxr(
        "benchmark", "profile", "efficientnet_lite0", "--batch", 2, "--steps", 1, "--out", out
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (nchw, channels_last) = json.loads(out.read_text())["profiles"]
    for profile in (nchw, channels_last):
        parts = {s["name"] for s in profile["by_part"]}
        assert parts == {"stem", "head", "loss + optimiser"} | {f"blocks.{i}" for i in range(7)}
        operators = {s["name"]: s for s in profile["by_operator"]}
        assert {"conv 1x1", "conv depthwise 3x3", "conv depthwise 5x5", "pad (TF 'same')"} <= set(
            operators
        )
        # where a Lite0 step's time goes: its MBConv blocks together outweigh any other part
        share = {s["name"]: s["percent"] for s in profile["by_part"]}
        blocks = sum(v for k, v in share.items() if k.startswith("blocks."))
        assert blocks > max(v for k, v in share.items() if not k.startswith("blocks.")), share
        # every convolution FLOP of the forward is counted once, 3x for the training step
        assert abs(profile["step_gflop"] / 2 - 3 * 0.75) < 0.2
    refused = _cxr("benchmark", "profile", "efficientnet_lite0", "--variants", "fp16-nhwc")
    assert refused.returncode == 2 and "precision-layout" in refused.stdout
