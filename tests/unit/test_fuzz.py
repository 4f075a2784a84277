"""Hostile input: property-based fuzzing of the event decoder, stage 1 and the config loader.

What may reach streamon from outside (bytes on the input topics, a YAML file) is generated
at random, near-valid and plainly hostile: arbitrary bytes, arbitrary JSON (including the
non-standard ``NaN`` / ``Infinity`` literals, integers beyond 64 bits, lone surrogates,
duplicate keys, a byte-order mark, very long strings, nesting past orjson's depth limit),
and valid events with one field mutated. The properties:

- :class:`~streamon.core.events.Decoder` never raises; it returns an event or an
  ``Invalid`` with a known reason. Every accepted event satisfies the JSON Schema in
  ``schemas/`` according to the ``jsonschema`` library (a validator independent of the
  fastjsonschema + fast path pair the decoder uses) and the documented invariants; every
  document that library rejects is rejected.
- :meth:`~streamon.core.stages.stage1.PartitionProcessor.process` never raises, and every input
  message is either counted as processed or returned as rejected with a reason.
- :func:`~streamon.config.parse_config_text` raises nothing but ``ConfigError``, and its
  message is one line.

The runs are derandomized (the same examples on every run, no example database), so a
failure in CI reproduces locally. Crashes found this way are pinned below as plain
regression tests.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamon.config import Settings, parse_config_text
from streamon.core import events
from streamon.core.events import (
    BAD_TIMESTAMP,
    IDENTIFIER_FIELDS,
    STRING_TOO_LONG,
    TOO_LARGE,
    Decoder,
    Invalid,
    Label,
    Prediction,
)
from streamon.core.profile import FeatureSpec, ModelSpec
from streamon.core.stages.join import MemoryStore
from streamon.core.stages.stage1 import PartitionProcessor
from streamon.core.state.summary import BucketSummary
from streamon.core.statistics import multiclass
from streamon.errors import ConfigError

# A numpy overflow or invalid cast on hostile input is a bug too, not just a warning.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

ROOT = Path(__file__).resolve().parents[2]
CONFIG_TEXT = (ROOT / "configs" / "monitoring_config.yaml").read_text()

# Derandomized and database-less: CI runs exactly these examples every time. For a longer,
# random campaign: STREAMON_FUZZ_SCALE=50 STREAMON_FUZZ_RANDOM=1 pytest tests/unit/test_fuzz.py
SCALE = float(os.environ.get("STREAMON_FUZZ_SCALE", "1"))
FUZZ = settings(
    derandomize=not os.environ.get("STREAMON_FUZZ_RANDOM"),
    database=None,
    deadline=None,
    max_examples=int(300 * SCALE),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
# The decoder is cheap to call: more examples for the same time.
DECODER_FUZZ = settings(FUZZ, max_examples=int(800 * SCALE))

# The rejection reasons: the public upper-case string constants of events (as in test_docs).
REASONS = frozenset(v for n, v in vars(events).items() if n.isupper() and isinstance(v, str))
SCHEMAS = {
    kind: jsonschema.Draft202012Validator(
        json.loads((ROOT / "schemas" / f"{kind}.schema.json").read_text()),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    for kind in (
        "prediction",
        "label",
        "regression_prediction",
        "regression_label",
        "multiclass_prediction",
        "multiclass_label",
    )
}

# Small limits on one decoder so the fuzzer reaches them; the other has the defaults.
TIGHT = Decoder(
    {"m": 0.5}, max_bytes=4096, max_features=5, max_string_length=128, max_feature_value_length=16
)
DEFAULT = Decoder({"m": 0.5, "other-model": 0.3})
# With a regression model: its predictions carry a value, and every label may be any number.
MIXED = Decoder({"m": 0.5}, regression=["r"])
# With every kind: a multiclass model's predictions carry scores, and labels may be class names.
CLASSES = ("a", "b", "c")
MULTI = Decoder({"m": 0.5}, regression=["r"], multiclass={"k": CLASSES})
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


# ---------------------------------------------------------------------- strategies

hostile_numbers = st.one_of(
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [0, 1, -1, 0.0, -0.0, 1.0, 0.5, 1e308, -1e308, 5e-324, 2**63, 2**64, -(2**63) - 1, 1e-300]
    ),
)
LONG_LENGTHS = [127, 128, 129, 255, 256, 257, 1023, 1024, 1025, 5000]
ODD_STRINGS = [
    "",
    "2026-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "1969-12-31T23:59:59Z",
    "9999-12-31T23:59:59-14:00",
    "2026-01-01T00:00:00." + "9" * 300 + "Z",
    "NaN",
    "\ufeff",
]
hostile_strings = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
    st.builds(lambda n, c: c * n, st.sampled_from(LONG_LENGTHS), st.sampled_from(["x", "é", "€", "😀"])),
    st.sampled_from(ODD_STRINGS),
)
json_scalars = st.one_of(st.none(), st.booleans(), hostile_numbers, hostile_strings)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def to_bytes(value: Any, ascii: bool = True) -> bytes:
    """JSON text the way a careless producer writes it: NaN/Infinity literals, \\ud800 escapes,
    or (``ascii=False``) raw UTF-8 with lone surrogates encoded as invalid UTF-8."""
    return json.dumps(value, allow_nan=True, ensure_ascii=ascii).encode("utf-8", "surrogatepass")


def like(value: Any) -> st.SearchStrategy[Any]:
    """Hostile values of the same JSON type as ``value`` (a mutation the schema may well accept)."""
    if isinstance(value, bool) or value is None:
        return st.one_of(st.booleans(), st.none())
    if isinstance(value, int | float):
        return st.one_of(hostile_numbers, st.floats(-0.1, 1.1), st.floats(0, 2e9))
    if isinstance(value, str):
        return hostile_strings
    return json_values


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


VALID_PREDICTION: dict[str, Any] = {
    "prediction_id": "tx-1",
    "model": "m",
    "model_version": "v1",
    "variant": "A",
    "experiment": "e",
    "entity_id": "card-1",
    "ts": NOW - 60,
    "score": 0.7,
    "predicted": 1,
    "features": {"x": 1.5, "c": "groceries", "missing": None},
    "latency_ms": 3.2,
    "amount": 12.5,
}
VALID_LABEL: dict[str, Any] = {"prediction_id": "tx-1", "label": 1, "ts": NOW - 30, "amount": 12.5}
VALID_REGRESSION: dict[str, Any] = {
    **{k: v for k, v in VALID_PREDICTION.items() if k not in ("score", "predicted")},
    "model": "r",
    "value": -1250.75,
}
VALID_REGRESSION_LABEL: dict[str, Any] = {**VALID_LABEL, "label": -3.25}
VALID_MULTICLASS: dict[str, Any] = {
    **{k: v for k, v in VALID_PREDICTION.items() if k not in ("score", "predicted")},
    "model": "k",
    "scores": {"a": 0.25, "b": 0.5, "c": 0.25},
    "predicted": "b",
}
VALID_MULTICLASS_LABEL: dict[str, Any] = {**VALID_LABEL, "label": "c"}


@st.composite
def near_valid(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """A valid event with one or two fields mutated, dropped or added, then maybe mangled as text."""
    doc = dict(base)
    for _ in range(draw(st.integers(1, 2))):
        probs = ["scores.a", "scores.c", "scores.<new>"] if "scores" in base else []
        key = draw(st.sampled_from([*base, "features.x", "features.c", "features.<new>", "unknown", *probs]))
        action = draw(st.sampled_from(["set", "set", "drop"]))
        if key.startswith("scores."):  # one probability changed, dropped or added (a class name)
            scores = dict(doc["scores"]) if isinstance(doc.get("scores"), dict) else {}
            name = key.removeprefix("scores.")
            if name == "<new>":
                name = draw(st.one_of(st.sampled_from(["a", "b", "c", "d"]), hostile_strings))
            if action == "drop":
                scores.pop(name, None)
            else:
                scores[name] = draw(
                    st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0, 0.2500001, 0.251]), json_values)
                )
            doc["scores"] = scores
        elif key.startswith("features."):
            features = dict(doc.get("features") or {}) if isinstance(doc.get("features"), dict) else {}
            name = key.removeprefix("features.")
            if name == "<new>":
                name = draw(hostile_strings)
            features[name] = draw(st.one_of(json_values, like(features.get(name, ""))))
            doc["features"] = features
        elif action == "drop":
            doc.pop(key, None)
        else:
            doc[key] = draw(st.one_of(like(base.get(key)), json_values))
    text = to_bytes(doc, ascii=draw(st.booleans()))
    mangle = draw(
        st.sampled_from(
            ["none", "none", "none", "none", "bom", "duplicate", "deep", "many_features", "truncate", "long"]
        )
    )
    if mangle == "bom":
        text = b"\xef\xbb\xbf" + text
    elif mangle == "duplicate":  # duplicate keys: the last one wins in orjson
        key = draw(st.sampled_from(sorted(base)))
        text = text[:-1] + b", " + to_bytes(key) + b": " + to_bytes(draw(json_values)) + b"}"
    elif mangle == "deep":
        depth = draw(st.sampled_from([10, 500, 1022, 1023, 1024, 1025, 2000]))
        text = text[:-1] + b', "deep": ' + nested(depth).encode() + b"}"
    elif mangle == "many_features":
        n = draw(st.sampled_from([5, 6, 499, 500, 501]))
        text = to_bytes({**doc, "features": {f"f{i}": i for i in range(n)}})
    elif mangle == "long":  # one kept string just under, at or over a limit
        n = draw(st.sampled_from(LONG_LENGTHS))
        key = draw(st.sampled_from([*IDENTIFIER_FIELDS, "ts", "feature name", "feature value"]))
        if key.startswith("feature"):
            name, value = ("y" * n, 1) if key == "feature name" else ("c", "y" * n)
            text = to_bytes({**doc, "features": {**VALID_PREDICTION["features"], name: value}})
        else:
            text = to_bytes({**doc, key: "y" * n})
    elif mangle == "truncate":
        text = text[: draw(st.integers(0, max(len(text) - 1, 0)))]
    return text


# ---------------------------------------------------------------------- decoder properties


def check_decoded(decoder: Decoder, kind: str, raw: bytes | None, out: Any) -> None:
    """The properties every decoder answer must have (see the module docstring)."""
    if isinstance(out, Invalid):
        assert out.reason in REASONS, out
        assert out.detail and "\n" not in out.detail, out
        return
    assert raw is not None and len(raw) <= decoder.max_bytes
    doc = orjson.loads(raw)
    schema = _schema_of(decoder, kind, doc)
    errors = [e.message for e in SCHEMAS[schema].iter_errors(doc)]
    assert not errors, f"accepted a {schema} the JSON Schema rejects: {errors[:2]} {raw[:200]!r}"
    assert math.isfinite(out.ts) and out.ts >= 0, out
    assert isinstance(out.prediction_id, str) and 0 < len(out.prediction_id) <= decoder.max_string_length
    if kind == "label":
        assert isinstance(out, Label)
        if decoder.multiclass and type(out.label) is str:  # a class name, checked at the join
            assert 0 < len(out.label) <= decoder.max_string_length and doc["label"] == out.label
        elif decoder.regression:  # any finite number; 0 and 1 as ints, the rest as floats
            assert type(out.label) in (int, float) and math.isfinite(out.label)
            assert (type(out.label) is int) == (out.label in (0, 1)), out
        else:
            assert out.label in (0, 1) and type(out.label) is int
        return
    assert isinstance(out, Prediction)
    if out.model in decoder.multiclass:  # the predicted class's probability travels as the score
        index = decoder.multiclass[out.model]
        assert schema == "multiclass_prediction" and out.scores is not None and len(out.scores) == len(index)
        assert set(doc["scores"]) <= set(index) and abs(math.fsum(out.scores) - 1.0) <= 1e-6
        assert all(0.0 <= p <= 1.0 for p in out.scores) and type(out.predicted) is int
        assert out.score == out.scores[out.predicted]
        named = doc.get("predicted")
        assert out.predicted == (index[named] if named is not None else out.scores.index(max(out.scores)))
    elif out.model in decoder.regression:  # the value travels as the score
        assert math.isfinite(out.score) and out.predicted == 0 and type(out.predicted) is int
        assert out.score == doc["value"] and schema == "regression_prediction"
    else:
        assert 0.0 <= out.score <= 1.0 and out.predicted in (0, 1) and type(out.predicted) is int
        assert out.model in decoder.thresholds
    for name in IDENTIFIER_FIELDS:
        value = getattr(out, name, doc.get(name)) or ""
        assert isinstance(value, str) and len(value) <= decoder.max_string_length, (name, len(value))
    assert len(out.features) <= decoder.max_features
    for name, value in out.features.items():
        assert len(name) <= decoder.max_string_length
        assert value is None or type(value) in (int, float, str), (name, value)
        if type(value) is str:
            assert len(value) <= decoder.max_feature_value_length
    assert math.isnan(out.latency_ms) or 0 <= out.latency_ms <= 86_400_000  # int64 microseconds downstream
    assert math.isnan(out.amount) or math.isfinite(out.amount)


def _schema_of(decoder: Decoder, kind: str, doc: Any) -> str:
    """The schema ``decoder`` must hold an event of ``kind`` to: by its model, for predictions."""
    if not decoder.regression and not decoder.multiclass:
        return kind
    if kind == "label":
        return "multiclass_label" if decoder.multiclass else "regression_label"
    model = doc.get("model") if isinstance(doc, dict) else None
    if type(model) is str and model in decoder.multiclass:
        return "multiclass_prediction"
    return "regression_prediction" if type(model) is str and model in decoder.regression else "prediction"


def shape(event: Any) -> Any:
    """An event as comparable data, types included (1 vs 1.0, True vs 1, nan), Invalid's field too."""
    if isinstance(event, Invalid):
        return ("Invalid", event.reason, event.detail, event.field)
    return [
        (f.name, type(v).__name__, repr(v))
        for f in dataclasses.fields(event)
        for v in [getattr(event, f.name)]
    ]


def check_both(raw: bytes | None) -> None:
    for decoder in (DEFAULT, TIGHT, MIXED, MULTI):
        for now in (None, NOW):
            p, lab = decoder.prediction(raw, now), decoder.label(raw, now)
            check_decoded(decoder, "prediction", raw, p)
            check_decoded(decoder, "label", raw, lab)
            # The typed path (msgspec) gives what the path behind it gives, to the last detail.
            assert shape(p) == shape(decoder._prediction(raw, now)), raw
            assert shape(lab) == shape(decoder._label(raw, now)), raw


def check_schema_rejections(raw: bytes) -> None:
    """Differential, the other way: what the jsonschema library rejects, the decoder rejects."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    if not isinstance(doc, dict):
        return
    for decoder in (DEFAULT, MIXED, MULTI):
        for kind, decode in (("prediction", decoder.prediction), ("label", decoder.label)):
            schema = _schema_of(decoder, kind, doc)
            if any(True for _ in SCHEMAS[schema].iter_errors(doc)):
                assert isinstance(decode(raw), Invalid), (schema, raw[:200])


@DECODER_FUZZ
@given(st.binary(max_size=600))
def test_decoder_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    check_both(raw)


@DECODER_FUZZ
@given(json_values)
def test_decoder_never_raises_on_arbitrary_json(value: Any) -> None:
    raw = to_bytes(value)
    check_both(raw)
    check_schema_rejections(raw)


@DECODER_FUZZ
@given(near_valid(VALID_PREDICTION))
def test_decoder_on_near_valid_predictions(raw: bytes) -> None:
    check_both(raw)
    check_schema_rejections(raw)


@DECODER_FUZZ
@given(near_valid(VALID_LABEL))
def test_decoder_on_near_valid_labels(raw: bytes) -> None:
    check_both(raw)
    check_schema_rejections(raw)


@DECODER_FUZZ
@given(near_valid(VALID_REGRESSION))
def test_decoder_on_near_valid_regression_predictions(raw: bytes) -> None:
    check_both(raw)
    check_schema_rejections(raw)


@DECODER_FUZZ
@given(near_valid(VALID_REGRESSION_LABEL))
def test_decoder_on_near_valid_regression_labels(raw: bytes) -> None:
    check_both(raw)
    check_schema_rejections(raw)


@DECODER_FUZZ
@given(near_valid(VALID_MULTICLASS))
def test_decoder_on_near_valid_multiclass_predictions(raw: bytes) -> None:
    check_both(raw)
    check_schema_rejections(raw)


@DECODER_FUZZ
@given(near_valid(VALID_MULTICLASS_LABEL))
def test_decoder_on_near_valid_multiclass_labels(raw: bytes) -> None:
    check_both(raw)
    check_schema_rejections(raw)


def test_the_fuzzed_base_events_are_valid() -> None:
    # Otherwise the near-valid strategies would only ever explore rejections.
    assert isinstance(DEFAULT.prediction(to_bytes(VALID_PREDICTION), NOW), Prediction)
    assert isinstance(DEFAULT.label(to_bytes(VALID_LABEL), NOW), Label)
    assert isinstance(MIXED.prediction(to_bytes(VALID_REGRESSION), NOW), Prediction)
    assert isinstance(MIXED.label(to_bytes(VALID_REGRESSION_LABEL), NOW), Label)
    assert isinstance(MIXED.prediction(to_bytes(VALID_PREDICTION), NOW), Prediction)
    assert isinstance(MULTI.prediction(to_bytes(VALID_MULTICLASS), NOW), Prediction)
    assert isinstance(MULTI.label(to_bytes(VALID_MULTICLASS_LABEL), NOW), Label)
    assert isinstance(MULTI.prediction(to_bytes(VALID_REGRESSION), NOW), Prediction)
    assert {TOO_LARGE, STRING_TOO_LONG, BAD_TIMESTAMP, "invalid_json", "unknown_model"} <= REASONS


# ---------------------------------------------------------------------- stage 1


SPEC = ModelSpec("m", threshold=0.5, features=[FeatureSpec("x", "numeric"), FeatureSpec("c", "categorical")])
stage1_messages = st.one_of(
    st.none(),
    st.binary(max_size=40),
    near_valid(VALID_PREDICTION),
    near_valid(VALID_LABEL),
    st.builds(
        lambda i, ts, score: to_bytes(
            {**VALID_PREDICTION, "prediction_id": f"p{i}", "ts": ts, "score": score}
        ),
        st.integers(0, 20),
        st.floats(NOW - 7200, NOW),
        st.floats(0, 1),
    ),
    st.builds(
        lambda i, ts, label: to_bytes({"prediction_id": f"p{i}", "ts": ts, "label": label}),
        st.integers(0, 20),
        st.floats(NOW - 7200, NOW),
        st.sampled_from([0, 1, 2]),
    ),
)


@settings(FUZZ, max_examples=int(300 * SCALE))
@given(st.lists(st.tuples(stage1_messages, stage1_messages), min_size=1, max_size=4))
def test_partition_processor_accounts_for_every_message(
    batches: list[tuple[bytes | None, bytes | None]],
) -> None:
    pp = PartitionProcessor({"m": SPEC}, MemoryStore(), bucket_s=60, decoder=Decoder({"m": 0.5}))
    total = 0
    for batch in (batches[: len(batches) // 2 + 1], batches[len(batches) // 2 + 1 :]):
        predictions = [p for p, _ in batch]
        labels = [lab for _, lab in batch]
        before = pp.counts.predictions + pp.counts.labels + sum(pp.counts.invalid.values())
        rejected = pp.process(predictions, labels, now=NOW)
        after = pp.counts.predictions + pp.counts.labels + sum(pp.counts.invalid.values())
        total += len(predictions) + len(labels)
        assert after - before == len(predictions) + len(labels)
        for r in rejected:
            assert r.reason in REASONS and r.detail, r
            assert r.raw in (predictions if r.topic == "predictions" else labels)
        pp.take_partials()
    assert pp.counts.predictions + pp.counts.labels + sum(pp.counts.invalid.values()) == total


MULTI_SPEC = ModelSpec(
    "k",
    task="multiclass",
    classes=CLASSES,
    features=[FeatureSpec("x", "numeric"), FeatureSpec("c", "categorical")],
)
mixed_messages = st.one_of(
    stage1_messages,
    near_valid(VALID_MULTICLASS),
    near_valid(VALID_MULTICLASS_LABEL),
    st.builds(
        lambda i, ts, a: to_bytes(
            {**VALID_MULTICLASS, "prediction_id": f"p{i}", "ts": ts, "scores": {"a": a, "c": 1.0 - a}}
        ),
        st.integers(0, 20),
        st.floats(NOW - 7200, NOW),
        st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    ),
    st.builds(
        lambda i, ts, label: to_bytes({"prediction_id": f"p{i}", "ts": ts, "label": label}),
        st.integers(0, 20),
        st.floats(NOW - 7200, NOW),
        st.sampled_from(["a", "b", "c", "d", 1, 2.5]),
    ),
)


@settings(FUZZ, max_examples=int(300 * SCALE))
@given(st.lists(st.tuples(mixed_messages, mixed_messages), min_size=1, max_size=6))
def test_partition_processor_with_a_multiclass_model_accounts_for_every_message(
    batches: list[tuple[bytes | None, bytes | None]],
) -> None:
    pp = PartitionProcessor({"m": SPEC, "k": MULTI_SPEC}, MemoryStore(), bucket_s=60)
    # A label that waited and then does not fit its prediction's model was counted as a
    # label when it arrived and is counted again, as invalid, when it is dropped.
    dropped: list[Invalid] = []
    count = pp.joiner.on_misfit
    assert count is not None
    pp.joiner.on_misfit = lambda bad: (dropped.append(bad), count(bad))[1]
    total = 0
    whole = BucketSummary()
    for batch in (batches[: len(batches) // 2 + 1], batches[len(batches) // 2 + 1 :]):
        predictions = [p for p, _ in batch]
        labels = [lab for _, lab in batch]
        before = pp.counts.predictions + pp.counts.labels + sum(pp.counts.invalid.values()) - len(dropped)
        rejected = pp.process(predictions, labels, now=NOW)
        after = pp.counts.predictions + pp.counts.labels + sum(pp.counts.invalid.values()) - len(dropped)
        total += len(predictions) + len(labels)
        assert after - before == len(predictions) + len(labels)
        for r in rejected + dropped:
            assert r.reason in REASONS and r.detail, r
        for partial in pp.take_partials():
            if partial.model == "k":
                for summary in partial.buckets.values():
                    whole += summary  # a correction's delta may be negative, the sum never
    state = multiclass.state_of(whole, len(CLASSES))
    assert (state.confusion >= 0).all() and (state.top_k >= 0).all() and state.predicted[-1] == 0
    assert state.n_labelled <= state.n_predictions
    assert all(bad.reason in ("unknown_class", "wrong_type", "schema_violation") for bad in dropped)


# ---------------------------------------------------------------------- config loader


def parse_or_config_error(text: str) -> Settings | None:
    """Settings, or None after a one-line ConfigError; any other exception fails the test."""
    try:
        return parse_config_text(text, source="fuzz.yaml")
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("config fuzz.yaml: ") and "\n" not in message and "Traceback" not in message
        return None


yaml_fragments = st.sampled_from(
    ["models:", "- ", "  ", "\n", ": ", "{", "}", "[", "]", "&a ", "*a", "!!python/object:os.system ", "'",
     '"', "#", "? ", "--- ", "...", "|", ">", "name: m", "features:", "type: numeric", "threshold: ",
     "1e999", ".nan", "-.inf", "0x1F", "0o17", "~", "yes", "2026-01-01", "!!binary aGk=", "<<: *a", "\t",
     "\ufeff", "kafka:", "limits:", "max_features: "]
)  # fmt: skip


@FUZZ
@given(st.one_of(st.text(max_size=200), st.lists(yaml_fragments, max_size=30).map("".join)))
def test_config_loader_on_arbitrary_text(text: str) -> None:
    parse_or_config_error(text)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


BASE_CONFIG = yaml.safe_load(CONFIG_TEXT)
CONFIG_PATHS = _paths(BASE_CONFIG)
yaml_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(["5m", "0s", "-1h", "1e9d", "24h", "m", "", "predictions", "../../etc/passwd"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def yaml_like(value: Any) -> st.SearchStrategy[Any]:
    """A value of the same YAML type (a mutation that reaches the range and cross-key checks)."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.one_of(st.integers(-5, 2**70), st.sampled_from([0, 1, -1, 1023, 1024, 2**31]))
    if isinstance(value, float):
        return st.floats(allow_nan=True, allow_infinity=True)
    if isinstance(value, str):
        return st.one_of(st.text(max_size=12), st.sampled_from(["5m", "0s", "1h30m", "7d", "x" * 300]))
    return yaml_values


@st.composite
def mutated_configs(draw: st.DrawFn) -> str:
    import copy

    data = copy.deepcopy(BASE_CONFIG)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(CONFIG_PATHS))
        parent: Any = data
        try:
            for step in path[:-1]:
                parent = parent[step]
            leaf = path[-1]
            action = draw(st.sampled_from(["set", "set", "set", "drop", "rename"]))
            if action == "drop":
                del parent[leaf]
            elif action == "rename" and isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=10))] = parent.pop(leaf)
            else:
                parent[leaf] = draw(st.one_of(yaml_like(parent[leaf]), yaml_values))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    return yaml.safe_dump(data, allow_unicode=draw(st.booleans()))


@settings(FUZZ, max_examples=int(200 * SCALE))
@given(mutated_configs())
def test_config_loader_on_mutated_configs(text: str) -> None:
    parse_or_config_error(text)


def test_the_mutated_config_is_valid_unmutated() -> None:
    assert isinstance(parse_or_config_error(yaml.safe_dump(BASE_CONFIG)), Settings)


# ---------------------------------------------------------------------- regressions found by fuzzing


def test_rfc3339_time_before_1970_is_a_bad_timestamp() -> None:
    # A numeric ts must be >= 0 (schema); the same instant as a string used to pass as a
    # negative event time.
    raw = to_bytes({**VALID_PREDICTION, "ts": "0001-01-01T00:00:00+14:00"})
    out = DEFAULT.prediction(raw)
    assert isinstance(out, Invalid) and out.reason == BAD_TIMESTAMP, out
    label = DEFAULT.label(to_bytes({**VALID_LABEL, "ts": "1969-12-31T23:59:59Z"}))
    assert isinstance(label, Invalid) and label.reason == BAD_TIMESTAMP, label


@pytest.mark.parametrize(("latency", "accepted"), [(86_400_000, True), (86_400_000.5, False), (1e308, False)])
def test_latency_is_bounded_to_a_day(latency: float, accepted: bool) -> None:
    # 1e308 ms passed the schema (number >= 0) and overflowed the integer microseconds
    # that keep the latency sum of a bucket exactly mergeable.
    pp = PartitionProcessor({"m": SPEC}, MemoryStore(), bucket_s=60, decoder=Decoder({"m": 0.5}))
    rejected = pp.process([to_bytes({**VALID_PREDICTION, "latency_ms": latency})], [], now=NOW)
    assert [r.reason for r in rejected] == ([] if accepted else ["schema_violation"])
    assert pp.counts.predictions == int(accepted)


def test_json_nested_past_orjsons_limit_is_too_large() -> None:
    raw = b'{"prediction_id": "p", "model": "m", "ts": 1, "score": 0.5, "x": ' + nested(1100).encode() + b"}"
    out = DEFAULT.prediction(raw)
    assert out == Invalid(TOO_LARGE, "JSON nested deeper than 1024 levels")
    # Just inside the limit an unknown field is parsed and ignored.
    ok = DEFAULT.prediction(raw.replace(nested(1100).encode(), nested(1000).encode()))
    assert isinstance(ok, Prediction)


def test_a_label_with_an_unknown_features_field_is_decoded() -> None:
    # "features" is an unknown (ignored) field of a label: the string-length check of a long
    # label must not read it as a prediction's feature object (a list of ints has no len()).
    raw = to_bytes({**VALID_LABEL, "pad": "y" * 300, "features": [1, 2]})
    assert isinstance(TIGHT.label(raw), Label)
    assert isinstance(TIGHT.label(raw.replace(b"[1, 2]", b'{"' + b"k" * 200 + b'": 1}')), Label)


def test_a_config_key_with_a_line_break_is_quoted_in_the_one_line_error() -> None:
    # A YAML key may contain line breaks ("\\n" in a double-quoted key); the error naming it
    # used to span several lines.
    text = '? "\\n\\n  x"\n: 1\nmodels: [{name: m, features: [{name: x, type: numeric}]}]\n'
    with pytest.raises(ConfigError) as err:
        parse_config_text(text, source="c.yaml")
    assert str(err.value) == "config c.yaml: '\\n\\n  x': unknown key", str(err.value)
