"""The operating-point explorer: a threshold slider over a model's tuning-split predictions (kept
in its card) or an evaluation's, on the service's page and in the report. The confusion counts
at every threshold come from the metrics kernel (`threshold_sweep`, the rule `cxr evaluate`
uses); the widget only divides them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxr.errors import CxrError
from cxr.evaluation.predictions import Predictions
from cxr.metrics.thresholds import threshold_sweep
from cxr.models.card import ModelCard

WIDGET = Path(__file__).with_name("templates") / "explorer.js"


def explorer_data(
    card: ModelCard, targets: np.ndarray, probs: np.ndarray, images: str
) -> dict | None:
    """What the widget needs, without a file name or patient: the positive class, the model's
    threshold and the counts. Multi-class models are explored as normal against the rest; None
    when there is no binary view. `images`: what the predictions are on, in words."""
    try:
        truth, score = card.binary_view(targets, probs)
    except CxrError:
        return None
    if card.binary:
        positive, negative = card.positive_class, card.classes[1 - card.positive]
    else:
        positive, negative = "abnormal", "normal"
    points = threshold_sweep(truth, score)
    return {
        "positive_class": positive,
        "negative_class": negative,
        "threshold": float(card.threshold_value),
        "split": images,
        "images": len(truth),
        "positives": int(np.sum(truth)),
        "thresholds": points.pop("threshold"),  # "threshold" is the model's own
        **points,
    }


def card_explorer(card: ModelCard) -> dict | None:
    """The explorer over the tuning-split predictions a model card keeps, if it keeps them."""
    if not card.tuning or not card.tuning.get("targets"):
        return None
    targets, probs = np.asarray(card.tuning["targets"]), np.asarray(card.tuning["probs"])
    return explorer_data(card, targets, probs, "tuning split")


def predictions_explorer(p: Predictions) -> dict | None:
    return explorer_data(p.card, p.targets, p.probs, p.described)
