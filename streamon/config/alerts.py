"""``alerts``: the in-stream alert rules and their defaults."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from streamon.config._base import Duration, Float, NonEmptyStr, Str, _check_unique, _PathError, _Section

# --------------------------------------------------------------------------- alert rules

_ALERT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_METRIC_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


class AlertRule(_Section):
    """An in-stream alert rule: fires when ``metric <op> threshold`` holds for ``for`` seconds.

    ``resolve_threshold`` adds hysteresis: a firing alert resolves only once the value is
    back past it (``>=`` it for ``op: "<"``, ``<=`` it for ``op: ">"``), so a value
    hovering at the threshold does not flap. The YAML key ``for`` is the attribute ``for_``.

    >>> rule = AlertRule.model_validate(
    ...     {"alert": "A", "metric": "ml_model_accuracy", "op": "<", "threshold": 0.85,
    ...      "for": "10m", "severity": "warning", "category": "model_performance",
    ...      "resolve_threshold": 0.87})
    >>> rule.for_, rule.is_breached(0.80), rule.is_recovered(0.86), rule.is_recovered(0.9)
    (600.0, True, False, True)
    """

    alert: NonEmptyStr
    metric: NonEmptyStr
    op: Literal["<", ">"]
    threshold: Float
    for_: Duration = Field(default=0.0, alias="for")
    severity: Literal["warning", "critical"]
    category: Literal["model_performance", "data_quality", "business_impact", "infrastructure"]
    resolve_threshold: Float | None = None
    summary: Str = ""
    description: Str = ""

    @field_validator("alert")
    @classmethod
    def _alert_name(cls, value: str) -> str:
        if not _ALERT_NAME.fullmatch(value):
            raise ValueError("must be an identifier (letters, digits, '_'), as Alertmanager expects")
        return value

    @field_validator("metric")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        if not _METRIC_NAME.fullmatch(value):
            raise ValueError("must be a Prometheus metric name (letters, digits, '_', ':')")
        return value

    @model_validator(mode="after")
    def _hysteresis_side(self) -> AlertRule:
        r = self.resolve_threshold
        if r is not None and (
            (self.op == "<" and r < self.threshold) or (self.op == ">" and r > self.threshold)
        ):
            side = ">=" if self.op == "<" else "<="
            raise _PathError(
                ("resolve_threshold",),
                f"must be {side} threshold {self.threshold:g} for op '{self.op}' (got {r:g})",
            )
        return self

    @property
    def resolve_at(self) -> float:
        """The value the metric must cross back past to resolve (default: the threshold)."""
        return self.threshold if self.resolve_threshold is None else self.resolve_threshold

    def is_breached(self, value: float) -> bool:
        """True when ``value`` satisfies the firing condition."""
        return value < self.threshold if self.op == "<" else value > self.threshold

    def is_recovered(self, value: float) -> bool:
        """True when a firing alert may resolve at ``value`` (hysteresis applied)."""
        return value >= self.resolve_at if self.op == "<" else value <= self.resolve_at


def _rule(*values: object) -> dict[str, object]:
    keys = ("alert", "metric", "op", "threshold", "for", "severity", "category", "summary", "description")
    return dict(zip(keys, values, strict=True))


# The monitoring guide's rules (first seven) plus streamon's own. Raw dicts, in YAML shape,
# so the shipped config can be checked against them.
# fmt: off
DEFAULT_ALERT_RULES: tuple[dict[str, object], ...] = (
    _rule("ModelAccuracyDegraded", "ml_model_accuracy", "<", 0.85, "10m", "warning", "model_performance",
          "Model accuracy degraded", "Model accuracy is {{ value }}, below 85% threshold"),
    _rule("ModelAccuracyCritical", "ml_model_accuracy", "<", 0.75, "5m", "critical", "model_performance",
          "Model accuracy critically low", "Model accuracy is {{ value }}, below 75% threshold"),
    _rule("DataDriftDetected", "ml_data_drift_psi_score", ">", 0.1, "5m", "warning", "data_quality",
          "Data drift detected", "PSI of feature {{ feature }} is {{ value }}, above 0.1 threshold"),
    _rule("SevereDataDrift", "ml_data_drift_psi_score", ">", 0.2, "1m", "critical", "data_quality",
          "Severe data drift detected", "PSI of feature {{ feature }} is {{ value }}, above 0.2 threshold"),
    _rule("ROIBelowThreshold", "ml_business_roi", "<", 1.0, "30m", "warning", "business_impact",
          "Model ROI below threshold", "Model ROI is {{ value }}, below 1.0 threshold"),
    _rule("HighCPUUsage", "system_cpu_usage_percent", ">", 80, "10m", "warning", "infrastructure",
          "High CPU usage", "CPU usage is {{ value }}%, above 80% threshold"),
    _rule("HighMemoryUsage", "system_memory_usage_percent", ">", 90, "5m", "critical", "infrastructure",
          "High memory usage", "Memory usage is {{ value }}%, above 90% threshold"),
    _rule("ModelPerformanceDegraded", "streamon_model_degradation_ratio", ">", 0.05, "10m", "warning",
          "model_performance", "Model performance degraded",
          "{{ metric }} dropped {{ value }} relative to baseline, above 5% threshold"),
    _rule("ModelPerformanceDegradedHigh", "streamon_model_degradation_ratio", ">", 0.10, "5m", "critical",
          "model_performance", "Model performance severely degraded",
          "{{ metric }} dropped {{ value }} relative to baseline, above 10% threshold"),
    _rule("ConceptDriftDetected", "streamon_concept_drift_detected", ">", 0.5, "0m", "warning",
          "model_performance", "Concept drift detected",
          "The error-rate drift detector flagged a change in the relation between features and labels"),
    _rule("LabelCoverageLow", "streamon_label_coverage_ratio", "<", 0.05, "1h", "warning", "data_quality",
          "Label coverage low", "Only {{ value }} of predictions have labels, below 5% threshold"),
    # Data integrity per feature (docs/statistics.md): one warning each, no critical twin.
    _rule("FeatureOutOfRange", "streamon_feature_out_of_range_ratio", ">", 0.05, "15m", "warning",
          "data_quality", "Feature values outside the reference range",
          "{{ value }} of the values of feature {{ feature }} are outside the reference's range, "
          "above 5% threshold"),
    _rule("UnseenCategoriesHigh", "streamon_feature_unseen_category_ratio", ">", 0.05, "15m", "warning",
          "data_quality", "Unseen categories",
          "{{ value }} of the values of feature {{ feature }} are categories the reference does not have, "
          "above 5% threshold"),
    _rule("FeatureWrongType", "streamon_feature_wrong_type_ratio", ">", 0.01, "10m", "warning",
          "data_quality", "Feature values of the wrong type",
          "{{ value }} of the events have a non-number in numeric feature {{ feature }} (sent to the "
          "dead-letter topic), above 1% threshold"),
    _rule("UnexpectedFeatureKey", "streamon_feature_unexpected_key_ratio", ">", 0.01, "30m", "warning",
          "data_quality", "Undeclared feature key",
          "Key {{ key }} is in the features of {{ value }} of the predictions but not in the model's "
          "config, above 1% threshold"),
    _rule("FeatureAbsent", "streamon_feature_absent", ">", 0.5, "10m", "warning", "data_quality",
          "Feature absent", "No prediction of the window has feature {{ feature }}, which the reference has"),
    # Regression models (docs/statistics.md "Prediction and target drift"): the distribution of
    # the predictions or of the labels moved away from the reference. Degradation of MAE, RMSE,
    # MAPE, R² and the bias is ModelPerformanceDegraded{,High} (label metric).
    _rule("PredictionDriftDetected", "ml_prediction_drift_psi_score", ">", 0.2, "15m", "warning",
          "model_performance", "Prediction drift detected",
          "PSI of the predicted values is {{ value }}, above 0.2 threshold"),
    _rule("TargetDriftDetected", "ml_target_drift_psi_score", ">", 0.2, "15m", "warning", "data_quality",
          "Target drift detected", "PSI of the labels (target) is {{ value }}, above 0.2 threshold"),
    _rule("ConsumerLagHigh", "streamon_consumer_lag_messages", ">", 100000, "10m", "warning",
          "infrastructure", "Consumer lag high",
          "Consumer lag is {{ value }} messages, above 100000 threshold"),
    # A stage with work that commits nothing (Kafka gone, a call that never returns): fires
    # before kafka.stall_timeout (default 2m) makes the worker exit for a restart.
    _rule("StreamonWorkerStalled", "streamon_worker_stalled_seconds", ">", 60, "0m", "warning",
          "infrastructure", "streamon worker stalled",
          "Stage {{ stage }} has had work but committed nothing for {{ value }}s"),
)
# fmt: on


def _default_alert_rules() -> tuple[AlertRule, ...]:
    return tuple(AlertRule.model_validate(r) for r in DEFAULT_ALERT_RULES)


class AlertsConfig(_Section):
    """In-stream alert rules. Absent key = :data:`DEFAULT_ALERT_RULES`; ``rules: []`` = none."""

    rules: tuple[AlertRule, ...] = Field(default_factory=_default_alert_rules)

    @model_validator(mode="after")
    def _unique(self) -> AlertsConfig:
        _check_unique([r.alert for r in self.rules], "rules", "alert", "alert name")
        return self
