"""`cxr compare`'s rule for "the same images", on small synthetic predictions: content hashes
decide, paths never do."""

import numpy as np
import pytest

from cxr.errors import CxrError
from cxr.evaluation.compare import aligned, compare, identities
from cxr.evaluation.predictions import Predictions

CLASSES = ["NORMAL", "PNEUMONIA"]


def _predictions(name, paths, hashes, labels, p_pneumonia):
    p = np.asarray(p_pneumonia, float)
    return Predictions(
        name=name,
        classes=CLASSES,
        paths=list(paths),
        patients=[f"patient{h}" for h in hashes],
        labels=list(labels),
        probs=np.stack([1 - p, p], axis=1),
        threshold={"rule": "fixed:0.5", "positive_class": "PNEUMONIA", "value": 0.5},
        split="test",
        sha256=list(hashes),
    )


def test_rows_are_matched_by_hash_whatever_the_paths_and_order():
    a = _predictions("a", ["x/1.png", "x/2.png", "x/3.png"], "hij",
                     ["NORMAL", "PNEUMONIA", "PNEUMONIA"], [0.1, 0.8, 0.6])  # fmt: skip
    b = _predictions("b", ["/abs/x/3.png", "/abs/x/1.png", "/abs/x/2.png"], "jhi",
                     ["PNEUMONIA", "NORMAL", "PNEUMONIA"], [0.7, 0.2, 0.9])  # fmt: skip
    first, second = aligned([a, b])
    assert second.sha256 == ["h", "i", "j"] and second.paths[0] == "/abs/x/1.png"
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
    with pytest.raises(CxrError, match=r"different images \(2 not shared, e.g. 2.png\)"):
        aligned([a, b])
    c = _predictions("c", ["1.png", "2.png"], "hi", ["NORMAL", "PNEUMONIA"], [0.1, 0.9])
    c.classes = ["normal", "pneumonia"]
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


def test_predictions_without_hashes_get_them_from_the_files(tmp_path):
    (tmp_path / "one.png").write_bytes(b"same bytes")
    (tmp_path / "two.png").write_bytes(b"same bytes")
    old = _predictions("old", [tmp_path / "one.png", tmp_path / "two.png"], "ab",
                       ["NORMAL", "NORMAL"], [0.1, 0.2])  # fmt: skip
    old.paths, old.sha256 = [str(p) for p in old.paths], []
    (first, _), (second, _) = identities(old)
    assert first == second and len(first) == 64  # SHA-256 of identical bytes
    old.sha256, old.paths[0] = [], str(tmp_path / "gone.png")
    with pytest.raises(CxrError, match=r"gone\.png is gone"):
        identities(old)
