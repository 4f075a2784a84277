"""``windows``, ``degradation`` and ``ab_testing``: how much event time each statistic covers."""

from __future__ import annotations

from pydantic import (
    Field,
    model_validator,
)

from streamon.config._base import Duration, Float, NonEmptyStr, _PathError, _Section, format_duration

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
