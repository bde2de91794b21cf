"""Damaged and crafted model files: each is refused with one CxrError naming the file and the
problem (the CLI prints it as one `error:` line), never loaded silently, never a traceback."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
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


def _prep(**values):
    return _resealed(lambda p: p["card"]["preprocessing"].update(values))


def _card(**values):
    return _resealed(lambda p: p["card"].update(values))


def _nan_weights(payload):
    name = max(payload["state_dict"], key=lambda k: payload["state_dict"][k].numel())
    payload["state_dict"][name] = torch.full_like(payload["state_dict"][name], float("nan"))


# A re-sealed file (card or weights edited, checksum recomputed) is consistent, so only the card's
# own rules and the load-time probe can refuse it: one clear sentence per kind of impossibility.
RESEALED = {
    "size 0": (_prep(size=0), "size 0: a whole number of pixels"),
    "size negative": (_prep(size=-224), "size -224"),
    "size not a number": (_prep(size="224"), "size '224'"),
    "size huge": (_prep(size=10**6), "size 1000000"),
    "std 0": (_prep(std=0.0), "std 0.0: must be above 0"),
    "std NaN": (_prep(std=float("nan")), "std nan: not a finite number"),
    "mean infinite": (_prep(mean=float("inf")), "mean inf: not a finite number"),
    "unknown resize": (_prep(resize="crop"), "unknown resize rule 'crop'"),
    "duplicate classes": (_card(classes=["NORMAL", "NORMAL"]), "named twice"),
    "blank class": (_card(classes=["NORMAL", " "]), "two or more named classes"),
    "three classes, two outputs": (
        _resealed(
            lambda p: p["card"].update(
                classes=["NORMAL", "PNEUMONIA", "COVID"],
                threshold=None,
                calibration={"method": "temperature", "scale": [1, 1, 1], "shift": [0, 0, 0]},
            )
        ),
        "gives 2 outputs per image but its card names 3 classes",
    ),
    "threshold with three classes": (
        _card(classes=["NORMAL", "PNEUMONIA", "COVID"]),
        "a threshold applies to binary models",
    ),
    "unknown positive class": (
        _resealed(lambda p: p["card"]["threshold"].update(positive_class="COVID")),
        "positive class 'COVID' is not one of",
    ),
    "threshold NaN": (
        _resealed(lambda p: p["card"]["threshold"].update(value=float("nan"))),
        "threshold nan: must be a probability",
    ),
    "threshold above 1": (
        _resealed(lambda p: p["card"]["threshold"].update(value=1.5)),
        "threshold 1.5: must be a probability",
    ),
    "calibration NaN": (
        _resealed(lambda p: p["card"]["calibration"].update(scale=[float("nan"), 1.0])),
        "scale and shift must be finite",
    ),
    "calibration width": (
        _resealed(lambda p: p["card"]["calibration"].update(scale=[1.0], shift=[0.0])),
        "1 scales and 1 shifts for 2 classes",
    ),
    "NaN weights": (_resealed(_nan_weights), "non-finite outputs"),
}


def test_a_nan_model_is_refused_by_the_cli_in_one_line(model_file, tmp_path, data):
    crafted = _crafted(model_file, tmp_path, _resealed(_nan_weights))
    image = next((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))
    result = subprocess.run(
        [sys.executable, "-m", "cxr", "predict", str(crafted), str(image)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.strip().startswith("error:") and "non-finite" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(CRAFTED | RESEALED))
def test_crafted_model_files_are_one_clear_error(model_file, tmp_path, case):
    """Damaged files, and re-sealed ones whose card cannot be true: one sentence each."""
    change, words = (CRAFTED | RESEALED)[case]
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


CARD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.one_of(st.text(max_size=4), st.floats()), max_size=4),
)
CARD_FIELDS = [
    ("preprocessing", "size"),
    ("preprocessing", "mean"),
    ("preprocessing", "std"),
    ("preprocessing", "resize"),
    ("threshold", "value"),
    ("threshold", "positive_class"),
    ("calibration", "scale"),
    ("calibration", "method"),
    (None, "classes"),
    (None, "label_scheme"),
]


@FUZZ
@given(where=st.sampled_from(CARD_FIELDS), value=CARD_VALUES)
def test_fuzz_resealed_card_fields(model_file, tmp_path, where, value):
    """Any value in any card field of a re-sealed file: it loads and predicts finite
    probabilities, or it is one CxrError naming the file; never another exception."""
    group, key = where

    def change(payload):
        card = payload["card"]
        (card[group] if group else card)[key] = value

    try:
        predictor = load_predictor(_crafted(model_file, tmp_path, _resealed(change)))
    except CxrError as exc:
        assert "crafted.pt" in str(exc)
        return
    size = predictor.card.preprocessing.size
    probs = predictor.predict(torch.zeros(1, 1, size, size).numpy())
    assert probs.shape == (1, len(predictor.card.classes)) and np.isfinite(probs).all()
