"""How the model is doing in the department, from the worklist alone, per day or week: volume and
not-scored rate, agreement, sensitivity and specificity against the reviewers' labels with 95 %
bootstrap intervals (resampling patients; Wilson's for few reviews), and the inputs (intensity,
size, age) of the scored images against the training range: a shift there makes the scores
untrustworthy.

The database returns plain columns and numpy does the grouping and the resampling (one matrix
product for all draws), so 10 000 rows answer well within a second."""

from __future__ import annotations

from typing import Literal

import numpy as np
from sqlalchemy import Float, cast, func, select
from sqlalchemy.orm import Session

from cxr.metrics.stats import proportion_interval
from cxr.models.card import Threshold
from cxr.store.models import Instance, Status

BOOTSTRAP = 500
PERIOD_DAYS = {"day": 1, "week": 7}
INPUTS = ("pixel_mean", "pixel_std", "width", "height", "age_years")
UNIX_THURSDAY = 3  # 1970-01-01 was a Thursday: weeks start on Monday, as ISO weeks do


def monitor(
    session: Session, population: dict | None = None, by: Literal["day", "week"] = "day"
) -> dict:
    """`population`: the training images' ranges from the served model's card, if it has them."""
    population = population or {}
    columns = (_epoch_days(session), Instance.status, Instance.review_label, Instance.predicted,
               *(getattr(Instance, name) for name in INPUTS))  # fmt: skip
    table = session.execute(select(*columns)).all()
    if not table:
        return {"by": by, "periods": [], "against_reviewers": None, "inputs": {}}
    day, status, label, predicted, *inputs = (np.array(c) for c in zip(*table, strict=True))
    period = _period(day.astype(float), by)
    starts, which = np.unique(period, return_inverse=True)
    scored = status == Status.SCORED
    reviewed = np.not_equal(label, None)
    masks = {"received": np.ones_like(scored), "not_scored": ~scored, "reviewed": reviewed,
             "agreed": reviewed & (label == predicted)}  # fmt: skip
    tally = {name: np.bincount(which, weights=mask, minlength=len(starts)).astype(int)
             for name, mask in masks.items()}  # fmt: skip
    values = {name: np.array(v, float) for name, v in zip(INPUTS, inputs, strict=True)}
    against = _against_reviewers(session, by)
    periods = []
    for k, start in enumerate(starts):
        here = (which == k) & scored
        periods.append({
            "start": str(np.datetime64(int(start), "D")),
            **{name: int(column[k]) for name, column in tally.items()},
            "inputs": _inputs({n: v[here] for n, v in values.items()}, population),
            "against_reviewers": against["periods"].get(int(start)) if against else None,
        })  # fmt: skip
    return {
        "by": by,
        "periods": periods,
        "against_reviewers": against and {k: v for k, v in against.items() if k != "periods"},
        "inputs": _inputs({n: v[scored] for n, v in values.items()}, population),
    }


def _epoch_days(session: Session):
    """Days (fractional) since 1970-01-01 UTC of each arrival, computed by the database."""
    if session.get_bind().dialect.name == "sqlite":
        seconds = cast(func.strftime("%s", Instance.received_at), Float)
    else:
        seconds = func.extract("epoch", Instance.received_at)
    return seconds / 86400


def _period(days: np.ndarray, by: str) -> np.ndarray:
    """The first day (days since 1970-01-01) of each arrival's period."""
    whole = np.floor(days).astype(int)
    if by == "day":
        return whole
    return (whole + UNIX_THURSDAY) // 7 * 7 - UNIX_THURSDAY


def _against_reviewers(session: Session, by: str) -> dict | None:
    """The latest model's decisions against the reviewers' labels, overall and per period
    (binary models with a threshold; earlier models' rows are left out). A decision is the one
    the model's card made when the image was scored (`predicted`), never re-derived here."""
    latest = session.execute(
        select(Instance.model_fingerprint, Instance.threshold)
        .where(Instance.review_label.is_not(None), Instance.threshold.is_not(None))
        .order_by(Instance.reviewed_at.desc(), Instance.id.desc())
        .limit(1)
    ).first()
    if latest is None:
        return None
    threshold = Threshold(**latest.threshold)  # kept as JSON in the row: typed again
    positive = threshold.positive_class
    rows = session.execute(
        select(_epoch_days(session), Instance.id, Instance.patient_pseudonym,
               Instance.review_label, Instance.predicted)
        .where(Instance.review_label.is_not(None),
               Instance.model_fingerprint == latest.model_fingerprint)
    ).all()  # fmt: skip
    day, ids, patients, label, predicted = (np.array(c) for c in zip(*rows, strict=True))
    truth, decided = label == positive, predicted == positive
    groups = np.array([g or f"row{i}" for g, i in zip(patients, ids, strict=True)])
    agreed = label == predicted
    counts = np.stack([truth & decided, truth, ~truth & ~decided, ~truth, agreed,
                       np.ones_like(truth)], 1).astype(float)  # fmt: skip
    period = _period(np.array(day, float), by)
    return {
        "positive_class": positive,
        "threshold": threshold.value,
        **_rates(counts, groups),
        "periods": {
            int(s): _rates(counts[period == s], groups[period == s]) for s in np.unique(period)
        },
    }


def _rates(counts: np.ndarray, groups: np.ndarray, seed: int = 0) -> dict:
    """Agreement, sensitivity and specificity with percentile intervals over `BOOTSTRAP` draws of
    whole patients, or Wilson's where those cannot be believed (cxr's one rule for a proportion:
    few reviews, all or none agreeing). `counts` columns: TP, positives, TN, negatives, agreed,
    rows."""
    codes = np.unique(groups, return_inverse=True)[1]
    n_patients = int(codes.max()) + 1
    per_patient = np.zeros((n_patients, counts.shape[1]))
    np.add.at(per_patient, codes, counts)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_patients, size=(BOOTSTRAP, n_patients))
    offsets = (np.arange(BOOTSTRAP)[:, None] * n_patients + draws).ravel()
    picked = np.bincount(offsets, minlength=BOOTSTRAP * n_patients)
    sums = picked.reshape(BOOTSTRAP, n_patients).astype(float) @ per_patient
    total = per_patient.sum(0)
    out: dict = {"n": int(total[5])}
    for name, num, den in (("agreement", 4, 5), ("sensitivity", 0, 1), ("specificity", 2, 3)):
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = sums[:, num] / sums[:, den]
        finite = ratios[np.isfinite(ratios)]
        bootstrapped = tuple(np.percentile(finite, [2.5, 97.5])) if len(finite) else None
        k, n = int(total[num]), int(total[den])
        ci, method = proportion_interval(bootstrapped, k, n, "patient bootstrap")
        out[name] = {
            "value": k / n if n else None,
            "ci95": [float(v) for v in ci] if n and ci else None,
            "method": method if n else None,
        }
    return out


def _inputs(values: dict[str, np.ndarray], population: dict) -> dict:
    """Median and 5-95 % range of each input over the scored images and, where the model card
    records the training images' range, how many arrivals fall outside it."""
    out = {}
    for name, column in values.items():
        column = column[np.isfinite(column)]
        if not len(column):
            continue
        lo, mid, hi = np.percentile(column, [5, 50, 95])
        out[name] = {"p5": float(lo), "median": float(mid), "p95": float(hi), "n": len(column)}
        if population.get(name):
            low, high = population[name]
            outside = int(np.sum((column < low) | (column > high)))
            out[name] |= {"training_range": [low, high], "outside": outside}
    return out
