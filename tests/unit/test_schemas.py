"""The event JSON Schemas (design.md section 2): valid, consistent and saying what they should.

``schemas/`` is the documented copy; ``streamon/schemas/`` is the package-data copy the
decoder loads at run time. They must be byte-identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from streamon.config import LabelFields, PredictionFields

ROOT = Path(__file__).resolve().parents[2]
NAMES = (
    "prediction",
    "label",
    "alert",
    "regression_prediction",
    "regression_label",
    "multiclass_prediction",
    "multiclass_label",
)


def _schema(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())


def _valid(name: str, doc: object) -> bool:
    return Draft202012Validator(_schema(name)).is_valid(doc)


@pytest.mark.parametrize("name", NAMES)
def test_package_copy_is_byte_identical(name: str) -> None:
    docs = (ROOT / "schemas" / f"{name}.schema.json").read_bytes()
    package = (ROOT / "streamon" / "schemas" / f"{name}.schema.json").read_bytes()
    assert docs == package, f"streamon/schemas/{name}.schema.json differs from schemas/; copy it over"


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = _schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_schemas_describe_the_default_field_names() -> None:
    # The decoder renames configured names to these before validating: they must match.
    forms = ("prediction", "regression_prediction", "multiclass_prediction")
    every = {key for form in forms for key in _schema(form)["properties"]}
    assert every == set(PredictionFields.model_fields)
    for form in ("label", "regression_label", "multiclass_label"):
        assert set(_schema(form)["properties"]) == set(LabelFields.model_fields)


def test_regression_schemas_differ_from_binary_only_in_score_value_and_label() -> None:
    binary, regression = _schema("prediction")["properties"], _schema("regression_prediction")["properties"]
    assert set(binary) - set(regression) == {"score", "predicted"}
    assert set(regression) - set(binary) == {"value"}
    assert all(binary[k] == regression[k] for k in set(binary) & set(regression))
    assert _valid("regression_prediction", {"prediction_id": "p", "model": "m", "ts": 1, "value": -2.5})
    assert not _valid("regression_prediction", {"prediction_id": "p", "model": "m", "ts": 1, "score": 0.5})
    assert _valid("regression_label", {"prediction_id": "p", "label": -1.0, "ts": 1})
    assert not _valid("regression_label", {"prediction_id": "p", "label": "3", "ts": 1})


PREDICTION = {"prediction_id": "p-1", "model": "fraud-detector", "ts": 1700000000, "score": 0.93}
FULL_PREDICTION = {
    **PREDICTION,
    "model_version": "2024-05-01",
    "variant": "B",
    "experiment": "threshold-test",
    "entity_id": "card-42",
    "ts": "2023-11-14T22:13:20.123+01:00",
    "predicted": 1,
    "features": {"transaction_amount": 129.5, "merchant_category": "grocery", "transaction_hour": None},
    "latency_ms": 12.5,
    "amount": 129.5,
}

VALID_PREDICTIONS = [
    PREDICTION,
    FULL_PREDICTION,
    {**PREDICTION, "score": 0},
    {**PREDICTION, "score": 1.0},
    {**PREDICTION, "ts": 1700000000.25},
    {**PREDICTION, "ts": "2023-11-14T22:13:20Z"},
    {**PREDICTION, "predicted": True},
    {**PREDICTION, "predicted": 0},
    {**PREDICTION, "variant": None, "features": None, "amount": None},
    {**PREDICTION, "unknown_extra_field": [1, 2]},
]
INVALID_PREDICTIONS = [
    {k: v for k, v in PREDICTION.items() if k != "prediction_id"},
    {k: v for k, v in PREDICTION.items() if k != "model"},
    {k: v for k, v in PREDICTION.items() if k != "ts"},
    {k: v for k, v in PREDICTION.items() if k != "score"},
    {**PREDICTION, "prediction_id": ""},
    {**PREDICTION, "prediction_id": 17},
    {**PREDICTION, "score": 1.01},
    {**PREDICTION, "score": -0.1},
    {**PREDICTION, "score": "0.5"},
    {**PREDICTION, "ts": "yesterday"},
    {**PREDICTION, "ts": "2023-11-14T22:13:20"},  # RFC 3339 needs an offset
    {**PREDICTION, "ts": -5},
    {**PREDICTION, "ts": True},
    {**PREDICTION, "predicted": 2},
    {**PREDICTION, "predicted": "1"},
    {**PREDICTION, "features": {"a": [1]}},
    {**PREDICTION, "features": {"a": True}},
    {**PREDICTION, "features": [1, 2]},
    {**PREDICTION, "latency_ms": -1},
    {**PREDICTION, "variant": 3},
    [PREDICTION],
]

LABEL = {"prediction_id": "p-1", "label": 1, "ts": 1700003600}
VALID_LABELS = [
    LABEL,
    {**LABEL, "label": 0, "ts": "2023-11-15T00:00:00Z", "amount": 99.0},
    {**LABEL, "amount": None},
]
INVALID_LABELS = [
    {k: v for k, v in LABEL.items() if k != "prediction_id"},
    {k: v for k, v in LABEL.items() if k != "label"},
    {k: v for k, v in LABEL.items() if k != "ts"},
    {**LABEL, "label": 2},
    {**LABEL, "label": "1"},
    {**LABEL, "label": True},
    {**LABEL, "ts": "soon"},
    {**LABEL, "amount": "9"},
]

ALERT = {
    "fingerprint": "3f2a9c0d1e4b5a6f",
    "status": "firing",
    "alertname": "SevereDataDrift",
    "severity": "critical",
    "category": "data_quality",
    "model": "fraud-detector",
    "labels": {"model": "fraud-detector", "feature": "transaction_amount", "window": "24h"},
    "value": 0.31,
    "threshold": 0.2,
    "starts_at": "2024-05-01T10:00:00Z",
    "ends_at": None,
    "summary": "Severe data drift detected",
    "description": "PSI of feature transaction_amount is 0.31, above 0.2 threshold",
    "window": "24h",
    "evidence": {
        "psi_per_bin": [0.01, 0.2, 0.1],
        "reference_shares": [0.1, 0.1],
        "current_shares": [0.3, 0.0],
    },
}
VALID_ALERTS = [
    ALERT,
    {**ALERT, "status": "resolved", "ends_at": "2024-05-01T11:00:00+00:00"},
    {**ALERT, "model": None, "category": "infrastructure", "alertname": "HighCPUUsage", "window": None},
    {k: v for k, v in ALERT.items() if k not in ("model", "window", "evidence")},
]
INVALID_ALERTS = [
    {k: v for k, v in ALERT.items() if k != "fingerprint"},
    {k: v for k, v in ALERT.items() if k != "starts_at"},
    {**ALERT, "status": "pending"},
    {**ALERT, "severity": "info"},
    {**ALERT, "category": "performance"},
    {**ALERT, "labels": {"model": 1}},
    {**ALERT, "starts_at": "10:00"},
    {**ALERT, "ends_at": "tomorrow"},
    {**ALERT, "status": "resolved", "ends_at": None},  # a resolved alert says when
    {**ALERT, "alertname": "Severe Data Drift"},
    {**ALERT, "evidence": [1, 2]},
    {**ALERT, "value": "0.31"},
]

CASES = (
    [("prediction", d, True) for d in VALID_PREDICTIONS]
    + [("prediction", d, False) for d in INVALID_PREDICTIONS]
    + [("label", d, True) for d in VALID_LABELS]
    + [("label", d, False) for d in INVALID_LABELS]
    + [("alert", d, True) for d in VALID_ALERTS]
    + [("alert", d, False) for d in INVALID_ALERTS]
)


@pytest.mark.parametrize(("name", "doc", "expected"), CASES)
def test_examples(name: str, doc: object, expected: bool) -> None:
    assert _valid(name, doc) is expected, Draft202012Validator(_schema(name)).iter_errors(doc)


@pytest.mark.parametrize(("name", "doc", "expected"), CASES)
def test_hot_path_validator_agrees(name: str, doc: object, expected: bool) -> None:
    # The decoder compiles these schemas with fastjsonschema (draft-07 keywords); both
    # validators must give the same verdict or the contract means two different things.
    fastjsonschema = pytest.importorskip("fastjsonschema")
    validate = fastjsonschema.compile(_schema(name))
    try:
        validate(doc)
        verdict = True
    except fastjsonschema.JsonSchemaValueException:
        verdict = False
    assert verdict is expected


def test_multiclass_schemas_differ_from_regression_only_in_scores_predicted_and_label() -> None:
    regression = _schema("regression_prediction")["properties"]
    multi = _schema("multiclass_prediction")["properties"]
    assert set(regression) - set(multi) == {"value"}
    assert set(multi) - set(regression) == {"scores", "predicted"}
    assert all(regression[k] == multi[k] for k in set(regression) & set(multi))
    doc = {"prediction_id": "p", "model": "m", "ts": 1, "scores": {"a": 0.25, "b": 0.75}}
    assert _valid("multiclass_prediction", doc)
    assert _valid("multiclass_prediction", {**doc, "predicted": "b"})
    assert not _valid("multiclass_prediction", {**doc, "predicted": 1})
    assert not _valid("multiclass_prediction", {**doc, "scores": {"a": "high"}})
    assert not _valid("multiclass_prediction", {"prediction_id": "p", "model": "m", "ts": 1, "score": 0.5})
    assert _valid("multiclass_label", {"prediction_id": "p", "label": "decline", "ts": 1})
    assert _valid("multiclass_label", {"prediction_id": "p", "label": 2.5, "ts": 1})
    assert not _valid("multiclass_label", {"prediction_id": "p", "label": "", "ts": 1})
    assert not _valid("multiclass_label", {"prediction_id": "p", "label": None, "ts": 1})
