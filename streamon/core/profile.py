"""Reference profiles and the per-model monitoring spec built from them.

A profile pins the reference distribution of a model: inner bin edges of each numeric
feature (quantiles of the reference, numpy's default interpolation, outer bins open) and
its [min, max] (what is out of range), the categories of each categorical feature, the A/B
variants of the reference events (protected from the cardinality cap, like the
categories), and a :class:`BucketSummary` of the reference events counted with those bins
(score histograms, sketches and, when the reference file carries labels, confusion counts
for a performance baseline).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np
import orjson

from streamon.core.events import Prediction
from streamon.core.state.cardinality import DEFAULT_VARIANT, NOTHING
from streamon.core.state.sketch import LogSketch
from streamon.core.state.summary import (
    DEFAULT_CALIBRATION_BINS,
    MAX_CATEGORIES,
    MISSING,
    OTHER,
    BucketSummary,
)
from streamon.core.statistics import multiclass, regression
from streamon.core.statistics.integrity import add_count, count_out_of_range, out_of_range_name

PROFILE_VERSION = 1


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: str  # "numeric" | "categorical"


@dataclass(frozen=True)
class SegmentSpec:
    """A segment field: a key of the event's ``features``, monitored per (capped) value."""

    field: str
    values: frozenset[str] | None = None  # explicit allowlist; others fold into OTHER
    max_values: int = 20  # bottom-K by stable hash of the values seen


@dataclass
class ModelSpec:
    """What stage 1 needs to summarise one model's events."""

    name: str
    threshold: float = 0.5
    score_bins: int = 200
    calibration_bins: int = DEFAULT_CALIBRATION_BINS  # equal-width bins of the calibration metrics
    features: list[FeatureSpec] = field(default_factory=list)
    relative_accuracy: float = 0.01
    # Pinned by a reference profile; absent = rolling reference window.
    edges: dict[str, np.ndarray] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    # [min, max] of each numeric feature's reference values (a pinned profile; optional in its file).
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    reference: BucketSummary | None = None
    # Cardinality caps on values from data (bottom-K by stable hash, see core/cardinality.py).
    segments: list[SegmentSpec] = field(default_factory=list)
    variants: frozenset[str] | None = None  # explicit allowlist of A/B variants
    max_variants: int = 20
    max_categories: int = MAX_CATEGORIES
    # Variants of the reference events (a pinned profile): protected from the cap like an allowlist.
    reference_variants: frozenset[str] = NOTHING
    task: str = "binary"  # "binary" | "regression" | "multiclass" (what score and label mean, see _OUTPUTS)
    # A multiclass model's declared classes (their order indexes its state) and top-k accuracies.
    classes: tuple[str, ...] = ()
    top_k: tuple[int, ...] = multiclass.DEFAULT_TOP_K
    # A multiclass model's business value per labelled prediction, [actual][predicted] in
    # declared class order (None: not configured).
    value_matrix: tuple[tuple[float, ...], ...] | None = None
    _protected: tuple[object, dict[str, frozenset[str]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def protected_variants(self) -> frozenset[str]:
        """Variants the cap never folds: the allowlist, the default variant and the reference's."""
        return (self.variants or NOTHING) | self.reference_variants | {DEFAULT_VARIANT}

    @property
    def protected_categories(self) -> dict[str, frozenset[str]]:
        """Per categorical feature, the reference profile's categories: never folded by the cap."""
        cached = self._protected
        if cached is None or cached[0] is not self.categories:  # computed once per profile
            sets = {k: frozenset(v) for k, v in self.categories.items()}
            cached = self._protected = (self.categories, sets)
        return cached[1]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]


def numeric_edges(values: np.ndarray, bins: int = 10) -> np.ndarray:
    """Inner edges of ``bins`` quantile bins of ``values`` (duplicates removed).

    >>> numeric_edges(np.arange(100.0), bins=4).tolist()
    [24.75, 49.5, 74.25]
    """
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return np.array([], dtype=np.float64)
    qs = np.quantile(values, np.linspace(0.0, 1.0, bins + 1))[1:-1]
    return np.unique(qs)


def top_categories(values: Iterable[str | None], limit: int = MAX_CATEGORIES) -> list[str]:
    """Reference categories, most frequent first (ties by name), at most ``limit``."""
    counts: dict[str, int] = {}
    for v in values:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [k for k, _ in ranked[:limit] if k not in (MISSING, OTHER)]


_NUMERIC_TYPES = frozenset({float, int, type(None)})
_TEXT_TYPES = frozenset({str, type(None)})
_SCORE = attrgetter("score")
_PREDICTED = attrgetter("predicted")
_LATENCY = attrgetter("latency_ms")
_FEATURES = attrgetter("features")


def _numeric_array(values: list[Any]) -> np.ndarray:
    """float64 column of feature values; missing and non-numbers (bools, strings) become NaN.

    >>> _numeric_array([1, 2.5, None]).tolist()  # plain JSON values: converted in one go
    [1.0, 2.5, nan]
    >>> _numeric_array([1, True, "3", None, [4]]).tolist()  # anything else: checked one by one
    [1.0, nan, nan, nan, nan]
    """
    if set(map(type, values)) <= _NUMERIC_TYPES:  # plain JSON numbers and nulls: convert in C
        return np.array(values, dtype=np.float64)
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        out[i] = v if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
    return out


def _text_list(values: list[Any]) -> list[str | None]:
    if set(map(type, values)) <= _TEXT_TYPES:
        return values
    return [None if v is None else str(v) for v in values]


def _feature_values(features: list[dict[str, Any]], name: str, plain: bool) -> list[Any]:
    """The value of feature ``name`` (None when absent) in each features mapping.

    ``plain``: every mapping is exactly a ``dict`` (then C iterators do the lookups).
    """
    if plain:
        try:
            return list(map(itemgetter(name), features))  # every event has the feature: fastest
        except KeyError:
            return list(map(dict.get, features, repeat(name)))
    return [f.get(name) for f in features]


def _all_dicts(features: list[Any]) -> bool:
    return set(map(type, features)) <= {dict}


def numeric_column(predictions: list[Prediction], name: str) -> np.ndarray:
    """The values of one numeric feature; missing and non-numbers become NaN."""
    features = list(map(_FEATURES, predictions))
    return _numeric_array(_feature_values(features, name, _all_dicts(features)))


def categorical_column(predictions: list[Prediction], name: str) -> list[str | None]:
    features = list(map(_FEATURES, predictions))
    return _text_list(_feature_values(features, name, _all_dicts(features)))


class Columns:
    """What :func:`summarise_rows` reads of a batch of one model's predictions, as columns.

    The feature columns are built on first use, once per batch (each group of the batch
    then takes its rows of them): a numeric feature as a float64 array (missing and
    non-numbers NaN), a categorical one as a list of strings or None.
    """

    def __init__(
        self,
        score: Sequence[float],
        predicted: Sequence[int],
        latency: Sequence[float],
        features: list[dict[str, Any]],
        vectors: list[list[float] | None] | None = None,
    ) -> None:
        n = len(features)
        self.score = np.array(score, dtype=np.float64).reshape(n)
        self.predicted = np.array(predicted, dtype=np.int64).reshape(n)
        self.latency = np.array(latency, dtype=np.float64).reshape(n)
        self.features = features
        self.vectors = vectors  # a multiclass model's probabilities, one list per row
        self._plain = _all_dicts(features)
        self._values: dict[str, list[Any]] = {}
        self._numeric: dict[str, np.ndarray] = {}
        self._text: dict[str, list[str | None]] = {}

    @classmethod
    def of(cls, predictions: list[Prediction]) -> Columns:
        return cls(
            list(map(_SCORE, predictions)),
            list(map(_PREDICTED, predictions)),
            list(map(_LATENCY, predictions)),
            list(map(_FEATURES, predictions)),
            [p.scores for p in predictions] if any(p.scores is not None for p in predictions) else None,
        )

    def values(self, name: str) -> list[Any]:
        """The raw value of feature ``name`` in each row (None when absent)."""
        out = self._values.get(name)
        if out is None:
            out = self._values[name] = _feature_values(self.features, name, self._plain)
        return out

    def numeric(self, name: str) -> np.ndarray:
        out = self._numeric.get(name)
        if out is None:
            out = self._numeric[name] = _numeric_array(self.values(name))
        return out

    def text(self, name: str) -> list[str | None]:
        out = self._text.get(name)
        if out is None:
            out = self._text[name] = _text_list(self.values(name))
        return out


def summarise(
    spec: ModelSpec, predictions: list[Prediction], summary: BucketSummary | None = None
) -> BucketSummary:
    """Add a group of predictions of ``spec``'s model to ``summary`` (vectorised per feature).

    The per-event Python work is one attribute fetch per column, done by C iterators
    (``map`` / ``attrgetter``); numbers and strings straight from JSON convert without a
    per-value Python check (other values take the checked path, with the same result).
    """
    return summarise_rows(spec, Columns.of(predictions), None, summary)


def summarise_rows(
    spec: ModelSpec,
    columns: Columns,
    rows: np.ndarray | None,
    summary: BucketSummary | None = None,
    segment: bool = False,
) -> BucketSummary:
    """Add the rows ``rows`` (ascending row numbers; None: all) of ``columns`` to ``summary``
    (``segment``: a segment's summary, which keeps no multiclass score histograms).

    What :func:`summarise` adds for the same predictions, value for value: stage 1 builds
    the columns of a batch once and summarises each of its (variant, bucket) groups from them.
    """
    out = (
        summary
        if summary is not None
        else BucketSummary(category_cap=spec.max_categories, protected=spec.protected_categories)
    )
    vectors = columns.vectors
    if rows is None:
        scores, predicted, latency = columns.score, columns.predicted, columns.latency
    else:
        scores, predicted, latency = columns.score[rows], columns.predicted[rows], columns.latency[rows]
        picked = rows.tolist()
        if vectors is not None:
            vectors = list(map(vectors.__getitem__, picked))
    _OUTPUTS[spec.task](spec, out, scores, predicted, latency, vectors, segment)
    ranges = spec.ranges
    for name in spec.numeric:
        column = columns.numeric(name)
        if rows is not None:
            column = column[rows]
        out.add_numeric_feature(name, column, spec.edges.get(name), spec.relative_accuracy)
        if name in ranges:  # the profile's [min, max]: values outside it counted exactly
            outside = count_out_of_range(column, *ranges[name])
            if outside:  # zero counts are not stored: partials of clean data stay as they were
                add_count(out, out_of_range_name(name), [outside])
    for name in spec.categorical:
        text = columns.text(name)
        if rows is not None:
            text = list(map(text.__getitem__, picked))
        out.add_categorical_feature(name, text)
    return out


def _binary_outputs(
    spec: ModelSpec,
    out: BucketSummary,
    scores: np.ndarray,
    predicted: np.ndarray,
    latency: np.ndarray,
    vectors: list[list[float] | None] | None,
    segment: bool,
) -> None:
    out.add_predictions(scores, predicted, spec.score_bins, latency)


def _regression_outputs(
    spec: ModelSpec,
    out: BucketSummary,
    values: np.ndarray,
    predicted: np.ndarray,
    latency: np.ndarray,
    vectors: list[list[float] | None] | None,
    segment: bool,
) -> None:
    """Volume and latency as for binary (no score histogram), and every value in a sketch."""
    out.add_predictions(values, predicted, None, latency)
    sketch = out.sketches.get(regression.PREDICTION)
    if sketch is None:
        sketch = out.sketches[regression.PREDICTION] = LogSketch(spec.relative_accuracy)
    sketch.add(values)


def _multiclass_outputs(
    spec: ModelSpec,
    out: BucketSummary,
    scores: np.ndarray,
    predicted: np.ndarray,
    latency: np.ndarray,
    vectors: list[list[float] | None] | None,
    segment: bool,
) -> None:
    """Latency as for binary (no volume there: the multiclass layout counts it), then the
    predicted-class mix and confidence of :func:`streamon.core.statistics.multiclass.add_predictions`."""
    out.add_predictions(scores[:0], predicted[:0], None, latency)
    k = len(spec.classes)
    rows = np.array(vectors if vectors is not None else [], dtype=np.float64).reshape(len(scores), k)
    multiclass.add_predictions(out, rows, predicted, k, histograms=not segment)


# What a group of predictions adds besides its features, per model task (ModelSpec.task).
_OUTPUTS = {"binary": _binary_outputs, "regression": _regression_outputs, "multiclass": _multiclass_outputs}


def build_profile(
    spec: ModelSpec, predictions: list[Prediction], labels: Mapping[str, float], bins: int = 10
) -> ModelSpec:
    """A copy of ``spec`` pinned to the reference ``predictions`` (and their ``labels``, if any:
    0/1 for a binary model, the true values for a regression model, the actual class indices
    for a multiclass model)."""
    columns = {name: numeric_column(predictions, name) for name in spec.numeric}
    edges = {name: numeric_edges(column, bins) for name, column in columns.items()}
    ranges = {
        name: (float(np.nanmin(column)), float(np.nanmax(column)))
        for name, column in columns.items()
        if not np.isnan(column).all()  # a feature always missing in the reference has no range
    }
    cats = {name: top_categories(categorical_column(predictions, name)) for name in spec.categorical}
    # The reference's A/B arms (most frequent first, at most the cap): kept by the cap later.
    variants = top_categories((p.variant or None for p in predictions), spec.max_variants)
    pinned = ModelSpec(
        name=spec.name,
        task=spec.task,
        classes=spec.classes,
        top_k=spec.top_k,
        threshold=spec.threshold,
        score_bins=spec.score_bins,
        calibration_bins=spec.calibration_bins,
        features=list(spec.features),
        relative_accuracy=spec.relative_accuracy,
        edges=edges,
        categories=cats,
        ranges=ranges,
        segments=list(spec.segments),
        variants=spec.variants,
        max_variants=spec.max_variants,
        max_categories=spec.max_categories,
        reference_variants=frozenset(variants) - {DEFAULT_VARIANT},
    )
    reference = summarise(pinned, predictions)
    labelled = [p for p in predictions if p.prediction_id in labels]
    if labelled and spec.task == "multiclass":
        k = len(spec.classes)  # labels: the actual class indices
        multiclass.add_labelled(
            reference,
            np.array([p.scores for p in labelled], dtype=np.float64).reshape(len(labelled), k),
            [p.predicted for p in labelled],
            [int(labels[p.prediction_id]) for p in labelled],
            k,
            spec.top_k,
        )
    elif labelled and spec.task == "regression":
        regression.add_labelled(
            reference, [p.score for p in labelled], [labels[p.prediction_id] for p in labelled]
        )
    elif labelled:
        reference.add_labels(
            np.array([labels[p.prediction_id] for p in labelled]),
            np.array([p.predicted for p in labelled]),
            np.array([p.score for p in labelled]),
            spec.score_bins,
            calibration_bins=spec.calibration_bins,
        )
    pinned.reference = reference
    return pinned


def profile_to_bytes(specs: list[ModelSpec]) -> bytes:
    models: dict[str, dict[str, object]] = {}
    for s in specs:
        m: dict[str, object] = {
            "score_bins": s.score_bins,
            "relative_accuracy": s.relative_accuracy,
            "features": [[f.name, f.kind] for f in s.features],
            "edges": {k: v.tolist() for k, v in s.edges.items()},
            "categories": s.categories,
            "reference": (s.reference or BucketSummary()).to_bytes().hex(),
        }
        if s.reference_variants:  # an optional key: profiles without it read as before
            m["variants"] = sorted(s.reference_variants)
        if s.ranges:  # optional too: a profile without ranges reads as before
            m["ranges"] = {k: [lo, hi] for k, (lo, hi) in s.ranges.items()}
        if s.classes:  # a multiclass model's classes: its counts are indexed by them
            m["classes"] = list(s.classes)
        models[s.name] = m
    doc = {"version": PROFILE_VERSION, "models": models}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def profile_from_bytes(data: bytes) -> dict[str, ModelSpec]:
    """Model name -> pinned spec (threshold is taken from the config later)."""
    doc = orjson.loads(data)
    if not isinstance(doc, dict) or doc.get("version") != PROFILE_VERSION:
        raise ValueError(f"not a streamon reference profile of version {PROFILE_VERSION}")
    out = {}
    for name, m in doc["models"].items():
        reference = BucketSummary.from_bytes(bytes.fromhex(m["reference"]))
        out[name] = ModelSpec(
            name=name,
            score_bins=int(m["score_bins"]),
            # The bins its labels were counted in; a profile without labels fits any.
            calibration_bins=reference.calibration_bins or DEFAULT_CALIBRATION_BINS,
            relative_accuracy=float(m["relative_accuracy"]),
            features=[FeatureSpec(n, k) for n, k in m["features"]],
            edges={k: np.asarray(v, dtype=np.float64) for k, v in m["edges"].items()},
            categories={k: list(v) for k, v in m["categories"].items()},
            ranges={k: (float(lo), float(hi)) for k, (lo, hi) in m.get("ranges", {}).items()},
            reference=reference,
            reference_variants=frozenset(str(v) for v in m.get("variants", ())),
            classes=tuple(str(c) for c in m.get("classes", ())),
        )
    return out
