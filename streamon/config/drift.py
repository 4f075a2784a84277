"""``data_drift``: the drift methods, their thresholds and schedule."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from streamon.config._base import (
    Bool,
    Duration,
    Float,
    Frequency,
    Int,
    NonEmptyStr,
    _check_unique,
    _PathError,
    _Section,
)

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
