"""Data integrity per feature: values outside the reference, unseen categories, wrong types, schema change.

Stage 1 counts what it sees into the bucket's :class:`BucketSummary` as plain integers (so
merging partials is exact, and 1 or 3 workers give the same numbers); :func:`integrity_gauges`
turns the merged current and reference windows into the exported ratios. Names of the counts:

- ``integrity:out_of_range:<feature>`` = [present values outside the pinned profile's
  [min, max] of the feature] (numeric features of a pinned profile with ranges);
- ``integrity:wrong_type:<feature>`` = [events rejected as ``wrong_type`` with a non-number in
  the numeric feature] and ``integrity:rejected`` = [events rejected as ``wrong_type``,
  events rejected as duplicates]: what reached the type check but is not among the predictions;
- the categorical counter ``integrity:keys``: per key of ``features`` that the model does not
  declare (neither a feature nor a segment field), the events carrying it, capped like any
  categorical feature (bottom-K by stable hash, :mod:`streamon.core.state.cardinality`).

Counts that are zero are not stored, so a clean stream's partials are as before. Exact
definitions, and the accuracy of the out-of-range ratio against a rolling reference: docs/statistics.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from streamon.core.state.cardinality import MISSING, fold_counter
from streamon.core.state.sketch import LogSketch
from streamon.core.state.summary import BucketSummary, category_counts

if TYPE_CHECKING:
    from streamon.core.profile import FeatureSpec, ModelSpec

KEYS = "integrity:keys"  # the categorical counter of undeclared feature keys
REJECTED = "integrity:rejected"  # [wrong_type events, duplicate events]
MAX_UNEXPECTED_KEYS = 20  # series of undeclared keys per model/variant; the rest is __other__

OUT_OF_RANGE_RATIO = "streamon_feature_out_of_range_ratio"
UNSEEN_CATEGORY_RATIO = "streamon_feature_unseen_category_ratio"
WRONG_TYPE_RATIO = "streamon_feature_wrong_type_ratio"
UNEXPECTED_KEY_RATIO = "streamon_feature_unexpected_key_ratio"
ABSENT = "streamon_feature_absent"
NAMES = frozenset({OUT_OF_RANGE_RATIO, UNSEEN_CATEGORY_RATIO, WRONG_TYPE_RATIO, UNEXPECTED_KEY_RATIO, ABSENT})


def out_of_range_name(feature: str) -> str:
    return f"integrity:out_of_range:{feature}"


def wrong_type_name(feature: str) -> str:
    return f"integrity:wrong_type:{feature}"


def add_count(summary: BucketSummary, name: str, delta: Sequence[int]) -> None:
    """Add ``delta`` to the count vector ``name`` of ``summary`` (created when absent).

    >>> s = BucketSummary(); add_count(s, "x", [1, 0]); add_count(s, "x", [2, 5]); s.counts["x"].tolist()
    [3, 5]
    """
    vec = np.asarray(delta, dtype=np.int64)
    current = summary.counts.get(name)
    if current is None:
        summary.counts[name] = vec.copy()
    else:
        current += vec


def count_out_of_range(values: np.ndarray, low: float, high: float) -> int:
    """Values outside ``[low, high]``; NaN (missing) is not counted.

    >>> count_out_of_range(np.array([0.0, 1.0, 2.0, -0.5, np.nan, 2.5]), 0.0, 2.0)
    2
    """
    return int(np.count_nonzero(values < low) + np.count_nonzero(values > high))


def wrong_typed(features: Mapping[str, object], numeric: Iterable[str]) -> list[str]:
    """The numeric features holding anything but a number or null (bools are not numbers).

    The rule of stage 1's type check, for every feature rather than the first one it reports.

    >>> wrong_typed({"a": 1, "b": "2", "c": True, "d": None}, ["a", "b", "c", "d", "e"])
    ['b', 'c']
    """
    out = []
    for name in numeric:
        v = features.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            out.append(name)
    return out


def unexpected_keys(features: Iterable[Iterable[str]], declared: frozenset[str]) -> list[str]:
    """The undeclared keys of each event's ``features``, one entry per event and key.

    >>> unexpected_keys([{"x": 1}, {"x": 2, "y": 3, "z": 4}, {"y": 5}], frozenset({"x"}))
    ['y', 'z', 'y']
    """
    rows = list(features)
    if declared.issuperset(set().union(*rows)):  # the common case: one C-level pass (~40 ns/event)
        return []
    out: list[str] = []
    for keys in rows:
        if not declared.issuperset(keys):
            out.extend(k for k in keys if k not in declared)
    return out


def sketch_out_of_range(reference: LogSketch | None, current: LogSketch | None) -> float:
    """Values of ``current`` in sketch buckets beyond the outermost buckets holding ``reference``
    values (NaN without reference values).

    Both sketches share one bucket grid (same relative accuracy), so the count is an exact
    integer over buckets: every value counted is outside [min, max] of the reference; missed are
    only values outside it that share a bucket with the reference's min or max.

    >>> ref, cur = LogSketch(0.01), LogSketch(0.01)
    >>> ref.add([1.0, 5.0, 10.0]); cur.add([0.5, 1.0, 7.0, 10.1, 20.0])
    >>> sketch_out_of_range(ref, cur)  # 10.1 shares the bucket of 10.0
    2.0
    """
    if reference is None or reference.is_empty:
        return math.nan
    if current is None or current.is_empty:
        return 0.0
    ref_values, _ = reference.buckets()
    values, counts = current.buckets()
    outside = (values < ref_values[0]) | (values > ref_values[-1])
    return float(counts[outside].sum())


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else math.nan


def _reference_categories(spec: ModelSpec, name: str, reference: BucketSummary) -> list[str]:
    """The reference's categories of ``name``: the profile's, else the rolling window's values."""
    cats = spec.categories.get(name)
    if cats is not None:
        return cats
    return [k for k in reference.categories.get(name, {}) if not k.startswith("__")]


def _present(summary: BucketSummary, feature: FeatureSpec) -> int:
    """Events of ``summary`` with a value (not null, not absent) for ``feature``."""
    if feature.kind == "categorical":
        counter: Mapping[str, int] = summary.categories.get(feature.name, {})
        return sum(counter.values()) - counter.get(MISSING, 0)
    missing, total = summary.vector(f"missing:{feature.name}", 2).tolist()
    return int(total - missing)


def integrity_gauges(
    spec: ModelSpec,
    features: Sequence[FeatureSpec],
    current: BucketSummary,
    reference: BucketSummary,
    few: bool,
) -> list[tuple[str, float, dict[str, str]]]:
    """(metric, value, extra labels) of the integrity gauges of one model/variant window.

    ``few``: the windows hold fewer predictions than drift needs; the ratios against the
    reference (out of range, unseen category, absent) are then NaN, those of the current
    window alone (wrong type, unexpected key) are not.

    >>> from streamon.core.profile import FeatureSpec, ModelSpec
    >>> spec = ModelSpec("m", features=[FeatureSpec("c", "categorical")], categories={"c": ["a"]})
    >>> cur, ref = BucketSummary(), BucketSummary()
    >>> cur.add_predictions(np.full(4, 0.1), np.zeros(4), score_bins=10)
    >>> cur.add_categorical_feature("c", ["a", "b", "b", None])  # 2 of the 3 values unseen
    >>> ref.add_categorical_feature("c", ["a"])
    >>> [(n, round(v, 3)) for n, v, _ in integrity_gauges(spec, spec.features, cur, ref, few=False)]
    [('streamon_feature_unseen_category_ratio', 0.667), ('streamon_feature_absent', 0.0)]
    """
    out: list[tuple[str, float, dict[str, str]]] = []
    n_current = current.n_predictions
    checked = n_current + int(current.vector(REJECTED, 2).sum())  # events that reached the type check
    for f in features:
        name = f.name
        labels = {"feature": name}
        present = _present(current, f)
        if f.kind == "categorical":
            counts = category_counts(
                current.categories.get(name, {}), _reference_categories(spec, name, reference)
            )
            has_reference = _present(reference, f) > 0
            unseen = _ratio(int(counts[-2]), present) if has_reference and not few else math.nan
            out.append((UNSEEN_CATEGORY_RATIO, unseen, labels))
        else:
            if name in spec.ranges:  # a pinned profile's [min, max]: counted exactly in stage 1
                n_out = float(current.vector(out_of_range_name(name), 1)[0])
            else:  # a rolling window, or a profile without ranges: from the sketches' buckets
                n_out = sketch_out_of_range(reference.sketches.get(name), current.sketches.get(name))
            out.append((OUT_OF_RANGE_RATIO, math.nan if few else _ratio(n_out, present), labels))
            wrong = int(current.vector(wrong_type_name(name), 1)[0])
            out.append((WRONG_TYPE_RATIO, _ratio(wrong, checked), labels))
        # 1: no current event has the feature while some reference event has it.
        absent = math.nan if few or not n_current else float(present == 0 and _present(reference, f) > 0)
        out.append((ABSENT, absent, labels))
    keys = current.categories.get(KEYS)
    if keys and n_current:
        kept = Counter(keys)
        fold_counter(kept, min(MAX_UNEXPECTED_KEYS, spec.max_categories))  # the bottom-K of the window
        for key, n in sorted(kept.items()):
            if n > 0:
                out.append((UNEXPECTED_KEY_RATIO, n / n_current, {"key": key}))
    return out
