"""Business impact of a model over one window, from its confusion counts (design.md §3).

All amounts are in the currency of the configured costs. The formulas are the
contract of design.md §3 "Business"; the two definitions it leaves open are:

- ``cost_savings`` = ``net_benefit``, as the monitoring guide sets its
  ``ml_business_cost_savings`` gauge: benefit minus error and review costs, before
  the operating cost (which ROI accounts for).
- ``expected_value`` (in :mod:`streamon.core.statistics.classification`) = ``net_benefit`` per
  labelled prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

SECONDS_PER_MONTH = 30 * 86_400  # design.md: the monthly operating cost is for a 30-day month


@dataclass(frozen=True)
class BusinessCosts:
    """Per-event costs and values, plus the monthly cost of running the system.

    >>> BusinessCosts(10.0, 500.0, 5.0, 500.0, 1.0, 3000.0).false_negative_cost
    500.0
    """

    false_positive_cost: float
    false_negative_cost: float
    investigation_cost: float
    fraud_prevention_value: float
    customer_retention_value: float
    system_operating_cost_monthly: float

    def __post_init__(self) -> None:
        # A negative or infinite cost is a configuration mistake; fail where it is made.
        for f in fields(self):
            value = getattr(self, f.name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{f.name} must be a finite number >= 0, got {value!r}")


def business_metrics(
    tp: int,
    fp: int,
    tn: int,
    fn: int,
    costs: BusinessCosts,
    window_seconds: float,
    operating_share: float = 1.0,
) -> dict[str, float]:
    """Business impact of one window of ``window_seconds`` seconds.

    Keys: ``fp_cost``, ``fn_cost``, ``investigation_cost``, ``benefit``, ``net_benefit``,
    ``operating_cost`` (monthly cost scaled from a 30-day month to the window, times
    ``operating_share``), ``roi`` = ``(net_benefit - operating_cost) / operating_cost``
    (NaN when the operating cost is 0: an undefined ratio never fires an alert),
    ``cost_savings`` (see the module docstring), ``processing_volume`` = TP+FP+TN+FN and
    ``alert_volume`` = TP+FP.

    ``operating_share`` is the part of the system's cost borne by these counts: 1 for a
    whole model; an A/B arm's share of the model's predictions for that arm, so the arms'
    operating costs add up to the model's instead of each arm paying for all of it.

    >>> costs = BusinessCosts(10, 500, 5, 500, 1, 30 * 100)
    >>> m = business_metrics(tp=8, fp=20, tn=970, fn=2, costs=costs, window_seconds=86_400)
    >>> m["net_benefit"], m["operating_cost"], m["roi"], m["cost_savings"]
    (3630.0, 100.0, 35.3, 3630.0)
    >>> business_metrics(8, 20, 970, 2, costs, 86_400, operating_share=0.25)["operating_cost"]
    25.0
    """
    if window_seconds < 0:
        raise ValueError(f"window_seconds must be >= 0, got {window_seconds!r}")
    if not 0.0 <= operating_share <= 1.0:
        raise ValueError(f"operating_share must be in [0, 1], got {operating_share!r}")
    fp_cost = fp * costs.false_positive_cost
    fn_cost = fn * costs.false_negative_cost
    investigation = (tp + fp) * costs.investigation_cost
    benefit = tp * costs.fraud_prevention_value + tn * costs.customer_retention_value
    net = benefit - (fp_cost + fn_cost + investigation)
    operating = costs.system_operating_cost_monthly * window_seconds / SECONDS_PER_MONTH * operating_share
    roi = (net - operating) / operating if operating > 0 else math.nan
    return {
        "fp_cost": float(fp_cost),
        "fn_cost": float(fn_cost),
        "investigation_cost": float(investigation),
        "benefit": float(benefit),
        "net_benefit": float(net),
        "operating_cost": float(operating),
        "roi": float(roi),
        "cost_savings": float(net),
        "processing_volume": float(tp + fp + tn + fn),
        "alert_volume": float(tp + fp),
    }
