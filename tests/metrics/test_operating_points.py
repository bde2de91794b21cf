import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_curve

from cxr.metrics.classification import binary_metrics
from cxr.metrics.stats import EXACT_BELOW, proportion_interval, wilson_interval
from cxr.metrics.thresholds import (
    choose_threshold,
    operating_points,
    sensitivity_thresholds,
    threshold_sweep,
)


def _scores(n: int, seed: int):
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.6).astype(int)
    p = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 2.0 * (2 * truth - 1))))
    patients = [f"p{i // 2}" for i in range(n)]  # two images per patient
    return truth, np.round(p, 6), patients


@pytest.mark.parametrize("seed", range(5))
def test_thresholds_are_those_of_the_roc_curve(seed):
    truth, p, _ = _scores(40 + 37 * seed, seed)
    p = np.round(p, 2)  # ties, as rounded probabilities have
    targets = [0.5, 0.9, 0.95, 0.98, 1.0]
    got = sensitivity_thresholds(truth, p, targets)
    _, tpr, thresholds = roc_curve(truth, p, drop_intermediate=False)
    assert got == [min(thresholds[np.flatnonzero(tpr >= s)[0]], 1.0) for s in targets]
    assert got[1] == choose_threshold(truth, p, "sensitivity>=0.9")
    assert got == sorted(got, reverse=True)  # a higher sensitivity needs a lower threshold


def test_operating_points_reach_their_targets_on_tuning_with_honest_intervals():
    tuning, evaluated = _scores(240, 1), _scores(300, 2)
    points = operating_points(tuning, evaluated, n=300, seed=0)
    assert [o["target_sensitivity"] for o in points] == [0.9, 0.95, 0.98]
    for o in points:
        assert o["tuning_sensitivity"] >= o["target_sensitivity"]
        lo, hi = o["threshold_ci95"]
        assert lo < hi and lo <= o["threshold"] <= hi  # re-chosen thresholds do move
        for key in ("sensitivity", "specificity"):
            lo, hi = o[f"{key}_ci95"]
            assert 0 <= lo < hi <= 1 and lo <= o[key] <= hi
        decided = evaluated[1] >= o["threshold"]  # the one rule: positive iff p >= threshold
        assert o["sensitivity"] == decided[evaluated[0] == 1].mean()


def test_an_image_exactly_at_the_threshold_is_positive():
    m = binary_metrics(np.array([1, 0]), np.array([0.5, 0.5]), 0.5)
    assert (m["tp"], m["fp"]) == (1, 1)


def test_wilson_interval_against_the_closed_form():
    lo, hi = wilson_interval(0, 10)
    z2 = 1.959963984540054**2
    assert lo == pytest.approx(0, abs=1e-12) and hi == pytest.approx(z2 / (10 + z2))
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1) and lo == pytest.approx(10 / (10 + z2))


def test_threshold_sweep_matches_binary_metrics_at_every_threshold():
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.4, 0.3, 0.6, 0.7, 0.2, 0.1, 0.1, 0.05])
    points = threshold_sweep(truth, p)
    # distinct probabilities, highest first; 0.1 appears twice
    assert points["threshold"] == sorted(set(p.tolist()), reverse=True)
    for k, t in enumerate(points["threshold"]):
        m = binary_metrics(truth, p, t)
        assert [points[c][k] for c in ("tp", "fp", "fn", "tn")] == [
            m[c] for c in ("tp", "fp", "fn", "tn")
        ]
    # by hand at 0.4: .9 .8 .4 positive-and-true, .6 .7 false alarms
    k = points["threshold"].index(0.4)
    assert (points["tp"][k], points["fp"][k], points["fn"][k], points["tn"][k]) == (3, 2, 1, 4)


@settings(max_examples=200, deadline=None, database=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 20).map(lambda k: k / 20)), min_size=2
    ).filter(lambda xs: len({t for t, _ in xs}) == 2)
)
def test_threshold_sweep_agrees_with_scikit_learn(pairs):
    """scikit-learn's confusion_matrix_at_thresholds as the oracle, ties and all."""
    from sklearn.metrics import confusion_matrix_at_thresholds

    truth, p = np.array([t for t, _ in pairs]), np.array([q for _, q in pairs])
    ours = threshold_sweep(truth, p)
    tn, fp, fn, tp, thresholds = confusion_matrix_at_thresholds(truth, p)
    assert ours["threshold"] == thresholds.tolist()
    for key, oracle in {"tn": tn, "fp": fp, "fn": fn, "tp": tp}.items():
        assert ours[key] == oracle.tolist(), key


def test_one_rule_decides_when_wilson_replaces_the_bootstrap():
    bootstrap = (0.2, 0.4)
    assert proportion_interval(bootstrap, 12, 40, "patient bootstrap") == (
        bootstrap,
        "patient bootstrap",
    )
    for k, n, lo_hi in ((12, EXACT_BELOW - 1, bootstrap), (0, 40, bootstrap), (40, 40, bootstrap),
                        (12, 40, (0.3, 0.3)), (12, 40, None)):  # fmt: skip
        assert proportion_interval(lo_hi, k, n, "image bootstrap") == (
            wilson_interval(k, n),
            "Wilson",
        ), (k, n, lo_hi)
    assert proportion_interval(None, 0, 0, "image bootstrap") == (None, "image bootstrap")


def test_operating_points_on_few_cases_get_the_same_wilson_intervals_as_the_scores():
    """Under EXACT_BELOW cases behind a rate, the operating points switch to Wilson as `score`
    does for the metrics (they once kept a bootstrap interval there)."""
    tuning, evaluated = _scores(240, 1), _scores(24, 3)
    truth, p, _ = evaluated
    for o in operating_points(tuning, evaluated, n=200, seed=0):
        decided = p >= o["threshold"]
        pos, neg = decided[truth == 1], ~decided[truth == 0]
        counts = {
            "sensitivity": (int(pos.sum()), len(pos)),
            "specificity": (int(neg.sum()), len(neg)),
        }
        for key, (k, n) in counts.items():
            assert n < EXACT_BELOW
            assert o[f"{key}_ci_method"] == "Wilson", key
            assert o[f"{key}_ci95"] == pytest.approx(wilson_interval(k, n)), key
