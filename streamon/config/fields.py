"""``fields``: the names the user's events give the canonical fields."""

from __future__ import annotations

from pydantic import (
    Field,
    model_validator,
)

from streamon.config._base import NonEmptyStr, _PathError, _Section

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
    value: NonEmptyStr = "value"  # a regression model's prediction (in place of score)
    scores: NonEmptyStr = "scores"  # a multiclass model's class probabilities (in place of score)


class LabelFields(_FieldMap):
    prediction_id: NonEmptyStr = "prediction_id"
    label: NonEmptyStr = "label"
    ts: NonEmptyStr = "ts"
    amount: NonEmptyStr = "amount"


class FieldsConfig(_Section):
    prediction: PredictionFields = Field(default_factory=PredictionFields)
    label: LabelFields = Field(default_factory=LabelFields)
