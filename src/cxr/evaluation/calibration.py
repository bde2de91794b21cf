"""Temperature scaling (Guo et al. 2017): one number T fitted on validation so that
softmax(logits / T) means what it says; ranking, AUROC and arg-max are unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from cxr.errors import CxrError


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """Logits up to a per-row constant, recovered from stored probabilities: temperature
    scaling needs nothing more, so a run's val_predictions.csv is enough to calibrate it."""
    return np.log(np.clip(np.asarray(probs, float), 1e-12, 1.0))


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The T that minimises the negative log-likelihood of the true classes."""
    logits, targets = np.asarray(logits, float), np.asarray(targets, int)

    def nll(log_t: float) -> float:
        scaled = log_softmax(logits / np.exp(log_t), axis=1)
        return float(-scaled[np.arange(len(targets)), targets].mean())

    best = minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded")
    return float(np.exp(best.x))


def scale(logits: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(np.asarray(logits, float) / temperature, axis=1)


def scale_threshold(threshold: float, temperature: float) -> float:
    """The same decisions after scaling a binary model: p >= t before iff p' >= t' after."""
    t = min(max(threshold, 1e-12), 1 - 1e-12)
    return float(1 / (1 + np.exp(-np.log(t / (1 - t)) / temperature)))


@dataclass(frozen=True)
class Calibrated:
    out: Path
    temperature: float  # the file's new temperature (the old one times the one fitted now)
    ece_before: float
    ece_after: float


def calibrate_file(checkpoint: Path, predictions: Path, out: Path) -> Calibrated:
    """Fit a temperature on a validation predictions CSV and write a new model file holding it,
    with the binary threshold moved so that the model's decisions stay exactly the same."""
    from cxr.evaluation.metrics import expected_calibration_error
    from cxr.evaluation.predictions import load_predictions_csv
    from cxr.models.io import read_model_file

    if out.exists():
        raise CxrError(f"{out} exists; cxr never overwrites a model file (choose another --out)")
    payload = read_model_file(checkpoint)
    p = load_predictions_csv(predictions, payload["classes"])
    logits, y = log_probabilities(p.probs), p.targets
    t = fit_temperature(logits, y)
    pos = p.positive if len(p.classes) == 2 else None
    if pos is None:  # multi-class: calibration of the arg-max's confidence
        before = expected_calibration_error(p.probs.argmax(1) == y, p.probs.max(1))
        after_p = scale(logits, t)
        after = expected_calibration_error(after_p.argmax(1) == y, after_p.max(1))
    else:
        truth = (y == pos).astype(int)
        before = expected_calibration_error(truth, p.probs[:, pos])
        after = expected_calibration_error(truth, scale(logits, t)[:, pos])
    old = float(payload.get("temperature") or 1.0)
    payload["temperature"] = old * t
    if payload.get("threshold"):
        payload["threshold"] = {
            **payload["threshold"],
            "value": scale_threshold(payload["threshold"]["value"], t),
        }
    payload["calibration"] = {"fitted_on": str(predictions), "ece_before": before, "ece": after}
    torch.save(payload, out)
    return Calibrated(out, old * t, before, after)
