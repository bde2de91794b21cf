"""`score` on a 3-class model's predictions: every class pair and class gets its AUROC with a
patient-bootstrap interval (the report and `cxr evaluate` print them), and the arg-max's
confidence its ECE."""

import numpy as np
import pytest

from cxr.data.preprocess import Preprocessing
from cxr.evaluation.conclusions import next_step
from cxr.evaluation.predictions import Predictions, score
from cxr.models.card import ModelCard

CLASSES = ("bacterial", "normal", "viral")


def _three_classes(seed=0, n=90):
    """Normal told apart perfectly; bacterial and viral only roughly, as on Kermany."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n // 3)
    probs = np.zeros((n, 3))
    pneumonia = y != 1
    lean = np.clip(rng.normal(0.5 + 0.25 * (y == 0) - 0.25 * (y == 2), 0.2), 0.05, 0.95)
    probs[pneumonia, 0] = 0.9 * lean[pneumonia]
    probs[pneumonia, 2] = 0.9 * (1 - lean[pneumonia])
    probs[pneumonia, 1] = 0.1
    probs[~pneumonia] = [0.05, 0.9, 0.05]
    card = ModelCard(
        architecture="cxr_cnn", args={}, classes=CLASSES, preprocessing=Preprocessing(size=64)
    )
    names = [f"{k}.png" for k in range(n)]
    labels = [CLASSES[k] for k in y]
    return Predictions("m", card, names, names, names, labels, probs, "test")


def test_every_pair_and_class_gets_an_auroc_with_its_interval():
    s = score(_three_classes(), bootstrap=200)
    m, ci = s["metrics"], s["ci95"]
    assert set(m["pairwise_auroc"]) == {"bacterial vs normal", "bacterial vs viral",
                                        "normal vs viral"}  # fmt: skip
    assert m["pairwise_auroc"]["bacterial vs normal"] == 1.0
    assert ci["auroc bacterial vs normal"] == pytest.approx([1.0, 1.0])
    low, high = ci["auroc bacterial vs viral"]
    assert 0.6 < low < m["pairwise_auroc"]["bacterial vs viral"] < high < 1.0
    for key in ("ece", "auroc_bacterial", "auroc_viral"):  # the ECE's value: test_classification
        low, high = ci[key]
        assert low < high, key


def test_a_3_class_model_is_not_sent_to_cxr_calibrate_which_maps_binary_models_only():
    """Its ECE is a figure now; `cxr calibrate` refuses the vector scaling a 3-class model needs."""
    p = _three_classes()
    s = score(p, bootstrap=50)
    assert s["metrics"]["ece"] > 0.05  # under-confident: the interval reaches past the bound
    step = next_step(p, s)
    assert "calibrate" not in step and step.endswith("keep monitoring new batches.")
