"""Honest evaluation: metrics with intervals, calibration, paired comparison, the report."""
