"""Decision thresholds chosen on validation predictions, never on test."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from cxr.errors import CxrError


def choose_threshold(y_true: np.ndarray, p_positive: np.ndarray, rule: str) -> float:
    """`sensitivity>=S`: the highest specificity whose sensitivity is at least S;
    `youden`: max(sensitivity + specificity - 1); `fixed:T`: T."""
    if rule.startswith("fixed:"):
        return float(rule.removeprefix("fixed:"))
    fpr, tpr, thresholds = roc_curve(y_true, p_positive, drop_intermediate=False)
    thresholds = np.minimum(thresholds, 1.0)  # sklearn puts +inf first
    if rule == "youden":
        return float(thresholds[np.argmax(tpr - fpr)])
    if rule.startswith("sensitivity>="):
        target = float(rule.removeprefix("sensitivity>="))
        ok = np.flatnonzero(tpr >= target)  # fpr rises with the index: the first is the best
        return float(thresholds[ok[0]])
    raise CxrError(f"unknown threshold rule {rule!r}; use sensitivity>=S, youden or fixed:T")
