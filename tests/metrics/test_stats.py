"""DeLong, McNemar and the bootstrap against worked examples."""

import numpy as np
import pytest
from scipy import stats

from cxr.metrics.stats import (
    bootstrap_intervals,
    delong_test,
    exact_interval,
    exact_where_needed,
    mcnemar_test,
)


def test_delong_worked_example():
    # Two negatives, three positives. Model A separates them perfectly (AUROC 1); model B's
    # positives .2 .7 .9 beat the negatives .3 .6 in 4 of 6 pairs (AUROC 2/3).
    # Placements of B: positives 0, 1, 1 (variance 1/3), negatives 2/3, 2/3 (variance 0); A's are
    # constant, so var(A - B) = (1/3) / 3 positives = 1/9: z = (1/3) / (1/3) = 1, p = 0.3173.
    # R's pROC::roc.test(method = "delong") gives Z = 1, p-value = 0.3173 on the same data.
    truth = np.array([0, 0, 1, 1, 1])
    r = delong_test(truth, np.array([0.1, 0.2, 0.6, 0.7, 0.8]), np.array([0.3, 0.6, 0.2, 0.7, 0.9]))
    assert (r.auroc_a, r.auroc_b) == (1.0, pytest.approx(2 / 3))
    assert r.std_error == pytest.approx(1 / 3) and r.z == pytest.approx(1.0)
    assert r.p_value == pytest.approx(2 * stats.norm.sf(1.0)) and r.p_value == pytest.approx(
        0.3173, abs=1e-4
    )


def test_delong_matches_the_mann_whitney_auroc_and_is_symmetric():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 200)
    a, b = truth + rng.normal(0, 1, 200), truth + rng.normal(0, 2, 200)
    ab, ba = delong_test(truth, a, b), delong_test(truth, b, a)
    u = stats.mannwhitneyu(a[truth == 1], a[truth == 0]).statistic
    assert ab.auroc_a == pytest.approx(u / ((truth == 1).sum() * (truth == 0).sum()))
    assert ab.z == pytest.approx(-ba.z) and ab.p_value == pytest.approx(ba.p_value)
    same = delong_test(truth, a, a)
    assert same.p_value == 1.0 and same.difference == 0


def test_mcnemar_exact_and_chi_square():
    truth = np.ones(6, int)
    a = np.array([1, 0, 0, 0, 0, 0])  # A alone right once
    b = np.array([0, 1, 1, 1, 1, 1])  # B alone right five times
    r = mcnemar_test(truth, a, b)
    # exact two-sided binomial: 2 * P(X <= 1 | n = 6, 1/2) = 2 * 7/64
    assert (r.only_a_right, r.only_b_right, r.exact) == (1, 5, True)
    assert r.p_value == pytest.approx(14 / 64)
    truth = np.ones(40, int)
    a = np.r_[np.ones(30), np.zeros(10)].astype(int)
    r = mcnemar_test(truth, a, 1 - a)
    # b = 30, c = 10: (|30 - 10| - 1)^2 / 40 = 9.025 on one degree of freedom
    assert r.statistic == pytest.approx(9.025) and not r.exact
    assert r.p_value == pytest.approx(stats.chi2.sf(9.025, 1))


def test_bootstrap_reproducible_and_by_patient():
    noisy = np.random.default_rng(0).normal(size=50)
    first = bootstrap_intervals(lambda rows: {"m": float(noisy[rows].mean())}, 50, n=200, seed=4)
    again = bootstrap_intervals(lambda rows: {"m": float(noisy[rows].mean())}, 50, n=200, seed=4)
    other = bootstrap_intervals(lambda rows: {"m": float(noisy[rows].mean())}, 50, n=200, seed=5)
    assert first == again and first != other
    # two patients of three identical images each: by image the mean moves in sixths, by
    # patient it can only be 0, 1/2 or 1, so the honest interval is the whole of [0, 1]
    values = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])

    def mean(rows):
        return {"mean": float(values[rows].mean())}

    by_image = bootstrap_intervals(mean, 6, n=300, seed=4)
    by_patient = bootstrap_intervals(mean, 6, ["a", "a", "b", "b", "a", "b"], n=300, seed=4)
    assert by_image["mean"] == pytest.approx((1 / 6, 5 / 6))
    assert by_patient["mean"] == (0.0, 1.0)


def test_exact_intervals_for_perfect_and_small_samples():
    # Clopper-Pearson at 0 / 10: upper = 1 - 0.025 ** (1 / 10); at 10 / 10 the mirror image
    assert exact_interval(0, 10) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)))
    assert exact_interval(10, 10) == pytest.approx((0.025 ** (1 / 10), 1.0))
    counts = {"tp": 12, "fn": 0, "tn": 500, "fp": 40}
    intervals = {"sensitivity": (1.0, 1.0), "specificity": (0.9, 0.95), "npv": (0.99, 1.0)}
    replaced = exact_where_needed(counts, intervals)
    # sensitivity 12 / 12 (small, perfect) and NPV 500 / 500 (perfect) are replaced; precision
    # 12 / 52, specificity 500 / 540 and accuracy 512 / 552 keep the bootstrap's
    assert replaced == {"sensitivity": "exact", "npv": "exact"}
    assert intervals["sensitivity"] == pytest.approx((0.025 ** (1 / 12), 1.0))
    assert intervals["specificity"] == (0.9, 0.95)
