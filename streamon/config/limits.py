"""``limits``: bounds on what one input message may hold."""

from __future__ import annotations

from pydantic import (
    Field,
)

from streamon.config._base import Int, _Section

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
