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
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each number `metric(rows)` returns, resampling whole patients
    (all of a patient's images together) when `groups` are given, else single images."""
    rng = np.random.default_rng(seed)
    if groups is None:
        units = [np.array([i]) for i in range(n_rows)]
    else:
        by_group: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            by_group.setdefault(g, []).append(i)
        units = [np.array(v) for v in by_group.values()]
    draws: dict[str, list[float]] = {}
    for _ in range(n):
        picked = rng.integers(0, len(units), len(units))
        rows = np.concatenate([units[i] for i in picked])
        for key, value in metric(rows).items():
            draws.setdefault(key, []).append(value)
    tail = (1 - level) / 2 * 100
    return {
        key: tuple(float(v) for v in np.nanpercentile(values, [tail, 100 - tail]))
        for key, values in draws.items()
        if not np.all(np.isnan(values))
    }


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


EXACT_BELOW = 30  # denominators under this get an exact interval instead of the bootstrap's
PROPORTIONS = {  # metric: (numerator, denominator) as confusion counts
    "sensitivity": (("tp",), ("tp", "fn")),
    "specificity": (("tn",), ("tn", "fp")),
    "precision": (("tp",), ("tp", "fp")),
    "npv": (("tn",), ("tn", "fn")),
    "accuracy": (("tp", "tn"), ("tp", "tn", "fp", "fn")),
}


def exact_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion k / n: never narrower than it should be, and
    not degenerate at 0 / n or n / n as a bootstrap of a perfect sample is."""
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def exact_where_needed(point: dict, intervals: dict) -> dict[str, str]:
    """Replace, in place, the bootstrap interval of each proportion in `point` (binary metrics
    with their counts) by the exact one where its denominator is small or the proportion is
    0 or 1; returns {metric: "exact"} for the ones replaced."""
    replaced = {}
    for key, (top, bottom) in PROPORTIONS.items():
        k, n = sum(point[c] for c in top), sum(point[c] for c in bottom)
        if n and (n < EXACT_BELOW or k in (0, n)):
            intervals[key] = exact_interval(k, n)
            replaced[key] = "exact"
    return replaced
