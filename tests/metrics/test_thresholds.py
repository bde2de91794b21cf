import numpy as np
import pytest

from cxr.errors import CxrError
from cxr.metrics.thresholds import choose_threshold

# Worked by hand. Descending thresholds give (sensitivity, specificity):
# 0.9 (.25, 1), 0.8 (.25, .75), 0.7 (.5, .75), 0.6 (.75, .75), 0.4 (1, .75), 0.35 (1, .5) ...
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P = np.array([0.1, 0.3, 0.35, 0.8, 0.4, 0.6, 0.7, 0.9])


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("sensitivity>=0.75", 0.6),
        ("sensitivity>=0.95", 0.4),
        ("youden", 0.4),
        ("fixed:0.5", 0.5),
    ],
)
def test_rules_against_hand_worked_values(rule, expected):
    assert choose_threshold(Y, P, rule) == pytest.approx(expected)


def test_collinear_roc_points_are_not_skipped():
    # (fpr, tpr) steps (0,.5) -> (.5,.75) -> (1,1) lie on a line; the middle one is the answer.
    y = np.array([1, 1, 0, 1, 0, 1])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    assert choose_threshold(y, p, "sensitivity>=0.75") == pytest.approx(0.6)


def test_unknown_rule():
    with pytest.raises(CxrError, match="unknown threshold rule"):
        choose_threshold(Y, P, "best")
