"""Load and validate the YAML configuration that drives streamon.

The file keeps the shape of the monitoring guide the project follows (``monitoring``,
``data_drift``, ``business_metrics``) and adds what a Kafka service needs (``alerts.rules``,
``kafka``, ``models``, ``windows``, ``degradation``, ``fields``). Every section is a frozen
pydantic model with ``extra="forbid"``, so a misspelt key is an error instead of a silently
ignored setting. Every mistake a user can make becomes one :class:`~streamon.errors.ConfigError`
line naming the file and the dotted path of the bad key::

    config configs/x.yaml: models.0.threshold: must be <= 1 (got 1.5)

Durations accept a number of seconds or a string such as ``"30s"``, ``"5m"``, ``"24h"``,
``"7d"`` (also compound: ``"1h30m"``) and are stored as float seconds.

This module is pure (pydantic + PyYAML): no Kafka, no Prometheus.

>>> s = Settings.from_dict({"models": [{"name": "m", "features": [{"name": "x", "type": "numeric"}]}]})
>>> s.model("m").threshold, s.windows.current, s.kafka.topics.predictions
(0.5, 86400.0, 'predictions')
>>> Settings.from_dict({"models": [], "kafka": {"topicz": {}}})
Traceback (most recent call last):
...
streamon.errors.ConfigError: config <dict>: kafka.topicz: unknown key (did you mean 'topics'?) (+1 more error)
"""

from __future__ import annotations

import difflib
import math
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streamon.errors import ConfigError

__all__ = [
    "BASELINE_METRICS",
    "DEFAULT_ALERT_RULES",
    "DRIFT_METHODS",
    "AlertRule",
    "AlertsConfig",
    "BusinessMetricsConfig",
    "DataDriftConfig",
    "DegradationConfig",
    "DriftMethod",
    "FeatureSpec",
    "FieldsConfig",
    "KafkaConfig",
    "ModelSpec",
    "MonitoringConfig",
    "Settings",
    "WindowsConfig",
    "default_settings",
    "format_duration",
    "load_config",
    "parse_config_text",
    "parse_duration",
]

# --------------------------------------------------------------------------- durations

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_DURATION_FULL = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*)+")
_DURATION_HINT = 'use a number of seconds or a string like "30s", "5m", "24h", "7d"'


def parse_duration(value: object) -> float:
    """Return ``value`` as seconds: a number (already seconds) or a string like ``"1h30m"``.

    >>> parse_duration("5m"), parse_duration("1h30m"), parse_duration(2.5), parse_duration("500ms")
    (300.0, 5400.0, 2.5, 0.5)
    >>> parse_duration("soon")
    Traceback (most recent call last):
    ...
    ValueError: not a duration; use a number of seconds or a string like "30s", "5m", "24h", "7d"
    """
    # bool is an int subclass: `for: yes` must not silently mean 1 second.
    if isinstance(value, bool):
        raise ValueError(f"not a duration; {_DURATION_HINT}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            # A quoted plain number ("300") is unambiguous: seconds, like an unquoted one.
            seconds = float(text)
        except ValueError:
            if not _DURATION_FULL.fullmatch(text):
                raise ValueError(f"not a duration; {_DURATION_HINT}") from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    else:
        raise ValueError(f"not a duration; {_DURATION_HINT}")
    if not math.isfinite(seconds):
        raise ValueError("duration must be finite")
    if seconds < 0:
        raise ValueError("duration must be >= 0")
    return seconds


def format_duration(seconds: float) -> str:
    """Format seconds back in the largest unit that divides them exactly (for messages).

    Days only from two days up: people write a day as "24h".

    >>> format_duration(86400), format_duration(604800), format_duration(5400), format_duration(1.5)
    ('24h', '7d', '90m', '1.5s')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count = seconds / size
        if count >= (2 if unit == "d" else 1) and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"


def _duration(value: object) -> float:
    return parse_duration(value)


_FREQUENCY_NAMES = {"minutely": 60.0, "hourly": 3600.0, "daily": 86400.0, "weekly": 604800.0}


def _frequency(value: object) -> float:
    # The guide writes `frequency: "hourly"`; a duration is accepted as well.
    if isinstance(value, str) and value.strip().lower() in _FREQUENCY_NAMES:
        return _FREQUENCY_NAMES[value.strip().lower()]
    try:
        return parse_duration(value)
    except ValueError:
        names = ", ".join(_FREQUENCY_NAMES)
        raise ValueError(f'not a frequency; use one of {names} or a duration like "30m"') from None


# Strict scalars: YAML already types values, so a string where a number belongs (or `true`
# where a count belongs) is a mistake to report, not to coerce.
Duration = Annotated[float, BeforeValidator(_duration)]
Frequency = Annotated[float, BeforeValidator(_frequency)]
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
NonEmptyStr = Annotated[str, Strict(), Field(min_length=1)]
Probability = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]


def _client_value(value: object) -> str | int | float | bool:
    # A plain validator (not a Union) so an error's path is just the property name.
    if isinstance(value, str | int | float | bool) and not (
        isinstance(value, float) and not math.isfinite(value)
    ):
        return value
    raise ValueError("librdkafka property values must be a string, number or boolean")


ClientValue = Annotated[str | int | float | bool, PlainValidator(_client_value)]


class _PathError(ValueError):
    """A cross-field error raised inside a validator, with the path of the key to blame.

    Pydantic only knows the location of the model whose validator failed; ``loc`` is the
    rest of the path (relative to that model) so the message names the exact key.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _Section(BaseModel):
    # frozen: settings are shared by every component of a worker and must not drift apart.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- monitoring


class PrometheusConfig(_Section):
    """Where the ``/metrics`` endpoint listens. ``port: 0`` picks a free port (tests)."""

    port: Int = Field(default=8080, ge=0, le=65535)
    metrics_path: NonEmptyStr = "/metrics"
    bind_address: NonEmptyStr = "0.0.0.0"
    scrape_interval: Duration = 30.0
    # An exporter-toolkit web config (TLS, basic auth); relative to the config file's directory.
    web_config_file: Path | None = None
    health_without_auth: Bool = False

    @field_validator("web_config_file", mode="before")
    @classmethod
    def _web_config(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            return None
        path = _config_relative_path(value, info)
        from streamon.webconfig import WebConfigError, load_web_config

        try:
            load_web_config(path)  # at load time, so check-config reports a bad cert or hash
        except WebConfigError as exc:
            raise _PathError((), str(exc)) from None
        return path

    @field_validator("metrics_path")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @field_validator("scrape_interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        return _require_positive(value)


class MetricFamily(_Section):
    """One family of custom metrics: on/off, how often stage 2 evaluates it, and the
    fewest samples in a window below which its metrics are undefined (NaN, never alerting).
    Samples are labelled predictions for performance and business, predictions for drift."""

    enabled: Bool = True
    collection_interval: Duration = 300.0
    min_samples: Int = Field(default=50, ge=0)

    @field_validator("collection_interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        return _require_positive(value)


class EstimationFamily(MetricFamily):
    """Estimated performance of predictions still without labels (docs/statistics.md).

    ``min_samples`` counts labelled predictions: in the reference window for the
    calibration map, in the current window for the calibration check."""

    min_samples: Int = Field(default=100, ge=0)
    prior_strength: Float = Field(default=10.0, gt=0.0, le=1e6)  # Beta prior pseudo-count per score bin
    confidence: Float = Field(default=0.9, gt=0.0, lt=1.0)  # level of the lower/upper band
    calibration_p_value: Float = Field(default=0.01, gt=0.0, lt=1.0)  # below: reliable = 0


class CustomMetrics(_Section):
    model_performance: MetricFamily = Field(default_factory=lambda: MetricFamily(collection_interval=300.0))
    estimated_performance: EstimationFamily = Field(default_factory=EstimationFamily)
    data_drift: MetricFamily = Field(
        default_factory=lambda: MetricFamily(collection_interval=3600.0, min_samples=100)
    )
    business_metrics: MetricFamily = Field(default_factory=lambda: MetricFamily(collection_interval=900.0))


class AlertChannels(_Section):
    """Alert delivery switch; the channels are routed by Alertmanager, not by streamon."""

    enabled: Bool = True
    channels: tuple[NonEmptyStr, ...] = ("slack", "email", "pagerduty")


class DashboardsConfig(_Section):
    auto_deploy: Bool = False
    grafana_url: NonEmptyStr = "http://grafana:3000"
    folder: NonEmptyStr = "streamon"
    datasource: NonEmptyStr = "Prometheus"


class MonitoringConfig(_Section):
    enabled: Bool = True
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    custom_metrics: CustomMetrics = Field(default_factory=CustomMetrics)
    alerts: AlertChannels = Field(default_factory=AlertChannels)
    dashboards: DashboardsConfig = Field(default_factory=DashboardsConfig)


# --------------------------------------------------------------------------- data drift

DRIFT_METHODS = ("psi", "ks_test", "js_divergence", "chi_square", "wasserstein")
# For these two the threshold is a p-value: drift when p < threshold.
_P_VALUE_METHODS = ("ks_test", "chi_square")


class DriftMethod(_Section):
    """One drift statistic and its threshold.

    ``psi``, ``js_divergence`` (base-2 distance, in [0, 1]) and ``wasserstein`` (divided by
    the reference standard deviation, so it is unit free) flag drift above the threshold;
    ``ks_test`` and ``chi_square`` thresholds are p-values and flag drift below them.
    """

    name: Literal["psi", "ks_test", "js_divergence", "chi_square", "wasserstein"]
    threshold: Float = Field(ge=0.0)
    enabled: Bool = True

    @model_validator(mode="after")
    def _range(self) -> DriftMethod:
        if self.name in _P_VALUE_METHODS and not 0.0 < self.threshold <= 1.0:
            raise _PathError(
                ("threshold",), f"is a p-value for {self.name}: must be in (0, 1] (got {self.threshold})"
            )
        if self.name == "js_divergence" and self.threshold > 1.0:
            raise _PathError(
                ("threshold",), f"must be <= 1 for js_divergence (base 2) (got {self.threshold})"
            )
        return self

    @property
    def uses_p_value(self) -> bool:
        """True when drift means ``statistic < threshold`` (a p-value)."""
        return self.name in _P_VALUE_METHODS


def _default_drift_methods() -> tuple[DriftMethod, ...]:
    return (
        DriftMethod(name="psi", threshold=0.1),
        DriftMethod(name="ks_test", threshold=0.05),
        DriftMethod(name="js_divergence", threshold=0.1),
        DriftMethod(name="chi_square", threshold=0.05),
        DriftMethod(name="wasserstein", threshold=0.1),
    )


class DriftSchedule(_Section):
    """The guide's drift schedule. ``null`` (the default) = follow the authoritative keys.

    ``frequency`` mirrors ``monitoring.custom_metrics.data_drift.collection_interval``,
    ``window_size`` mirrors ``windows.current`` and ``reference_window`` mirrors
    ``windows.reference``; when set, they must agree (one window drives every statistic).
    """

    frequency: Frequency | None = None
    window_size: Duration | None = None
    reference_window: Duration | None = None


class DriftAlertLevels(_Section):
    """PSI levels that classify a feature's drift as warning / critical."""

    warning_threshold: Float = Field(default=0.1, gt=0.0)
    critical_threshold: Float = Field(default=0.2, gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> DriftAlertLevels:
        if self.critical_threshold < self.warning_threshold:
            raise _PathError(
                ("critical_threshold",),
                f"must be >= warning_threshold {self.warning_threshold:g} (got {self.critical_threshold:g})",
            )
        return self


class DataDriftConfig(_Section):
    enabled: Bool = True
    bins: Int = Field(default=10, ge=2, le=1000)
    methods: tuple[DriftMethod, ...] = Field(default_factory=_default_drift_methods)
    # None = every feature of every model; a list restricts drift to those features.
    features: tuple[NonEmptyStr, ...] | None = None
    schedule: DriftSchedule = Field(default_factory=DriftSchedule)
    alerts: DriftAlertLevels = Field(default_factory=DriftAlertLevels)

    @model_validator(mode="after")
    def _unique(self) -> DataDriftConfig:
        _check_unique([m.name for m in self.methods], "methods", "name", "drift method")
        if self.features is not None:
            _check_unique(list(self.features), "features", None, "feature")
        return self

    def method(self, name: str) -> DriftMethod | None:
        """The enabled drift method called ``name``, or None when absent or disabled."""
        for method in self.methods:
            if method.name == name and method.enabled:
                return method
        return None


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


# --------------------------------------------------------------------------- kafka

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_CLIENT_KEY = re.compile(r"[a-z][a-z0-9._]*")
# streamon sets these itself: overriding them would break the group or exactly-once.
_RESERVED_CLIENT_KEYS = {
    "bootstrap.servers": "use kafka.bootstrap_servers",
    "group.id": "use kafka.group_id",
    "transactional.id": "streamon derives it per worker for exactly-once",
    "group.instance.id": "streamon derives it from --instance-id (static membership)",
    "session.timeout.ms": "use kafka.session_timeout",
    "enable.auto.commit": "offsets are committed inside transactions",
    "isolation.level": "streamon reads read_committed for exactly-once",
}


class Topics(_Section):
    predictions: NonEmptyStr = "predictions"
    labels: NonEmptyStr = "labels"
    partials: NonEmptyStr = "streamon-partials"
    alerts: NonEmptyStr = "streamon-alerts"
    dead_letter: NonEmptyStr = "streamon-dead-letter"

    @field_validator("*")
    @classmethod
    def _legal(cls, value: str) -> str:
        if not _TOPIC_NAME.fullmatch(value) or value in (".", ".."):
            raise ValueError("not a legal Kafka topic name (1-249 of letters, digits, '.', '_', '-')")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> Topics:
        # Sharing a topic would feed partials or alerts back into the input decoder.
        seen: dict[str, str] = {}
        for key, topic in self.model_dump().items():
            if topic in seen:
                raise _PathError(
                    (key,), f"topic '{topic}' is also kafka.topics.{seen[topic]}; topics must differ"
                )
            seen[topic] = key
        return self


class KafkaConfig(_Section):
    bootstrap_servers: NonEmptyStr = "127.0.0.1:9092"
    group_id: NonEmptyStr = "streamon"
    topics: Topics = Field(default_factory=Topics)
    # Used only when streamon creates missing topics. Predictions and labels must be
    # co-partitioned (same count, key = prediction_id) for the join to see both sides.
    partitions: Int = Field(default=6, ge=1, le=10000)
    partials_partitions: Int = Field(default=6, ge=1, le=10000)
    replication_factor: Int = Field(default=1, ge=1, le=32)
    batch_size: Int = Field(default=5000, ge=1, le=1_000_000)
    flush_interval: Duration = 1.0
    max_message_bytes: Int = Field(default=65536, ge=1024)
    # How long the group waits for a silent worker before its partitions move (session.timeout.ms).
    # With --instance-id (static membership) it is also how long a restarting worker keeps its
    # partitions: a restart within it restores only the gap. Bounds: the broker's defaults for
    # group.min/max.session.timeout.ms.
    session_timeout: Duration = 30.0
    # Stage 1 splits a batch's partial deltas into messages of at most this many bytes (the
    # producer's message.max.bytes and the topics' max.message.bytes follow, see topics.py).
    # >= 256 KiB: one indivisible part of a bucket (a full quantile sketch) always fits.
    max_partial_bytes: Int = Field(default=524288, ge=262144, le=64 * 1024 * 1024)
    # Failed tries of the same stage-1 batch, for a reason carried by its messages (too large
    # for a topic), before the message at fault is isolated and dead-lettered as `quarantined`.
    quarantine_after: Int = Field(default=3, ge=1, le=100)
    # A worker that has work but commits no transaction for this long (brokers gone, a call
    # stuck in librdkafka) exits with code 4 so that its supervisor restarts it.
    stall_timeout: Duration = 120.0
    # After SIGTERM the worker finishes or aborts its batch and leaves the groups; past this
    # it exits at once (code 4). Keep it below the supervisor's own kill timeout.
    shutdown_grace: Duration = 30.0
    client: dict[str, ClientValue] = Field(default_factory=dict)

    @field_validator("flush_interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        return _require_positive(value)

    @field_validator("stall_timeout", "shutdown_grace")
    @classmethod
    def _liveness_bounds(cls, value: float) -> float:
        if not 1.0 <= value <= 86400.0:
            raise ValueError("must be between 1s and 24h")
        return value

    @field_validator("session_timeout")
    @classmethod
    def _session_timeout(cls, value: float) -> float:
        if not 6.0 <= value <= 1800.0:
            raise ValueError("must be between 6s and 30m (the broker's session timeout bounds)")
        return value

    @field_validator("client")
    @classmethod
    def _client_keys(
        cls, value: dict[str, str | int | float | bool], info: ValidationInfo
    ) -> dict[str, str | int | float | bool]:
        # Secrets come from <property>_file / <property>_env, resolved only when a client is
        # built (streamon.kafka_client): the settings never hold them.
        from streamon.kafka_client import client_entry_problem, split_reference

        out = dict(value)
        for key, item in value.items():
            ref = split_reference(key)
            prop = ref[0] if ref else key
            if prop in _RESERVED_CLIENT_KEYS:
                raise _PathError((key,), f"set by streamon, not here: {_RESERVED_CLIENT_KEYS[prop]}")
            if not _CLIENT_KEY.fullmatch(key):
                raise _PathError((key,), "not a librdkafka property name (e.g. 'security.protocol')")
            problem = client_entry_problem(key, item)
            if problem:
                raise _PathError((key,), problem)
            twin = next((k for k in (prop, f"{prop}_file", f"{prop}_env") if k != key and k in value), None)
            if ref and twin:
                raise _PathError((key,), f"{twin} is given as well: keep one of the two")
            if ref and ref[1] == "file":  # a non-empty string (checked above)
                out[key] = str(_config_relative_path(item, info))
        return out


# --------------------------------------------------------------------------- models

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# Metrics a baseline may pin; degradation = relative drop of the live value against it.
BASELINE_METRICS = ("accuracy", "precision", "recall", "specificity", "f1_score", "auc_roc", "auc_pr")


class FeatureSpec(_Section):
    name: NonEmptyStr
    type: Literal["numeric", "categorical"]


class SegmentConfig(_Section):
    """A segment field: metrics per value of one key of the event's ``features`` object."""

    field: NonEmptyStr
    # Explicit allowlist; other values fold into "__other__". None = any value (capped).
    values: tuple[NonEmptyStr, ...] | None = None
    # Distinct values monitored on their own (bottom-K by stable hash); the rest are "__other__".
    max_values: Int = Field(default=20, ge=1, le=1000)

    @model_validator(mode="after")
    def _fits(self) -> SegmentConfig:
        if self.values is not None:
            _check_unique(list(self.values), "values", None, "segment value")
            if len(self.values) > self.max_values:
                raise _PathError(
                    ("values",),
                    f"lists {len(self.values)} values, more than max_values {self.max_values}: raise it",
                )
        return self


class ModelSpec(_Section):
    """One monitored model: its decision threshold, features and reference."""

    name: NonEmptyStr
    threshold: Probability = 0.5
    score_bins: Int = Field(default=200, ge=2, le=100_000)
    # Path of a profile from `streamon reference build`; relative paths are resolved against
    # the config file's directory. None = the rolling reference window.
    reference_profile: Path | None = None
    baseline: dict[str, Float] = Field(default_factory=dict)
    features: tuple[FeatureSpec, ...] = Field(min_length=1)
    # Performance and drift per value of these feature keys (streamon_segment_* metrics).
    segments: tuple[SegmentConfig, ...] = ()
    # Explicit allowlist of A/B variants; others fold into "__other__". None = any (capped).
    variants: tuple[NonEmptyStr, ...] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # The name is a Kafka key, a metric label and part of file names: keep it plain.
        if not _MODEL_NAME.fullmatch(value):
            raise ValueError(
                "must start with a letter or digit and use only letters, digits, '.', '_', ':', '-'"
            )
        return value

    @field_validator("reference_profile", mode="before")
    @classmethod
    def _profile_path(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            return None
        return _config_relative_path(value, info)

    @field_validator("baseline")
    @classmethod
    def _baseline(cls, value: dict[str, float]) -> dict[str, float]:
        for key, number in value.items():
            if key not in BASELINE_METRICS:
                hint = _did_you_mean(key, BASELINE_METRICS) or f" (one of: {', '.join(BASELINE_METRICS)})"
                raise _PathError((key,), f"unknown baseline metric{hint}")
            # > 0: degradation divides by the baseline; <= 1: every baseline metric is a ratio.
            if not 0.0 < number <= 1.0:
                raise _PathError((key,), f"must be in (0, 1] (got {number:g})")
        return value

    @model_validator(mode="after")
    def _unique(self) -> ModelSpec:
        _check_unique([f.name for f in self.features], "features", "name", "feature name")
        _check_unique([s.field for s in self.segments], "segments", "field", "segment field")
        if self.variants is not None:
            _check_unique(list(self.variants), "variants", None, "variant")
        return self

    def feature(self, name: str) -> FeatureSpec | None:
        """The feature called ``name``, or None."""
        for feature in self.features:
            if feature.name == name:
                return feature
        return None


# --------------------------------------------------------------------------- windows


# The ring holds current + reference; past this a typo (`bucket: 1` meaning a minute)
# would silently cost gigabytes of summaries.
MAX_WINDOW_BUCKETS = 100_000


class WindowsConfig(_Section):
    """Event-time bucket ring. ``reference`` is the rolling window just before ``current``."""

    bucket: Duration = 60.0
    current: Duration = 86400.0
    reference: Duration = 604800.0
    label_horizon: Duration = 30 * 86400.0
    orphan_grace: Duration = 3600.0
    max_future_skew: Duration = 300.0
    max_event_age: Duration = 35 * 86400.0

    @model_validator(mode="after")
    def _consistent(self) -> WindowsConfig:
        for key in ("bucket", "current", "reference", "label_horizon", "max_event_age"):
            if getattr(self, key) <= 0:
                raise _PathError((key,), f"must be > 0 (got {getattr(self, key):g})")
        for key in ("current", "reference"):
            value = getattr(self, key)
            count = value / self.bucket
            if abs(count - round(count)) > 1e-9 * max(count, 1.0):
                raise _PathError(
                    (key,),
                    f"must be a whole multiple of windows.bucket {format_duration(self.bucket)} "
                    f"(got {format_duration(value)})",
                )
        buckets = round((self.current + self.reference) / self.bucket)
        if buckets > MAX_WINDOW_BUCKETS:
            raise _PathError(
                ("bucket",),
                f"current + reference would hold {buckets} buckets of {format_duration(self.bucket)} "
                f'(max {MAX_WINDOW_BUCKETS}); use a larger bucket such as "1m"',
            )
        return self

    @property
    def current_buckets(self) -> int:
        return round(self.current / self.bucket)

    @property
    def reference_buckets(self) -> int:
        return round(self.reference / self.bucket)


class DegradationConfig(_Section):
    """Relative drop against the baseline above which degradation is medium / high."""

    medium: Float = Field(default=0.05, gt=0.0, le=1.0)
    high: Float = Field(default=0.10, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> DegradationConfig:
        if self.high < self.medium:
            raise _PathError(("high",), f"must be >= medium {self.medium:g} (got {self.high:g})")
        return self


class ABTestingConfig(_Section):
    """Live A/B tests of stage 2 (streamon_ab_*): control arm, level, mSPRT mixing scale."""

    control: NonEmptyStr | None = None  # None: "A", else "control", else the first variant by name
    alpha: Float = Field(default=0.05, gt=0.0, lt=1.0)
    # Mixing standard deviation in per-unit standard deviations (a standardised effect size).
    sequential_tau: Float = Field(default=0.1, gt=0.0, le=10.0)


# --------------------------------------------------------------------------- field mapping


class _FieldMap(_Section):
    @model_validator(mode="after")
    def _distinct(self) -> _FieldMap:
        # Two logical fields read from one event key would silently alias each other.
        seen: dict[str, str] = {}
        for key, source in self.model_dump().items():
            if source in seen:
                raise _PathError((key,), f"event field '{source}' is already mapped to {seen[source]}")
            seen[source] = key
        return self


class PredictionFields(_FieldMap):
    """Names of the prediction event's fields in the user's events (defaults = schemas/)."""

    prediction_id: NonEmptyStr = "prediction_id"
    model: NonEmptyStr = "model"
    model_version: NonEmptyStr = "model_version"
    variant: NonEmptyStr = "variant"
    experiment: NonEmptyStr = "experiment"
    entity_id: NonEmptyStr = "entity_id"
    ts: NonEmptyStr = "ts"
    score: NonEmptyStr = "score"
    predicted: NonEmptyStr = "predicted"
    features: NonEmptyStr = "features"
    latency_ms: NonEmptyStr = "latency_ms"
    amount: NonEmptyStr = "amount"


class LabelFields(_FieldMap):
    prediction_id: NonEmptyStr = "prediction_id"
    label: NonEmptyStr = "label"
    ts: NonEmptyStr = "ts"
    amount: NonEmptyStr = "amount"


class FieldsConfig(_Section):
    prediction: PredictionFields = Field(default_factory=PredictionFields)
    label: LabelFields = Field(default_factory=LabelFields)


# --------------------------------------------------------------------------- limits


class LimitsConfig(_Section):
    """Bounds that protect a worker (and Prometheus) from hostile or broken producers.

    Input size limits (per message, per event) and cardinality caps on every label
    whose values come from data. What exceeds a cap is folded into "other" and counted.
    """

    # Per-event size limits; an event over one is rejected (dead-letter topic), see
    # docs/events.md. The per-message byte limit stays kafka.max_message_bytes (one key).
    max_features: Int = Field(default=500, ge=1, le=100_000)
    # >= 128: a configured model name (up to 128 characters) must always fit.
    max_string_length: Int = Field(default=256, ge=128, le=1_000_000)
    max_feature_value_length: Int = Field(default=1024, ge=1, le=10_000_000)
    # Cardinality caps (bottom-K by stable hash, merge-invariant; see docs/security.md).
    max_variants_per_model: Int = Field(default=20, ge=1, le=1000)
    max_category_values: Int = Field(default=1000, ge=1, le=100_000)


# --------------------------------------------------------------------------- settings


class Settings(_Section):
    """The whole validated configuration. Build it with :func:`load_config` or :meth:`from_dict`.

    >>> s = default_settings()
    >>> s.model_names, [f.name for f in s.drift_features("fraud-detector")][:2]
    (('fraud-detector',), ['transaction_amount', 'merchant_category'])
    """

    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    data_drift: DataDriftConfig = Field(default_factory=DataDriftConfig)
    business_metrics: BusinessMetricsConfig = Field(default_factory=BusinessMetricsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    models: tuple[ModelSpec, ...] = Field(min_length=1)
    windows: WindowsConfig = Field(default_factory=WindowsConfig)
    degradation: DegradationConfig = Field(default_factory=DegradationConfig)
    fields: FieldsConfig = Field(default_factory=FieldsConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    ab_testing: ABTestingConfig = Field(default_factory=ABTestingConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        _check_unique([m.name for m in self.models], "models", "name", "model name")
        for i, m in enumerate(self.models):
            cap = self.limits.max_variants_per_model
            if m.variants is not None and len(m.variants) > cap:
                raise _PathError(
                    ("models", i, "variants"),
                    f"lists {len(m.variants)} variants, more than limits.max_variants_per_model {cap}: "
                    "raise that limit",
                )
        known = {f.name for m in self.models for f in m.features}
        for i, name in enumerate(self.data_drift.features or ()):
            if name not in known:
                hint = _did_you_mean(name, sorted(known)) or f" (models define: {', '.join(sorted(known))})"
                raise _PathError(("data_drift", "features", i), f"unknown feature '{name}'{hint}")
        schedule = self.data_drift.schedule
        mirrors = (
            ("frequency", schedule.frequency, "monitoring.custom_metrics.data_drift.collection_interval",
             self.monitoring.custom_metrics.data_drift.collection_interval),
            ("window_size", schedule.window_size, "windows.current", self.windows.current),
            ("reference_window", schedule.reference_window, "windows.reference", self.windows.reference),
        )  # fmt: skip
        for key, value, other, expected in mirrors:
            if value is not None and value != expected:
                raise _PathError(
                    ("data_drift", "schedule", key),
                    f"{format_duration(value)} disagrees with {other} {format_duration(expected)}; "
                    "set them equal or remove this key",
                )
        return self

    # ---- construction

    @classmethod
    def from_dict(cls, data: object, *, source: str = "<dict>", base_dir: Path | None = None) -> Settings:
        """Validate a parsed config mapping; any problem becomes a one-line ConfigError.

        ``base_dir`` resolves relative ``reference_profile`` paths (load_config passes the
        config file's directory).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"config {source}: top level must be a mapping of sections (got {_kind(data)})")
        try:
            return cls.model_validate(data, context={"base_dir": base_dir})
        except ValidationError as exc:
            raise ConfigError(f"config {source}: {_describe(exc)}") from None
        except RecursionError:
            raise ConfigError(f"config {source}: nested too deeply") from None

    # ---- lookups

    def model(self, name: str) -> ModelSpec:
        """The model called ``name``; KeyError (listing the known names) when absent."""
        for spec in self.models:
            if spec.name == name:
                return spec
        raise KeyError(f"unknown model {name!r}; configured: {', '.join(self.model_names)}")

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def drift_features(self, model: str) -> tuple[FeatureSpec, ...]:
        """The features of ``model`` that drift is monitored on (data_drift.features filter)."""
        spec = self.model(model)
        if self.data_drift.features is None:
            return spec.features
        wanted = set(self.data_drift.features)
        return tuple(f for f in spec.features if f.name in wanted)

    # The guide has two switches per family (monitoring.custom_metrics.X.enabled and the
    # section's own enabled); a family runs only when both, and monitoring itself, are on.
    @property
    def performance_enabled(self) -> bool:
        return self.monitoring.enabled and self.monitoring.custom_metrics.model_performance.enabled

    @property
    def drift_enabled(self) -> bool:
        return (
            self.monitoring.enabled
            and self.data_drift.enabled
            and self.monitoring.custom_metrics.data_drift.enabled
        )

    @property
    def business_enabled(self) -> bool:
        return (
            self.monitoring.enabled
            and self.business_metrics.enabled
            and self.monitoring.custom_metrics.business_metrics.enabled
        )

    @property
    def estimation_enabled(self) -> bool:
        return self.monitoring.enabled and self.monitoring.custom_metrics.estimated_performance.enabled

    def summary(self) -> str:
        """One line describing what will be monitored (printed by ``streamon check-config``).

        >>> default_settings().summary()  # doctest: +ELLIPSIS
        '1 model (fraud-detector: 4 features, threshold 0.5); windows current 24h, reference 7d, ...'
        """
        models = ", ".join(
            f"{m.name}: {len(m.features)} features, threshold {m.threshold:g}"
            + (", reference profile" if m.reference_profile else "")
            for m in self.models
        )
        w, t = self.windows, self.kafka.topics
        plural = "s" if len(self.models) != 1 else ""
        return (
            f"{len(self.models)} model{plural} ({models}); "
            f"windows current {format_duration(w.current)}, reference {format_duration(w.reference)}, "
            f"bucket {format_duration(w.bucket)}; "
            f"topics {t.predictions} + {t.labels} -> {t.partials} -> {t.alerts} "
            f"(dead letter {t.dead_letter}); "
            f"{len(self.alerts.rules)} alert rules"
        )


def default_settings() -> Settings:
    """Settings with every default and the guide's fraud-detector model (for tests and demos)."""
    return Settings.from_dict(
        {
            "models": [
                {
                    "name": "fraud-detector",
                    "features": [
                        {"name": "transaction_amount", "type": "numeric"},
                        {"name": "merchant_category", "type": "categorical"},
                        {"name": "transaction_hour", "type": "numeric"},
                        {"name": "days_since_last_transaction", "type": "numeric"},
                    ],
                }
            ]
        },
        source="<defaults>",
    )


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, but a repeated key is an error instead of last-one-wins."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        # Merge keys (`<<: *base`) may legitimately be overridden; only own keys count.
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            key = loader.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_config_text(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> Settings:
    """Parse YAML ``text`` and validate it; ``source`` names it in error messages.

    >>> parse_config_text("models: [{name: m, threshold: 1.5, features: [{name: x, type: numeric}]}]",
    ...                   source="x.yaml")
    Traceback (most recent call last):
    ...
    streamon.errors.ConfigError: config x.yaml: models.0.threshold: must be <= 1 (got 1.5)
    """
    if not text.strip():
        raise ConfigError(f"config {source}: file is empty; at least `models:` is required")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = _one_line(exc.problem or exc.context or "syntax error")
        raise ConfigError(f"config {source}: invalid YAML: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {source}: invalid YAML: {_one_line(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"config {source}: invalid YAML: nested too deeply") from None
    if data is None:
        raise ConfigError(
            f"config {source}: file has no settings (only comments); at least `models:` is required"
        )
    return Settings.from_dict(data, source=source, base_dir=base_dir)


def load_config(path: str | Path) -> Settings:
    """Read, parse and validate the YAML config at ``path``.

    Raises :class:`~streamon.errors.ConfigError` with one line naming the file and the key.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
    >>> _ = p.write_text("models: [{name: m, features: [{name: x, type: numeric}]}]\\n")
    >>> load_config(p).model("m").threshold
    0.5
    >>> load_config(p.with_name("missing.yaml"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamon.errors.ConfigError: config .../missing.yaml: file not found
    """
    path = Path(path)
    source = str(path)
    try:
        # utf-8-sig: editors on Windows like to prepend a BOM.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"config {source}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config {source}: is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"config {source}: cannot read: {exc.strerror or exc}") from None
    return parse_config_text(text, source=source, base_dir=path.resolve().parent)


# --------------------------------------------------------------------------- error text


def _config_relative_path(value: object, info: ValidationInfo) -> Path:
    """A file path from the config; a relative one is relative to the config file's directory."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a file path (a non-empty string) or null")
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    return base / path if not path.is_absolute() and isinstance(base, Path) else path


def _require_positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def _check_unique(names: list[str], field: str, attr: str | None, what: str) -> None:
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            loc: tuple[str | int, ...] = (field, i, attr) if attr else (field, i)
            raise _PathError(loc, f"duplicate {what} '{name}' (also {field}.{first[name]})")
        first[name] = i


def _did_you_mean(word: str, choices: Any) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _kind(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    for typ, name in names.items():
        if isinstance(value, typ):
            return name
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _path_part(part: str | int) -> str:
    """A key as written in a dotted path; quoted when empty, padded or not printable (one line)."""
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def _got(value: object) -> str:
    text = _one_line(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` (for key suggestions)."""
    current: type[BaseModel] = Settings
    for part in loc:
        if isinstance(part, int):
            continue  # a list index: the item has the same model
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        inner = _inner_model(field.annotation) if field is not None else None
        if inner is None:
            return None
        current = inner
    return current


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (tuple, list, Union, types.UnionType, Annotated):
        for arg in get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


_TYPE_WORDS = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "invalid_key": "keys must be strings",
    "missing": "required key missing",
    "recursion_loop": "refers to itself (YAML alias cycle)",
}

_BOUND_WORDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _message(err: Mapping[str, Any]) -> tuple[tuple[str | int, ...], str]:
    """Turn one pydantic error into (path, plain English message)."""
    loc: tuple[str | int, ...] = tuple(err["loc"])
    kind: str = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    value = err.get("input")
    show_input = True
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
        text, show_input = "unknown key" + _did_you_mean(str(loc[-1]), allowed), False
    elif kind == "value_error" and isinstance(ctx.get("error"), _PathError):
        error = ctx["error"]
        loc, text, show_input = loc + error.loc, str(error), False
    elif kind in ("value_error", "assertion_error"):
        text = str(ctx.get("error", err["msg"]))
    elif kind in _TYPE_WORDS:
        text = _TYPE_WORDS[kind]
        show_input = kind not in ("missing", "invalid_key")
    elif kind in _BOUND_WORDS:
        op = _BOUND_WORDS[kind]
        bound = next(iter(ctx.values()))
        text = f"must be {op} {bound:g}" if isinstance(bound, int | float) else f"must be {op} {bound}"
    elif kind == "literal_error":
        text = f"must be one of {ctx.get('expected', '')}"
    elif kind == "too_short" and isinstance(value, list | tuple | dict):
        least = ctx.get("min_length", 1)
        text, show_input = f"must have at least {least} item{'s' if least != 1 else ''}", False
    elif kind == "string_too_short":
        text, show_input = "must not be empty", False
    else:
        text = str(err["msg"])
    if show_input and (value is None or isinstance(value, str | int | float | bool)):
        text = f"{text} (got {_got(value)})"
    elif show_input and value is not None:
        text = f"{text} (got {_kind(value)})"
    return loc, _one_line(text)


def _describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    # A list whose item failed is also reported as too short; that echo is noise.
    locs = [tuple(e["loc"]) for e in errors]
    cascade = [
        e
        for e in errors
        if e["type"] == "too_short"
        and any(len(o) > len(e["loc"]) and o[: len(e["loc"])] == e["loc"] for o in locs)
    ]
    errors = [e for e in errors if e not in cascade] or errors
    loc, text = _message(errors[0])
    # pydantic marks a bad dict key with a "[key]" pseudo-part; the key itself is enough.
    path = ".".join(_path_part(part) for part in loc if part != "[key]") or "(top level)"
    more = len(errors) - 1
    suffix = f" (+{more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{path}: {text}{suffix}"
