"""Decoding and validation of prediction and label events.

Input bytes become a :class:`Prediction` / :class:`Label`, or an :class:`Invalid` that
says why (a short ``reason`` from a fixed set, used as a metric label, and a
``detail`` for the dead-letter header). Nothing here raises on bad input.

Field names are configurable: a :class:`FieldMap` renames the user's fields to the
canonical ones, then the event is checked against the JSON Schema in ``schemas/``,
compiled once with fastjsonschema. The library is the source of truth and of every
rejection reason; in front of it sits a fast path (:func:`fast_valid`) that recognises
the common, plainly valid event in a fraction of the validator's time (about 5 µs an
event) and hands everything else, including every event it is not sure about, to the
validator. ``tests/unit/test_events.py`` checks with random documents that the fast path
never accepts what the validator rejects.

In front of both, the plain valid event is decoded natively: msgspec parses the bytes
straight into a typed struct carrying the schema's constraints and the decoder's limits,
and the struct becomes the :class:`Prediction` / :class:`Label` (about twice as fast as
orjson + fast path, ``benchmarks/bench_decode.py``). Whatever it refuses takes the path
above, so reasons and details come from there; the same tests check, on random and
mutated bytes, that both paths give the same verdict and the same event. The batch methods
(:meth:`Decoder.predictions`, :meth:`Decoder.labels`) are what replay calls; stage 1 and the
restore take a batch of predictions as columns (:meth:`Decoder.prediction_columns`,
:class:`PredictionColumns`: the same rows and verdicts, no object per event).

Regression models (``Decoder(regression=...)``) send a ``value`` instead of a ``score``: their
predictions are checked against ``regression_prediction.schema.json`` on the validator's
path, and with one configured every label is checked against ``regression_label.schema.json``
(any finite number; whether it fits its prediction's model is the join's business). Without
them nothing of this runs, and binary events decode as they always have.

Multiclass models (``Decoder(multiclass={name: classes})``) send ``scores`` (class name ->
probability) and an optional ``predicted`` class name: checked against
``multiclass_prediction.schema.json`` on the validator's path, then by
:func:`streamon.core.statistics.multiclass.check_scores` / ``check_class`` (declared classes,
range, sum to 1). The :class:`Prediction` carries the vector in ``scores`` (declared order),
the class index in ``predicted`` and that class's probability in ``score``. With one
configured every label is checked against ``multiclass_label.schema.json`` (a class name or
a number); the join decides whether it fits its prediction's model.

Hostile input is bounded before anything is kept: the message size, the JSON nesting depth
(orjson's own limit), the length of every string that is kept (identifiers, feature names,
string feature values) and the number of features. ``tests/unit/test_fuzz.py`` feeds the
decoder random bytes, random JSON and mutated events and checks that it never raises.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from operator import attrgetter, itemgetter
from typing import Annotated, Any

import fastjsonschema
import msgspec
import numpy as np
import orjson

from streamon.core.statistics import multiclass
from streamon.core.statistics.multiclass import class_index as multiclass_index

# Reasons an event is rejected; they label streamon_events_invalid_total.
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
SCORE_OUT_OF_RANGE = "score_out_of_range"
BAD_TIMESTAMP = "bad_timestamp"
TS_IN_FUTURE = "ts_in_future"
TS_TOO_OLD = "ts_too_old"
TS_IN_MILLISECONDS = "ts_in_milliseconds"
UNKNOWN_MODEL = "unknown_model"
TOO_LARGE = "too_large"
STRING_TOO_LONG = "string_too_long"
DUPLICATE_PREDICTION = "duplicate_prediction"
SCHEMA_VIOLATION = "schema_violation"
# A multiclass model's events (core/statistics/multiclass.py checks them): a class name it
# does not declare (in scores, predicted or a label), and scores that do not sum to 1.
UNKNOWN_CLASS = multiclass.UNKNOWN_CLASS
SCORES_NOT_NORMALISED = multiclass.SCORES_NOT_NORMALISED
# Set by the worker, not the decoder: an input message that kept failing stage 1's transaction.
QUARANTINED = "quarantined"

PREDICTION_FIELDS = (
    "prediction_id",
    "model",
    "model_version",
    "variant",
    "experiment",
    "entity_id",
    "ts",
    "score",
    "predicted",
    "features",
    "latency_ms",
    "amount",
    "value",  # a regression model's prediction (it has no score)
    "scores",  # a multiclass model's class probabilities (it has no score)
)
LABEL_FIELDS = ("prediction_id", "label", "ts", "amount")

# The string fields of a prediction bounded by ``max_string_length`` (plus feature names
# and a string ``ts``); string feature values have their own, larger bound.
_OPTIONAL_STRINGS = ("model_version", "variant", "experiment", "entity_id")
IDENTIFIER_FIELDS = ("prediction_id", "model", *_OPTIONAL_STRINGS)
# orjson refuses documents nested deeper than this (not configurable); reported as too_large.
MAX_JSON_DEPTH = 1024
# Largest numeric ``ts`` read as epoch seconds (year 5138). Epoch milliseconds of any date
# after March 1973 are larger, so a bigger number is milliseconds (or finer), not seconds:
# rejected with its own reason rather than read as a time millennia ahead.
MAX_EPOCH_SECONDS = 1e11


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str
    detail: str
    # The offending field as the user's events name it ("score", "features.amount"), or ""
    # when the problem is the whole message (not JSON, too large). Not part of equality:
    # the reason and detail say what is wrong, the field only where.
    field: str = field(default="", compare=False)


@dataclass(slots=True)
class Prediction:
    prediction_id: str
    model: str
    ts: float
    # The score of a binary model; a regression model's predicted ``value`` (its ``predicted``
    # is 0): one field, so the join record and stage 1 carry both kinds alike.
    score: float
    predicted: int
    variant: str = ""
    experiment: str = ""
    model_version: str = ""
    features: dict[str, Any] = field(default_factory=dict)
    latency_ms: float = math.nan
    amount: float = math.nan
    # A multiclass model's probabilities in declared class order (its ``score`` is the
    # predicted class's, its ``predicted`` the class index); None for the other models.
    scores: list[float] | None = None


_ID = attrgetter("prediction_id")
_MODEL = attrgetter("model")
_TS = attrgetter("ts")
_SCORE = attrgetter("score")
_PREDICTED = attrgetter("predicted")
_VARIANT = attrgetter("variant")
_FEATURES = attrgetter("features")
_LATENCY = attrgetter("latency_ms")
_SCORES = attrgetter("scores")
_FIRST = itemgetter(0)


@dataclass(slots=True)
class PredictionColumns:
    """A batch of predictions as stage 1 reads it: the valid ones as columns, the rest as verdicts.

    Row ``i`` of every column is the valid prediction at position ``index[i]`` of the batch
    (batch order); ``invalid`` holds (position, why) of the others, in batch order. The fields
    are those of :class:`Prediction` that stage 1 uses, with its defaults filled in ("" for
    no variant, {} for no features, NaN for no latency). ``scores`` is None when no row is a
    multiclass prediction. Built straight from the native decoder's structs by
    :meth:`Decoder.prediction_columns`, or from decoded events by :meth:`from_events`.

    >>> cols = PredictionColumns.from_events([Prediction("a", "m", 5.0, 0.9, 1), Invalid("x", "y")])
    >>> cols.index, cols.prediction_id, cols.variant, cols.invalid
    ([0], ['a'], [''], [(1, Invalid(reason='x', detail='y', field=''))])
    """

    index: list[int]
    prediction_id: list[str]
    model: list[str]
    ts: list[float]
    score: list[float]
    predicted: list[int]
    variant: list[str]
    features: list[dict[str, Any]]
    latency_ms: list[float]
    scores: list[list[float] | None] | None
    invalid: list[tuple[int, Invalid]]

    @classmethod
    def from_events(cls, events: Sequence[Prediction | Invalid]) -> PredictionColumns:
        """The columns of decoded events (the general path: any mix of kinds and verdicts)."""
        index = [i for i, p in enumerate(events) if not isinstance(p, Invalid)]
        valid: list[Prediction] = [events[i] for i in index]  # type: ignore[misc]
        invalid = (
            [(i, p) for i, p in enumerate(events) if isinstance(p, Invalid)]
            if len(index) < len(events)
            else []
        )
        scores = list(map(_SCORES, valid))
        return cls(
            index,
            list(map(_ID, valid)),
            list(map(_MODEL, valid)),
            list(map(_TS, valid)),
            list(map(_SCORE, valid)),
            list(map(_PREDICTED, valid)),
            list(map(_VARIANT, valid)),
            list(map(_FEATURES, valid)),
            list(map(_LATENCY, valid)),
            None if scores.count(None) == len(scores) else scores,
            invalid,
        )

    def take(self, rows: Sequence[int]) -> PredictionColumns:
        """The rows at ``rows`` (row numbers, ascending), with no invalid ones."""
        pick = [*rows]

        def sub(column: list[Any]) -> list[Any]:
            return list(map(column.__getitem__, pick))

        return PredictionColumns(
            sub(self.index),
            sub(self.prediction_id),
            sub(self.model),
            sub(self.ts),
            sub(self.score),
            sub(self.predicted),
            sub(self.variant),
            sub(self.features),
            sub(self.latency_ms),
            None if self.scores is None else sub(self.scores),
            [],
        )

    def __len__(self) -> int:
        return len(self.index)


@dataclass(slots=True)
class Label:
    prediction_id: str
    # 0 or 1 (an int); with a regression model configured, any finite number (0 and 1 still
    # ints); with a multiclass model configured, also a class name: whether it fits its
    # prediction's model is decided at the join.
    label: float | str
    ts: float
    amount: float = math.nan


@dataclass(frozen=True)
class FieldMap:
    """Canonical field name -> the name used in the user's events."""

    prediction: dict[str, str] = field(default_factory=lambda: {f: f for f in PREDICTION_FIELDS})
    label: dict[str, str] = field(default_factory=lambda: {f: f for f in LABEL_FIELDS})

    def is_identity(self, kind: str) -> bool:
        mapping = self.prediction if kind == "prediction" else self.label
        return all(k == v for k, v in mapping.items())


@cache
def _validator(kind: str) -> Any:
    text = resources.files("streamon").joinpath("schemas", f"{kind}.schema.json").read_text()
    return fastjsonschema.compile(json.loads(text))


# ---------------------------------------------------------------------- fast path
#
# A hand-written check of the COMMON valid event, kept deliberately narrower than the
# schemas: exact JSON types only (what orjson produces: str, int, float, bool, None,
# dict, list), numeric ``ts`` only (RFC 3339 strings go to the validator), integer-valued
# floats for ``label`` / ``predicted`` left to the validator. It answers "certainly
# valid" or "not sure", never "invalid": a rejection, and its reason, always comes from
# fastjsonschema. Keep it in step with schemas/*.schema.json (the equivalence test fails
# if the schema is tightened without it). It also says "not sure" for an identifier or
# feature name longer than ``max_str``, so the plain valid event needs no separate length
# pass; string feature values are bounded by the decoder (rarely needed, see _strings_fit).

_NoneType = type(None)
_FEATURE_VALUE_TYPES = frozenset({float, int, str, _NoneType})


def _fast_valid_prediction(doc: dict[str, Any], max_str: int = 256) -> bool:
    get = doc.get
    value: Any = get("prediction_id")
    if type(value) is not str or not 0 < len(value) <= max_str:
        return False
    value = get("model")
    if type(value) is not str or not 0 < len(value) <= max_str:
        return False
    value = get("ts")
    kind = type(value)
    if (kind is not float and kind is not int) or not value >= 0:  # NaN is not >= 0: not sure
        return False
    value = get("score")
    kind = type(value)
    if (kind is not float and kind is not int) or not 0 <= value <= 1:
        return False
    for key in _OPTIONAL_STRINGS:
        value = get(key)
        if value is not None and (type(value) is not str or len(value) > max_str):
            return False
    value = get("predicted")
    if (value is not None and value is not True and value is not False) and (
        type(value) is not int or (value != 0 and value != 1)
    ):
        return False
    value = get("features")
    if value is not None:
        if type(value) is not dict:
            return False
        if not _FEATURE_VALUE_TYPES.issuperset(map(type, value.values())):
            return False
        if value and max(map(len, value)) > max_str:
            return False
    value = get("latency_ms")
    if value is not None:
        kind = type(value)
        if (kind is not float and kind is not int) or not 0 <= value <= 86_400_000:
            return False
    value = get("amount")
    return value is None or type(value) is float or type(value) is int


def _fast_valid_label(doc: dict[str, Any], max_str: int = 256) -> bool:
    get = doc.get
    value: Any = get("prediction_id")
    if type(value) is not str or not 0 < len(value) <= max_str:
        return False
    value = get("label")
    if type(value) is not int or (value != 0 and value != 1):
        return False
    value = get("ts")
    kind = type(value)
    if (kind is not float and kind is not int) or not value >= 0:
        return False
    value = get("amount")
    return value is None or type(value) is float or type(value) is int


def _fast_valid_class_label(doc: dict[str, Any], max_str: int = 256) -> bool:
    """The multiclass label form: a 0/1 label as above, or a class name (bounded like an identifier)."""
    value: Any = doc.get("label")
    if type(value) is not str:
        return _fast_valid_label(doc, max_str)
    if not 0 < len(value) <= max_str:
        return False
    value = doc.get("prediction_id")
    if type(value) is not str or not 0 < len(value) <= max_str:
        return False
    value = doc.get("ts")
    kind = type(value)
    if (kind is not float and kind is not int) or not value >= 0:
        return False
    value = doc.get("amount")
    return value is None or type(value) is float or type(value) is int


def _not_sure(doc: dict[str, Any], max_str: int = 256) -> bool:
    return False


# The regression forms take the validator (a slower path, for a smaller share of events); a
# 0/1 label is valid in both label forms, so the binary fast check serves the wider one too.
_FAST_VALID = {
    "prediction": _fast_valid_prediction,
    "label": _fast_valid_label,
    "regression_prediction": _not_sure,
    "regression_label": _fast_valid_label,
    "multiclass_prediction": _not_sure,
    "multiclass_label": _fast_valid_class_label,
}


# ---------------------------------------------------------------------- typed native path
#
# In front of all the above: msgspec decodes the message straight into a typed struct whose
# constraints are the schema's and the decoder's limits, in one native pass with no dict in
# between (about a third of the time of orjson + the fast path + the copy). Narrower
# still than the fast path: unknown fields are refused, because msgspec skips an unknown
# field's value without the checks orjson makes (UTF-8, nesting depth, number range); so is
# an integer outside int64 (orjson makes a larger one a float) and an integral float where
# an integer belongs. Like the fast path it only ever says "valid, here it is" or "not sure":
# every message it refuses, and every event whose model is unknown or whose time is out of
# bounds, takes the path above, which finds the reason.

_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_EPOCH_SECONDS)]
# Bounded like int64 so that a huge integer is never converted to a float by two parsers.
_Amount = Annotated[float, msgspec.Meta(ge=-(2.0**63), le=2.0**63)] | None


@cache
def _typed_decoders(
    max_str: int,
    max_value: int,
    max_features: int,
    prediction_names: tuple[tuple[str, str], ...] | None,
    label_names: tuple[tuple[str, str], ...] | None,
) -> tuple[msgspec.json.Decoder[Any] | None, msgspec.json.Decoder[Any] | None]:
    """msgspec decoders of a prediction / label struct for these limits and field names.

    ``*_names`` are (canonical, user's) pairs, or None where the field map cannot be
    expressed as a rename (then that kind keeps the path above only).
    """
    ident = Annotated[str, msgspec.Meta(min_length=1, max_length=max_str)]
    optional = Annotated[str, msgspec.Meta(max_length=max_str)] | None
    value = _Int64 | float | Annotated[str, msgspec.Meta(max_length=max_value)] | None
    features = (
        Annotated[
            dict[Annotated[str, msgspec.Meta(max_length=max_str)], value],
            msgspec.Meta(max_length=max_features),
        ]
        | None
    )
    options: dict[str, Any] = {"forbid_unknown_fields": True, "gc": False}
    prediction = label = None
    if prediction_names is not None:
        struct = msgspec.defstruct(
            "TypedPrediction",
            [
                ("prediction_id", ident),
                ("model", ident),
                ("ts", _Seconds),
                ("score", Annotated[float, msgspec.Meta(ge=0, le=1)]),
                ("model_version", optional, None),
                ("variant", optional, None),
                ("experiment", optional, None),
                ("entity_id", optional, None),
                ("predicted", Annotated[int, msgspec.Meta(ge=0, le=1)] | bool | None, None),
                ("features", features, None),
                ("latency_ms", Annotated[float, msgspec.Meta(ge=0, le=86_400_000)] | None, None),
                ("amount", _Amount, None),
            ],
            # No value or scores in a binary event.
            rename={k: v for k, v in prediction_names if k not in ("value", "scores")},
            **options,
        )
        prediction = msgspec.json.Decoder(struct)
    if label_names is not None:
        struct = msgspec.defstruct(
            "TypedLabel",
            [
                ("prediction_id", ident),
                ("label", Annotated[int, msgspec.Meta(ge=0, le=1)]),
                ("ts", _Seconds),
                ("amount", _Amount, None),
            ],
            rename=dict(label_names),
            **options,
        )
        label = msgspec.json.Decoder(struct)
    return prediction, label


# A stream whose events the typed path refuses (most often: every event carries a field
# the schema does not name) would pay for a refused parse before each full one. After
# _MIN_REFUSED refusals that are the majority of a batch so far, the rest of the batch
# goes straight to the full path; the next batch tries again. Speed only: both paths give
# the same events.
_MIN_REFUSED = 32
_GIVE_UP = 1 << 62


def _refused(refused: int, index: int) -> int:
    """The refusal count after one more at position ``index``; _GIVE_UP to stop trying."""
    refused += 1
    return _GIVE_UP if refused >= _MIN_REFUSED and 2 * refused > index + 1 else refused


def _renames(mapping: dict[str, str], canonical: tuple[str, ...]) -> tuple[tuple[str, str], ...] | None:
    """The field map as rename pairs when it names every field, each under a distinct name."""
    if set(mapping) != set(canonical) or len(set(mapping.values())) != len(mapping):
        return None
    return tuple((name, mapping[name]) for name in canonical)


def fast_valid(kind: str, doc: dict[str, Any]) -> bool:
    """True if ``doc`` (already renamed) certainly satisfies the ``kind`` schema; False = not sure.

    >>> fast_valid("label", {"prediction_id": "p1", "label": 1, "ts": 5})
    True
    >>> fast_valid("label", {"prediction_id": "p1", "label": 1.0, "ts": 5})  # valid, but ask the validator
    False
    """
    return _FAST_VALID[kind](doc)


def schema_error(kind: str, doc: dict[str, Any]) -> Invalid | None:
    """Why ``doc`` violates the ``kind`` schema (fast path first, fastjsonschema decides), or None.

    >>> schema_error("label", {"prediction_id": "p1", "label": 2, "ts": 5}).reason
    'schema_violation'
    >>> schema_error("label", {"prediction_id": "p1", "ts": 5}).reason
    'missing_field'
    """
    if _FAST_VALID[kind](doc):
        return None
    try:
        _validator(kind)(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        detail = exc.message[:200]
        if exc.rule == "type":  # what was there instead: the user's own value
            detail += ", got " + shown(exc.value)
        return Invalid(_schema_reason(exc), detail, _schema_field(exc))
    return None


def shown(value: Any) -> str:
    """A short, one-line rendering of a user's JSON value for an error detail.

    >>> shown("abc"), shown(1.5), shown(None), shown([1, 2]), shown({"a": 1})
    ('"abc"', '1.5', 'null', 'an array', 'an object')
    """
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        text = json.dumps(value[:40])
        return text if len(value) <= 40 else text[:-1] + '..."'
    try:
        return json.dumps(value)[:40]
    except (TypeError, ValueError):  # not JSON, or an integer too long to print
        return type(value).__name__


def _schema_field(exc: fastjsonschema.JsonSchemaValueException) -> str:
    """The dotted path of the field a schema error is about ("features.amount"), "" for the root.

    A missing field is named by the message ("data must contain ['score'] properties").
    """
    path = [str(part) for part in (exc.path or [])[1:]]  # [0] is the root, "data"
    if exc.rule == "required" and not path:
        rule_value = exc.rule_definition if isinstance(exc.rule_definition, list) else []
        value = exc.value if isinstance(exc.value, dict) else {}
        missing = [k for k in rule_value if k not in value]
        return str(missing[0]) if missing else ""
    return ".".join(path)


@lru_cache(maxsize=1024)
def did_you_mean(name: str, known: tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or "" (cached: floods repeat one name).

    >>> did_you_mean("fraud-v3", ("fraud-v2", "churn"))
    " (did you mean 'fraud-v2'?)"
    >>> did_you_mean("zzz", ("fraud-v2",))
    ''
    """
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_ts(value: Any) -> float | None:
    """Event time in epoch seconds from a number or an RFC 3339 string; None if unusable.

    >>> parse_ts(1700000000)
    1700000000.0
    >>> parse_ts("2023-11-14T22:13:20Z")
    1700000000.0
    >>> parse_ts("yesterday") is None
    True
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        ts = float(value)
        return ts if math.isfinite(ts) else None
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:  # RFC 3339 requires an offset; naive times are read as UTC
            dt = dt.replace(tzinfo=UTC)
        ts = dt.timestamp()
        return ts if math.isfinite(ts) else None
    return None


def _schema_reason(exc: fastjsonschema.JsonSchemaValueException) -> str:
    rule = exc.rule or ""
    if rule == "required":
        return MISSING_FIELD
    if rule == "type":
        return WRONG_TYPE
    if rule in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") and "score" in (exc.name or ""):
        return SCORE_OUT_OF_RANGE
    return SCHEMA_VIOLATION


class Decoder:
    """Turns raw message values into events, rejecting what the contract forbids.

    >>> d = Decoder(thresholds={"m": 0.5})
    >>> d.prediction(b'{"prediction_id": "p1", "model": "m", "ts": 100, "score": 0.7}')
    Prediction(prediction_id='p1', model='m', ts=100.0, score=0.7, predicted=1, variant='', ...)
    >>> d.prediction(b'{"prediction_id": "p1", "model": "m", "ts": 100, "score": 1.7}').reason
    'score_out_of_range'
    >>> d.label(b'not json').reason
    'invalid_json'
    """

    def __init__(
        self,
        thresholds: dict[str, float],
        fields: FieldMap | None = None,
        max_bytes: int = 65536,
        max_future_s: float = 300.0,
        max_age_s: float = 35 * 86400.0,
        max_features: int = 500,
        max_string_length: int = 256,
        max_feature_value_length: int = 1024,
        regression: Iterable[str] = (),
        multiclass: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        # Regression models (``regression``) have no threshold: their predictions carry a
        # ``value`` and take the validator's path, and labels may be any finite number.
        self.regression = frozenset(regression)
        # Multiclass models (name -> declared classes) neither: their predictions carry
        # ``scores`` and take the validator's path, and labels may be class names.
        self.multiclass = {name: multiclass_index(classes) for name, classes in (multiclass or {}).items()}
        self.thresholds = {
            k: v for k, v in thresholds.items() if k not in self.regression and k not in self.multiclass
        }
        self.fields = fields or FieldMap()
        self.max_bytes = max_bytes
        self.max_future_s = max_future_s
        self.max_age_s = max_age_s
        self.max_features = max_features
        self.max_string_length = max_string_length
        self.max_feature_value_length = max_feature_value_length
        # A decoded string has at most as many characters as the message has bytes, so a
        # message no longer than the smaller limit cannot break either: the common event
        # skips the string checks.
        self._strings_fit = min(max_string_length, max_feature_value_length)
        self._rename_prediction = not self.fields.is_identity("prediction")
        self._rename_label = not self.fields.is_identity("label")
        self._models = tuple(sorted({*self.thresholds, *self.regression, *self.multiclass}))
        self._typed_prediction, self._typed_label = _typed_decoders(
            max_string_length,
            max_feature_value_length,
            max_features,
            _renames(self.fields.prediction, PREDICTION_FIELDS),
            _renames(self.fields.label, LABEL_FIELDS),
        )

    def _theirs(self, kind: str, path: str) -> str:
        """A canonical field path ("ts", "features.x") as the user's events name it."""
        if not path:
            return path
        head, dot, rest = path.partition(".")
        mapping = self.fields.prediction if kind == "prediction" else self.fields.label
        return mapping.get(head, head) + dot + rest

    def _load(self, raw: bytes | None, kind: str) -> dict[str, Any] | Invalid:
        if raw is None:
            return Invalid(INVALID_JSON, "empty message (tombstone)")
        if len(raw) > self.max_bytes:
            return Invalid(TOO_LARGE, f"{len(raw)} bytes > limit {self.max_bytes}")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if str(exc).startswith("depth limit exceeded"):
                return Invalid(TOO_LARGE, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            return Invalid(INVALID_JSON, str(exc)[:200])
        if not isinstance(doc, dict):
            return Invalid(NOT_AN_OBJECT, f"expected a JSON object, got {type(doc).__name__}")
        schema = kind
        if kind == "prediction":
            if self._rename_prediction:
                mapping = self.fields.prediction
                doc = {canon: doc[theirs] for canon, theirs in mapping.items() if theirs in doc}
            model = doc.get("model")
            if self.regression and type(model) is str and model in self.regression:
                schema = "regression_prediction"
            elif self.multiclass and type(model) is str and model in self.multiclass:
                schema = "multiclass_prediction"
            elif _fast_valid_prediction(doc, self.max_string_length):
                return doc
        elif kind == "label":
            if self._rename_label:
                mapping = self.fields.label
                doc = {canon: doc[theirs] for canon, theirs in mapping.items() if theirs in doc}
            if _fast_valid_label(doc, self.max_string_length):
                return doc
            if self.multiclass:  # class names, and any number as with a regression model
                schema = "multiclass_label"
            elif self.regression:
                schema = "regression_label"
        bad = schema_error(schema, doc)
        if bad is None:
            return doc
        return self._renamed(kind, bad)

    def _renamed(self, kind: str, bad: Invalid) -> Invalid:
        """``bad`` with its field under the user's name (checks run on canonical names)."""
        renamed = self._rename_prediction if kind == "prediction" else self._rename_label
        return Invalid(bad.reason, bad.detail, self._theirs(kind, bad.field)) if renamed else bad

    def _plain(
        self, raw: bytes | None, fast_valid: Callable[[dict[str, Any], int], bool]
    ) -> dict[str, Any] | None:
        """The document when it is plainly valid (the hot path), else None; parses once."""
        if raw is None or len(raw) > self.max_bytes:
            return None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return doc if type(doc) is dict and fast_valid(doc, self.max_string_length) else None

    def _check_ts(self, value: Any, now: float | None, name: str = "ts") -> float | Invalid:
        kind = type(value)
        if kind is float or kind is int:  # the common case, inline; parse_ts for the rest
            ts: float | None = float(value)
            if not math.isfinite(ts):  # type: ignore[arg-type]
                ts = None
        else:
            ts = parse_ts(value)
        if ts is None:
            return Invalid(BAD_TIMESTAMP, f"unusable event time {str(value)[:50]!r}", name)
        if ts < 0:  # an RFC 3339 time before 1970; the schema already refuses negative numbers
            return Invalid(BAD_TIMESTAMP, f"event time {str(value)[:50]!r} is before 1970", name)
        if ts > MAX_EPOCH_SECONDS:
            if kind is float or kind is int:
                unit = "milliseconds" if ts <= MAX_EPOCH_SECONDS * 1000 else "micro- or nanoseconds"
                return Invalid(
                    TS_IN_MILLISECONDS,
                    f"event time {str(value)[:30]} looks like epoch {unit}: "
                    "send epoch seconds (e.g. 1767225600) or an RFC 3339 string",
                    name,
                )
            return Invalid(BAD_TIMESTAMP, f"event time {str(value)[:50]!r} is after the year 5138", name)
        if now is not None:
            if ts > now + self.max_future_s:
                return Invalid(TS_IN_FUTURE, f"event time {ts:.0f} is {ts - now:.0f}s ahead of now", name)
            if ts < now - self.max_age_s:
                return Invalid(TS_TOO_OLD, f"event time {ts:.0f} is {now - ts:.0f}s old", name)
        return ts

    def _long_string(
        self, doc: dict[str, Any], size: int, keys: tuple[str, ...], features: dict[str, Any] | None
    ) -> Invalid | None:
        """The first kept string over its limit (``doc`` passed the schema), or None.

        Identifiers (``keys``), a string ``ts`` and feature names are checked when ``size``
        exceeds ``max_string_length``; feature values when it exceeds ``max_feature_value_length``.
        """
        limit = self.max_string_length
        get = doc.get
        if size > limit:
            for key in keys:
                value = get(key)
                if value is not None and len(value) > limit:
                    return Invalid(STRING_TOO_LONG, f"{key} has {len(value)} characters > limit {limit}", key)
            value = get("ts")
            if type(value) is str and len(value) > limit:
                return Invalid(STRING_TOO_LONG, f"ts has {len(value)} characters > limit {limit}", "ts")
            if features and max(map(len, features)) > limit:
                name = max(features, key=len)
                return Invalid(
                    STRING_TOO_LONG,
                    f"feature name {name[:50]!r} has {len(name)} characters > limit {limit}",
                    "features",
                )
        return self._long_value(features) if size > self.max_feature_value_length else None

    def _long_value(self, features: dict[str, Any] | None) -> Invalid | None:
        """The first string feature value over ``max_feature_value_length``, or None."""
        limit = self.max_feature_value_length
        if features:
            for name, value in features.items():
                if type(value) is str and len(value) > limit:
                    return Invalid(
                        STRING_TOO_LONG,
                        f"feature {name[:50]!r} value has {len(value)} characters > limit {limit}",
                        f"features.{name[:50]}",
                    )
        return None

    def prediction(self, raw: bytes | None, now: float | None = None) -> Prediction | Invalid:
        """Decode one prediction; ``now`` (wall clock) bounds the event time when given."""
        return self.predictions((raw,), now)[0]

    def predictions(
        self, raws: Sequence[bytes | None], now: float | None = None
    ) -> list[Prediction | Invalid]:
        """Decode a batch of predictions, in order; ``now`` as in :meth:`prediction`.

        >>> d = Decoder(thresholds={"m": 0.5})
        >>> good = b'{"prediction_id": "p1", "model": "m", "ts": 1, "score": 0.5}'
        >>> [type(p).__name__ for p in d.predictions([good, b"{}", None])]
        ['Prediction', 'Invalid', 'Invalid']
        """
        typed = self._typed_prediction
        if typed is None:
            return [self._prediction(raw, now) for raw in raws]
        decode = typed.decode
        thresholds = self.thresholds
        max_bytes = self.max_bytes
        earliest, latest = self._time_bounds(now)
        nan = math.nan
        out: list[Prediction | Invalid] = []
        append = out.append
        refused = 0
        for i, raw in enumerate(raws):
            if raw is not None and len(raw) <= max_bytes and refused < _GIVE_UP:
                try:
                    e = decode(raw)
                except ValueError:  # msgspec's errors, and UnicodeDecodeError
                    refused = _refused(refused, i)
                else:
                    threshold = thresholds.get(e.model)
                    ts = e.ts
                    if threshold is not None and earliest <= ts <= latest:  # ts is never NaN here
                        predicted = e.predicted
                        latency = e.latency_ms
                        amount = e.amount
                        append(
                            Prediction(
                                e.prediction_id,
                                e.model,
                                ts,
                                e.score,
                                int(e.score >= threshold) if predicted is None else int(predicted),
                                e.variant or "",
                                e.experiment or "",
                                e.model_version or "",
                                e.features or {},
                                nan if latency is None else latency,
                                nan if amount is None else amount,
                            )
                        )
                        continue
            append(self._prediction(raw, now))
        return out

    def prediction_columns(self, raws: Sequence[bytes | None], now: float | None = None) -> PredictionColumns:
        """Decode a batch of predictions into columns: what :meth:`predictions` decides, per row.

        The fast case, a batch whose messages the typed decoder takes and whose models are all
        binary, builds the columns straight from the structs (model, time and threshold checks
        over the columns, no :class:`Prediction` per event). A message it refuses, or whose
        model or time is out of its reach, takes the per-event path, which names what is
        wrong; when that path finds a valid prediction (a regression or multiclass model, a
        renamed field, an RFC 3339 time) the batch is built from per-event results instead
        (:meth:`PredictionColumns.from_events`). Either way the rows and verdicts are those of
        :meth:`predictions`.

        >>> d = Decoder(thresholds={"m": 0.5})
        >>> good = b'{"prediction_id": "p1", "model": "m", "ts": 1, "score": 0.5}'
        >>> cols = d.prediction_columns([good, b"{}", None])
        >>> cols.index, cols.predicted, [(i, bad.reason) for i, bad in cols.invalid]
        ([0], [1], [(1, 'missing_field'), (2, 'invalid_json')])
        """
        typed = self._typed_prediction
        n = len(raws)
        if typed is None or not n:
            return PredictionColumns.from_events(self.predictions(raws, now))
        decode = typed.decode
        structs: list[Any] = []
        slow: list[int] = []  # positions the per-event path decides
        refused = 0
        if None not in raws and max(map(len, raws)) <= self.max_bytes:  # type: ignore[arg-type]
            # The batch in C; a refused message stops the map after the ones before it were
            # kept, and the same iterator goes on after it: nothing is parsed twice.
            rest = iter(raws)
            while True:
                try:
                    structs.extend(map(decode, rest))  # type: ignore[arg-type]
                    break
                except ValueError:  # msgspec's errors, and UnicodeDecodeError
                    at = len(structs)
                    structs.append(None)
                    slow.append(at)
                    refused = _refused(refused, at)
                    if refused >= _GIVE_UP:  # the rest of the batch: straight to the per-event path
                        slow.extend(range(at + 1, n))
                        structs.extend([None] * (n - at - 1))
                        break
        else:  # message by message: a tombstone or an oversized message among them
            max_bytes = self.max_bytes
            for i, raw in enumerate(raws):
                if raw is not None and len(raw) <= max_bytes and refused < _GIVE_UP:
                    try:
                        structs.append(decode(raw))
                        continue
                    except ValueError:
                        refused = _refused(refused, i)
                structs.append(None)
                slow.append(i)
        if slow:
            taken = [i for i, e in enumerate(structs) if e is not None]
            ok = [structs[i] for i in taken]
        else:
            taken, ok = list(range(n)), structs
        models = list(map(_MODEL, ok))
        thresholds = self.thresholds
        earliest, latest = self._time_bounds(now)
        times = list(map(_TS, ok))
        out_of_reach: set[int] = set()  # rows whose model is not a binary one, or whose time is out of bounds
        unknown = dict.fromkeys(models).keys() - thresholds.keys()
        if unknown:
            out_of_reach.update(r for r, model in enumerate(models) if model in unknown)
        if now is not None and times:
            t = np.array(times, dtype=np.float64)
            outside = (t < earliest) | (t > latest)
            if outside.any():
                out_of_reach.update(np.flatnonzero(outside).tolist())
        if out_of_reach:
            slow = sorted([*slow, *(taken[r] for r in out_of_reach)])
            keep = [r for r in range(len(ok)) if r not in out_of_reach]
            taken = [taken[r] for r in keep]
            ok = [ok[r] for r in keep]
            models = [models[r] for r in keep]
            times = [times[r] for r in keep]
        verdicts = [(i, self._prediction(raws[i], now)) for i in slow]
        found = [(i, v) for i, v in verdicts if not isinstance(v, Invalid)]
        if found and all(v.scores is None and v.model in thresholds for _, v in found):
            # Valid binary predictions the structs did not take (an unknown field, an RFC 3339
            # time): rows like theirs (the same attributes), in batch order among them.
            rows = sorted([*zip(taken, ok, strict=True), *found], key=_FIRST)
            taken, ok = [i for i, _ in rows], [e for _, e in rows]
            models, times = list(map(_MODEL, ok)), list(map(_TS, ok))
            verdicts = [(i, v) for i, v in verdicts if isinstance(v, Invalid)]
            found = []
        if found:
            # A valid prediction the structs cannot carry: the general path, from events.
            events: list[Prediction | Invalid] = [None] * n  # type: ignore[list-item]
            for i, e in zip(taken, ok, strict=True):
                events[i] = self._from_struct(e, thresholds[e.model])
            for i, v in verdicts:
                events[i] = v
            return PredictionColumns.from_events(events)
        scores = list(map(_SCORE, ok))
        predicted: list[Any] = list(map(_PREDICTED, ok))
        if predicted.count(None) == len(predicted):  # none sent: decided by the threshold
            if len(thresholds) == 1 or len(set(models)) == 1:
                cut: Any = thresholds[models[0]] if models else 0.0
            else:
                cut = np.fromiter(map(thresholds.__getitem__, models), dtype=np.float64, count=len(models))
            predicted = (np.array(scores, dtype=np.float64) >= cut).astype(np.int64).tolist()
        else:
            predicted = [
                int(s >= thresholds[m]) if p is None else int(p)
                for p, s, m in zip(predicted, scores, models, strict=True)
            ]
        variants = list(map(_VARIANT, ok))
        if None in variants:
            variants = [v or "" for v in variants]
        features = list(map(_FEATURES, ok))
        if None in features:
            features = [f or {} for f in features]
        latency = list(map(_LATENCY, ok))
        if None in latency:
            nan = math.nan
            latency = [nan if x is None else x for x in latency]
        return PredictionColumns(
            taken,
            list(map(_ID, ok)),
            models,
            times,
            scores,
            predicted,
            variants,
            features,
            latency,
            None,
            verdicts,  # type: ignore[arg-type]
        )

    @staticmethod
    def _from_struct(e: Any, threshold: float) -> Prediction:
        """The :class:`Prediction` of a typed struct (as :meth:`predictions` builds it)."""
        predicted = e.predicted
        latency = e.latency_ms
        amount = e.amount
        return Prediction(
            e.prediction_id,
            e.model,
            e.ts,
            e.score,
            int(e.score >= threshold) if predicted is None else int(predicted),
            e.variant or "",
            e.experiment or "",
            e.model_version or "",
            e.features or {},
            math.nan if latency is None else latency,
            math.nan if amount is None else amount,
        )

    def _prediction(self, raw: bytes | None, now: float | None) -> Prediction | Invalid:
        """One prediction through orjson, the fast path and the validator: names what is wrong."""
        doc = self._plain(raw, _fast_valid_prediction) if not self._rename_prediction else None
        if doc is not None and self.regression and doc["model"] in self.regression:
            doc = None  # a score is no regression model's prediction: its own schema decides
        if doc is not None and self.multiclass and doc["model"] in self.multiclass:
            doc = None  # nor a multiclass model's
        if doc is None:  # not the plain valid case: the full path, which names what is wrong
            loaded = self._load(raw, "prediction")
            if isinstance(loaded, Invalid):
                return loaded
            doc = loaded
            size = len(raw or b"")
            if size > self._strings_fit:
                bad = self._long_string(doc, size, IDENTIFIER_FIELDS, doc.get("features"))
                if bad is not None:
                    return self._renamed("prediction", bad)
        elif len(raw or b"") > self.max_feature_value_length:  # the fast path bounded the rest
            bad = self._long_value(doc.get("features"))
            if bad is not None:
                return bad
        model = doc["model"]
        threshold = self.thresholds.get(model)
        classes = self.multiclass.get(model) if threshold is None and self.multiclass else None
        if threshold is None and model not in self.regression and classes is None:
            hint = did_you_mean(model[:100], self._models)
            return Invalid(
                UNKNOWN_MODEL,
                f"model {model[:100]!r} is not configured{hint}",
                self._theirs("prediction", "model"),
            )
        probs: list[float] | None = None
        if classes is not None:  # the predicted class's probability travels as the score
            checked = self._class_scores(doc, classes)
            if isinstance(checked, Invalid):
                return checked
            probs, decided = checked
            score = probs[decided]
        elif threshold is None:  # a regression model: the value travels as the score
            score = float(doc["value"])
            if not math.isfinite(score):  # pragma: no cover - orjson refuses non-finite numbers
                return Invalid(
                    SCHEMA_VIOLATION, "value is not a finite number", self._theirs("prediction", "value")
                )
            decided = 0
        else:
            score = float(doc["score"])
            if not math.isfinite(score):  # pragma: no cover - strict JSON has no NaN; kept for safety
                return Invalid(SCORE_OUT_OF_RANGE, "score is not a finite number")
            predicted = doc.get("predicted")
            decided = int(score >= threshold) if predicted is None else int(predicted)
        ts = doc["ts"]
        # else: as is (a finite float in the seconds range needs no check without a clock)
        if now is not None or type(ts) is not float or not math.isfinite(ts) or ts > MAX_EPOCH_SECONDS:
            ts = self._check_ts(ts, now, self._theirs("prediction", "ts"))
            if isinstance(ts, Invalid):
                return ts
        get = doc.get
        features = get("features") or {}
        if len(features) > self.max_features:
            return Invalid(
                TOO_LARGE,
                f"{len(features)} features > limit {self.max_features}",
                self._theirs("prediction", "features"),
            )
        latency = get("latency_ms")
        amount = get("amount")
        return Prediction(  # positional: cheaper than keywords on the hot path
            doc["prediction_id"],
            model,
            ts,
            score,
            decided,
            get("variant") or "",
            get("experiment") or "",
            get("model_version") or "",
            features,
            math.nan if latency is None else float(latency),
            math.nan if amount is None else float(amount),
            probs,
        )

    def _class_scores(self, doc: dict[str, Any], index: dict[str, int]) -> tuple[list[float], int] | Invalid:
        """A multiclass prediction's probabilities (declared order) and predicted class index.

        ``predicted`` absent or null: the class of the highest score, ties to the first declared.
        """
        probs = multiclass.check_scores(doc["scores"], index)
        if isinstance(probs, multiclass.ScoreProblem):
            return Invalid(probs.reason, probs.detail, self._theirs("prediction", probs.field))
        name = doc.get("predicted")
        if name is None:
            return probs, probs.index(max(probs))  # list.index: the first maximum
        decided = multiclass.check_class(name, index, "predicted")
        if isinstance(decided, multiclass.ScoreProblem):
            return Invalid(decided.reason, decided.detail, self._theirs("prediction", decided.field))
        return probs, decided

    def _time_bounds(self, now: float | None) -> tuple[float, float]:
        """The event times the typed path admits at wall clock ``now`` (the same sums as
        _check_ts's, once per batch); anything outside takes the full path for its reason."""
        if now is None:
            return -math.inf, math.inf
        return now - self.max_age_s, now + self.max_future_s

    def label(self, raw: bytes | None, now: float | None = None) -> Label | Invalid:
        """Decode one label event."""
        return self.labels((raw,), now)[0]

    def labels(self, raws: Sequence[bytes | None], now: float | None = None) -> list[Label | Invalid]:
        """Decode a batch of label events, in order."""
        typed = self._typed_label
        if typed is None:
            return [self._label(raw, now) for raw in raws]
        decode = typed.decode
        max_bytes = self.max_bytes
        earliest, latest = self._time_bounds(now)
        nan = math.nan
        out: list[Label | Invalid] = []
        append = out.append
        refused = 0
        for i, raw in enumerate(raws):
            if raw is not None and len(raw) <= max_bytes and refused < _GIVE_UP:
                try:
                    e = decode(raw)
                except ValueError:
                    refused = _refused(refused, i)
                else:
                    ts = e.ts
                    if earliest <= ts <= latest:
                        amount = e.amount
                        append(Label(e.prediction_id, e.label, ts, nan if amount is None else amount))
                        continue
            append(self._label(raw, now))
        return out

    def _label(self, raw: bytes | None, now: float | None) -> Label | Invalid:
        """One label event through orjson, the fast path and the validator."""
        fast = _fast_valid_class_label if self.multiclass else _fast_valid_label
        doc = self._plain(raw, fast) if not self._rename_label else None
        if doc is None:
            loaded = self._load(raw, "label")
            if isinstance(loaded, Invalid):
                return loaded
            doc = loaded
            size = len(raw or b"")
            if size > self._strings_fit:  # the plain path bounds prediction_id in fast_valid
                bad = self._long_string(doc, size, ("prediction_id",), None)
                if bad is not None:
                    return self._renamed("label", bad)
        ts = doc["ts"]
        if now is not None or type(ts) is not float or not math.isfinite(ts) or ts > MAX_EPOCH_SECONDS:
            ts = self._check_ts(ts, now, self._theirs("label", "ts"))
            if isinstance(ts, Invalid):
                return ts
        amount = doc.get("amount")
        value = doc["label"]
        if not self.regression and not self.multiclass:
            label: float | str = int(value)
        elif type(value) is str:  # a class name (the multiclass label form): checked at the join
            if len(value) > self.max_string_length:  # it may wait in the join store: bounded
                return Invalid(
                    STRING_TOO_LONG,
                    f"label has {len(value)} characters > limit {self.max_string_length}",
                    self._theirs("label", "label"),
                )
            label = value
        elif value == 0 or value == 1:  # 0/1 as ints, as without regression models
            label = int(value)
        else:
            label = float(value)
            if not math.isfinite(label):  # pragma: no cover - orjson refuses non-finite numbers
                return Invalid(
                    SCHEMA_VIOLATION, "label is not a finite number", self._theirs("label", "label")
                )
        return Label(doc["prediction_id"], label, ts, math.nan if amount is None else float(amount))
