"""Uncertainty and paired tests: bootstrap intervals by patient, DeLong for AUROC, McNemar for
accuracy. DeLong is written here (after Sun & Xu 2014) because neither scikit-learn nor SciPy has
it; the tests check it against a hand-worked example."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats


def bootstrap_intervals(
    metric: Callable[[np.ndarray], dict[str, float]],
    n_rows: int,
    groups: list[str] | None = None,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    step: Callable[[int], None] | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each number `metric(rows)` returns, resampling whole patients
    (all of a patient's images together) when `groups` are given, else single images; `step(1)`
    after each resample lets a caller show how far it has got."""
    rng = np.random.default_rng(seed)
    units = resampling_units(n_rows, groups)
    draws: dict[str, list[float]] = {}
    for _ in range(n):
        for key, value in metric(resample(rng, units)).items():
            draws.setdefault(key, []).append(value)
        if step:
            step(1)
    return percentile_intervals(draws, level)


def patient_groups(patients: list[str]) -> list[str] | None:
    """Resample by patient only when every image names one: one unknown would make its image a
    patient of its own among grouped ones, so a partly labelled set is resampled by image."""
    return list(patients) if all(patients) else None


def resampling_units(n_rows: int, groups: list[str] | None = None) -> list[np.ndarray]:
    """The rows of each patient (or each row alone): what one bootstrap draw picks whole."""
    if groups is None:
        return [np.array([i]) for i in range(n_rows)]
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    return [np.array(v) for v in by_group.values()]


def resample(rng: np.random.Generator, units: list[np.ndarray]) -> np.ndarray:
    """One bootstrap draw: as many units as there are, with replacement, as row indices."""
    return np.concatenate([units[i] for i in rng.integers(0, len(units), len(units))])


def percentile_intervals(
    draws: dict[str, list[float]], level: float = 0.95
) -> dict[str, tuple[float, float]]:
    tail = (1 - level) / 2 * 100
    return {
        key: tuple(float(v) for v in np.nanpercentile(values, [tail, 100 - tail]))
        for key, values in draws.items()
        if not np.all(np.isnan(values))
    }


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (SciPy): sound at 0 or n successes and on few
    cases, where a percentile bootstrap collapses to a point."""
    ci = stats.binomtest(int(k), int(n)).proportion_ci(level, method="wilson")
    return float(ci.low), float(ci.high)


EXACT_BELOW = 30  # fewer cases than this behind a proportion: the percentile bootstrap is unsafe


def proportion_interval(
    bootstrapped: tuple[float, float] | None, k: int, n: int, method: str, level: float = 0.95
) -> tuple[tuple[float, float] | None, str]:
    """(interval, method) of the proportion k/n: the bootstrap's, or Wilson's where a percentile
    bootstrap cannot be believed (no interval or one of zero width, fewer than `EXACT_BELOW`
    cases, all or none of them). The one rule for every proportion cxr reports."""
    if n and (
        bootstrapped is None or bootstrapped[0] == bootstrapped[1] or n < EXACT_BELOW or k in (0, n)
    ):
        return wilson_interval(k, n, level), "Wilson"
    return bootstrapped, method


def _midranks(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average")


def _structural_components(truth: np.ndarray, scores: np.ndarray):
    """Sun & Xu's placement values: per positive, the share of negatives it outranks (V10); per
    negative, the share of positives that outrank it (V01); ties count one half."""
    pos, neg = scores[:, truth == 1], scores[:, truth == 0]
    m, k = pos.shape[1], neg.shape[1]
    v10, v01, aucs = [], [], []
    for p, q in zip(pos, neg, strict=True):
        both = _midranks(np.concatenate([p, q]))
        rank_pos, rank_neg = both[:m], both[m:]
        v10.append((rank_pos - _midranks(p)) / k)
        v01.append(1 - (rank_neg - _midranks(q)) / m)
        aucs.append((rank_pos.sum() - m * (m + 1) / 2) / (m * k))
    return np.array(aucs), np.array(v10), np.array(v01)


@dataclass(frozen=True)
class DeLongResult:
    auroc_a: float
    auroc_b: float
    difference: float  # a - b
    std_error: float
    z: float
    p_value: float  # two-sided
    ci: tuple[float, float]  # 95 % interval of the difference


def delong_test(truth: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> DeLongResult:
    """DeLong, DeLong & Clarke-Pearson (1988): are two AUROCs on the same cases different?"""
    truth = np.asarray(truth).astype(int)
    aucs, v10, v01 = _structural_components(truth, np.vstack([p_a, p_b]).astype(float))
    m, k = v10.shape[1], v01.shape[1]
    cov = np.cov(v10) / m + np.cov(v01) / k
    variance = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(variance, 0.0)))
    if se == 0:
        z, p = (0.0, 1.0) if diff == 0 else (float(np.sign(diff) * np.inf), 0.0)
    else:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
    half = 1.959963984540054 * se
    return DeLongResult(
        float(aucs[0]), float(aucs[1]), diff, se, float(z), p, (diff - half, diff + half)
    )


@dataclass(frozen=True)
class McNemarResult:
    only_a_right: int
    only_b_right: int
    statistic: float
    p_value: float
    exact: bool


def mcnemar_test(truth: np.ndarray, decided_a: np.ndarray, decided_b: np.ndarray) -> McNemarResult:
    """Paired accuracy: only the cases where exactly one model is right count. Exact binomial
    when those are fewer than 25, else chi-square with continuity correction (Edwards 1948)."""
    right_a = np.asarray(decided_a) == np.asarray(truth)
    right_b = np.asarray(decided_b) == np.asarray(truth)
    b, c = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    if b + c == 0:
        return McNemarResult(b, c, 0.0, 1.0, True)
    if b + c < 25:
        p = stats.binomtest(b, b + c, 0.5).pvalue
        return McNemarResult(b, c, float(min(b, c)), float(p), True)
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return McNemarResult(b, c, float(statistic), float(stats.chi2.sf(statistic, 1)), False)
