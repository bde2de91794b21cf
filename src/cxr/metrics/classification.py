"""The one metrics module: training, evaluation, comparison and the report all read it.
scikit-learn does the arithmetic; what is here is which numbers, on which class, named how."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    roc_auc_score,
)


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


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else float("nan")


def reliability_bins(
    truth: np.ndarray, p: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width probability bins that hold predictions: (mean predicted probability, observed
    rate, count) per bin. The ECE and the reliability diagram are both drawn from these."""
    truth, p = np.asarray(truth, float), np.asarray(p, float)
    if len(truth) != len(p):
        raise ValueError(f"{len(truth)} labels and {len(p)} probabilities")
    which = np.minimum((p * bins).astype(int), bins - 1)
    used = [b for b in range(bins) if (which == b).any()]
    predicted = np.array([p[which == b].mean() for b in used])
    observed = np.array([truth[which == b].mean() for b in used])
    counts = np.array([int((which == b).sum()) for b in used])
    return predicted, observed, counts


def expected_calibration_error(truth: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Binary ECE: the |observed rate - mean predicted probability| of equal-width probability
    bins, weighted by how many predictions fall in each (Guo et al. 2017 on the positive class)."""
    predicted, observed, counts = reliability_bins(truth, p, bins)
    return float(np.sum(counts * np.abs(observed - predicted)) / max(counts.sum(), 1))


def binary_metrics(truth: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Everything a clinician asks of a binary test, at one frozen threshold (p >= threshold is
    positive). `truth` is 1 for the positive class."""
    truth = np.asarray(truth).astype(int)
    p = np.asarray(p, float)
    decided = (p >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(truth, decided, labels=[0, 1]).ravel()
    both = 0 < truth.sum() < len(truth)
    precision = _ratio(tp, tp + fp)
    sensitivity = _ratio(tp, tp + fn)
    return {
        "n": len(truth),
        "positives": int(truth.sum()),
        "accuracy": _ratio(tp + tn, len(truth)),
        "balanced_accuracy": float(balanced_accuracy_score(truth, decided)) if both else np.nan,
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "precision": precision,
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auroc": float(roc_auc_score(truth, p)) if both else np.nan,
        "average_precision": float(average_precision_score(truth, p)) if both else np.nan,
        "brier": float(np.mean((p - truth) ** 2)),
        "ece": expected_calibration_error(truth, p),
        "tp": int(tp),
        "fp": int(fp),
        "tn": int(tn),
        "fn": int(fn),
    }


def multiclass_metrics(targets: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """Per-class one-vs-rest AUROC and PR-AUC, their macro and prevalence-weighted means,
    accuracy of the arg-max and its confusion matrix (rows: truth, columns: prediction), and
    the ECE of the arg-max's confidence (what calibration is chosen on: cxr.metrics.calibration)."""
    targets = np.asarray(targets)
    predicted = probs.argmax(1)
    per_class = {}
    for i, name in enumerate(classes):
        truth = (targets == i).astype(int)
        present = 0 < truth.sum() < len(truth)
        per_class[name] = {
            "n": int(truth.sum()),
            "auroc": one_vs_rest_auroc(targets, probs, i),
            "average_precision": float(average_precision_score(truth, probs[:, i]))
            if present
            else np.nan,
        }
    weights = np.array([per_class[c]["n"] for c in classes], float)
    out = {
        "n": len(targets),
        "accuracy": float((predicted == targets).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(targets, predicted)),
        "ece": expected_calibration_error(predicted == targets, probs.max(1)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(
            targets, predicted, labels=range(len(classes))
        ).tolist(),
    }
    for key in ("auroc", "average_precision"):
        values = np.array([per_class[c][key] for c in classes], float)
        out[f"macro_{key}"] = float(np.mean(values))
        out[f"weighted_{key}"] = float(np.sum(values * weights) / weights.sum())
    return out
