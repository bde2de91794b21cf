"""Damaged and crafted model files: each is refused with one CxrError naming the file and the
problem (the CLI prints it as one `error:` line), never loaded silently, never a traceback."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxr.errors import CxrError
from cxr.inference.export import export_onnx
from cxr.inference.predictor import load_predictor
from cxr.models.io import digest
from tests.conftest import save_tiny_model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "model.pt")


@pytest.fixture(scope="module")
def onnx_file(model_file, tmp_path_factory):
    return export_onnx(model_file, tmp_path_factory.mktemp("o") / "model.onnx")


def _largest_tensor_offset(path: Path) -> int:
    """Where the bytes of the largest weight tensor start inside the model's zip."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    header = path.read_bytes()[info.header_offset : info.header_offset + 30]
    name_len = int.from_bytes(header[26:28], "little")
    extra_len = int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len + info.file_size // 2


def test_64_flipped_bytes_inside_a_weight_tensor_are_refused(model_file, tmp_path, data):
    raw = bytearray(model_file.read_bytes())
    start = _largest_tensor_offset(model_file)
    raw[start : start + 64] = bytes(b ^ 0xFF for b in raw[start : start + 64])
    damaged = tmp_path / "flipped.pt"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(CxrError, match="do not match their checksum"):
        load_predictor(damaged)
    image = next((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))
    result = subprocess.run(
        [sys.executable, "-m", "cxr", "predict", str(damaged), str(image)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "flipped.pt" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def _crafted(model_file: Path, tmp_path: Path, change) -> Path:
    payload = torch.load(model_file, weights_only=True)
    change(payload)
    out = tmp_path / "crafted.pt"
    torch.save(payload, out)
    return out


def _resealed(change):
    """`change`, then a fresh checksum: a consistent file that must still be refused."""

    def apply(payload):
        change(payload)
        payload["sha256"] = digest(payload)

    return apply


CRAFTED = {
    "missing card": (lambda p: p.pop("card"), "'card' missing"),
    "no checksum": (lambda p: p.pop("sha256"), "'sha256' missing"),
    "edited threshold": (lambda p: p["card"]["threshold"].update(value=0.0), "checksum"),
    "not a dict": (lambda p: p.update(state_dict=[1, 2]), "'state_dict' missing or not a dict"),
    "one class": (_resealed(lambda p: p["card"].update(classes=["NORMAL"])), "two or more"),
    "card field wrong": (_resealed(lambda p: p["card"].update(preprocessing=7)), "model card"),
    "extra argument": (
        _resealed(lambda p: p["card"]["args"].update(no_such_argument=1)),
        "cannot rebuild",
    ),
    "weights shape": (
        _resealed(lambda p: p["state_dict"].update({k: torch.zeros(1) for k in p["state_dict"]})),
        "weights do not fit",
    ),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_model_files_are_one_clear_error(model_file, tmp_path, case):
    change, words = CRAFTED[case]
    with pytest.raises(CxrError, match=words) as caught:
        load_predictor(_crafted(model_file, tmp_path, change))
    assert "crafted.pt" in str(caught.value)


def _onnx_with(onnx_file: Path, tmp_path: Path, value: str | None) -> Path:
    graph = onnx.load(str(onnx_file))
    del graph.metadata_props[:]
    if value is not None:
        entry = graph.metadata_props.add()
        entry.key, entry.value = "cxr", value
    out = tmp_path / "crafted.onnx"
    onnx.save(graph, str(out))
    return out


def test_onnx_with_partial_or_edited_metadata_is_refused(onnx_file, tmp_path):
    meta = json.loads({p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}["cxr"])
    cases = {
        None: "not exported by cxr",
        "{not json": "not JSON",
        json.dumps({"classes": ["A", "B"]}): "fields missing",
        json.dumps({**meta, "preprocessing": {"size": "x"}}): "checksum",
        json.dumps({**meta, "classes": ["A"]}): r"needs 2\+ classes",
        json.dumps({**meta, "threshold": None}): "do not match their checksum",
    }
    for value, words in cases.items():
        with pytest.raises(CxrError, match=words):
            load_predictor(_onnx_with(onnx_file, tmp_path, value))
    assert load_predictor(onnx_file).card.classes == ("NORMAL", "PNEUMONIA")


FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(
    which=st.sampled_from(["pt", "onnx"]),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_fuzz_model_files(model_file, onnx_file, tmp_path, which, edits, cut):
    source = model_file if which == "pt" else onnx_file
    raw = bytearray(source.read_bytes())
    for where, value in edits:
        raw[min(int(where * len(raw)), len(raw) - 1)] = value
    if cut is not None:
        raw = raw[: int(cut * len(raw))]
    path = tmp_path / f"fuzzed.{which}"
    path.write_bytes(bytes(raw))
    try:
        predictor = load_predictor(path)
    except CxrError as exc:
        assert "fuzzed" in str(exc)
        return
    # loaded: then the bytes that changed were outside what the checksum covers, and it predicts
    # exactly as the original does
    batch = torch.zeros(1, 1, 224, 224).numpy()
    assert (predictor.predict(batch) == load_predictor(source).predict(batch)).all()


def test_a_pickle_is_not_executed(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    buffer = io.BytesIO()
    torch.save({"format": "cxr-model/2", "x": Boom()}, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(CxrError, match="not a readable cxr model file"):
        load_predictor(path)
