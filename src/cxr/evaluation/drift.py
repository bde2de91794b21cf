"""Is this batch like the tuning split? The batch's scores against the tuning-split scores the
model card keeps (a two-sample Kolmogorov–Smirnov test), said in one line when they differ
beyond chance, with how many labelled images recalibration needs: the label-budget curve,
held-out ECE against the number of tuning images a calibration is fitted on."""

from __future__ import annotations

import numpy as np
from scipy import stats

from cxr.metrics.calibration import calibration_error, fit_platt, fit_temperature, log_probs
from cxr.models.card import ModelCard
from cxr.numbers import versus

ALPHA = 0.01  # "beyond chance": a batch this unlike the tuning split at most 1 time in 100
SIZES = (25, 50, 100, 200, 400, 800)  # labelled images a calibration is fitted on
WITHIN = 0.01  # ECE this close to the largest fit's counts as enough labels
REPEATS = 20


def _tuning(card: ModelCard) -> tuple[np.ndarray, np.ndarray] | None:
    if not card.tuning or not card.tuning.get("targets"):
        return None
    return np.asarray(card.tuning["targets"]), np.asarray(card.tuning["probs"], float)


def label_budget(card: ModelCard, seed: int = 0) -> tuple[int, list[tuple[int, float]]] | None:
    """(labels needed, [(n, mean held-out ECE)]): calibrations fitted on n tuning images drawn
    at random, scored on the rest; needed = the smallest n within WITHIN of the largest n's ECE.
    None when the card keeps too few tuning predictions to draw a curve."""
    stored = _tuning(card)
    if stored is None:
        return None
    targets, probs = stored
    sizes = [n for n in SIZES if n <= len(targets) - 20]
    if len(sizes) < 2:
        return None
    log_p = log_probs(probs)
    fit = fit_platt if card.binary and card.positive == 1 else fit_temperature
    rng = np.random.default_rng(seed)
    curve = []
    for n in sizes:
        errors = []
        for _ in range(REPEATS):
            order = rng.permutation(len(targets))
            train, rest = order[:n], order[n:]
            if len(set(targets[train])) < 2:
                continue
            calibrated = fit(log_p[train], targets[train]).probabilities(log_p[rest])
            errors.append(calibration_error(targets[rest], calibrated, card.positive))
        curve.append((n, float(np.mean(errors)) if errors else float("nan")))
    floor = curve[-1][1]
    needed = next(n for n, ece in curve if not ece > floor + WITHIN)
    return needed, curve


def score_shift(card: ModelCard, probs: np.ndarray) -> dict | None:
    """The batch's ranking scores (P(positive), or P(not normal)) against the tuning split's:
    the KS statistic, its p-value and both medians; None without stored tuning predictions."""
    stored = _tuning(card)
    if stored is None or len(probs) < 2:
        return None
    here, there = card.urgency(np.asarray(probs)), card.urgency(stored[1])
    test = stats.ks_2samp(here, there)
    return {
        "test": "two-sample Kolmogorov–Smirnov",
        "statistic": float(test.statistic),
        "p_value": float(test.pvalue),
        "n": len(here),
        "n_tuning": len(there),
        "median": float(np.median(here)),
        "median_tuning": float(np.median(there)),
        "differs": bool(test.pvalue < ALPHA),
    }


def shift_line(card: ModelCard, probs: np.ndarray) -> str | None:
    """One line when the batch differs from the tuning split beyond chance, else None."""
    found = score_shift(card, probs)
    if found is None or not found["differs"]:
        return None
    what = f"P({card.positive_class})" if card.binary else "P(not normal)"
    here, there = versus(found["median"], found["median_tuning"])
    line = (
        f"shift: these {found['n']} images' scores differ from the tuning split's "
        f"({found['n_tuning']} images) beyond chance ({found['test']} D = "
        f"{found['statistic']:.3f}, p = {found['p_value']:.2g}; median {what} "
        f"{here} here, {there} there). Another case mix "
        "alone can do this; another site or scanner too, and then the probabilities may not hold"
    )
    budget = label_budget(card)
    if budget is None:
        return line + ": recalibrate on labelled images of this population (`cxr calibrate`)."
    needed, _ = budget
    return line + (
        f": recalibrating needs about {needed} labelled images of this population (on the "
        "tuning split, calibrations fitted on fewer were further off): `cxr evaluate` them, "
        "then `cxr calibrate MODEL --predictions …/predictions.csv`."
    )
