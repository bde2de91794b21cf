"""Decision thresholds chosen on tuning predictions, never on test, and how far they can be
trusted: operating points at target sensitivities with patient-bootstrap intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_curve

from cxr.errors import CxrError
from cxr.metrics.stats import (
    percentile_intervals,
    proportion_interval,
    resample,
    resampling_units,
)

TARGET_SENSITIVITIES = (0.90, 0.95, 0.98)


def choose_threshold(y_true: np.ndarray, p_positive: np.ndarray, rule: str) -> float:
    """`sensitivity>=S`: the highest specificity whose sensitivity is at least S;
    `youden`: max(sensitivity + specificity - 1); `fixed:T`: T."""
    if rule.startswith("fixed:"):
        return float(rule.removeprefix("fixed:"))
    if rule == "youden":
        fpr, tpr, thresholds = _roc(y_true, p_positive)
        return float(thresholds[np.argmax(tpr - fpr)])
    if rule.startswith("sensitivity>="):
        return sensitivity_thresholds(y_true, p_positive, [float(rule.split(">=")[1])])[0]
    raise CxrError(f"unknown threshold rule {rule!r}; use sensitivity>=S, youden or fixed:T")


def _roc(y_true: np.ndarray, p_positive: np.ndarray):
    fpr, tpr, thresholds = roc_curve(y_true, p_positive, drop_intermediate=False)
    return fpr, tpr, np.minimum(thresholds, 1.0)  # sklearn puts +inf first


def sensitivity_thresholds(
    y_true: np.ndarray, p_positive: np.ndarray, targets: Sequence[float]
) -> list[float]:
    """For each target S, the highest threshold (so the best specificity) whose sensitivity is at
    least S under the one rule `positive iff p >= threshold`: the k-th highest positive score,
    k/n_pos being the first share that reaches S (what the ROC curve gives, with no ROC pass,
    which is what the bootstrap's thousand re-choices need)."""
    pos = np.sort(np.asarray(p_positive, float)[np.asarray(y_true) == 1])[::-1]
    if not len(pos):
        raise CxrError("no positive images: no threshold reaches a sensitivity")
    shares = np.arange(1, len(pos) + 1) / len(pos)
    return [float(min(pos[np.flatnonzero(shares >= s)[0]], 1.0)) for s in targets]


def _counts(truth: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, tuple[int, int]]:
    """(right, cases) among positives and negatives under `positive iff p >= threshold`."""
    decided = p >= threshold
    pos, neg = truth == 1, truth == 0
    return {
        "sensitivity": (int(decided[pos].sum()), int(pos.sum())),
        "specificity": (int((~decided[neg]).sum()), int(neg.sum())),
    }


def _rates(truth: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float]:
    (tp, npos), (tn, nneg) = _counts(truth, p, threshold).values()
    return (tp / npos if npos else np.nan), (tn / nneg if nneg else np.nan)


def threshold_sweep(truth: np.ndarray, p: np.ndarray) -> dict[str, list]:
    """The confusion counts at every distinct probability as threshold, highest first, under the
    one rule `positive iff p >= threshold`: a threshold slider looks its counts up here instead
    of recomputing them. Between two listed thresholds the counts are those of the higher one;
    above the first, nothing is positive."""
    truth, p = np.asarray(truth).astype(int), np.asarray(p, float)
    thresholds = np.unique(p)[::-1]
    positives, negatives = np.sort(p[truth == 1]), np.sort(p[truth == 0])
    tp = len(positives) - np.searchsorted(positives, thresholds, side="left")
    fp = len(negatives) - np.searchsorted(negatives, thresholds, side="left")
    return {
        "threshold": thresholds.tolist(),
        "tp": tp.tolist(),
        "fp": fp.tolist(),
        "fn": (len(positives) - tp).tolist(),
        "tn": (len(negatives) - fp).tolist(),
    }


def operating_points(
    tuning: tuple[np.ndarray, np.ndarray, list[str] | None],
    evaluated: tuple[np.ndarray, np.ndarray, list[str] | None],
    targets: Sequence[float] = TARGET_SENSITIVITIES,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict]:
    """Thresholds for each target sensitivity, chosen on the tuning (truth, p, patients), and the
    sensitivity and specificity they give on the evaluated (truth, p, patients).

    Each bootstrap draw resamples the tuning patients and re-chooses every threshold (the
    threshold's own uncertainty), then resamples the evaluated patients independently and
    applies the re-chosen thresholds there, so the intervals of the resulting sensitivity and
    specificity carry both sources of error.
    """
    (y_t, p_t, g_t), (y_e, p_e, g_e) = tuning, evaluated
    y_t, p_t, y_e, p_e = map(np.asarray, (y_t, p_t, y_e, p_e))
    chosen = sensitivity_thresholds(y_t, p_t, targets)
    rng = np.random.default_rng(seed)
    units_t, units_e = resampling_units(len(y_t), g_t), resampling_units(len(y_e), g_e)
    draws: dict[str, list[float]] = {}
    for _ in range(n):
        rows_t, rows_e = resample(rng, units_t), resample(rng, units_e)
        if len(np.unique(y_t[rows_t])) < 2:
            continue
        again = sensitivity_thresholds(y_t[rows_t], p_t[rows_t], targets)
        for s, t in zip(targets, again, strict=True):
            sens, spec = _rates(y_e[rows_e], p_e[rows_e], t)
            draws.setdefault(f"{s}/threshold", []).append(t)
            draws.setdefault(f"{s}/sensitivity", []).append(sens)
            draws.setdefault(f"{s}/specificity", []).append(spec)
    ci = percentile_intervals(draws, level)
    out = []
    for s, t in zip(targets, chosen, strict=True):
        tune_sens, tune_spec = _rates(y_t, p_t, t)
        point = {
            "target_sensitivity": s,
            "threshold": t,
            "threshold_ci95": ci.get(f"{s}/threshold"),
            "tuning_sensitivity": tune_sens,
            "tuning_specificity": tune_spec,
        }
        for key, (k, cases) in _counts(y_e, p_e, t).items():
            bootstrap = "patient bootstrap" if g_e else "image bootstrap"
            lo_hi, method = proportion_interval(ci.get(f"{s}/{key}"), k, cases, bootstrap, level)
            point |= {key: k / cases if cases else np.nan, f"{key}_ci95": lo_hi}
            point[f"{key}_ci_method"] = method
        out.append(point)
    return out
