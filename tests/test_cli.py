"""The `cxr` command as a user runs it: a real subprocess, real data, real exit codes; and its
grammar read from the command tree itself."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.cli import early
from cxr.cli.benchmark import BACKENDS
from cxr.cli.common import CalibrationMethod, ModelFormat, OutputFormat, SchemeName, Split
from cxr.cli.radiology import Role
from tests.conftest import save_tiny_model
from tests.test_grammar import commands

MODEL_FIRST = ("evaluate", "calibrate", "export", "predict", "serve", "benchmark predict")


def _cxr(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_help_lists_every_verb():
    result = _cxr("--help")
    assert result.returncode == 0
    for verb in ("data", "train", "study", "evaluate", "calibrate", "compare", "report",
                 "predict", "export", "serve", "benchmark", "listen", "reviews"):  # fmt: skip
        assert f"│ {verb} " in result.stdout, verb


def test_the_same_option_has_the_same_help_everywhere():
    """tests/test_grammar.py holds names and types alike; these also read alike."""
    helps: dict[str, set[str]] = {}
    for command in commands().values():
        for p in command.params:
            if p.param_type_name == "option":
                helps.setdefault(p.opts[0], set()).add(p.help)
    for option in ("--bootstrap", "--workers", "--scheme", "--negative", "--config"):
        assert len(helps[option]) == 1, (option, helps[option])


def _refused(*args, cwd=None) -> str:
    """`cxr ARGS` must exit 2 with one clear message and no traceback, torch never imported (so
    in well under a second: importing torch alone takes longer); what it said, unwrapped from
    the parser's box."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cxr", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )
    imported = [line.rpartition("|")[2].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]  # fmt: skip
    said = result.stdout + "".join(
        line for line in result.stderr.splitlines(True) if not line.startswith("import time:")
    )
    assert result.returncode == 2, (args, said)
    assert "cxr.cli" in imported and not {"torch", "lightning", "onnx"} & set(imported), args
    assert "Traceback" not in said, args
    return " ".join(said.replace("│", " ").split())


def test_argument_errors_come_before_torch_is_imported(tmp_path):
    for command in ("evaluate", "listen"):  # listen: before its node (torch, pynetdicom) loads
        said = _refused(command, tmp_path / "missing.pt")
        assert "missing.pt: no such model file" in said, command
    taken, model = tmp_path / "taken.csv", tmp_path / "m.pt"
    taken.write_text("mine\n")
    model.write_bytes(b"not read: the refusal comes first")
    for args in (("predict", model, tmp_path, "--out", taken),
                 ("export", model, "--out", taken),
                 ("data", "inspect", tmp_path, "--out", tmp_path),
                 ("compare", tmp_path, tmp_path, "--out", tmp_path),
                 ("benchmark", "train", "cxr_cnn", "--out", taken)):  # fmt: skip
        said = _refused(*args)
        assert "exists; cxr never overwrites (choose another --out)" in said, args
    assert taken.read_text() == "mine\n"


def test_a_run_folder_given_as_the_model_is_refused_with_the_file_to_give(tmp_path):
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    (run / "model.pt").write_bytes(b"never read")
    hint = "runs/demo is a run folder; use runs/demo/model.pt"
    for command in (*MODEL_FIRST, "listen"):
        assert hint in _refused(*command.split(), "runs/demo", cwd=tmp_path), command
    assert "runs is a folder, not a model file" in _refused("predict", "runs", cwd=tmp_path)


@pytest.mark.parametrize(
    ("args", "bad", "choices"),
    [
        (("evaluate", "{model}", "--split", "tset"), "tset", Split),
        (("calibrate", "{model}", "--method", "plat"), "plat", CalibrationMethod),
        (("predict", "{model}", "{model}", "--format", "jpeg"), "jpeg", OutputFormat),
        (("export", "{model}", "--out", "m.onnx", "--to", "onnx-int9"), "onnx-int9", ModelFormat),
        (("data", "inspect", "--scheme", "kermany"), "kermany", SchemeName),
        (("reviews", "add-reviewer", "Ada", "--role", "boss"), "boss", Role),
    ],
)
def test_a_mistyped_choice_is_refused_naming_it_and_the_choices(tmp_path, args, bad, choices):
    model = tmp_path / "m.pt"
    model.write_bytes(b"never read")
    said = _refused(*(a.format(model=model) for a in args), cwd=tmp_path)
    expected = ", ".join(f"'{c.value}'" for c in choices)
    assert f"Invalid value for '{args[-2]}'" in said and f"'{bad}' is not one of {expected}" in said


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("evaluate", "{model}", "--label-map", "Normal"),
         "--label-map 'Normal': expected FOLDER_LABEL=MODEL_CLASS,..."),
        (("evaluate", "{model}", "--threshold", "1.5"),
         "Invalid value for '--threshold': Input should be less than or equal to 1"),
        (("predict", "{model}", "{model}", "--cam-class", "NORMAL"),
         "--cam-class chooses what the heat maps explain: add --cam FOLDER"),
        (("ensemble", "{model}", "--out", "e", "--threshold-rule", "sensitivity>=high"),
         "threshold rule 'sensitivity>=high': use sensitivity>=S, youden or fixed:T (0 to 1)"),
        (("benchmark", "predict", "cxr_cnn", "--backend", "onnx,onx"),
         f"--backend: 'onx' is not a backend; choose from all, {', '.join(BACKENDS)}"),
        (("benchmark", "predict", "cxr_cnn", "--batches", "1,8x"),
         "--batches: '8x' is not a batch size; e.g. --batches 1,8,32"),
        (("benchmark", "profile", "efficientnet_lite0", "--variants", "fp16-nhwc"),
         "--variants: 'fp16-nhwc' is not a precision-layout; choose from fp32-nchw, "
         "fp32-channels_last, bf16-nchw, bf16-channels_last"),
        (("listen", "{model}", "--send-to", "pacs:4242"),
         "--send-to 'pacs:4242': expected AET@host:port, e.g. ORTHANC@pacs:4242"),
        (("listen", "{model}", "--ae-title", "A_TITLE_TOO_LONG_"),
         "--ae-title 'A_TITLE_TOO_LONG_': 1 to 16 printable ASCII characters, no backslash"),
        (("reviews", "add-reviewer", "Ada", "--db", "worklist.db"),
         "--db: not a database URL; e.g. sqlite:///worklist.db"),
        (("data", "download", "kermani", "--out", "k"), "'kermani' is not one of 'kermany'"),
        (("benchmark", "profile", "efficientnet_lite9"), "'efficientnet_lite9' is not one of"),
        (("benchmark", "predict", "lite0"),
         "'lite0' is neither a model file nor a registered architecture"),
        (("train", "optim.epoch=1"), "unknown config key 'optim.epoch'"),
        (("study", "optim.epoch=1"), "unknown config key 'optim.epoch'"),
        (("cv", "optim.epoch=1"), "unknown config key 'optim.epoch'"),
        (("cv", "--folds", "1"), "Invalid value for '--folds': Input should be greater than or "
         "equal to 2"),
    ],
)  # fmt: skip
def test_a_malformed_value_is_refused_before_any_work(tmp_path, args, message):
    model = tmp_path / "m.pt"
    model.write_bytes(b"never read")
    assert message in _refused(*(a.format(model=model) for a in args), cwd=tmp_path)
    assert not (tmp_path / "reviews").exists() and not (tmp_path / "worklist.db").exists()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A binary model file, its ONNX export and a three-class model file."""
    import dataclasses

    from cxr.inference.export import export_onnx
    from cxr.models import create_model, save_model

    folder = tmp_path_factory.mktemp("models")
    binary = save_tiny_model(folder / "binary.pt")
    three = create_model("cxr_cnn", num_classes=3)
    three.card = dataclasses.replace(three.card, classes=("normal", "bacterial", "viral"))
    return {
        "binary": binary,
        "onnx": export_onnx(binary, folder / "binary.onnx"),
        "three": save_model(folder / "three.pt", three),
    }


def test_what_the_model_and_the_images_rule_out_is_refused_before_torch(models, data, tmp_path):
    """A missing label map, a split the folder lacks, a class the model does not predict: the
    model's card and the folder's layout are read without torch, so these wait for nothing."""
    covid, kermany = data / "COVID-19_Radiography_Dataset", data / "chest_xray"
    classes = "the model's classes ['NORMAL', 'PNEUMONIA']"
    for model in (models["binary"], models["onnx"]):
        said = _refused("evaluate", model, covid)
        assert (
            f"labels ['COVID', 'Normal', 'Viral Pneumonia'] are not among {classes} "
            "(map them with --label-map COVID=CLASS)"
        ) in said
    said = _refused("evaluate", models["binary"], covid, "--label-map", "COVID=PNEUMONIA,"
                    "Normal=NORMAL")  # fmt: skip
    assert f"labels ['Viral Pneumonia'] are not among {classes}" in said
    said = _refused("evaluate", models["binary"], covid, "--label-map", "COVID=COVID")
    assert "--label-map names ['COVID'], not classes of the model (NORMAL, PNEUMONIA)" in said
    said = _refused("evaluate", models["binary"], kermany)
    assert f"{kermany} has splits train: choose one with --split" in said
    said = _refused("evaluate", models["binary"], kermany, "--split", "test")
    assert f"{kermany}: no split 'test'; it has train (and tuning, internal-test)" in said
    said = _refused("evaluate", models["binary"], kermany, "--split", "internal-test")
    assert "binary.pt records no training data settings: --split internal-test needs them" in said
    said = _refused("evaluate", models["three"], covid, "--threshold", "0.5")
    assert "--threshold applies to binary models only" in said
    said = _refused("calibrate", models["three"], "--predictions", models["binary"],
                    "--method", "platt")  # fmt: skip
    assert "--method platt calibrates binary models; " in said and "has 3 classes" in said
    said = _refused("predict", models["binary"], covid, "--cam", tmp_path / "c", "--cam-class",
                    "COVID")  # fmt: skip
    assert "no class 'COVID' in this model; it predicts NORMAL, PNEUMONIA" in said
    assert not (tmp_path / "c").exists()


def test_the_early_reading_agrees_with_the_full_one(models, data, tmp_path):
    """The card read without torch is the card the model loads with; the folder's splits and
    labels are the ones discovery finds; the constants copied to stay light are the library's."""
    from cxr.data import discovery, labels
    from cxr.evaluation.evaluate import PROTOCOL_PARTS
    from cxr.inference import benchmark, predictor
    from cxr.metrics.calibration import FITTERS
    from cxr.models.card import ModelCard
    from cxr.models.io import read_card
    from cxr.store.reviewers import ROLES

    assert ModelCard.from_dict(early.model_card(models["binary"])) == read_card(models["binary"])
    card = {k: v for k, v in early.model_card(models["onnx"]).items() if k != "sha256"}
    assert ModelCard.from_dict(card) == predictor.OnnxPredictor(models["onnx"]).card
    assert early.model_card(data / "chest_xray" / "train" / "NORMAL" / "IM-0115-0001.jpeg") is None
    mixed = tmp_path / "mixed"  # what is not an image names no class
    normal = "chest_xray/train/NORMAL/IM-0115-0001.jpeg"
    links = {
        "NORMAL": normal,
        "PNEUMONIA/scans": "dicom_cxr/nih_udacity/test1.dcm",  # no suffix: found by its magic
        "notes": "README.md",
        "notes/masks": normal,
    }
    for folder, source in links.items():
        (mixed / folder).mkdir(parents=True)
        (mixed / folder / Path(source).name.removesuffix(".dcm")).symlink_to(data / source)
    roots = ("chest_xray", "chest_xray_originals", "COVID-19_Radiography_Dataset",
             "dicom_cxr/kermany_wrapped")  # fmt: skip
    for root in (mixed, *(data / name for name in roots)):
        found: dict = {}
        for record in discovery.discover(root).records:
            found.setdefault(record.split, set()).add(record.label)
        assert early.dataset_layout(root) == found, root
    assert early.PROTOCOL_PARTS == PROTOCOL_PARTS and early.ONNX_META_KEY == predictor.ONNX_META_KEY
    assert set(Split) == {*discovery.SPLIT_NAMES.values(), *PROTOCOL_PARTS}
    assert set(CalibrationMethod) == {"auto", *FITTERS}
    assert set(SchemeName) == set(labels.SCHEMES) and set(Role) == set(ROLES)
    assert BACKENDS == benchmark.BACKENDS


def test_brackets_in_user_text_are_printed_as_typed(tmp_path):
    result = _cxr("data", "inspect", tmp_path / "cxr[dicom]" / "x[red]")
    assert result.returncode == 2
    assert f"{tmp_path}/cxr[dicom]/x[red]: no such file or folder" in result.stdout


def test_inspect_covid_layout(tmp_path, data):
    out = tmp_path / "inspect"
    result = _cxr("data", "inspect", data / "COVID-19_Radiography_Dataset", "--out", out)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"all": {"COVID": 240, "Normal": 240, "Viral Pneumonia": 240}}
    for figure in ("montage.png", "class_distribution.png"):  # drawn, not blank
        pixels = np.asarray(Image.open(out / figure).convert("L"), float)
        assert min(pixels.shape) > 200 and pixels.std() > 10, figure


def test_inspect_lists_bad_files_and_never_overwrites_by_default(tmp_path, damaged_folder):
    for expected in ("ds", "ds-2"):
        result = _cxr("data", "inspect", damaged_folder, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "unreadable files: 3" in result.stdout
        assert "truncated.jpeg" in result.stdout
        assert (tmp_path / "outputs" / "inspect" / expected / "summary.json").is_file()


def test_our_errors_are_one_line_not_a_traceback(tmp_path):
    result = _cxr("data", "inspect", tmp_path / "nowhere")
    assert result.returncode == 2
    assert "no such file or folder" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
