"""`cxr calibrate`: re-fit a model's calibration on labelled predictions it made (for example on a
new site's images) and write a new model file; the old file is never touched."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr.errors import CxrError
from cxr.evaluation.predictions import read_predictions_csv
from cxr.metrics.calibration import (
    Calibration,
    calibration_error,
    choose_calibration,
    log_probs,
)
from cxr.metrics.stats import patient_groups
from cxr.models.card import ModelCard
from cxr.models.io import read_card, read_model_file, write_model_file
from cxr.outputs import must_be_new


@dataclass(frozen=True)
class Calibrated:
    out: Path
    calibration: Calibration
    ece_before: float
    ece_after: float


def _compose(old: Calibration, new: Calibration) -> Calibration:
    """new(log softmax(old(z))) as one affine map of z. Log-probabilities are the calibrated
    logits up to a per-row constant, which a map with one slope for all classes (temperature,
    Platt) carries through; a per-class slope (vector) does not, so it is refused here."""
    if len(set(new.scale)) > 1:
        raise CxrError("vector scaling cannot be stacked on stored probabilities; use platt")
    k = len(new.scale)
    s_old = np.asarray(old.scale) if old.method != "none" else np.ones(k)
    b_old = np.asarray(old.shift) if old.method != "none" else np.zeros(k)
    s_new, b_new = np.asarray(new.scale), np.asarray(new.shift)
    return dataclasses.replace(
        new, scale=tuple(map(float, s_old * s_new)), shift=tuple(map(float, b_old * s_new + b_new))
    )


def _moved_threshold(card: ModelCard, new: Calibration) -> ModelCard:
    """The same decisions after re-calibration: P(positive) is a monotone function of the logit
    difference, so the threshold maps through the new calibration exactly."""
    if card.threshold is None:
        return card
    pos, t = card.positive, min(max(card.threshold.value, 1e-12), 1 - 1e-12)
    z = np.zeros((1, 2))
    z[0, pos] = np.log(t / (1 - t))
    value = float(new.probabilities(z)[0, pos])
    return dataclasses.replace(card, threshold=dataclasses.replace(card.threshold, value=value))


def _where(verdict: str, predictions: Path) -> str:
    """The verdict names the images it was measured on: a run's own tuning split, or the file
    given (another site's predictions are no tuning split)."""
    if predictions.name == "tuning_predictions.csv":
        return verdict
    here = f"on the labelled images of {predictions} (patients held out in turn)"
    return verdict.replace("on the tuning split", here).replace("tuning images", "images")


def recalibrate(
    probs: np.ndarray, targets: np.ndarray, positive: int | None, patients: list[str], method: str
) -> Calibration:
    """A calibration chosen on a site's own labelled predictions, each candidate scored on
    patients held out of its fit (`cxr calibrate`, and the report's before/after line)."""
    groups = patient_groups(patients)
    return choose_calibration(
        log_probs(probs), targets, positive, method, None if groups is None else np.array(groups)
    )


def calibrate_file(model: Path, predictions: Path, out: Path, method: str = "auto") -> Calibrated:
    must_be_new(out)
    payload = read_model_file(model)
    card = read_card(model, payload)
    columns = read_predictions_csv(predictions, card)
    probs = columns["probs"]
    targets = np.array([card.classes.index(label) for label in columns["labels"]])
    try:
        fitted = recalibrate(probs, targets, card.positive, columns["patients"], method)
    except ValueError as exc:
        raise CxrError(f"{predictions}: {exc}") from exc
    fitted = dataclasses.replace(fitted, verdict=_where(fitted.verdict, predictions))
    if fitted.method == "none":
        raise CxrError(f"{predictions}: {fitted.verdict}; {model} is left as it is")
    before = calibration_error(targets, probs, card.positive)
    after = calibration_error(targets, fitted.probabilities(log_probs(probs)), card.positive)
    combined = _compose(card.calibration, fitted)
    new_card = dataclasses.replace(_moved_threshold(card, fitted), calibration=combined)
    write_model_file(out, {**payload, "card": new_card.to_dict()})
    return Calibrated(out, combined, before, after)
