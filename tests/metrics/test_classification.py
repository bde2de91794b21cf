"""Every metric against numbers worked by hand on small examples (see the comments)."""

import numpy as np
import pytest

from cxr.metrics.classification import (
    binary_metrics,
    expected_calibration_error,
    multiclass_metrics,
)

TRUTH = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.4, 0.3, 0.6, 0.2, 0.1, 0.1, 0.05, 0.7])


def test_binary_metrics_by_hand():
    m = binary_metrics(TRUTH, P, 0.5)
    # at 0.5: TP .9 .8; FN .4 .3; FP .6 .7; TN the other four
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 2, 2, 4)
    assert m["sensitivity"] == 0.5 and m["specificity"] == pytest.approx(4 / 6)
    assert m["precision"] == 0.5 and m["npv"] == pytest.approx(4 / 6)
    assert m["accuracy"] == 0.6 and m["f1"] == 0.5
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 4 / 6) / 2)
    # pairs where a positive outranks a negative: .9 and .8 beat all 6, .4 and .3 beat 4 each
    assert m["auroc"] == pytest.approx(20 / 24)
    # positives met at ranks 1, 2, 5, 6: precision 1, 1, 3/5, 4/6
    assert m["average_precision"] == pytest.approx((1 + 1 + 3 / 5 + 4 / 6) / 4)
    # squared errors: positives .01 .04 .36 .49, negatives .36 .04 .01 .01 .0025 .49
    assert m["brier"] == pytest.approx(1.8125 / 10)
    # ten bins, one or two predictions each: |rate - mean p| weighted, summed, over 10
    assert m["ece"] == pytest.approx(3.35 / 10)


def test_threshold_is_inclusive_and_empty_classes_give_nan():
    assert binary_metrics(TRUTH, P, 0.4)["tp"] == 3  # p >= threshold is positive
    m = binary_metrics(np.zeros(4), np.array([0.1, 0.2, 0.6, 0.3]), 0.5)
    assert np.isnan(m["sensitivity"]) and np.isnan(m["auroc"]) and m["specificity"] == 0.75


def test_calibration_error_zero_when_rates_match():
    p = np.array([0.25] * 4 + [0.75] * 4)
    truth = np.array([1, 0, 0, 0, 1, 1, 1, 0])  # 1 of 4 at p .25, 3 of 4 at p .75
    assert expected_calibration_error(truth, p) == pytest.approx(0)


def test_multiclass_metrics_by_hand():
    targets = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.4, 0.5, 0.1],  # class 0 called 1
            [0.1, 0.7, 0.2],
            [0.2, 0.6, 0.2],
            [0.1, 0.2, 0.7],
            [0.1, 0.3, 0.6],
        ]
    )
    m = multiclass_metrics(targets, probs, ["a", "b", "c"])
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)
    # class b against the rest: b's .7 .6 against .1 .5 .2 .3 -> all 8 pairs won
    assert m["per_class"]["b"]["auroc"] == 1.0
    # class a: .8 .4 against .1 .2 .1 .1 -> all won; class c: .7 .6 against .1 .1 .2 .2 -> all
    assert m["macro_auroc"] == 1.0
    # the arg-max's confidence: .8 .7 .6 .7 .6 right, .5 wrong -> (.2 + .3 + .4 + .3 + .4 + .5) / 6
    assert m["ece"] == pytest.approx(0.35)
