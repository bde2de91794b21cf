"""A batch unlike the tuning split is said in one line, with the label count recalibration
needs; a batch like it says nothing. Scores drawn to a known shape, on a real card layout."""

import dataclasses
import re

import numpy as np
import pytest

from cxr.data.preprocess import Preprocessing
from cxr.evaluation.drift import ALPHA, label_budget, score_shift, shift_line
from cxr.models.card import ModelCard, Threshold


def _card(seed=0, n=600):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.where(y == 1, rng.beta(6, 2, n), rng.beta(2, 6, n))
    return ModelCard(
        architecture="cxr_cnn",
        args={},
        classes=("NORMAL", "PNEUMONIA"),
        preprocessing=Preprocessing(size=64),
        threshold=Threshold(0.5, "youden", "PNEUMONIA"),
        tuning={"targets": y.tolist(), "probs": np.stack([1 - p, p], 1).round(6).tolist()},
    )


def test_a_batch_like_the_tuning_split_says_nothing():
    card = _card()
    same = np.asarray(card.tuning["probs"])[::3]
    assert shift_line(card, same) is None
    assert score_shift(card, same)["p_value"] >= ALPHA


def test_mid_range_scores_on_normal_films_are_called_a_shift_with_a_label_count():
    card = _card()
    rng = np.random.default_rng(1)
    p = rng.beta(4, 4, 200)  # confident mid-range scores, as on a new site's normal films
    line = shift_line(card, np.stack([1 - p, p], 1))
    found = score_shift(card, np.stack([1 - p, p], 1))
    assert found["differs"] and found["p_value"] < ALPHA
    needed, curve = label_budget(card)
    assert f"D = {found['statistic']:.3f}" in line and "Kolmogorov–Smirnov" in line
    assert f"about {needed} labelled images" in line
    sizes = [n for n, _ in curve]
    assert needed in sizes and curve[-1][1] <= curve[0][1]  # more labels, a closer calibration
    assert all(ece > curve[-1][1] + 0.01 for n, ece in curve if n < needed)


def test_no_stored_tuning_predictions_no_claim():
    card = dataclasses.replace(_card(), tuning={})
    assert shift_line(card, np.array([[0.5, 0.5], [0.2, 0.8]])) is None


def test_medians_near_certain_are_never_printed_as_certain():
    """Scores piled at the top (a batch of sick films, median 0.99995) were printed '1.000'."""
    card = _card()
    p = 1 - np.random.default_rng(2).uniform(1e-6, 1e-4, 200)
    line = shift_line(card, np.stack([1 - p, p], 1))
    shown = re.search(r"median P\(PNEUMONIA\) (\S+) here", line)[1]
    assert shown != "1.000" and float(shown) == pytest.approx(np.median(p), abs=1e-4), shown
