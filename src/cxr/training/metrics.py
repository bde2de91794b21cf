"""Validation metrics computed during training; scikit-learn does the arithmetic."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auroc(targets: np.ndarray, probs: np.ndarray) -> float:
    """Binary AUROC on the second class, or macro one-vs-rest; NaN when a class is absent."""
    if len(np.unique(targets)) < probs.shape[1]:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(targets, probs[:, 1]))
    return float(roc_auc_score(targets, probs, multi_class="ovr", average="macro"))


def one_vs_rest_auroc(targets: np.ndarray, probs: np.ndarray, index: int) -> float:
    """AUROC of class `index` against all others; NaN when it is absent or alone."""
    truth = (targets == index).astype(int)
    if not 0 < truth.sum() < len(truth):
        return float("nan")
    return float(roc_auc_score(truth, probs[:, index]))
