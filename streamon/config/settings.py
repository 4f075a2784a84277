"""The whole configuration (:class:`Settings`) and its defaults."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import (
    Field,
    ValidationError,
    model_validator,
)

from streamon.config._base import _check_unique, _did_you_mean, _kind, _PathError, _Section, format_duration
from streamon.config.alerts import AlertsConfig
from streamon.config.business import BusinessMetricsConfig
from streamon.config.drift import DataDriftConfig
from streamon.config.fields import FieldsConfig
from streamon.config.kafka import KafkaConfig
from streamon.config.limits import LimitsConfig
from streamon.config.messages import _describe
from streamon.config.models import FeatureSpec, ModelSpec
from streamon.config.monitoring import MonitoringConfig
from streamon.config.windows import ABTestingConfig, DegradationConfig, WindowsConfig
from streamon.errors import ConfigError

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
