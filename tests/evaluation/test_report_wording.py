"""The report's PPV/NPV sentence states a share as its count: an observed 12 of 12 is never
"right 100.0 % of the time" nor a certain 1.0000, as the number rules of `cxr.numbers` say."""

from cxr.evaluation.report import _share
from cxr.metrics.stats import wilson_interval


def test_all_right_is_a_count_with_its_interval_never_a_certain_rate():
    low, high = wilson_interval(12, 12)
    shown = _share(12, 12, {"ci95": {"precision": [low, high]}}, "precision")
    assert shown == f"12 of 12 (95 % CI {low:.4f}–1.0000)"
    assert "100" not in shown and "(1.0000" not in shown


def test_a_share_between_gives_count_rate_and_interval():
    low, high = wilson_interval(553, 556)
    shown = _share(553, 556, {"ci95": {"precision": [low, high]}}, "precision")
    assert shown == f"553 of 556 ({553 / 556:.4f}, 95 % CI {low:.4f}–{high:.4f})"
    assert _share(0, 0, {"ci95": {}}, "npv") == "0 of 0"
