"""Business formulas of design.md §3 against hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from streamon.core.statistics.business import SECONDS_PER_MONTH, BusinessCosts, business_metrics

COSTS = BusinessCosts(
    false_positive_cost=10.0,
    false_negative_cost=500.0,
    investigation_cost=5.0,
    fraud_prevention_value=450.0,
    customer_retention_value=0.5,
    system_operating_cost_monthly=9000.0,
)


def test_formulas_by_hand() -> None:
    m = business_metrics(tp=40, fp=160, tn=9780, fn=20, costs=COSTS, window_seconds=86_400)
    assert m["fp_cost"] == 1_600.0  # 160 * 10
    assert m["fn_cost"] == 10_000.0  # 20 * 500
    assert m["investigation_cost"] == 1_000.0  # (40 + 160) * 5
    assert m["benefit"] == 22_890.0  # 40 * 450 + 9780 * 0.5
    assert m["net_benefit"] == 10_290.0  # 22890 - (1600 + 10000 + 1000)
    assert m["operating_cost"] == 300.0  # 9000 per 30 days -> 300 per day
    assert m["roi"] == pytest.approx(33.3, rel=1e-12)  # (10290 - 300) / 300
    assert m["cost_savings"] == 10_290.0  # the guide's gauge: the net benefit
    assert m["processing_volume"] == 10_000.0
    assert m["alert_volume"] == 200.0


@pytest.mark.parametrize("window_seconds", [60, 3600, 86_400, 7 * 86_400, SECONDS_PER_MONTH])
def test_operating_cost_scales_with_the_window(window_seconds: int) -> None:
    m = business_metrics(tp=40, fp=160, tn=9780, fn=20, costs=COSTS, window_seconds=window_seconds)
    operating = 9000.0 * window_seconds / (30 * 86_400)
    assert m["operating_cost"] == pytest.approx(operating, rel=1e-12)
    assert m["roi"] == pytest.approx((10_290.0 - operating) / operating, rel=1e-12)
    # Everything but the operating cost and ROI is independent of the window length.
    assert m["net_benefit"] == 10_290.0


def test_full_month_operating_cost_is_the_monthly_cost() -> None:
    m = business_metrics(1, 0, 0, 0, COSTS, window_seconds=SECONDS_PER_MONTH)
    assert m["operating_cost"] == 9000.0


def test_roi_is_nan_without_operating_cost() -> None:
    free = BusinessCosts(10, 500, 5, 450, 0.5, 0)
    assert math.isnan(business_metrics(1, 1, 1, 1, free, window_seconds=3600)["roi"])
    assert math.isnan(business_metrics(1, 1, 1, 1, COSTS, window_seconds=0)["roi"])


def test_empty_window() -> None:
    m = business_metrics(0, 0, 0, 0, COSTS, window_seconds=3600)
    assert m["net_benefit"] == 0.0 and m["processing_volume"] == 0.0
    assert m["roi"] == -1.0  # the system still cost money


def test_invalid_costs_and_window_are_rejected() -> None:
    with pytest.raises(ValueError, match="false_positive_cost"):
        BusinessCosts(-1, 500, 5, 450, 0.5, 9000)
    with pytest.raises(ValueError, match="system_operating_cost_monthly"):
        BusinessCosts(10, 500, 5, 450, 0.5, math.inf)
    with pytest.raises(ValueError):
        business_metrics(1, 1, 1, 1, COSTS, window_seconds=-1)


def test_costs_are_frozen() -> None:
    with pytest.raises(AttributeError):
        COSTS.false_positive_cost = 1.0  # type: ignore[misc]
