"""Event decoding (design.md section 2): the validation fast path, every rejection reason, field mapping.

The fast path in front of fastjsonschema may only ever say "certainly valid" for a
document the library also accepts; everything else goes to the library, which stays the
source of truth and of the rejection reason. Random documents (wrong types, missing
fields, bools where numbers belong, out-of-range scores, nested junk) check that.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import fastjsonschema
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streamon.core import events
from streamon.core.events import (
    BAD_TIMESTAMP,
    INVALID_JSON,
    MISSING_FIELD,
    NOT_AN_OBJECT,
    SCHEMA_VIOLATION,
    SCORE_OUT_OF_RANGE,
    STRING_TOO_LONG,
    TOO_LARGE,
    TS_IN_FUTURE,
    TS_IN_MILLISECONDS,
    TS_TOO_OLD,
    UNKNOWN_MODEL,
    WRONG_TYPE,
    Decoder,
    FieldMap,
    Invalid,
    Label,
    Prediction,
    fast_valid,
    schema_error,
)

# ---------------------------------------------------------------------- strategies

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, -1, 0.0, 1.0, 0.5, -0.0, 1.5, -0.5, 1e-300, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["", "0.5", "1", "2026-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T00:00:00"]),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
numbers = st.one_of(
    st.integers(min_value=-5, max_value=2**40),
    st.floats(min_value=-1.0, max_value=2e9, allow_nan=False),
    st.sampled_from([0, 1, 0.0, 1.0, 1.0000001, -1e-9, math.nan, math.inf]),
)
timestamps = st.one_of(
    numbers,
    st.sampled_from(
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01t00:00:00.5+01:00",
            "2026-13-01T00:00:00Z",
            "2026-01-01 00:00:00Z",
            "yesterday",
            "",
        ]
    ),
)
scores = st.one_of(st.floats(min_value=-0.5, max_value=1.5), st.sampled_from([0, 1, 2, -1, 1.0, 0.0]))
feature_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4), junk)

PREDICTION_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "prediction_id": st.one_of(st.text(max_size=6), junk),
    "model": st.one_of(st.sampled_from(["m", ""]), junk),
    "model_version": st.one_of(st.none(), st.text(max_size=4), junk),
    "variant": st.one_of(st.none(), st.sampled_from(["A", "B", ""]), junk),
    "experiment": st.one_of(st.none(), st.text(max_size=4), junk),
    "entity_id": st.one_of(st.none(), st.text(max_size=4), junk),
    "ts": st.one_of(timestamps, junk),
    "score": st.one_of(scores, junk),
    "predicted": st.one_of(st.sampled_from([None, 0, 1, 2, -1, True, False, 0.0, 1.0, 0.5, "1"]), junk),
    "features": st.one_of(st.none(), st.dictionaries(st.text(max_size=4), feature_values, max_size=5), junk),
    "latency_ms": st.one_of(st.none(), numbers, junk),
    "amount": st.one_of(st.none(), numbers, junk),
    "unknown_field": junk,
}
LABEL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "prediction_id": st.one_of(st.text(max_size=6), junk),
    "label": st.one_of(st.sampled_from([0, 1, 2, -1, True, False, 0.0, 1.0, 0.5, "1", None]), junk),
    "ts": st.one_of(timestamps, junk),
    "amount": st.one_of(st.none(), numbers, junk),
    "unknown_field": junk,
}


@st.composite
def documents(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """A document with a random subset of the fields, each drawn from its (often wrong) values."""
    present = draw(st.lists(st.sampled_from(sorted(fields)), unique=True))
    return {name: draw(fields[name]) for name in present}


@st.composite
def plausible(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]], required: tuple[str, ...]) -> Any:
    """Mostly valid documents: every required field, a few optional ones, values often right."""
    doc = draw(documents(fields))
    for name in required:
        doc.setdefault(name, draw(fields[name]))
    return doc


def library_error(kind: str, doc: Any) -> fastjsonschema.JsonSchemaValueException | None:
    """fastjsonschema's verdict: None if valid, else its exception."""
    try:
        events._validator(kind)(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        return exc
    return None


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------- fast path == library


def _check(kind: str, doc: dict[str, Any]) -> None:
    expected = library_error(kind, doc)
    if fast_valid(kind, doc):
        assert expected is None, f"fast path accepted a document the schema rejects ({expected}): {doc!r}"
    got = schema_error(kind, doc)
    if expected is None:
        assert got is None, (doc, got)
    else:
        # The detail is the library's message, plus the offending value for a type error.
        assert got is not None and got.reason == events._schema_reason(expected), (doc, got)
        assert got.detail.startswith(expected.message[:200]), (doc, got)


@SETTINGS
@given(documents(PREDICTION_FIELDS))
def test_prediction_fast_path_agrees_with_fastjsonschema(doc: dict[str, Any]) -> None:
    _check("prediction", doc)


@SETTINGS
@given(plausible(PREDICTION_FIELDS, ("prediction_id", "model", "ts", "score")))
@example({"prediction_id": "p", "model": "m", "ts": 1, "score": True})
@example({"prediction_id": "p", "model": "m", "ts": True, "score": 0.5})
@example({"prediction_id": "p", "model": "m", "ts": 1, "score": 0.5, "latency_ms": False})
@example({"prediction_id": "p", "model": "m", "ts": 1, "score": 0.5, "features": {"x": True}})
@example({"prediction_id": "p", "model": "m", "ts": 1, "score": 0.5, "features": {"x": [1]}})
@example({"prediction_id": "p", "model": "m", "ts": 1, "score": 0.5, "predicted": 2})
@example({"prediction_id": "p", "model": "m", "ts": 1, "score": 0.5, "predicted": 1.0})
@example({"prediction_id": "p", "model": "m", "ts": math.nan, "score": math.nan})
@example({"prediction_id": "p", "model": "m", "ts": -1e-9, "score": 1.0000001})
def test_plausible_prediction_fast_path_agrees_with_fastjsonschema(doc: dict[str, Any]) -> None:
    _check("prediction", doc)


@SETTINGS
@given(documents(LABEL_FIELDS))
def test_label_fast_path_agrees_with_fastjsonschema(doc: dict[str, Any]) -> None:
    _check("label", doc)


@SETTINGS
@given(plausible(LABEL_FIELDS, ("prediction_id", "label", "ts")))
@example({"prediction_id": "p", "label": True, "ts": 1})
@example({"prediction_id": "p", "label": 1.0, "ts": 1})
@example({"prediction_id": "p", "label": 1, "ts": False})
def test_plausible_label_fast_path_agrees_with_fastjsonschema(doc: dict[str, Any]) -> None:
    _check("label", doc)


@SETTINGS
@given(
    pid=st.text(min_size=1, max_size=8),
    ts=st.one_of(st.integers(0, 2**40), st.floats(0, 2e9)),
    score=st.one_of(st.floats(0, 1), st.sampled_from([0, 1])),
    optional=st.dictionaries(
        st.sampled_from(["model_version", "variant", "experiment", "entity_id"]),
        st.one_of(st.none(), st.text(max_size=4)),
    ),
    predicted=st.sampled_from([None, 0, 1, True, False, "absent"]),
    features=st.one_of(
        st.none(),
        st.dictionaries(
            st.text(max_size=4),
            st.one_of(st.none(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()),
        ),
    ),
    latency=st.one_of(st.none(), st.floats(0, 1e4), st.integers(0, 10**6)),
    amount=st.one_of(st.none(), st.floats(-1e6, 1e6), st.integers(-(10**6), 10**6)),
)
def test_fast_path_decides_the_common_valid_event(
    pid: str,
    ts: float,
    score: float,
    optional: dict[str, str | None],
    predicted: Any,
    features: dict[str, Any] | None,
    latency: float | None,
    amount: float | None,
) -> None:
    # Not only sound but useful: the plain valid event never needs the library.
    doc: dict[str, Any] = {"prediction_id": pid, "model": "m", "ts": ts, "score": score, **optional}
    if predicted != "absent":
        doc["predicted"] = predicted
    doc.update(features=features, latency_ms=latency, amount=amount)
    assert library_error("prediction", doc) is None
    assert fast_valid("prediction", doc)
    label = {"prediction_id": pid, "label": int(score >= 0.5), "ts": ts, "amount": amount}
    assert library_error("label", label) is None
    assert fast_valid("label", label)


def test_fast_path_leaves_rfc3339_and_integral_floats_to_the_library() -> None:
    doc = {"prediction_id": "p", "model": "m", "ts": "2026-01-01T00:00:00Z", "score": 0.5}
    assert not fast_valid("prediction", doc) and schema_error("prediction", doc) is None
    lab = {"prediction_id": "p", "label": 1.0, "ts": 5}
    assert not fast_valid("label", lab) and schema_error("label", lab) is None


@SETTINGS
@given(
    st.one_of(
        documents(PREDICTION_FIELDS), plausible(PREDICTION_FIELDS, ("prediction_id", "model", "ts", "score"))
    )
)
def test_decoder_verdict_matches_library_on_json_bytes(doc: dict[str, Any]) -> None:
    # Through orjson, as in production: NaN/inf cannot be encoded and become null.
    try:
        raw = orjson.dumps(doc)
    except (orjson.JSONEncodeError, TypeError):
        return
    parsed = orjson.loads(raw)
    out = Decoder({"m": 0.5}).prediction(raw)
    expected = library_error("prediction", parsed)
    if expected is not None:
        assert isinstance(out, Invalid) and out.reason == events._schema_reason(expected), out
        assert out.detail.startswith(expected.message[:200]), out  # + the value of a type error
    else:
        assert not (isinstance(out, Invalid) and out.reason in (MISSING_FIELD, WRONG_TYPE, SCHEMA_VIOLATION))


# ---------------------------------------------------------------------- rejection reasons


def _p(**kw: Any) -> bytes:
    doc: dict[str, Any] = {"prediction_id": "p1", "model": "m", "ts": 5000.0, "score": 0.7}
    doc.update(kw)
    return orjson.dumps({k: v for k, v in doc.items() if v is not _DROP})


_DROP = object()
DEC = Decoder({"m": 0.5}, max_bytes=400, max_future_s=300, max_age_s=3600, max_features=3)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, INVALID_JSON),
        (b"{", INVALID_JSON),
        (b"", INVALID_JSON),
        (b"\xff\xfe", INVALID_JSON),
        (b"[1, 2]", NOT_AN_OBJECT),
        (b'"text"', NOT_AN_OBJECT),
        (b"42", NOT_AN_OBJECT),
        (b"null", NOT_AN_OBJECT),
        (b"{" + b'"x": "' + b"a" * 500 + b'"}', TOO_LARGE),
        (_p(prediction_id=_DROP), MISSING_FIELD),
        (_p(model=_DROP), MISSING_FIELD),
        (_p(ts=_DROP), MISSING_FIELD),
        (_p(score=_DROP), MISSING_FIELD),
        (_p(score="0.5"), WRONG_TYPE),
        (_p(score=True), WRONG_TYPE),
        (_p(score=None), WRONG_TYPE),
        (_p(prediction_id=7), WRONG_TYPE),
        (_p(model=["m"]), WRONG_TYPE),
        (_p(variant=1), WRONG_TYPE),
        (_p(features=[1, 2]), WRONG_TYPE),
        (_p(features={"x": True}), WRONG_TYPE),
        (_p(features={"x": {"nested": 1}}), WRONG_TYPE),
        (_p(latency_ms="3"), WRONG_TYPE),
        (_p(amount=False), WRONG_TYPE),
        (_p(score=1.5), SCORE_OUT_OF_RANGE),
        (_p(score=-0.01), SCORE_OUT_OF_RANGE),
        (_p(score=2), SCORE_OUT_OF_RANGE),
        (_p(prediction_id=""), SCHEMA_VIOLATION),
        (_p(predicted=2), SCHEMA_VIOLATION),
        (_p(predicted="1"), SCHEMA_VIOLATION),
        (_p(latency_ms=-1), SCHEMA_VIOLATION),
        (_p(ts=-5), SCHEMA_VIOLATION),
        (_p(ts="yesterday"), SCHEMA_VIOLATION),
        (_p(ts="2026-02-30T00:00:00Z"), SCHEMA_VIOLATION),
        (_p(ts=True), SCHEMA_VIOLATION),
        (_p(model="other"), UNKNOWN_MODEL),
        (_p(features={"a": 1, "b": 2, "c": 3, "d": 4}), TOO_LARGE),
        (_p(ts=5000.0 + 301), TS_IN_FUTURE),
        (_p(ts=5000.0 - 3601), TS_TOO_OLD),
        (_p(ts="1970-01-01T02:23:20+01:00", score=0.9), None),
        (_p(ts="1970-01-01T01:28:21Z"), TS_IN_FUTURE),
        (_p(ts=1e300), TS_IN_MILLISECONDS),  # not a plausible number of seconds at all
        (_p(ts=1_767_225_600_000), TS_IN_MILLISECONDS),  # epoch milliseconds, before the clock
        (_p(ts=1e11), TS_IN_FUTURE),  # the largest epoch seconds (year 5138) is only too new
        (_p(ts="5200-01-01T00:00:00Z"), BAD_TIMESTAMP),  # a string is no millisecond count
    ],
)
def test_prediction_rejection_reasons(raw: bytes | None, reason: str | None) -> None:
    out = DEC.prediction(raw, now=5000.0)
    if reason is None:
        assert isinstance(out, Prediction), out
    else:
        assert isinstance(out, Invalid), out
        assert out.reason == reason, out
        assert out.detail


def test_bad_timestamp_without_wall_clock() -> None:
    # parse_ts refuses what the schema lets through only in theory (inf is not JSON).
    assert DEC._check_ts(math.inf, None) == Invalid(BAD_TIMESTAMP, "unusable event time 'inf'")
    assert isinstance(DEC._check_ts("2026-01-01T00:00:00Z", None), float)
    assert DEC._check_ts(5, None) == 5.0


def _l(**kw: Any) -> bytes:
    doc: dict[str, Any] = {"prediction_id": "p1", "label": 1, "ts": 5000}
    doc.update(kw)
    return orjson.dumps({k: v for k, v in doc.items() if v is not _DROP})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, INVALID_JSON),
        (b"nope", INVALID_JSON),
        (b"[]", NOT_AN_OBJECT),
        (_l(label=_DROP), MISSING_FIELD),
        (_l(prediction_id=_DROP), MISSING_FIELD),
        (_l(ts=_DROP), MISSING_FIELD),
        (_l(label="1"), WRONG_TYPE),
        (_l(label=True), WRONG_TYPE),
        (_l(label=0.5), WRONG_TYPE),
        (_l(amount="1"), WRONG_TYPE),
        (_l(label=2), SCHEMA_VIOLATION),
        (_l(prediction_id=""), SCHEMA_VIOLATION),
        (_l(ts=9000), TS_IN_FUTURE),
        (_l(ts=2000), None),
        (_l(ts=1), TS_TOO_OLD),
        (_l(label=1.0), None),
        (_l(ts="1970-01-01T01:23:20Z"), None),
    ],
)
def test_label_rejection_reasons(raw: bytes | None, reason: str | None) -> None:
    out = Decoder({"m": 0.5}, max_future_s=300, max_age_s=3600).label(raw, now=5000.0)
    if reason is None:
        assert isinstance(out, Label), out
    else:
        assert isinstance(out, Invalid) and out.reason == reason, out


# ---------------------------------------------------------------------- decoded values


def test_prediction_fields_and_defaults() -> None:
    d = Decoder({"m": 0.5})
    full = d.prediction(
        _p(
            score=0.4,
            predicted=True,
            variant="B",
            experiment="e",
            model_version="v2",
            features={"x": 1, "c": "a", "y": None},
            latency_ms=12,
            amount=3,
        )
    )
    assert full == Prediction(
        "p1", "m", 5000.0, 0.4, 1, "B", "e", "v2", {"x": 1, "c": "a", "y": None}, 12.0, 3.0
    )
    bare = d.prediction(_p(score=0.5))
    assert isinstance(bare, Prediction)
    assert (bare.predicted, bare.variant, bare.features) == (1, "", {})  # score >= threshold
    assert math.isnan(bare.latency_ms) and math.isnan(bare.amount)
    assert d.prediction(_p(score=0.49)).predicted == 0  # type: ignore[union-attr]
    assert d.prediction(_p(score=0.9, predicted=0)).predicted == 0  # type: ignore[union-attr]
    assert d.prediction(_p(score=0.9, predicted=None, variant=None, features=None)).predicted == 1  # type: ignore[union-attr]
    rfc = d.prediction(_p(ts="2023-11-14T22:13:20Z"))
    assert isinstance(rfc, Prediction) and rfc.ts == 1700000000.0
    assert type(d.prediction(_p(ts=1000)).ts) is float  # type: ignore[union-attr]


def test_label_fields() -> None:
    d = Decoder({"m": 0.5})
    assert d.label(_l(amount=9)) == Label("p1", 1, 5000.0, 9.0)
    lab = d.label(_l(label=0.0))
    assert isinstance(lab, Label) and lab.label == 0 and type(lab.label) is int
    assert math.isnan(d.label(_l()).amount)  # type: ignore[union-attr]


# ---------------------------------------------------------------------- field mapping


def test_field_mapping_renames_before_validation() -> None:
    fields = FieldMap(
        prediction={**{f: f for f in events.PREDICTION_FIELDS}, "prediction_id": "id", "score": "proba"},
        label={**{f: f for f in events.LABEL_FIELDS}, "prediction_id": "id", "label": "is_fraud"},
    )
    d = Decoder({"m": 0.5}, fields=fields)
    raw = orjson.dumps({"id": "x", "model": "m", "ts": 5, "proba": 0.8, "prediction_id": "ignored"})
    p = d.prediction(raw)
    assert isinstance(p, Prediction) and (p.prediction_id, p.score, p.predicted) == ("x", 0.8, 1)
    # The canonical names are not read when they are mapped away.
    missing = d.prediction(orjson.dumps({"prediction_id": "x", "model": "m", "ts": 5, "score": 0.8}))
    assert isinstance(missing, Invalid) and missing.reason == MISSING_FIELD
    assert "prediction_id" in missing.detail and "score" in missing.detail
    wrong = d.prediction(orjson.dumps({"id": "x", "model": "m", "ts": 5, "proba": "high"}))
    assert isinstance(wrong, Invalid) and wrong.reason == WRONG_TYPE
    lab = d.label(orjson.dumps({"id": "x", "is_fraud": 0, "ts": 7, "label": 1}))
    assert isinstance(lab, Label) and (lab.prediction_id, lab.label, lab.ts) == ("x", 0, 7.0)
    assert not fields.is_identity("prediction") and not fields.is_identity("label")


def test_identity_field_map_keeps_unknown_fields_harmless() -> None:
    d = Decoder({"m": 0.5})
    assert FieldMap().is_identity("prediction") and FieldMap().is_identity("label")
    p = d.prediction(_p(extra={"deep": [1, {"x": None}]}))
    assert isinstance(p, Prediction)


# ---------------------------------------------------------------------- size limits

LIMITED = Decoder({"m": 0.5}, max_features=3, max_string_length=130, max_feature_value_length=20)
RENAMED = Decoder(
    {"m": 0.5},
    fields=FieldMap(prediction={**{f: f for f in events.PREDICTION_FIELDS}, "variant": "arm"}),
    max_features=3,
    max_string_length=130,
    max_feature_value_length=20,
)


@pytest.mark.parametrize("decoder", [LIMITED, RENAMED], ids=["fast-path", "renamed-fields"])
@pytest.mark.parametrize(
    ("kw", "reason", "detail"),
    [
        ({"prediction_id": "p" * 130}, None, ""),
        ({"prediction_id": "p" * 131}, STRING_TOO_LONG, "prediction_id has 131 characters > limit 130"),
        ({"model_version": "v" * 131}, STRING_TOO_LONG, "model_version has 131"),
        ({"experiment": "é" * 131}, STRING_TOO_LONG, "experiment has 131"),
        ({"entity_id": "😀" * 131}, STRING_TOO_LONG, "entity_id has 131"),  # 4 bytes each, 1 char
        ({"ts": "1970-01-01T01:23:20." + "0" * 120 + "Z"}, STRING_TOO_LONG, "ts has 141 characters"),
        ({"features": {"k" * 130: 1}}, None, ""),
        ({"features": {"k" * 131: 1}}, STRING_TOO_LONG, "feature name 'kkkk"),
        ({"features": {"c": "x" * 20}}, None, ""),
        ({"features": {"c": "x" * 21}}, STRING_TOO_LONG, "feature 'c' value has 21 characters > limit 20"),
        ({"features": {"a": 1, "b": 2, "c": 3, "d": 4}}, TOO_LARGE, "4 features > limit 3"),
        ({"model": "m" * 131}, STRING_TOO_LONG, "model has 131"),  # before unknown_model
    ],
)
def test_string_length_limits(decoder: Decoder, kw: dict[str, Any], reason: str | None, detail: str) -> None:
    out = decoder.prediction(_p(**kw))
    if reason is None:
        assert isinstance(out, Prediction), out
    else:
        assert isinstance(out, Invalid) and out.reason == reason and out.detail.startswith(detail), out


def test_variant_length_is_checked_under_its_configured_name() -> None:
    raw = orjson.dumps({"prediction_id": "p1", "model": "m", "ts": 5, "score": 0.5, "arm": "B" * 131})
    assert RENAMED.prediction(raw) == Invalid(STRING_TOO_LONG, "variant has 131 characters > limit 130")
    assert isinstance(LIMITED.prediction(raw), Prediction)  # "arm" is an unknown field there


def test_label_prediction_id_length() -> None:
    assert isinstance(LIMITED.label(_l(prediction_id="p" * 130)), Label)
    out = LIMITED.label(_l(prediction_id="p" * 131))
    assert out == Invalid(STRING_TOO_LONG, "prediction_id has 131 characters > limit 130")


def test_fast_path_leaves_long_strings_to_the_full_path() -> None:
    doc = {"prediction_id": "p" * 300, "model": "m", "ts": 5, "score": 0.5}
    assert not fast_valid("prediction", doc)  # the default bound, 256: not sure
    assert events._fast_valid_prediction(doc, 300)
    assert not events._fast_valid_prediction({**doc, "prediction_id": "p", "features": {"k" * 257: 1}})
    assert not fast_valid("label", {"prediction_id": "p" * 257, "label": 1, "ts": 5})


def test_nesting_past_the_json_depth_limit_is_too_large() -> None:
    deep = b"[" * 1100 + b"]" * 1100
    out = DEC.prediction(b'{"x": ' + deep + b"}")  # 2207 bytes: over DEC's max_bytes of 400
    assert isinstance(out, Invalid) and out.reason == TOO_LARGE
    out = Decoder({"m": 0.5}).label(b'{"x": ' + deep + b"}")
    assert out == Invalid(TOO_LARGE, f"JSON nested deeper than {events.MAX_JSON_DEPTH} levels")


def test_engine_builds_the_decoder_from_the_limits_section() -> None:
    from streamon.config import Settings
    from streamon.engine import build_engine

    settings = Settings.from_dict(
        {
            "models": [{"name": "m", "features": [{"name": "x", "type": "numeric"}]}],
            "kafka": {"max_message_bytes": 2048},
            "limits": {"max_features": 7, "max_string_length": 200, "max_feature_value_length": 50},
        }
    )
    decoder = build_engine(settings).decoder()
    assert (decoder.max_bytes, decoder.max_features) == (2048, 7)
    assert (decoder.max_string_length, decoder.max_feature_value_length) == (200, 50)
    defaults = build_engine(Settings.from_dict({"models": settings.model_dump()["models"]})).decoder()
    assert (defaults.max_bytes, defaults.max_features) == (65536, 500)
    assert (defaults.max_string_length, defaults.max_feature_value_length) == (256, 1024)


# ---------------------------------------------------------------------- typed path == the path behind it
#
# The typed path (msgspec structs) must give, for any bytes, exactly what the path behind it
# (orjson + fast path + fastjsonschema) gives: the same verdict, reason, detail and field,
# and a Prediction / Label with the same values of the same types (1 is not 1.0, True is
# not 1). Documents are valid events with one or more mutations, encoded by orjson or by
# json (which writes \u escapes, NaN, Infinity and integers of any size), sometimes with the
# bytes tampered with afterwards.

THRESHOLDS = {"m": 0.5, "fraud": 0.3}
TYPED_DECODERS = {
    "default": Decoder(THRESHOLDS),
    "tight": Decoder(
        THRESHOLDS, max_bytes=400, max_features=3, max_string_length=8, max_feature_value_length=12
    ),
    "renamed": Decoder(
        THRESHOLDS,
        fields=FieldMap(
            prediction={
                **{f: f for f in events.PREDICTION_FIELDS},
                "prediction_id": "id",
                "score": "proba",
                "variant": "experiment",  # two fields swapping names
                "experiment": "variant",
            },
            label={**{f: f for f in events.LABEL_FIELDS}, "label": "is_fraud"},
        ),
    ),
}

ids = st.one_of(st.text(min_size=1, max_size=10), st.sampled_from(["p", "😀", "é" * 9, "a\x00b", "\u2028"]))
plain_features = st.dictionaries(
    st.text(max_size=9),
    st.one_of(
        st.none(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=14),
    ),
    max_size=5,
)
# Event times around the clock NOW, its bounds (300 s ahead, 35 days back) included.
NOW = 1.9e9
timestamps_near_now = st.one_of(
    st.integers(0, 2 * 10**9),
    st.floats(0, 2e9),
    st.floats(NOW - 35 * 86400 - 10, NOW + 310),
    st.integers(int(NOW) - 35 * 86400 - 10, int(NOW) + 310),
    st.sampled_from([0, -0.0, 1e11, 99_999_999_999, NOW + 300, NOW - 35 * 86400, NOW + 300.0000001]),
)
VALID_PREDICTION = st.fixed_dictionaries(
    {
        "prediction_id": ids,
        "model": st.sampled_from(["m", "fraud"]),
        "ts": timestamps_near_now,
        "score": st.one_of(st.floats(0, 1), st.sampled_from([0, 1, -0.0, 5e-324])),
    },
    optional={
        "model_version": st.one_of(st.none(), st.text(max_size=9)),
        "variant": st.one_of(st.none(), st.sampled_from(["", "A", "B"])),
        "experiment": st.one_of(st.none(), st.text(max_size=9)),
        "entity_id": st.one_of(st.none(), st.text(max_size=9)),
        "predicted": st.sampled_from([None, 0, 1, True, False]),
        "features": st.one_of(st.none(), plain_features),
        "latency_ms": st.one_of(st.none(), st.floats(0, 86_400_000), st.integers(0, 86_400_000)),
        "amount": st.one_of(st.none(), st.floats(-1e18, 1e18), st.integers(-(2**62), 2**62)),
    },
)
VALID_LABEL = st.fixed_dictionaries(
    {
        "prediction_id": ids,
        "label": st.sampled_from([0, 1]),
        "ts": timestamps_near_now,
    },
    optional={"amount": st.one_of(st.none(), st.floats(-1e18, 1e18), st.integers(-(2**62), 2**62))},
)
SPECIAL: list[Any] = [True, False, None, -1, 2, 0.0, 1.0, 1.5, -0.0, -1e-9, 1.0000001, 86_400_001, 1e300]
SPECIAL += [
    1e11,
    1e11 + 1,
    10**12,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    2**70,
    -(2**63),
    -(2**63) - 1,
]
SPECIAL += [
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x" * 20,
    "é" * 13,
    "\ud800",
    "a\udc00",
    [],
    {},
    [1],
    {"a": {"b": 1}},
]
SPECIAL += [
    "2026-01-01T00:00:00Z",
    "1970-01-01T00:00:00+00:00",
    "1969-12-31T23:59:59Z",
    "2026-01-01T00:00:00",
]
special = st.sampled_from(SPECIAL)
hostile = st.one_of(special, special, special, junk, st.floats(), st.text(max_size=16))  # half from the list


@st.composite
def mutated(
    draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]], names: tuple[str, ...]
) -> dict[str, Any]:
    """A valid document, then none or a few mutations: a field's value, a missing field, an
    extra field, a feature's name or value (nested junk included)."""
    doc = draw(valid)
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        how = draw(st.sampled_from(["set", "set", "drop", "extra", "feature", "feature_name"]))
        name = draw(st.sampled_from(names))
        if how == "set":
            doc[name] = draw(hostile)
        elif how == "drop":
            doc.pop(name, None)
        elif how == "extra":
            doc[draw(st.sampled_from(["unknown", "id", "proba", "is_fraud", "Score"]))] = draw(hostile)
        elif "features" in names:
            current = doc.get("features")
            features = doc["features"] = dict(current) if isinstance(current, dict) else {}
            if how == "feature":
                features[draw(st.text(max_size=3))] = draw(hostile)
            else:
                features[draw(st.sampled_from(["k" * 9, "😀" * 8, "\ud800"]))] = draw(st.integers())
    return doc


def _encode(doc: dict[str, Any], how: str, tamper: str) -> bytes:
    raw = b""
    if how == "orjson":
        try:
            raw = orjson.dumps(doc)
        except (orjson.JSONEncodeError, TypeError):
            how = "json"  # NaN, infinity, > 64-bit integers, lone surrogates
    if how != "orjson":
        raw = json.dumps(doc, ensure_ascii=how == "json-ascii").encode("utf-8", "surrogatepass")
    tampered = {
        "none": raw,
        "duplicate": raw.replace(b"{", b'{"score": 5, "label": 0.5, "ts": "x", ', 1) if raw != b"{}" else raw,
        "bad-utf8": raw.replace(b'":"', b'":"\xff', 1),
        "bom": b"\xef\xbb\xbf" + raw,
        "whitespace": b" \n\t" + raw.replace(b",", b" ,\n ") + b"\r\n",
        "trailing": raw + b"{}",
        "truncated": raw[:-1],
        "deep": raw.replace(b"{", b'{"unknown": ' + b"[" * 1100 + b"]" * 1100 + b", ", 1),
    }
    return tampered[tamper]


def _shape(event: Prediction | Label | Invalid) -> Any:
    """Everything about a decoded event, types included (1 vs 1.0, True vs 1, -0.0 vs 0.0, nan)."""
    if isinstance(event, Invalid):
        return ("Invalid", event.reason, event.detail, event.field)
    values = [getattr(event, f.name) for f in dataclasses.fields(event)]
    return (type(event).__name__, [(type(v).__name__, repr(v)) for v in values])


def _renamed_doc(doc: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    return {mapping.get(k, k): v for k, v in doc.items()}


encodings = st.sampled_from(["orjson", "orjson", "json", "json-ascii"])
tampering = st.sampled_from(
    ["none"] * 10 + ["duplicate", "bad-utf8", "bom", "whitespace", "trailing", "truncated", "deep"]
)
clocks = st.one_of(st.none(), st.floats(0, 3e9), st.just(NOW))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    decoder=st.sampled_from(sorted(TYPED_DECODERS)),
    docs=st.lists(
        st.tuples(mutated(VALID_PREDICTION, tuple(events.PREDICTION_FIELDS)), encodings, tampering),
        min_size=1,
        max_size=4,
    ),
    now=clocks,
)
def test_typed_prediction_path_equals_the_path_behind_it(
    decoder: str, docs: list[tuple[dict[str, Any], str, str]], now: float | None
) -> None:
    d = TYPED_DECODERS[decoder]
    raws = [_encode(_renamed_doc(doc, d.fields.prediction), how, tamper) for doc, how, tamper in docs]
    expected = [_shape(d._prediction(raw, now)) for raw in raws]
    assert [_shape(p) for p in d.predictions(raws, now)] == expected, raws
    assert [_shape(d.prediction(raw, now)) for raw in raws] == expected


def _column_shapes(cols: events.PredictionColumns) -> Any:
    """Every column of a batch, types included, and its verdicts."""
    fields = [f.name for f in dataclasses.fields(cols) if f.name != "invalid"]
    columns = {f: [(type(v).__name__, repr(v)) for v in (getattr(cols, f) or [])] for f in fields}
    return columns, [(i, _shape(bad)) for i, bad in cols.invalid]


# A multiclass and a regression model beside the binary ones: their events take the general path.
MIXED_DECODER = Decoder(THRESHOLDS, regression=["r"], multiclass={"mc": ["a", "b"]})


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    decoder=st.sampled_from([*sorted(TYPED_DECODERS), "mixed"]),
    docs=st.lists(
        st.tuples(mutated(VALID_PREDICTION, tuple(events.PREDICTION_FIELDS)), encodings, tampering),
        max_size=6,
    ),
    plain=st.integers(0, 3),
    now=clocks,
)
def test_prediction_columns_equal_the_per_event_verdicts(
    decoder: str, docs: list[tuple[dict[str, Any], str, str]], plain: int, now: float | None
) -> None:
    # The columnar decoding of a batch (stage 1's) against the per-event path: the same rows,
    # values and types, and the same verdicts (reasons, details, fields) at the same positions.
    d = MIXED_DECODER if decoder == "mixed" else TYPED_DECODERS[decoder]
    raws = [_encode(_renamed_doc(doc, d.fields.prediction), how, tamper) for doc, how, tamper in docs]
    # Plainly valid events after them, so that the fast case meets the odd ones in one batch;
    # with the mixed decoder, a regression model's event too (the general path).
    plain_docs = [
        {"prediction_id": f"q{i}", "model": "m", "ts": NOW - i, "score": 0.25 * i} for i in range(plain)
    ]
    if decoder == "mixed" and plain == 3:
        plain_docs.append({"prediction_id": "v", "model": "r", "ts": NOW, "value": -1.5})
    raws += [orjson.dumps(_renamed_doc(doc, d.fields.prediction)) for doc in plain_docs]
    expected = events.PredictionColumns.from_events([d._prediction(raw, now) for raw in raws])
    assert _column_shapes(d.prediction_columns(raws, now)) == _column_shapes(expected), raws


def test_prediction_columns_of_a_plain_batch_take_no_event_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fast case is the columnar one: no per-event decoding, and the same columns.
    d = Decoder(THRESHOLDS)
    raws = [
        orjson.dumps({"prediction_id": f"p{i}", "model": "m" if i % 3 else "fraud", "ts": NOW - i,
                      "score": (i % 10) / 10, "variant": "A" if i % 2 else None, "features": {"x": i}}
                     | ({"predicted": i % 2} if i == 7 else {}) | ({"latency_ms": 3} if i % 4 else {}))
        for i in range(50)
    ]  # fmt: skip
    batches = [raws, raws[:7] + raws[8:]]  # with and without a "predicted" sent
    expected = [events.PredictionColumns.from_events([d._prediction(raw, NOW) for raw in b]) for b in batches]
    monkeypatch.setattr(d, "_prediction", lambda raw, now: pytest.fail("per-event path taken"))
    for batch, want in zip(batches, expected, strict=True):
        got = d.prediction_columns(batch, NOW)
        assert _column_shapes(got) == _column_shapes(want)
        assert got.predicted[:4] == [0, 0, 0, 1]  # "fraud" decides at 0.3, "m" at 0.5
    assert d.prediction_columns(raws, NOW).predicted[7] == 1  # sent: kept


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    decoder=st.sampled_from(sorted(TYPED_DECODERS)),
    docs=st.lists(
        st.tuples(mutated(VALID_LABEL, tuple(events.LABEL_FIELDS)), encodings, tampering),
        min_size=1,
        max_size=4,
    ),
    now=clocks,
)
def test_typed_label_path_equals_the_path_behind_it(
    decoder: str, docs: list[tuple[dict[str, Any], str, str]], now: float | None
) -> None:
    d = TYPED_DECODERS[decoder]
    raws = [_encode(_renamed_doc(doc, d.fields.label), how, tamper) for doc, how, tamper in docs]
    expected = [_shape(d._label(raw, now)) for raw in raws]
    assert [_shape(lab) for lab in d.labels(raws, now)] == expected, raws
    assert [_shape(d.label(raw, now)) for raw in raws] == expected


@SETTINGS
@given(decoder=st.sampled_from(["default", "renamed"]), doc=VALID_PREDICTION, label=VALID_LABEL)
def test_typed_path_decides_the_plain_valid_event(
    decoder: str, doc: dict[str, Any], label: dict[str, Any]
) -> None:
    # Not only sound but useful: the plain valid event is decoded natively, not handed on.
    d = TYPED_DECODERS[decoder]
    assert d._typed_prediction is not None and d._typed_label is not None
    d._typed_prediction.decode(orjson.dumps(_renamed_doc(doc, d.fields.prediction)))
    d._typed_label.decode(orjson.dumps(_renamed_doc(label, d.fields.label)))


def test_typed_path_is_off_for_a_field_map_it_cannot_express() -> None:
    # Two fields read from one key is refused by the config, but a FieldMap built by hand may do it.
    aliased = FieldMap(prediction={**{f: f for f in events.PREDICTION_FIELDS}, "variant": "experiment"})
    d = Decoder(THRESHOLDS, fields=aliased)
    assert d._typed_prediction is None and d._typed_label is not None
    raw = orjson.dumps({"prediction_id": "p", "model": "m", "ts": 5, "score": 0.5, "experiment": "A"})
    p = d.predictions([raw])[0]
    assert isinstance(p, Prediction) and (p.variant, p.experiment) == ("A", "A")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"prediction_id":"p","model":"m","ts":5,"score":0.5,"features":{"x":1,"y":2,"x":3.0}}',
        b'{"prediction_id":"p","model":"m","ts":5,"score":0.5,"features":{"x":18446744073709551616}}',
        b'{"prediction_id":"p","model":"m","ts":5,"score":0.5,"features":{"x":9223372036854775808}}',
        b'{"prediction_id":"p","model":"m","ts":5,"score":0.5,"features":{"x":1e400}}',
        b'{"prediction_id":"\\ud83d\\ude00","model":"m","ts":5,"score":0.5}',
        b'{"prediction_id":"\\ud800","model":"m","ts":5,"score":0.5}',
        b'{"prediction_id":"p","model":"m","ts":5,"score":0.5,"extra":"\xed\xa0\x80"}',
        b'{"prediction_id":"p","model":"m","ts":5,"score":0.5,"predicted":1.0}',
        b'{"prediction_id":"p","model":"m","ts":5,"score":1e-400}',
        b'{"prediction_id":"p","model":"m","ts":5e0,"score":1E0}',
    ],
)
def test_typed_path_edge_bytes(raw: bytes) -> None:
    # Where msgspec and orjson read the same bytes differently (huge integers, skipped
    # invalid UTF-8), the typed path hands the message on.
    d = TYPED_DECODERS["default"]
    assert _shape(d.prediction(raw)) == _shape(d._prediction(raw, None))


def test_typed_path_gives_up_on_a_batch_it_keeps_refusing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Events with a field the schema does not name are refused by the typed path; after
    # enough of them in one batch, the rest of the batch skips it. Same events either way.
    d = Decoder(THRESHOLDS)
    assert d._typed_prediction is not None
    calls = []
    typed = d._typed_prediction

    class Counting:
        def decode(self, raw: bytes) -> Any:
            calls.append(raw)
            return typed.decode(raw)

    monkeypatch.setattr(d, "_typed_prediction", Counting())
    plain = [orjson.dumps({"prediction_id": f"p{i}", "model": "m", "ts": i, "score": 0.5}) for i in range(40)]
    extra = [raw[:-1] + b',"source":"web"}' for raw in plain]
    batch = extra[:40] + plain
    got = d.predictions(batch)
    assert [_shape(p) for p in got] == [_shape(d._prediction(raw, None)) for raw in batch]
    assert len(calls) == events._MIN_REFUSED  # then the full path only, for this batch
    calls.clear()
    assert [_shape(p) for p in d.predictions(plain)] == [_shape(p) for p in got[40:]]
    assert len(calls) == len(plain)  # the next batch tries again
    mixed = [raw for pair in zip(plain, extra, strict=True) for raw in pair]  # half refused: keeps trying
    calls.clear()
    assert [_shape(p) for p in d.predictions(mixed)] == [_shape(d._prediction(raw, None)) for raw in mixed]
    assert len(calls) == len(mixed)
    labels = [
        orjson.dumps({"prediction_id": f"p{i}", "label": 1, "ts": i, "source": "web"}) for i in range(40)
    ]
    assert [_shape(lab) for lab in d.labels(labels)] == [_shape(d._label(raw, None)) for raw in labels]


def test_prediction_columns_parse_each_message_once_and_give_up_like_predictions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A refused message stops the batch's native decoding only to go on after it (no message
    # is parsed twice); after enough refusals the rest of the batch goes to the per-event path.
    d = Decoder(THRESHOLDS)
    typed = d._typed_prediction
    assert typed is not None
    calls: list[bytes] = []

    class Counting:
        def decode(self, raw: bytes) -> Any:
            calls.append(raw)
            return typed.decode(raw)

    monkeypatch.setattr(d, "_typed_prediction", Counting())
    plain = [orjson.dumps({"prediction_id": f"p{i}", "model": "m", "ts": i, "score": 0.5}) for i in range(40)]
    extra = [raw[:-1] + b',"source":"web"}' for raw in plain]
    mixed = [raw for pair in zip(plain, extra, strict=True) for raw in pair]  # half refused: keeps trying
    for batch, parsed in ((mixed, len(mixed)), (extra + plain, events._MIN_REFUSED)):
        calls.clear()
        want = events.PredictionColumns.from_events([d._prediction(raw, None) for raw in batch])
        assert _column_shapes(d.prediction_columns(batch)) == _column_shapes(want)
        assert len(calls) == parsed
