"""`cxr compare`'s rule for "the same images", on small synthetic predictions: content hashes
decide, paths never do."""

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import save_tiny_model

from cxr.data.preprocess import Preprocessing
from cxr.errors import CxrError
from cxr.evaluation.compare import aligned, compare
from cxr.evaluation.predictions import Predictions
from cxr.models.card import ModelCard, Threshold

CARD = ModelCard(
    architecture="cxr_cnn",
    args={},
    classes=("NORMAL", "PNEUMONIA"),
    preprocessing=Preprocessing(size=128),
    threshold=Threshold(0.5, "fixed:0.5", "PNEUMONIA"),
)


def _predictions(name, paths, hashes, labels, p_pneumonia, card=CARD):
    p = np.asarray(p_pneumonia, float)
    return Predictions(
        name=name,
        card=card,
        paths=list(paths),
        digest=list(hashes),
        patients=[f"patient{h}" for h in hashes],
        labels=list(labels),
        probs=np.stack([1 - p, p], axis=1),
        split="test",
    )


def test_rows_are_matched_by_hash_whatever_the_paths_and_order():
    a = _predictions("a", ["x/1.png", "x/2.png", "x/3.png"], "hij",
                     ["NORMAL", "PNEUMONIA", "PNEUMONIA"], [0.1, 0.8, 0.6])  # fmt: skip
    b = _predictions("b", ["/abs/x/3.png", "/abs/x/1.png", "/abs/x/2.png"], "jhi",
                     ["PNEUMONIA", "NORMAL", "PNEUMONIA"], [0.7, 0.2, 0.9])  # fmt: skip
    first, second = aligned([a, b])
    assert second.digest == ["h", "i", "j"] and second.paths[0] == "/abs/x/1.png"
    assert second.probs[:, 1].tolist() == [0.2, 0.9, 0.7]
    assert second.patients == first.patients and second.labels == first.labels


def test_identical_bytes_under_two_labels_pair_label_by_label():
    """Kermany holds byte-identical files filed under different classes: each copy pairs with
    the copy of the same label, never with the other."""
    a = _predictions("a", ["n/d.png", "p/d.png", "e.png"], "ddE", ["NORMAL", "PNEUMONIA", "NORMAL"],
                     [0.3, 0.3, 0.1])  # fmt: skip
    b = _predictions("b", ["p/d.png", "e.png", "n/d.png"], "dEd", ["PNEUMONIA", "NORMAL", "NORMAL"],
                     [0.4, 0.2, 0.4])  # fmt: skip
    _, second = aligned([a, b])
    assert second.paths == ["n/d.png", "p/d.png", "e.png"]
    assert second.labels == a.labels


def test_different_images_or_classes_are_refused_with_an_example():
    a = _predictions("a", ["1.png", "2.png"], "hi", ["NORMAL", "PNEUMONIA"], [0.1, 0.9])
    b = _predictions("b", ["1.png", "2.png"], "hk", ["NORMAL", "PNEUMONIA"], [0.1, 0.9])
    with pytest.raises(CxrError, match=r"different images \(2 not shared by content, e.g. 2.png"):
        aligned([a, b])
    other = ModelCard("cxr_cnn", {}, ("normal", "pneumonia"), Preprocessing(size=128))
    c = _predictions("c", ["1.png", "2.png"], "hi", ["normal", "pneumonia"], [0.1, 0.9], other)
    with pytest.raises(CxrError, match="only models of the same classes compare"):
        aligned([a, c])


def test_a_model_against_itself_under_other_paths_differs_in_nothing():
    rng = np.random.default_rng(0)
    labels = ["NORMAL"] * 10 + ["PNEUMONIA"] * 10
    hashes = [f"{k:064x}" for k in range(20)]
    p = rng.random(20)
    a = _predictions("m", [f"rel/{k}.png" for k in range(20)], hashes, labels, p)
    b = _predictions("m", [f"/abs/{k}.png" for k in range(20)][::-1], hashes[::-1], labels[::-1],
                     p[::-1])  # fmt: skip
    result = compare([a, b], bootstrap=20)
    (pair,) = result.pairs
    assert pair.delong.difference == 0 and pair.mcnemar.p_value == 1
    assert result.scores[0]["metrics"] == result.scores[1]["metrics"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "model.pt")


def _cxr(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "cxr", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_a_relative_and_an_absolute_path_are_the_same_images(model_file, data, tmp_path):
    """The same folder evaluated once by a relative and once by an absolute path, then compared
    by the command: the same 36 images, and the model against itself differs in nothing."""
    folder = data / "dicom_cxr" / "kermany_wrapped"
    (tmp_path / "data").symlink_to(folder.parent.resolve())
    for name, images in (("rel", "data/kermany_wrapped"), ("abs", folder.resolve())):
        result = _cxr("evaluate", model_file, images, "--out", name, "--bootstrap", 20,
                      "--workers", 0, cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
    rel, absolute = (
        list(csv.DictReader((tmp_path / n / "predictions.csv").open())) for n in ("rel", "abs")
    )
    assert rel[0]["path"].startswith("data/") and absolute[0]["path"].startswith("/")
    assert {r["digest"] for r in rel} == {r["digest"] for r in absolute}
    sha256 = hashlib.sha256(Path(absolute[0]["path"]).read_bytes()).hexdigest()
    assert absolute[0]["digest"] == sha256
    result = _cxr("compare", "rel", "abs", "--bootstrap", 20, "--out", "cmp", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "36 images, the same for every model" in result.stdout
    pair = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["pairs"][0]
    assert pair["mcnemar"]["only_a_right"] == pair["mcnemar"]["only_b_right"] == 0
    again = _cxr("compare", "rel", "abs", "--out", "cmp", cwd=tmp_path)
    assert again.returncode == 2 and "never overwrites" in again.stdout


def test_a_one_class_folder_is_evaluated_and_reported_without_noise(model_file, data, tmp_path):
    """A reviews export may hold corrections of one class only: no curve can be drawn, and the
    report says so instead of failing or printing library warnings."""
    folder = tmp_path / "reviewed" / "NORMAL"
    folder.mkdir(parents=True)
    for path in sorted((data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:3]:
        (folder / path.name).symlink_to(path)
    evaluated = _cxr("evaluate", model_file, folder.parent, "--out", tmp_path / "e",
                     "--bootstrap", 20, "--workers", 0)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    reported = _cxr("report", tmp_path / "e", "--out", tmp_path / "r.html", "--bootstrap", 20)
    assert reported.returncode == 0, reported.stdout + reported.stderr
    assert "Warning" not in reported.stderr and "warn" not in reported.stderr
    html = (tmp_path / "r.html").read_text()
    assert "On 3 images, AUROC is n/a" in html and "no PNEUMONIA images were missed" in html
