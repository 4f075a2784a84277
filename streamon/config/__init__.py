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

One module per section of the file (plus loading and the error text), all pure (pydantic +
PyYAML): no Kafka, no Prometheus. This package re-exports what the rest of streamon uses.

>>> s = Settings.from_dict({"models": [{"name": "m", "features": [{"name": "x", "type": "numeric"}]}]})
>>> s.model("m").threshold, s.windows.current, s.kafka.topics.predictions
(0.5, 86400.0, 'predictions')
>>> Settings.from_dict({"models": [], "kafka": {"topicz": {}}})
Traceback (most recent call last):
...
streamon.errors.ConfigError: config <dict>: kafka.topicz: unknown key (did you mean 'topics'?) (+1 more error)
"""

from __future__ import annotations

from streamon.config._base import format_duration, parse_duration
from streamon.config.alerts import DEFAULT_ALERT_RULES, AlertRule, AlertsConfig
from streamon.config.business import BusinessMetricsConfig
from streamon.config.drift import DRIFT_METHODS, DataDriftConfig, DriftMethod
from streamon.config.fields import FieldsConfig, LabelFields, PredictionFields
from streamon.config.kafka import KafkaConfig
from streamon.config.loading import load_config, parse_config_text
from streamon.config.models import BASELINE_METRICS, FeatureSpec, ModelSpec
from streamon.config.monitoring import MonitoringConfig
from streamon.config.settings import Settings, default_settings
from streamon.config.windows import DegradationConfig, WindowsConfig
from streamon.errors import ConfigError

__all__ = [
    "BASELINE_METRICS",
    "DEFAULT_ALERT_RULES",
    "DRIFT_METHODS",
    "AlertRule",
    "AlertsConfig",
    "BusinessMetricsConfig",
    "ConfigError",
    "DataDriftConfig",
    "DegradationConfig",
    "DriftMethod",
    "FeatureSpec",
    "FieldsConfig",
    "KafkaConfig",
    "LabelFields",
    "ModelSpec",
    "MonitoringConfig",
    "PredictionFields",
    "Settings",
    "WindowsConfig",
    "default_settings",
    "format_duration",
    "load_config",
    "parse_config_text",
    "parse_duration",
]
