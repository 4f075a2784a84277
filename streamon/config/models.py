"""``models``: each monitored model, its features, segments and baselines."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streamon.config._base import (
    Float,
    Int,
    NonEmptyStr,
    Probability,
    _check_unique,
    _config_relative_path,
    _did_you_mean,
    _PathError,
    _Section,
)

# --------------------------------------------------------------------------- models

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# Metrics a baseline may pin; degradation = relative drop of the live value against it.
BASELINE_METRICS = ("accuracy", "precision", "recall", "specificity", "f1_score", "auc_roc", "auc_pr")
# Keys that only a binary model has: other models are refused them, not silently ignored.
BINARY_ONLY = ("threshold", "score_bins", "calibration_bins")
# Keys that only a multiclass model has.
MULTICLASS_ONLY = ("classes", "top_k", "value_matrix")

# What each metric a baseline pins may be, per task: degradation divides by the baseline,
# so a zero one says nothing; ratios are in (0, 1], errors and losses positive, R² at most 1.
# The bias (mean_error) may be anything, 0 included: it is judged in units of the baseline MAE.
_Bound = tuple[Callable[[float], bool], str]
_RATIO: _Bound = (lambda x: 0.0 < x <= 1.0, "must be in (0, 1]")
_POSITIVE: _Bound = (lambda x: x > 0.0, "must be > 0")
_AT_MOST_ONE: _Bound = (lambda x: x <= 1.0 and x != 0.0, "must be at most 1 and not 0")
_FINITE: _Bound = (math.isfinite, "must be a finite number")
BASELINE_BOUNDS: dict[str, dict[str, _Bound]] = {
    "binary": dict.fromkeys(BASELINE_METRICS, _RATIO),
    "regression": {
        "mae": _POSITIVE,
        "rmse": _POSITIVE,
        "mape": _POSITIVE,
        "r2": _AT_MOST_ONE,
        "mean_error": _FINITE,
    },
    "multiclass": {"accuracy": _RATIO, "f1_score": _RATIO, "log_loss": _POSITIVE},
}


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
    """One monitored model: its task, decision threshold, features and reference."""

    name: NonEmptyStr
    # binary: a score in [0, 1] and 0/1 labels; regression: a predicted value, numeric labels.
    # multiclass: a probability per declared class (``scores``) and class-name labels.
    task: Literal["binary", "regression", "multiclass"] = "binary"
    # A multiclass model's classes, in the order its metrics and state index them.
    classes: tuple[str, ...] = ()
    # Top-k accuracy for each k (1 <= k < number of classes); [1] by default for two classes.
    top_k: tuple[Int, ...] = (2,)
    # Business value of a labelled prediction: {actual class: {predicted class: value}}; cells left out are 0.
    value_matrix: dict[str, dict[str, Float]] | None = None
    threshold: Probability = 0.5
    score_bins: Int = Field(default=200, ge=2, le=100_000)
    # Equal-width score bins of the calibration metrics (ECE, reliability curve).
    calibration_bins: Int = Field(default=10, ge=2, le=1000)
    # Path of a profile from `streamon reference build`; relative paths are resolved against
    # the config file's directory. None = the rolling reference window.
    reference_profile: Path | None = None
    baseline: dict[str, Float] = Field(default_factory=dict)
    features: tuple[FeatureSpec, ...] = Field(min_length=1)
    # Performance and drift per value of these feature keys (streamon_segment_* metrics).
    segments: tuple[SegmentConfig, ...] = ()
    # Explicit allowlist of A/B variants; others fold into "__other__". None = any (capped).
    variants: tuple[NonEmptyStr, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_top_k(cls, data: object) -> object:
        # Of two classes, the top 2 always holds the actual one: the default is then top 1.
        if isinstance(data, dict) and data.get("task") == "multiclass" and "top_k" not in data:
            classes = data.get("classes")
            if isinstance(classes, list | tuple) and len(classes) == 2:
                return {**data, "top_k": [1]}
        return data

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
    def _baseline(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        task = info.data.get("task", "binary")
        bounds = BASELINE_BOUNDS.get(task, BASELINE_BOUNDS["binary"])
        kind = "" if task == "binary" else f" of a {task} model"
        for key, number in value.items():
            if key not in bounds:
                hint = _did_you_mean(key, tuple(bounds)) or ""
                raise _PathError((key,), f"unknown baseline metric{kind}{hint} (one of: {', '.join(bounds)})")
            fits, rule = bounds[key]
            if not fits(number):
                raise _PathError((key,), f"{rule} (got {number:g})")
        # The bias degrades in units of the baseline MAE (core/statistics/regression.py).
        if "mean_error" in value and task == "regression" and "mae" not in value:
            raise _PathError(
                ("mean_error",), "needs mae in the same baseline (the bias is judged in units of it)"
            )
        return value

    @model_validator(mode="after")
    def _unique(self) -> ModelSpec:
        if self.task != "binary":
            for key in BINARY_ONLY:
                if key in self.model_fields_set:
                    raise _PathError((key,), f"{self.task} models have no {key}: remove it")
        if self.task == "multiclass":
            self._check_classes()
        else:
            for key in MULTICLASS_ONLY:  # set to something (a dumped config repeats the defaults)
                if getattr(self, key) != type(self).model_fields[key].default:
                    raise _PathError(
                        (key,), f"only multiclass models have {key}: remove it (or set task: multiclass)"
                    )
        _check_unique([f.name for f in self.features], "features", "name", "feature name")
        _check_unique([s.field for s in self.segments], "segments", "field", "segment field")
        if self.variants is not None:
            _check_unique(list(self.variants), "variants", None, "variant")
        return self

    def _check_classes(self) -> None:
        classes = self.classes
        if len(classes) < 2:
            raise _PathError(("classes",), "multiclass models need at least two classes")
        for i, name in enumerate(classes):
            if not name.strip():
                raise _PathError(("classes", i), "must be a non-empty class name")
        _check_unique(list(classes), "classes", None, "class")
        if not self.top_k:
            raise _PathError(("top_k",), "must list at least one k (or leave it out: [2])")
        for i, k in enumerate(self.top_k):
            if not 1 <= k < len(classes):
                raise _PathError(
                    ("top_k", i), f"must be in [1, {len(classes) - 1}] (got {k}; {len(classes)} classes)"
                )
        for actual, row in (self.value_matrix or {}).items():
            if actual not in classes:
                raise _PathError(
                    ("value_matrix", actual), f"is not a declared class{_did_you_mean(actual, classes)}"
                )
            for predicted in row:
                if predicted not in classes:
                    raise _PathError(
                        ("value_matrix", actual, predicted),
                        f"is not a declared class{_did_you_mean(predicted, classes)}",
                    )

    @property
    def baseline_metrics(self) -> tuple[str, ...]:
        """The metrics a baseline of this model's task may pin."""
        return tuple(BASELINE_BOUNDS[self.task])

    def value_cells(self) -> list[list[float]] | None:
        """The value matrix as K x K rows (actual) of columns (predicted), 0 where left out."""
        if self.value_matrix is None:
            return None
        return [[self.value_matrix.get(a, {}).get(p, 0.0) for p in self.classes] for a in self.classes]

    def feature(self, name: str) -> FeatureSpec | None:
        """The feature called ``name``, or None."""
        for feature in self.features:
            if feature.name == name:
                return feature
        return None
