"""Finite or refused, per image: a model whose output is NaN for some images (here an ONNX graph
that takes the square root of the image's mean, finite on the load-time grey probe, NaN on a dark
film) gives those images no decision. `NaN >= threshold` is False, so without the check they were
called NORMAL with p = nan; now they are skipped with the reason in every output, and the rest of
the batch is scored."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper
from PIL import Image
from tests.conftest import save_tiny_model

from cxr.inference.predict import NON_FINITE, predict_paths
from cxr.inference.predictor import OnnxPredictor, write_onnx_meta
from cxr.models.io import read_card
from cxr.serve.app import ServeConfig, create_app


@pytest.fixture(scope="module")
def sqrt_model(tmp_path_factory):
    """probs = softmax([sqrt(m), -sqrt(m)]) with m the mean normalised pixel: NaN when m < 0."""
    folder = tmp_path_factory.mktemp("nan")
    card = read_card(save_tiny_model(folder / "tiny.pt"))
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
        helper.make_node("Sqrt", ["m"], ["s"]),
        helper.make_node("Unsqueeze", ["s", "one"], ["s1"]),
        helper.make_node("Neg", ["s1"], ["n1"]),
        helper.make_node("Concat", ["s1", "n1"], ["z"], axis=1),
        helper.make_node("Softmax", ["z"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "sqrt_of_mean",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "S", "S"])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path = folder / "sqrt.onnx"
    onnx.save(model, str(path))
    return write_onnx_meta(path, card.to_dict())


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    folder = tmp_path_factory.mktemp("films")
    ramp = np.tile(np.linspace(0, 1, 256), (256, 1))
    for name, (lo, hi) in {"dark.png": (0, 90), "bright.png": (150, 250)}.items():
        Image.fromarray((lo + (hi - lo) * ramp).astype(np.uint8)).save(folder / name)
    return folder


def test_the_grey_probe_passes_and_only_the_dark_film_is_an_error(sqrt_model, films):
    predictor = OnnxPredictor(sqrt_model)  # loads: finite on the probe
    worklist = predict_paths(predictor, [films])
    assert [r.path for r in worklist.rows] == [str(films / "bright.png")]
    assert worklist.failures == [(str(films / "dark.png"), NON_FINITE)]
    assert "nan" not in worklist.csv_text().lower().replace(NON_FINITE.lower(), "")


def test_the_cli_and_the_api_say_why_and_never_decide(sqrt_model, films, tmp_path):
    out = tmp_path / "worklist.json"
    result = subprocess.run(
        [sys.executable, "-m", "cxr", "predict", str(sqrt_model), str(films), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr  # a file skipped: exit 1
    answer = json.loads(out.read_text())
    assert [s["reason"] for s in answer["skipped"]] == [NON_FINITE]
    assert len(answer["worklist"]) == 1 and answer["worklist"][0]["filename"].endswith("bright.png")
    client = TestClient(create_app(ServeConfig(sqrt_model)))
    with (films / "dark.png").open("rb") as fh:
        refused = client.post("/api/predict", files={"file": ("dark.png", fh, "image/png")})
    assert refused.status_code == 422 and "non-finite" in refused.json()["detail"]
    files = [
        ("files", (n, (films / n).read_bytes(), "image/png")) for n in ("dark.png", "bright.png")
    ]
    triage = client.post("/api/triage", files=files)
    assert triage.status_code == 200  # JSON, not a 500 on NaN
    assert triage.json()["skipped"] == [{"filename": "dark.png", "reason": NON_FINITE}]
