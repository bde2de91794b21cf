"""How the model is doing in the department, from the worklist alone: volume and not-scored rate
per day, agreement with the reviewers, sensitivity and specificity against reviewed labels with
95 % bootstrap intervals (resampling patients), and the input statistics whose drift would make
the scores untrustworthy."""

from collections import defaultdict

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from cxr.metrics.classification import binary_metrics
from cxr.metrics.stats import bootstrap_intervals
from cxr.store.models import Instance

BOOTSTRAP = 500


def monitor(session: Session, population: dict | None = None) -> dict:
    """`population`: the training images' ranges from the served model's card, if it has them."""
    rows = list(session.scalars(select(Instance).order_by(Instance.received_at)))
    days: dict[str, dict] = defaultdict(lambda: {"received": 0, "not_scored": 0, "reviewed": 0,
                                                 "agreed": 0})  # fmt: skip
    for row in rows:
        day = days[row.received_at.date().isoformat()]
        day["received"] += 1
        day["not_scored"] += row.status != "scored"
        if row.review_label is not None:
            day["reviewed"] += 1
            day["agreed"] += row.review_label == row.predicted
    return {
        "days": [{"day": d, **v} for d, v in sorted(days.items())],
        "against_reviewers": _against_reviewers(rows),
        "inputs": _inputs(rows, population or {}),
    }


def _against_reviewers(rows: list[Instance]) -> dict | None:
    """The model's decision rule against the reviewers' labels (binary models with a threshold)."""
    reviewed = [r for r in rows if r.review_label is not None and r.threshold and r.classes]
    if not reviewed:
        return None
    positive, value = reviewed[-1].threshold["positive_class"], reviewed[-1].threshold["value"]
    same_model = [r for r in reviewed if r.threshold == reviewed[-1].threshold]
    truth = np.array([r.review_label == positive for r in same_model], int)
    p = np.array([r.probabilities[r.classes.index(positive)] for r in same_model])
    keys = ("sensitivity", "specificity")

    def metric(idx: np.ndarray) -> dict[str, float]:
        scores = binary_metrics(truth[idx], p[idx], value)
        return {k: scores[k] for k in keys}

    point = binary_metrics(truth, p, value)
    groups = [r.patient_pseudonym or f"row{r.id}" for r in same_model]
    intervals = bootstrap_intervals(metric, len(truth), groups, n=BOOTSTRAP)
    return {
        "positive_class": positive,
        "threshold": value,
        "n": len(truth),
        "agreement": float(np.mean([r.review_label == r.predicted for r in same_model])),
        **{k: {"value": _finite(point[k]), "ci95": intervals.get(k)} for k in keys},
    }


def _inputs(rows: list[Instance], population: dict) -> dict:
    """Median and 5-95 % range of what arrived and, where the model card records the training
    images' range, how many arrivals fall outside it: a shift is a reason to distrust scores."""
    out = {}
    for name in ("pixel_mean", "pixel_std", "width", "height"):
        values = np.array([getattr(r, name) for r in rows if getattr(r, name) is not None], float)
        if len(values):
            lo, mid, hi = np.percentile(values, [5, 50, 95])
            out[name] = {"p5": float(lo), "median": float(mid), "p95": float(hi)}
            if name in population:
                low, high = population[name]
                outside = int(np.sum((values < low) | (values > high)))
                out[name] |= {"training_range": [low, high], "outside": outside, "n": len(values)}
    return out


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
