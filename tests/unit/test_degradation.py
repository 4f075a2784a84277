"""Degradation severity against a baseline (design.md §3)."""

from __future__ import annotations

import math

import pytest

from streamon.core.statistics.degradation import degradation


def test_relative_drop_and_severity() -> None:
    baseline = {"auc_roc": 0.90, "precision": 0.80, "recall": 0.60, "f1": 0.50}
    current = {"auc_roc": 0.88, "precision": 0.75, "recall": 0.50, "f1": 0.55}
    d = degradation(current, baseline)
    assert d["auc_roc"].relative_drop == pytest.approx(0.02 / 0.90, rel=1e-12)
    assert d["auc_roc"].severity == "none"  # 2.2%
    assert d["precision"].severity == "medium"  # 6.25%
    assert d["recall"].severity == "high"  # 16.7%
    assert d["f1"].relative_drop == pytest.approx(-0.1, rel=1e-12)  # an improvement
    assert d["f1"].severity == "none"
    assert (d["recall"].current, d["recall"].baseline, d["recall"].metric) == (0.50, 0.60, "recall")


def test_thresholds_are_strict_and_configurable() -> None:
    # A drop exactly at a threshold is not "above" it (values exact in binary floating point).
    d = degradation({"a": 0.75, "b": 0.5}, {"a": 1.0, "b": 1.0}, medium=0.25, high=0.5)
    assert (d["a"].severity, d["b"].severity) == ("none", "medium")
    d = degradation({"a": 0.7}, {"a": 1.0}, medium=0.2, high=0.25)
    assert d["a"].severity == "high"


def test_nan_safe() -> None:
    d = degradation(
        {"nan_now": math.nan, "nan_base": 0.5, "zero_base": 0.1, "missing_in_base": 0.9},
        {"nan_now": 0.8, "nan_base": math.nan, "zero_base": 0.0, "only_in_base": 0.5},
    )
    assert set(d) == {"nan_now", "nan_base", "zero_base"}
    for item in d.values():
        assert math.isnan(item.relative_drop)
        assert item.severity == "none"  # a NaN never alerts


def test_lower_is_better_and_negative_baselines() -> None:
    d = degradation({"cost": 120.0, "net": -20.0}, {"cost": 100.0, "net": -10.0}, lower_is_better={"cost"})
    assert d["cost"].relative_drop == pytest.approx(0.2, rel=1e-12)
    assert d["cost"].severity == "high"
    # A net benefit going from -10 to -20 is worse: a positive drop of 100%.
    assert d["net"].relative_drop == pytest.approx(1.0, rel=1e-12)
    assert d["net"].severity == "high"


def test_invalid_thresholds() -> None:
    with pytest.raises(ValueError):
        degradation({}, {}, medium=0.2, high=0.1)
    with pytest.raises(ValueError):
        degradation({}, {}, medium=-0.1)
