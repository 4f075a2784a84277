"""``monitoring``: the Prometheus endpoint, the metric families and their cadence, dashboards."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from streamon.config._base import (
    Bool,
    Duration,
    Float,
    Int,
    NonEmptyStr,
    _config_relative_path,
    _PathError,
    _require_positive,
    _Section,
)

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
