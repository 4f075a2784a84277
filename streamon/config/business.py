"""``business_metrics``: costs, revenue and reporting."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from streamon.config._base import Bool, Float, _Section

# --------------------------------------------------------------------------- business


class Costs(_Section):
    """Per-outcome costs; ``system_operating_cost`` is per month (30 days)."""

    false_positive_cost: Float = Field(default=50.0, ge=0.0)
    false_negative_cost: Float = Field(default=1000.0, ge=0.0)
    investigation_cost: Float = Field(default=25.0, ge=0.0)
    # > 0 because ROI divides by the operating cost.
    system_operating_cost: Float = Field(default=10000.0, gt=0.0)


class Revenue(_Section):
    fraud_prevention_value: Float = Field(default=1000.0, ge=0.0)
    customer_retention_value: Float = Field(default=200.0, ge=0.0)


class Reporting(_Section):
    frequency: Literal["hourly", "daily", "weekly", "monthly"] = "daily"
    include_trends: Bool = True
    generate_roi_report: Bool = True


class BusinessMetricsConfig(_Section):
    enabled: Bool = True
    costs: Costs = Field(default_factory=Costs)
    revenue: Revenue = Field(default_factory=Revenue)
    reporting: Reporting = Field(default_factory=Reporting)
