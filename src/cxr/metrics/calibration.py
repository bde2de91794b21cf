"""Calibration maths: fit a map from logits to probabilities on the tuning split, and keep it only
when it lowers the expected calibration error on images it was not fitted on.

Temperature scaling (Guo et al. 2017) keeps the ranking but cannot move the prior; class-weighted
losses and balanced samplers shift the prior, so binary models also get Platt scaling (slope and
intercept on the logit difference) and multi-class models vector scaling (a slope and an intercept
per class). Every method is an affine map z * scale + shift, so one card field and one ONNX node
carry any of them.

Each map is fitted by maximum likelihood under a weak Gaussian prior (sd 1) on its slopes around 1
and its intercepts around 0: a parameter 1 from its centre costs half an image's log-loss, one 3
away 4.5 images', whatever the split's size. On a small tuning split that a model separates
almost perfectly, plain maximum likelihood has no finite optimum.
Unpenalised vector scaling of a 3-class COVID model on 108 tuning images stopped at slopes of 311,
39 and 382, and its internal test's log-loss was 15.9 against 0.34 uncalibrated (macro AUROC
0.965 against 0.988); with the prior, 0.17 and 0.993 (docs/benchmarks.md, "Issue 28").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from cxr.errors import CxrError
from cxr.metrics.classification import expected_calibration_error

METHODS = ("none", "temperature", "platt", "vector")


@dataclass(frozen=True)
class Calibration:
    """An affine map of the logits before the softmax, z' = z * scale + shift, per class.

    temperature: scale = 1/T, shift = 0 (cannot move the prior); platt (binary): the logit
    difference gets slope and intercept, so a prior shifted by class weights is moved back;
    vector (multi-class): a slope and intercept per class. `none` leaves the logits as they are.
    """

    method: str = "none"
    scale: tuple[float, ...] = ()
    shift: tuple[float, ...] = ()
    # expected calibration error of each candidate, cross-validated on the tuning split
    candidates: dict[str, float] = field(default_factory=dict)
    verdict: str = ""  # in words, for the report and the page

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CxrError(f"unknown calibration {self.method!r}; one of {METHODS}")
        try:
            finite = np.isfinite(np.asarray((*self.scale, *self.shift), dtype=float)).all()
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise CxrError(f"calibration {self.method}: scale and shift must be finite numbers")

    def check_width(self, classes: int) -> None:
        """A map for another number of classes would broadcast wrongly or fail mid-prediction."""
        if self.method != "none" and not len(self.scale) == len(self.shift) == classes:
            raise CxrError(
                f"calibration {self.method}: {len(self.scale)} scales and {len(self.shift)} "
                f"shifts for {classes} classes"
            )

    def logits(self, z):
        """Calibrated logits; works on numpy arrays and torch tensors alike."""
        if self.method == "none":
            return z
        if isinstance(z, np.ndarray):
            return z * np.asarray(self.scale) + np.asarray(self.shift)
        scale = z.new_tensor(self.scale)
        shift = z.new_tensor(self.shift)
        return z * scale + shift

    def probabilities(self, z: np.ndarray) -> np.ndarray:
        return _softmax(self.logits(np.asarray(z, float)))


def _check(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, targets = np.asarray(logits, float), np.asarray(targets)
    if logits.ndim != 2 or len(logits) != len(targets):
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} do not match")
    if targets.min() < 0 or targets.max() >= logits.shape[1]:
        raise ValueError(f"targets must be class indices below {logits.shape[1]}")
    return logits, targets.astype(int)


def _nll(z: np.ndarray, targets: np.ndarray) -> float:
    return float(-log_softmax(z, axis=1)[np.arange(len(targets)), targets].mean())


def _prior(slopes: np.ndarray, intercepts: np.ndarray, n: int) -> float:
    """The prior's share of the mean log-loss: slopes ~ N(1, 1), intercepts ~ N(0, 1)."""
    return float(np.sum((np.asarray(slopes) - 1) ** 2) + np.sum(np.asarray(intercepts) ** 2)) / (
        2 * n
    )


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> Calibration:
    """The T minimising the penalised negative log-likelihood; scale = 1/T, shift 0."""
    logits, targets = _check(logits, targets)
    n = len(targets)
    best = minimize_scalar(
        lambda log_t: _nll(logits / np.exp(log_t), targets) + _prior(np.exp(-log_t), 0.0, n),
        bounds=(-4.0, 4.0),
        method="bounded",
    )
    k = logits.shape[1]
    return Calibration("temperature", (float(np.exp(-best.x)),) * k, (0.0,) * k)


def fit_platt(logits: np.ndarray, targets: np.ndarray) -> Calibration:
    """Binary: P(positive) = sigmoid(a * (z_pos - z_neg) + c), fitted by maximum likelihood
    under the module's prior."""
    logits, targets = _check(logits, targets)
    if logits.shape[1] != 2:
        raise ValueError("Platt scaling is for binary models; use vector scaling")
    d = logits[:, 1] - logits[:, 0]
    y = (targets == 1).astype(float)

    def nll(params: np.ndarray) -> float:
        s = params[0] * d + params[1]
        return float(np.mean(np.logaddexp(0, s) - y * s)) + _prior(params[0], params[1], len(y))

    a, c = minimize(nll, np.array([1.0, 0.0]), method="L-BFGS-B").x
    return Calibration("platt", (float(a), float(a)), (0.0, float(c)))


def fit_vector(logits: np.ndarray, targets: np.ndarray) -> Calibration:
    """Multi-class: a slope and an intercept per class (Guo et al.'s vector scaling), under the
    module's prior."""
    logits, targets = _check(logits, targets)
    k = logits.shape[1]

    def nll(params: np.ndarray) -> float:
        z = logits * params[:k] + params[k:]
        return _nll(z, targets) + _prior(params[:k], params[k:], len(targets))

    params = minimize(nll, np.r_[np.ones(k), np.zeros(k)], method="L-BFGS-B").x
    return Calibration("vector", tuple(map(float, params[:k])), tuple(map(float, params[k:])))


FITTERS = {"temperature": fit_temperature, "platt": fit_platt, "vector": fit_vector}


def log_probs(probs: np.ndarray) -> np.ndarray:
    """Stored probabilities back to log space (a calibration's input), zeros kept finite."""
    return np.log(np.clip(probs, 1e-12, 1.0))


def calibration_error(targets: np.ndarray, probs: np.ndarray, positive: int | None = 1) -> float:
    """ECE of P(positive) for a binary model, of the arg-max's confidence otherwise."""
    targets, probs = np.asarray(targets), np.asarray(probs)
    if probs.shape[1] == 2:
        return expected_calibration_error(targets == positive, probs[:, positive])
    return expected_calibration_error(probs.argmax(1) == targets, probs.max(1))


def candidates(n_classes: int) -> tuple[str, ...]:
    return ("temperature", "platt") if n_classes == 2 else ("temperature", "vector")


def choose_calibration(
    logits: np.ndarray,
    targets: np.ndarray,
    positive: int | None,
    method: str = "auto",
    groups: np.ndarray | None = None,
    folds: int = 5,
    seed: int = 0,
) -> Calibration:
    """Fit the candidates on the tuning split; `auto` keeps the one with the lowest out-of-fold
    ECE (patient-grouped folds), and nothing at all unless it beats the raw probabilities."""
    logits, targets = _check(logits, targets)
    # Platt and the binary ECE are stated for the positive class: make it column 1
    order = [1 - positive, positive] if positive is not None else list(range(logits.shape[1]))
    z, y = logits[:, order], np.array([order.index(t) for t in targets])
    methods = candidates(z.shape[1]) if method == "auto" else (method,)
    if method == "none":
        return Calibration("none", verdict=_verdict("none", {}, None))
    oof = {m: np.zeros_like(z) for m in methods}
    n_splits = min(folds, int(np.bincount(y).min()))
    if n_splits >= 2:
        splitter = (
            StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
            if groups is not None
            else StratifiedKFold(n_splits, shuffle=True, random_state=seed)
        )
        for fit_rows, held in splitter.split(z, y, groups):
            for m in methods:
                oof[m][held] = FITTERS[m](z[fit_rows], y[fit_rows]).logits(z[held])
        scores = {"none": calibration_error(y, _softmax(z))}
        scores |= {m: calibration_error(y, _softmax(oof[m])) for m in methods}
    else:  # too few of a class to hold any out: fit, but say it could not be checked
        scores = {}
    # a slope <= 0 would turn the ranking around: the model orders these images backwards (or
    # not at all), and no calibration can make its decisions right
    if method == "auto":
        better = [m for m in sorted(methods, key=lambda m: scores.get(m, np.inf))
                  if scores and scores[m] < scores["none"]]  # fmt: skip
        fits = {m: FITTERS[m](z, y) for m in better}
        kept = [m for m in better if min(fits[m].scale) > 0]
        if not kept:
            return Calibration("none", candidates=scores, verdict=_verdict("none", scores, None))
        best, fitted = kept[0], fits[kept[0]]
    else:
        best, fitted = method, FITTERS[method](z, y)
        if min(fitted.scale) <= 0:
            raise ValueError(
                f"{best} scaling came out with a slope <= 0: the model ranks these images "
                "backwards; calibrating cannot fix that"
            )
    back = np.argsort(order)  # columns back in the model's class order
    return Calibration(
        best,
        tuple(fitted.scale[i] for i in back),
        tuple(fitted.shift[i] for i in back),
        candidates=scores,
        verdict=_verdict(best, scores, best),
    )


def _softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(z, axis=1))


def _verdict(method: str, scores: dict[str, float], kept: str | None) -> str:
    if not scores:
        return "not checked: too few tuning images of a class to hold any out"
    raw = scores["none"]
    if kept is None:
        tried = ", ".join(f"{m} {v:.3f}" for m, v in scores.items() if m != "none")
        return (
            f"no calibration kept: none lowered the held-out ECE below the raw {raw:.3f} ({tried})"
        )
    after = scores[kept]
    readable = "can be read as probabilities" if after <= 0.05 else "are only roughly calibrated"
    return (
        f"{kept} scaling lowered the held-out ECE on the tuning split from {raw:.3f} to "
        f"{after:.3f}: the probabilities {readable} (on patients like these)"
    )
