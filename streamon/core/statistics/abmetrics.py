"""A/B comparisons from per-arm outcome counts: the fixed-horizon and the sequential test side by side.

Each treatment arm is compared with the control arm on three metrics, all from the
``[tp, fp, tn, fn]`` counts of labelled predictions per arm (differences are
treatment - control):

- ``error_rate``: (FP + FN) / labelled;
- ``detection_rate``: TP / (TP + FN), the recall on fraud at the threshold;
- ``business_value``: value per labelled prediction by outcome (:func:`outcome_values`);
  a value takes one of four values, so its mean and variance follow from the counts.

Used by ``streamon ab report`` (per look, replayed in event-time order) and by stage 2
(:func:`ab_samples`, from the monotonic outcome totals).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streamon.core.stages.evaluate import Sample
from streamon.core.stages.stage1 import DEFAULT_VARIANT
from streamon.core.state.cardinality import OTHER
from streamon.core.statistics.ab import two_proportion_ztest, welch_ttest_from_moments
from streamon.core.statistics.business import BusinessCosts
from streamon.core.statistics.sequential import (
    DEFAULT_TAU,
    SequentialResult,
    sequential_means,
    sequential_proportions,
)

AB_METRICS = ("error_rate", "detection_rate", "business_value")
OUTCOME_ORDER = ("true_positive", "false_positive", "true_negative", "false_negative")  # = OUTCOMES_ADDED


@dataclass(frozen=True)
class ABSettings:
    """Control arm (None: "A", else "control", else the first by name), level and mSPRT mixing scale."""

    control: str | None = None
    alpha: float = 0.05
    tau: float = DEFAULT_TAU


def outcome_values(costs: BusinessCosts) -> dict[str, float]:
    """Business value of one labelled prediction, by outcome.

    TP: prevented fraud minus its review; FP: friction plus review; TN: a customer
    left alone; FN: the missed fraud. Summed over a window this is ``net_benefit``:

    >>> from streamon.core.statistics.business import business_metrics
    >>> costs = BusinessCosts(50, 1000, 25, 1000, 200, 10000)
    >>> v = outcome_values(costs)
    >>> v
    {'true_positive': 975.0, 'false_positive': -75.0, 'true_negative': 200.0, 'false_negative': -1000.0}
    >>> counts = {"true_positive": 8, "false_positive": 20, "true_negative": 970, "false_negative": 2}
    >>> total = sum(n * v[k] for k, n in counts.items())
    >>> tp, fp, tn, fn = counts.values()
    >>> total == business_metrics(tp, fp, tn, fn, costs, 86400)["net_benefit"]
    True
    """
    return {
        "true_positive": float(costs.fraud_prevention_value - costs.investigation_cost),
        "false_positive": float(-(costs.false_positive_cost + costs.investigation_cost)),
        "true_negative": float(costs.customer_retention_value),
        "false_negative": float(-costs.false_negative_cost),
    }


def control_arm(arms: Iterable[str], wanted: str | None) -> str | None:
    """The control among ``arms``: ``wanted`` if given (None when absent), else A, control, the first.

    >>> control_arm(["B", "control"], None), control_arm(["x", "y"], None), control_arm(["A"], "C")
    ('control', 'x', None)
    """
    names = sorted(arms)
    if wanted is not None:
        return wanted if wanted in names else None
    for name in ("A", "control"):
        if name in names:
            return name
    return names[0] if names else None


def value_moments(counts: npt.ArrayLike, values: Mapping[str, float]) -> tuple[int, float, float]:
    """``(n, mean, sample variance)`` of the per-prediction value given ``[tp, fp, tn, fn]`` counts.

    >>> value_moments([1, 1, 0, 0], {"true_positive": 1.0, "false_positive": 3.0,
    ...                               "true_negative": 0.0, "false_negative": 0.0})
    (2, 2.0, 2.0)
    """
    c = np.asarray(counts, dtype=np.float64)
    v = np.array([values[k] for k in OUTCOME_ORDER], dtype=np.float64)
    n = float(c.sum())
    if n == 0:
        return 0, math.nan, math.nan
    mean = float(c @ v) / n
    var = float(c @ (v - mean) ** 2) / (n - 1) if n >= 2 else math.nan  # centred: no cancellation
    return int(n), mean, var


@dataclass(frozen=True)
class Comparison:
    """One metric of one treatment arm against the control: both tests."""

    metric: str
    fixed_p_value: float
    sequential: SequentialResult


def metric_inputs(
    control: npt.ArrayLike, treatment: npt.ArrayLike, values: Mapping[str, float]
) -> list[tuple[str, bool, tuple[Any, ...]]]:
    """``(metric, is a rate, test arguments)`` of the three :data:`AB_METRICS` from ``[tp, fp, tn, fn]``.

    Rates give ``(x_a, n_a, x_b, n_b)`` (two-proportion tests), the business value
    ``(n_a, mean_a, var_a, n_b, mean_b, var_b)`` (tests of means).

    >>> ones = dict.fromkeys(OUTCOME_ORDER, 1.0)
    >>> metric_inputs([1, 2, 3, 4], [5, 6, 7, 8], ones)[:2]
    [('error_rate', True, (6, 10, 14, 26)), ('detection_rate', True, (1, 5, 5, 13))]
    """
    tp_a, fp_a, tn_a, fn_a = (int(x) for x in np.asarray(control).tolist())
    tp_b, fp_b, tn_b, fn_b = (int(x) for x in np.asarray(treatment).tolist())
    n_a, n_b = tp_a + fp_a + tn_a + fn_a, tp_b + fp_b + tn_b + fn_b
    moments = (
        *value_moments([tp_a, fp_a, tn_a, fn_a], values),
        *value_moments([tp_b, fp_b, tn_b, fn_b], values),
    )
    return [
        ("error_rate", True, (fp_a + fn_a, n_a, fp_b + fn_b, n_b)),
        ("detection_rate", True, (tp_a, tp_a + fn_a, tp_b, tp_b + fn_b)),
        ("business_value", False, moments),
    ]


def fixed_p_value(is_rate: bool, args: tuple[Any, ...], alpha: float) -> float:
    """The fixed-horizon test's p-value of one :func:`metric_inputs` entry (z-test or Welch)."""
    if is_rate:
        x_a, n_a, x_b, n_b = args
        return two_proportion_ztest(x_a, n_a, x_b, n_b, alpha).p_value
    k_a, mean_a, var_a, k_b, mean_b, var_b = args
    return welch_ttest_from_moments(k_a, mean_a, var_a, k_b, mean_b, var_b, alpha).p_value


def sequential_test(is_rate: bool, args: tuple[Any, ...], alpha: float, tau: float) -> SequentialResult:
    """The mSPRT of one :func:`metric_inputs` entry."""
    if is_rate:
        x_a, n_a, x_b, n_b = args
        return sequential_proportions(x_a, n_a, x_b, n_b, alpha, tau)
    k_a, mean_a, var_a, k_b, mean_b, var_b = args
    return sequential_means(k_a, mean_a, var_a, k_b, mean_b, var_b, alpha, tau)


def compare(
    control: npt.ArrayLike, treatment: npt.ArrayLike, values: Mapping[str, float], alpha: float, tau: float
) -> list[Comparison]:
    """The three :data:`AB_METRICS` of ``treatment`` vs ``control`` from their ``[tp, fp, tn, fn]`` counts.

    >>> v = outcome_values(BusinessCosts(50, 1000, 25, 1000, 200, 10000))
    >>> [c.metric for c in compare([40, 60, 880, 20], [30, 90, 850, 30], v, 0.05, 0.1)]
    ['error_rate', 'detection_rate', 'business_value']
    """
    return [
        Comparison(metric, fixed_p_value(is_rate, args, alpha), sequential_test(is_rate, args, alpha, tau))
        for metric, is_rate, args in metric_inputs(control, treatment, values)
    ]


def ab_samples(
    model: str, totals: Mapping[str, npt.ArrayLike], settings: ABSettings, costs: BusinessCosts
) -> list[Sample]:
    """The ``streamon_ab_*`` samples of one model from cumulative ``[tp, fp, tn, fn]`` counts per variant.

    Predictions without a variant (``DEFAULT_VARIANT``) are not in an experiment, nor are
    variants folded by the cardinality cap (``OTHER``); a model
    with fewer than two arms, or without the configured control arm, has no samples. The
    p-value is one look's ``min(1, 1/Lambda)`` (stage 2 keeps no history of looks that would
    survive a rebalance): rejecting the first time it is ``<= alpha`` is the valid test.

    >>> s = ab_samples("m", {"A": [40, 60, 880, 20], "B": [30, 90, 850, 30]}, ABSettings(),
    ...                BusinessCosts(50, 1000, 25, 1000, 200, 10000))
    >>> sorted({x.name for x in s})[:2], dict(s[0].labels)
    (['streamon_ab_confidence_sequence_lower', 'streamon_ab_confidence_sequence_upper'], \
{'model': 'm', 'variant': 'B', 'metric': 'error_rate'})
    """
    # Folded overflow variants (OTHER) are a mix of arms, not an arm.
    arms = {k: v for k, v in totals.items() if k not in (DEFAULT_VARIANT, OTHER)}
    if len(arms) < 2:
        return []
    ctrl = control_arm(arms, settings.control)
    if ctrl is None:
        return []
    values = outcome_values(costs)
    samples = []
    for variant in sorted(arms):
        if variant == ctrl:
            continue
        for c in compare(arms[ctrl], arms[variant], values, settings.alpha, settings.tau):
            labels = (("model", model), ("variant", variant), ("metric", c.metric))
            s = c.sequential
            samples += [
                Sample("streamon_ab_difference", labels, s.diff),
                Sample("streamon_ab_sequential_p_value", labels, s.p_value),
                Sample("streamon_ab_confidence_sequence_lower", labels, s.cs_low),
                Sample("streamon_ab_confidence_sequence_upper", labels, s.cs_high),
                Sample("streamon_ab_significant", labels, 1.0 if s.significant else 0.0),
                Sample("streamon_ab_fixed_p_value", labels, c.fixed_p_value),
            ]
    return samples
