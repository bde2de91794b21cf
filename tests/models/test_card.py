"""The model card's rules on small synthetic arrays, each against a value worked out by hand:
which class is positive, the one decision rule (p >= threshold, so p equal to it is positive),
the binary view, the worklist order, calibration through a save and load, and the dataset a card
names."""

import numpy as np
import pytest
from PIL import Image

from cxr.data.preprocess import Preprocessing
from cxr.errors import CxrError
from cxr.metrics.calibration import Calibration
from cxr.models.card import ModelCard, Threshold, positive_index

PREP = Preprocessing(size=64)


def _card(classes=("NORMAL", "PNEUMONIA"), threshold=0.7, **kw) -> ModelCard:
    positive = classes[positive_index(classes)] if len(classes) == 2 else None
    rule = Threshold(threshold, "fixed", positive) if positive and threshold is not None else None
    return ModelCard("cxr_cnn", {}, tuple(classes), PREP, threshold=rule, **kw)


def test_the_positive_class_is_the_one_that_is_not_normal_whatever_its_place():
    assert _card(("NORMAL", "PNEUMONIA")).positive_class == "PNEUMONIA"
    assert _card(("PNEUMONIA", "NORMAL")).positive_class == "PNEUMONIA"
    assert _card(("cat", "dog"), threshold=None).positive_class == "dog"
    assert _card(("normal", "bacterial", "viral"), threshold=None).positive is None


def test_decide_is_p_at_or_above_the_threshold():
    card = _card(threshold=0.7)
    probs = np.array([[0.31, 0.69], [0.3, 0.7], [0.29, 0.71], [1.0, 0.0]])
    assert card.decide(probs).tolist() == [0, 1, 1, 0]
    assert card.decide(probs, threshold=0.0).tolist() == [1, 1, 1, 1]
    swapped = _card(("PNEUMONIA", "NORMAL"), threshold=0.7)
    assert swapped.decide(probs[:, ::-1]).tolist() == [1, 0, 0, 1]  # index of the called class
    three = _card(("normal", "bacterial", "viral"), threshold=None)
    assert three.decide(np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])).tolist() == [2, 0]


def test_binary_view_and_urgency():
    card = _card(("PNEUMONIA", "NORMAL"), threshold=0.5)
    truth, p = card.binary_view(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    assert truth.tolist() == [1, 0, 0] and p.tolist() == [0.9, 0.2, 0.6]
    three = _card(("bacterial", "normal", "viral"), threshold=None)
    probs = np.array([[0.1, 0.8, 0.1], [0.3, 0.2, 0.5], [0.7, 0.25, 0.05]])
    truth, p = three.binary_view(np.array([1, 0, 2]), probs)
    assert truth.tolist() == [0, 1, 1] and np.allclose(p, [0.2, 0.8, 0.75])
    assert np.argsort(-three.urgency(probs)).tolist() == [2, 1, 0]  # largest non-normal first
    with pytest.raises(CxrError, match="no binary view"):
        _card(("a", "b", "c"), threshold=None).binary_view(np.array([0]), probs[:1])


def test_calibration_and_threshold_survive_the_file_round_trip():
    calibration = Calibration("platt", (1.5, 1.5), (0.0, -0.4), {"none": 0.1}, "kept")
    card = _card(threshold=0.42, calibration=calibration)
    again = ModelCard.from_dict(card.to_dict())
    assert again == card
    logits = np.array([[0.0, 1.0], [2.0, -1.0]])
    expected = np.exp(logits * 1.5 + [0.0, -0.4])
    expected /= expected.sum(1, keepdims=True)
    assert np.allclose(again.probabilities(logits), expected)
    moved = again.with_threshold(0.9, "override (--threshold)")
    assert moved.threshold.value == 0.9 and moved.threshold.positive_class == "PNEUMONIA"
    assert card.threshold.value == 0.42  # the original is unchanged


def test_dataset_for_reads_a_folder_with_the_cards_label_scheme(tmp_path):
    for label, names in {
        "NORMAL": ["a"],
        "PNEUMONIA": ["person1_virus_1", "person2_bacteria_2"],
    }.items():
        (tmp_path / label).mkdir()
        for name in names:
            Image.new("L", (80, 80), 100).save(tmp_path / label / f"{name}.jpeg")
    found = _card(label_scheme="kermany3", threshold=None,
                  classes=("bacterial", "normal", "viral")).dataset_for(tmp_path)  # fmt: skip
    assert sorted(r.label for r in found.records) == ["bacterial", "normal", "viral"]
    with pytest.raises(CxrError, match="records no training data"):
        _card().dataset_for()
