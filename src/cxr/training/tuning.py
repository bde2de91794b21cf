"""The post-fit step, once for a trained model and for an ensemble: on the tuning patients, choose
the calibration (kept only if it lowers held-out ECE), then the threshold on the calibrated
probabilities, and state the tuning figures, so both are judged by the same rules."""

from __future__ import annotations

import dataclasses

import numpy as np
from torch import nn

from cxr.data.cache import CachedImages
from cxr.data.discovery import Record
from cxr.data.xrays import CachedXrays
from cxr.inference.probabilities import logits_of
from cxr.metrics.calibration import calibration_error, choose_calibration
from cxr.metrics.classification import auroc, binary_metrics
from cxr.metrics.thresholds import choose_threshold
from cxr.models.card import ModelCard, Threshold


def finish_tuning(
    model: nn.Module,
    images: CachedImages,
    records: list[Record],
    method: str,
    rule: str | None,
    seed: int,
) -> tuple[ModelCard, np.ndarray]:
    """`model`'s card with its calibration, threshold (binary models with a `rule`), tuning
    figures and tuning predictions; and the calibrated probabilities of `images`, whose labels
    and patients are `records` (one per image, in order)."""
    card = model.card
    y = np.array([card.classes.index(r.label) for r in records])
    # patients by number in the card, never their ids: the bootstrap resamples whole patients
    patients = np.array([r.group for r in records])
    logits = logits_of(model, CachedXrays(images, y.tolist(), card.preprocessing))
    calibration = choose_calibration(logits, y, card.positive, method, groups=patients, seed=seed)
    p = calibration.probabilities(logits)
    raw = dataclasses.replace(calibration, method="none").probabilities(logits)
    metrics: dict[str, float] = {
        "tuning_auroc": auroc(y, p),
        "tuning_accuracy": float((p.argmax(1) == y).mean()),
        "tuning_ece_raw": calibration_error(y, raw, card.positive),
        "tuning_ece": calibration_error(y, p, card.positive),
    }
    threshold = None
    if card.binary and rule:
        truth, score = card.binary_view(y, p)
        value = choose_threshold(truth, score, rule)
        threshold = Threshold(value, rule, card.positive_class, "tuning split")
        at = binary_metrics(truth, score, value)
        metrics |= {f"tuning_{k}": at[k] for k in ("sensitivity", "specificity", "accuracy")}
    tuned = dataclasses.replace(
        card,
        calibration=calibration,
        threshold=threshold,
        metrics=metrics,
        tuning={
            "targets": y.tolist(),
            "probs": np.round(p, 6).tolist(),
            "patients": [str(i) for i in np.unique(patients, return_inverse=True)[1]],
        },
    )
    return tuned, p
