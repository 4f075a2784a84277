"""Stage 1: what one input partition contributes, as mergeable partial deltas.

A :class:`PartitionProcessor` decodes and validates a batch of raw prediction and
label messages of ONE partition, joins labels to predictions, and adds everything
to per-(model, variant, bucket) :class:`BucketSummary` deltas, and to per-(model,
segment field, segment value, bucket) deltas for the model's configured segments.
What a prediction and a labelled prediction add depends on the model's task, chosen once
per group (``_OUTPUTS`` in core/profile.py, :data:`_LABELLED` here): score histograms,
confusion and calibration for a binary model; the value sketch and the exact error sums of
:mod:`streamon.core.statistics.regression` for a regression model; the confusion, top-k,
one-vs-rest histograms, log loss and class mix of :mod:`streamon.core.statistics.multiclass`
for a multiclass model.
Variants and segment values come from data, so each delta keeps only the bottom-K of
them by stable hash (:mod:`streamon.core.state.cardinality`) and folds the rest into
OTHER. Events rejected after decoding (wrong types, duplicates) stay dead letters and are
also counted in their bucket, with the undeclared keys of the accepted ones, for the data
integrity metrics (:mod:`streamon.core.statistics.integrity`). :meth:`take_partials`
hands the deltas over (the runtime publishes them to the partials topic in the same
Kafka transaction as the input offsets) and starts afresh.

A batch's predictions are handled as columns (:class:`streamon.core.events.PredictionColumns`):
checks over whole columns, grouping with numpy, summaries from feature columns built once
per batch, one join write (:meth:`PartitionProcessor.process_columns`); the results are
those of adding the events one by one.

Pure: no Kafka here. The runtime feeds message values in; ``streamon replay`` feeds
file lines in; both get the same numbers.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np
import orjson

from streamon.core.events import (
    DUPLICATE_PREDICTION,
    WRONG_TYPE,
    Decoder,
    Invalid,
    Label,
    Prediction,
    PredictionColumns,
    shown,
)
from streamon.core.profile import Columns, ModelSpec, summarise_rows
from streamon.core.stages.join import Joiner, LabelDelta
from streamon.core.state.cardinality import DEFAULT_VARIANT, EXEMPT, MISSING, NOTHING, OTHER, admit, bottom_k
from streamon.core.state.summary import BucketSummary
from streamon.core.state.windows import floor_to
from streamon.core.statistics import multiclass, regression
from streamon.core.statistics.integrity import (
    KEYS,
    REJECTED,
    add_count,
    unexpected_keys,
    wrong_type_name,
    wrong_typed,
)

PARTIAL_VERSION = 1


_LABEL = attrgetter("label")
_PREDICTED = attrgetter("predicted")
_SCORE = attrgetter("score")
_NUMBER_OR_NULL = frozenset({int, float, type(None)})


def _check_numeric(features: dict[str, object], numeric: Iterable[str]) -> Invalid | None:
    """WRONG_TYPE if a numeric feature holds anything but a number (bools are not numbers) or null."""
    for name in numeric:
        v = features.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            return Invalid(WRONG_TYPE, f"expected a number or null, got {shown(v)}", f"features.{name}")
    return None


_STR = frozenset({str})
_FIRST = itemgetter(0)


def _factorise(values: list[Any]) -> tuple[list[Any], np.ndarray]:
    """The distinct values in order of first appearance, and each value's position among them.

    >>> names, codes = _factorise(["b", "a", "b"])
    >>> names, codes.tolist()
    (['b', 'a'], [0, 1, 0])
    """
    names = list(dict.fromkeys(values))
    if len(names) <= 1:
        return names, np.zeros(len(values), dtype=np.int64)
    code = {v: i for i, v in enumerate(names)}
    return names, np.fromiter(map(code.__getitem__, values), dtype=np.int64, count=len(values))


def _runs(codes: np.ndarray) -> list[np.ndarray]:
    """The rows of each distinct code (ascending), the codes in order of their first row.

    >>> [r.tolist() for r in _runs(np.array([7, 3, 7, 5, 3]))]
    [[0, 2], [1, 4], [3]]
    """
    if not codes.size:
        return []
    if (codes == codes[0]).all():
        return [np.arange(codes.size)]
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    inverse = inverse.reshape(codes.size)
    parts = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    return [parts[g] for g in np.argsort(first, kind="stable")]


class _Spread:
    """A batch's rows by model: each model's rows (None: the whole batch, of one model) and
    the columns :func:`summarise_rows` reads, over that model's rows."""

    def __init__(self, batch: PredictionColumns) -> None:
        self.models, self.codes = _factorise(batch.model)
        self.rows: dict[str, np.ndarray | None] = {}
        self.columns: dict[str, Columns] = {}
        self._local: np.ndarray | None = None
        self._sizes: dict[str, int] = {}
        if len(self.models) <= 1:
            for name in self.models:
                self.rows[name] = None
                self.columns[name] = Columns(
                    batch.score, batch.predicted, batch.latency_ms, batch.features, batch.scores
                )
                self._sizes[name] = len(batch)
            return
        self._local = np.empty(len(batch), dtype=np.intp)
        for k, name in enumerate(self.models):
            rows = np.flatnonzero(self.codes == k)
            sub = batch.take(rows.tolist())
            self.rows[name] = rows
            self.columns[name] = Columns(sub.score, sub.predicted, sub.latency_ms, sub.features, sub.scores)
            self._local[rows] = np.arange(len(rows))
            self._sizes[name] = len(rows)

    def local(self, model: str, rows: np.ndarray) -> np.ndarray | None:
        """``rows`` of the batch as rows of ``model``'s columns (None: all of them, in order)."""
        local = rows if self._local is None else self._local[rows]
        if len(local) == self._sizes[model] and (len(local) < 2 or bool((np.diff(local) > 0).all())):
            return None
        return local


@dataclass
class _Refused:
    """What :meth:`PartitionProcessor._refuse` found: (position, why) of every refused
    prediction in batch order, the rows refused after decoding, and those rows as the
    integrity counts need them ((model, variant, ts, wrong-typed features or None))."""

    verdicts: list[tuple[int, Invalid]]
    rows: set[int]
    checked_out: list[tuple[str, str, float, list[str] | None]]


def segment_value(value: object) -> str:
    """The segment a feature value falls in: strings as they are, JSON scalars as JSON text.

    >>> [segment_value(v) for v in ("DE", 7, 1.5, True, None)]
    ['DE', '7', '1.5', 'true', '__missing__']
    """
    if type(value) is str:
        return value
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# A scope's cap: (K, the protected values that are always kept, see core/cardinality.py).
Cap = tuple[int, frozenset[str]]


def _variant_cap(models: Mapping[str, ModelSpec]) -> Callable[[tuple[Any, ...]], Cap]:
    return lambda scope: (models[scope[0]].max_variants, models[scope[0]].protected_variants)


def _segment_cap(models: Mapping[str, ModelSpec]) -> Callable[[tuple[Any, ...]], Cap]:
    def cap(scope: tuple[Any, ...]) -> Cap:
        spec = models[scope[0]].segments[scope[1]]
        return spec.max_values, spec.values or NOTHING

    return cap


def _kept_over_cap(
    keys: Iterable[tuple[Any, ...]], at: int, cap_of: Callable[[tuple[Any, ...]], Cap]
) -> dict[tuple[Any, ...], set[str]]:
    """The kept values (protected, then bottom-K) of each scope that holds more values than its cap.

    ``at``: the position of the capped value in the keys; the key's prefix before it is
    the scope of the cap ((model,) for variants, (model, segment index) for segments).
    """
    values: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for key in keys:
        values[key[:at]].add(key[at])
    caps = {scope: cap_of(scope) for scope in values}
    return {
        scope: bottom_k(seen, *caps[scope]) for scope, seen in values.items() if len(seen) > caps[scope][0]
    }


def _assemble(head: bytes, buckets: list[bytes], segments: list[bytes]) -> bytes:
    """The JSON of a partial from its encoded parts (what ``orjson.dumps`` of the document gives)."""
    out = head + b',"b":[' + b",".join(buckets) + b"]"
    if segments:  # an optional key: partials without segments read as before
        out += b',"g":[' + b",".join(segments) + b"]"
    return out + b"}"


def _assemble_group(head: bytes, group: list[tuple[bytes, bytes]]) -> bytes:
    return _assemble(head, [e for k, e in group if k == b"b"], [e for k, e in group if k == b"g"])


def _atoms(summary: BucketSummary) -> list[BucketSummary]:
    """``summary`` as summaries of one count vector, sketch, categorical feature or vector of
    exact sums each (their sum)."""
    out = [BucketSummary(counts={name: vec}) for name, vec in summary.counts.items()]
    out += [BucketSummary(sketches={name: sk}) for name, sk in summary.sketches.items()]
    out += [BucketSummary(sums={name: v}) for name, v in summary.sums.items()]
    out += [BucketSummary(categories={name: c}) for name, c in summary.categories.items() if c]
    return out or [summary]


def _divisible(part: BucketSummary) -> bool:
    """A part of one category counter or count vector with more than one value (one sketch is
    at most ~130 kB encoded, below the smallest kafka.max_partial_bytes)."""
    return any(len(c) > 1 for c in part.categories.values()) or any(
        np.count_nonzero(v) > 1 for v in part.counts.values()
    )


def _halves(part: BucketSummary) -> list[BucketSummary]:
    """A one-counter or one-vector part as two parts of half its values each (they add exactly)."""
    if part.categories:
        ((name, counter),) = part.categories.items()
        values = sorted(counter)
        mid = len(values) // 2
        return [
            BucketSummary(categories={name: Counter({v: counter[v] for v in values[:mid]})}),
            BucketSummary(categories={name: Counter({v: counter[v] for v in values[mid:]})}),
        ]
    ((name, vec),) = part.counts.items()  # full length each, disjoint non-zero entries
    nz = np.flatnonzero(vec)
    low, high = np.zeros_like(vec), np.zeros_like(vec)
    low[nz[: len(nz) // 2]] = vec[nz[: len(nz) // 2]]
    high[nz[len(nz) // 2 :]] = vec[nz[len(nz) // 2 :]]
    return [BucketSummary(counts={name: low}), BucketSummary(counts={name: high})]


def _union(parts: list[BucketSummary]) -> BucketSummary:
    """The sum of parts of one summary (split counters and vectors are added back together)."""
    out = BucketSummary(category_cap=None)
    for part in parts:
        for name, vec in part.counts.items():
            out.counts[name] = out.counts[name] + vec if name in out.counts else vec
        out.sketches.update(part.sketches)  # never split: disjoint
        out.sums.update(part.sums)  # never split (a few short vectors): disjoint
        for name, c in part.categories.items():
            out.categories.setdefault(name, Counter()).update(c)
    return out


@dataclass
class Partial:
    """The deltas of one model from one source partition since the last flush."""

    model: str
    source: str  # "<topic>:<partition>" of the input, for watermarks
    watermark: float  # largest event time (prediction or label) the source has processed
    buckets: dict[tuple[str, float], BucketSummary] = field(default_factory=dict)  # (variant, start)
    # (segment field, segment value, start), over all variants
    segments: dict[tuple[str, str, float], BucketSummary] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The whole partial as one message (see :meth:`to_messages` for a bounded size)."""
        return _assemble(self._head(), list(self._encoded_buckets()), list(self._encoded_segments()))

    def to_messages(self, max_bytes: int) -> list[bytes]:
        """The partial as encoded partials of at most ``max_bytes`` each, in bucket order.

        Every message is a complete partial of the same model, source and watermark holding
        a share of the buckets. Stage 2 merges deltas bucket by bucket and each bucket lands
        in exactly one message (in the order :meth:`to_bytes` lists them), so merging the
        messages equals merging the whole. A single bucket larger than ``max_bytes`` (very
        many categories) is itself split into summaries of disjoint parts whose sum is the
        bucket; only one indivisible part (one sketch, one category value, one count)
        larger than the limit yields a larger message.

        >>> from streamon.core.state.summary import BucketSummary
        >>> p = Partial("m", "t:0", 120.0)
        >>> for start in range(0, 6000, 60):
        ...     s = p.buckets[("default", float(start))] = BucketSummary()
        ...     s.add_categorical_feature("c", [f"v{i}" for i in range(start % 7 + 1)])
        >>> parts = p.to_messages(2000)
        >>> len(parts) > 1, all(len(m) <= 2000 for m in parts)
        (True, True)
        >>> merged = {k: v for m in parts for k, v in Partial.from_bytes(m).buckets.items()}
        >>> merged == Partial.from_bytes(p.to_bytes()).buckets
        True
        """
        head = self._head()
        entries = [(b"b", e) for e in self._encoded_buckets()]
        entries += [(b"g", e) for e in self._encoded_segments()]
        # Exact sizes: a message is head + the entries joined by commas + fixed framing.
        frame = len(_assemble(head, [], [])) + len(b',"g":[]')
        budget = max_bytes - frame
        messages: list[bytes] = []
        group: list[tuple[bytes, bytes]] = []
        used = 0
        for kind, entry in entries:
            if len(entry) + 1 > budget:  # one bucket over the limit on its own: split its summary
                if group:
                    messages.append(_assemble_group(head, group))
                    group, used = [], 0
                messages.extend(self._split_entry(kind, entry, max_bytes))
                continue
            if group and used + len(entry) + 1 > budget:
                messages.append(_assemble_group(head, group))
                group, used = [], 0
            group.append((kind, entry))
            used += len(entry) + 1
        if group or not messages:
            messages.append(_assemble_group(head, group))
        return messages

    def _head(self) -> bytes:
        doc = {
            "v": PARTIAL_VERSION,
            "model": self.model,
            "source": self.source,
            "wm": self.watermark if math.isfinite(self.watermark) else None,
        }
        return orjson.dumps(doc)[:-1]  # without the closing brace: the entries follow

    def _encoded_buckets(self) -> Iterator[bytes]:
        for (variant, start), s in self.buckets.items():
            yield orjson.dumps([variant, start, s.to_bytes().hex()])

    def _encoded_segments(self) -> Iterator[bytes]:
        for (f, v, start), s in self.segments.items():
            yield orjson.dumps([f, v, start, s.to_bytes().hex()])

    def _split_entry(self, kind: bytes, entry: bytes, max_bytes: int) -> list[bytes]:
        """Messages holding the parts of one oversized bucket, each as small as its parts allow."""
        *key, hexed = orjson.loads(entry)
        summary = BucketSummary.from_bytes(bytes.fromhex(hexed))
        head = self._head()
        out: list[bytes] = []

        def emit(parts: list[BucketSummary]) -> None:
            whole = _union(parts)
            encoded = orjson.dumps([*key, whole.to_bytes().hex()])
            message = _assemble_group(head, [(kind, encoded)])
            if len(message) <= max_bytes or (len(parts) == 1 and not _divisible(parts[0])):
                out.append(message)
            elif len(parts) > 1:
                emit(parts[: len(parts) // 2])
                emit(parts[len(parts) // 2 :])
            else:
                emit(_halves(parts[0]))

        emit(_atoms(summary))
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> Partial:
        doc = orjson.loads(data)
        if doc.get("v") != PARTIAL_VERSION:
            raise ValueError(f"unsupported partial version {doc.get('v')!r}")
        wm = doc["wm"]
        return cls(
            model=doc["model"],
            source=doc["source"],
            watermark=-math.inf if wm is None else float(wm),
            buckets={
                (variant, float(start)): BucketSummary.from_bytes(bytes.fromhex(h))
                for variant, start, h in doc["b"]
            },
            segments={
                (f, v, float(start)): BucketSummary.from_bytes(bytes.fromhex(h))
                for f, v, start, h in doc.get("g", ())
            },
        )


@dataclass
class Rejected:
    """An input message that failed validation, kept whole for the dead-letter topic."""

    topic: str  # "predictions" | "labels"
    raw: bytes | None
    reason: str
    detail: str
    # Position in the batch's list of that topic: how the runtime finds the message (its
    # offset, key). Never the identity of ``raw``: equal small values share one object.
    index: int
    field: str = ""  # the offending field (Invalid.field), "" for the whole message


@dataclass
class BatchCounts:
    predictions: int = 0
    labels: int = 0
    invalid: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


class PartitionProcessor:
    """Stage-1 state of one input partition (predictions + labels, co-partitioned).

    >>> from streamon.core.stages.join import MemoryStore
    >>> from streamon.core.profile import FeatureSpec
    >>> spec = ModelSpec("m", threshold=0.5, features=[FeatureSpec("x", "numeric")])
    >>> pp = PartitionProcessor({"m": spec}, MemoryStore(), bucket_s=60)
    >>> rejected = pp.process(
    ...     [b'{"prediction_id": "a", "model": "m", "ts": 61, "score": 0.9, "features": {"x": 1.5}}', b"{"],
    ...     [b'{"prediction_id": "a", "label": 1, "ts": 90}'])
    >>> [r.reason for r in rejected]
    ['invalid_json']
    >>> [p.buckets[("default", 60.0)].confusion.tolist() for p in pp.take_partials()]
    [[1, 0, 0, 0]]
    """

    def __init__(
        self,
        models: dict[str, ModelSpec],
        store: object,
        bucket_s: float = 60.0,
        label_horizon_s: float = 30 * 86400.0,
        orphan_grace_s: float = 3600.0,
        decoder: Decoder | None = None,
        source: str = "replay:0",
    ) -> None:
        self.models = models
        self.bucket_s = bucket_s
        self.source = source
        regression = frozenset(name for name, m in models.items() if m.task == "regression")
        classes = {name: m.classes for name, m in models.items() if m.task == "multiclass"}
        self.decoder = decoder or Decoder(
            {name: m.threshold for name, m in models.items()}, regression=regression, multiclass=classes
        )
        self.joiner = Joiner(
            store,  # type: ignore[arg-type]
            label_horizon_s,
            orphan_grace_s,
            regression,
            self._misfit,
            {name: multiclass.class_index(c) for name, c in classes.items()},
        )
        self.counts = BatchCounts()
        self._deltas: dict[tuple[str, str, float], BucketSummary] = {}
        # (model, segment index, segment value, start)
        self._seg_deltas: dict[tuple[str, int, str, float], BucketSummary] = {}
        self._latest_label = -math.inf

    def _misfit(self, bad: Invalid) -> None:
        """A label that waited for its prediction, of a binary model, and is no 0/1: counted
        as invalid (no dead letter: its message was committed batches ago)."""
        self.counts.invalid[("labels", bad.reason)] += 1

    @property
    def watermark(self) -> float:
        """Largest event time of any valid prediction or label processed (stage 2's clock)."""
        return max(self.joiner.watermark, self._latest_label)

    def _bucket(self, model: str, variant: str, ts: float) -> BucketSummary:
        key = (model, variant, floor_to(ts, self.bucket_s))
        summary = self._deltas.get(key)
        if summary is None:
            spec = self.models[model]
            summary = self._deltas[key] = BucketSummary(
                category_cap=spec.max_categories, protected=spec.protected_categories
            )
        return summary

    def _segment(self, model: str, index: int, value: str, start: float) -> BucketSummary:
        key = (model, index, value, start)
        summary = self._seg_deltas.get(key)
        if summary is None:
            spec = self.models[model]
            summary = self._seg_deltas[key] = BucketSummary(
                category_cap=spec.max_categories, protected=spec.protected_categories
            )
        return summary

    @staticmethod
    def _fold_groups(
        groups: dict[Any, Any],
        at: int,
        cap_of: Callable[[tuple[Any, ...]], Cap],
        open_deltas: Mapping[Any, object],
    ) -> dict[Any, Any]:
        """Regroup a batch so values outside the bottom-K (of this batch and the open deltas)
        are summarised once, as OTHER, rather than once per value and folded afterwards."""
        kept = _kept_over_cap([*groups, *open_deltas], at, cap_of)
        if not kept:
            return groups
        out: dict[Any, list[Any]] = defaultdict(list)  # a group: its rows (or events)
        for key, group in groups.items():
            scope = key[:at]
            if scope in kept and key[at] not in kept[scope] and key[at] not in EXEMPT:
                key = (*scope, OTHER, *key[at + 1 :])
            out[key].extend(group)
        return out

    @staticmethod
    def _fold_open(
        deltas: dict[Any, BucketSummary],
        at: int,
        cap_of: Callable[[tuple[Any, ...]], Cap],
        target_of: Callable[..., BucketSummary],
    ) -> None:
        """Fold the open deltas of values outside their scope's bottom-K into OTHER's."""
        kept = _kept_over_cap(deltas, at, cap_of)
        folded = [k for k in deltas if k[:at] in kept and k[at] not in kept[k[:at]] and k[at] not in EXEMPT]
        for key in folded:
            target = target_of(*key[:at], OTHER, *key[at + 1 :])
            target += deltas.pop(key)

    def _fold_deltas(self) -> None:
        """Fold variants and segment values outside the bottom-K of the open deltas into OTHER.

        Done after every batch (memory stays bounded by the caps between flushes); the rule
        depends only on the set of values, so doing it per batch, per flush and again in
        stage 2 gives what one truncation of the whole stream would.
        """
        self._fold_open(self._deltas, 1, _variant_cap(self.models), self._bucket)
        self._fold_open(self._seg_deltas, 2, _segment_cap(self.models), self._segment)

    def process(
        self, predictions: Iterable[bytes | None], labels: Iterable[bytes | None], now: float | None = None
    ) -> list[Rejected]:
        """Decode and add a batch; returns the rejected messages. ``now`` (wall clock) bounds event times."""
        predictions, labels = list(predictions), list(labels)
        decoder = self.decoder
        return self.process_columns(
            predictions,
            decoder.prediction_columns(predictions, now),
            list(zip(labels, decoder.labels(labels, now), strict=True)),
        )

    def process_decoded(
        self,
        predictions: list[tuple[bytes | None, Prediction | Invalid]],
        labels: list[tuple[bytes | None, Label | Invalid]],
        partials: bool = True,
    ) -> list[Rejected]:
        """Add a batch of already decoded events (raw bytes kept for the dead-letter topic).

        ``partials=False`` (a restore, whose deltas were published when the events were first
        processed) updates the join store, counts and watermark alone: no delta is computed.
        """
        return self.process_columns(
            [raw for raw, _ in predictions],
            PredictionColumns.from_events([p for _, p in predictions]),
            labels,
            partials,
        )

    def process_columns(
        self,
        raws: list[bytes | None],
        batch: PredictionColumns,
        labels: list[tuple[bytes | None, Label | Invalid]],
        partials: bool = True,
    ) -> list[Rejected]:
        """Add a batch whose predictions are decoded into columns (``raws``: their messages, for
        the dead-letter topic); returns the rejected messages, predictions' first, in batch order.

        The numeric type check and the duplicate check run over the columns (a row at a time
        only where they find something), the batch is grouped by (model, variant, bucket) with
        numpy, each group summarised from the batch's feature columns, and the join is fed the
        accepted columns at once: the results of adding the events one at a time, in order.
        ``partials=False`` as in :meth:`process_decoded`.
        """
        # One store lookup for the batch's ids instead of one to three per event; it names the
        # ids already pending, the duplicate check of every prediction.
        pending = self.joiner.prefetch(
            [
                *batch.prediction_id,
                *(lab.prediction_id for _, lab in labels if not isinstance(lab, Invalid)),
            ]
        )
        spread = _Spread(batch)
        refused = self._refuse(batch, spread, pending, partials)
        rejected = [
            Rejected("predictions", raws[index], bad.reason, bad.detail, index, bad.field)
            for index, bad in refused.verdicts
        ]
        if refused.rows:
            keep = sorted(set(range(len(batch))) - refused.rows)
            batch = batch.take(keep)
            spread = _Spread(batch)
        models = self.models
        variants = batch.variant
        allowed = {name: models[name].variants for name in spread.models}
        if len(spread.models) == 1:  # one model: each distinct variant admitted once
            (only,) = allowed.values()
            distinct = dict.fromkeys(variants)
            if len(distinct) == 1:
                variants = [admit(variants[0] or DEFAULT_VARIANT, only)] * len(variants)
            elif "" in distinct or only is not None:
                kept = {v: admit(v or DEFAULT_VARIANT, only) for v in distinct}
                variants = list(map(kept.__getitem__, variants))
        elif "" in variants or any(a is not None for a in allowed.values()):
            admitted = {
                (m, v): admit(v or DEFAULT_VARIANT, allowed[m])
                for m, v in dict.fromkeys(zip(batch.model, variants, strict=True))
            }
            variants = list(map(admitted.__getitem__, zip(batch.model, variants, strict=True)))
        segments = self._segments(batch, spread)
        label_deltas = self.joiner.add_columns(
            batch.prediction_id,
            batch.model,
            variants,
            batch.ts,
            batch.score,
            batch.predicted,
            segments,
            batch.scores,
        )
        n_labels = 0
        latest_label = self._latest_label
        add_label = self.joiner.add_label
        extend = label_deltas.extend
        for index, (raw, lab) in enumerate(labels):
            if isinstance(lab, Invalid):
                rejected.append(Rejected("labels", raw, lab.reason, lab.detail, index, lab.field))
                continue
            n_labels += 1
            if lab.ts > latest_label:  # = max(); event times are finite
                latest_label = lab.ts
            deltas = add_label(lab)
            if isinstance(deltas, Invalid):  # it does not fit its prediction's model
                n_labels -= 1
                theirs = self.decoder._theirs("label", deltas.field)
                rejected.append(Rejected("labels", raw, deltas.reason, deltas.detail, index, theirs))
                continue
            extend(deltas)
        self.counts.labels += n_labels
        self._latest_label = latest_label
        if not partials:
            self.counts.predictions += len(batch)
            self.joiner.expire()
            for r in rejected:
                self.counts.invalid[(r.topic, r.reason)] += 1
            return rejected
        self._summarise(batch, spread, variants, segments)
        self._add_checked_out(refused.checked_out)
        self._add_label_deltas(label_deltas)
        self._fold_deltas()
        self.joiner.expire()
        for r in rejected:
            self.counts.invalid[(r.topic, r.reason)] += 1
        return rejected

    def _refuse(
        self, batch: PredictionColumns, spread: _Spread, pending: set[str], partials: bool
    ) -> _Refused:
        """The batch's rows rejected after decoding: a numeric feature that holds no number
        (bools are not numbers) or null, then an id seen before (pending, or earlier in the batch).

        Checked over the columns; only a row a column check points at is looked at alone.
        """
        found: dict[int, Invalid] = {}
        wrong: dict[int, list[str]] = {}
        features = batch.features
        for model, rows in spread.rows.items():
            names = tuple(self.models[model].numeric)
            columns = spread.columns[model]
            suspects: set[int] = set()
            for name in names:
                values = columns.values(name)
                if not _NUMBER_OR_NULL.issuperset(map(type, values)):
                    local = [i for i, v in enumerate(values) if type(v) not in _NUMBER_OR_NULL]
                    suspects.update(local if rows is None else rows[local].tolist())
            for row in sorted(suspects):
                bad = _check_numeric(features[row], names)  # None for a subclass of int or float
                if bad is not None:
                    found[row] = bad
                    if partials:
                        wrong[row] = wrong_typed(features[row], names)
        ids = batch.prediction_id
        duplicates: list[int] = []
        if len(set(ids)) < len(ids) or not pending.isdisjoint(ids):
            seen: set[str] = set()
            for row, pid in enumerate(ids):
                if row in found:
                    continue
                if pid in seen or pid in pending:
                    duplicates.append(row)
                    found[row] = Invalid(
                        DUPLICATE_PREDICTION, f"prediction_id {pid[:100]!r} seen before", "prediction_id"
                    )
                else:
                    seen.add(pid)
        index = batch.index
        verdicts = sorted([*batch.invalid, *((index[row], bad) for row, bad in found.items())], key=_FIRST)
        checked_out = []
        if partials:
            for row in sorted(found):
                checked_out.append((batch.model[row], batch.variant[row], batch.ts[row], wrong.get(row)))
        return _Refused(verdicts, set(found), checked_out)

    def _segments(
        self, batch: PredictionColumns, spread: _Spread
    ) -> list[tuple[tuple[str, str], ...]] | None:
        """Each row's (field, segment) pairs: the value, or OTHER outside an allowlist (None: no
        model of the batch has segments)."""
        out: list[tuple[tuple[str, str], ...]] | None = None
        for model, rows in spread.rows.items():
            specs = self.models[model].segments
            if not specs:
                continue
            columns = spread.columns[model]
            per_spec = []
            for spec in specs:
                values: list[Any] = columns.values(spec.field)
                if not _STR.issuperset(map(type, values)):
                    values = list(map(segment_value, values))
                kept = {v: admit(v, spec.values) for v in dict.fromkeys(values)}
                per_spec.append(list(zip(repeat(spec.field), map(kept.__getitem__, values))))
            pairs = list(zip(*per_spec, strict=True))
            if rows is None:
                return pairs
            if out is None:
                out = [()] * len(batch)
            for row, segs in zip(rows.tolist(), pairs, strict=True):
                out[row] = segs
        return out

    def _summarise(
        self,
        batch: PredictionColumns,
        spread: _Spread,
        variants: list[str],
        segments: list[tuple[tuple[str, str], ...]] | None,
    ) -> None:
        """Add the accepted rows to their (model, variant, bucket) and segment deltas.

        Groups and the rows in each are in the order of their first row, as one pass over the
        events would make them (the order the deltas, and so the partials, are written in).
        """
        n = len(batch)
        if not n:
            return
        models = self.models
        bucket_s = self.bucket_s
        floor = math.floor
        times = batch.ts
        # The same quotient and floor as math.floor(ts / bucket_s) * bucket_s (= floor_to).
        starts = np.floor(np.array(times, dtype=np.float64) / bucket_s) * bucket_s
        start_codes = np.unique(starts, return_inverse=True)[1].reshape(n)
        variant_names, variant_codes = _factorise(variants)
        model_codes = spread.codes
        codes = (model_codes * len(variant_names) + variant_codes) * (
            int(start_codes.max()) + 1
        ) + start_codes
        groups: dict[Any, Any] = {}
        names = batch.model
        for rows in _runs(codes):
            first = int(rows[0])
            groups[(names[first], variants[first], floor(times[first] / bucket_s) * bucket_s)] = rows
        groups = self._fold_groups(groups, 1, _variant_cap(models), self._deltas)
        declared = {
            name: frozenset(f.name for f in models[name].features) | {s.field for s in models[name].segments}
            for name in spread.models
        }
        features = batch.features
        for (model, variant, start), rows in groups.items():
            rows = np.asarray(rows, dtype=np.intp)
            summary = self._bucket(model, variant, start)
            summarise_rows(models[model], spread.columns[model], spread.local(model, rows), summary)
            keys = unexpected_keys(map(features.__getitem__, rows.tolist()), declared[model])
            if keys:  # schema change: keys the model does not declare (capped like categories)
                summary.add_categorical_feature(KEYS, keys)
            self.counts.predictions += len(rows)
        if segments is None:
            return
        # Segment groups: (model, segment index, value, start), ordered by (first row, index).
        found: list[tuple[int, int, tuple[str, int, str, float], np.ndarray]] = []
        for model, model_rows in spread.rows.items():
            specs = models[model].segments
            if not specs:
                continue
            rows_of_model = np.arange(n) if model_rows is None else model_rows
            picked = rows_of_model.tolist()
            for index in range(len(specs)):
                values = [segments[row][index][1] for row in picked]
                value_names, value_codes = _factorise(values)
                codes = value_codes * (int(start_codes.max()) + 1) + start_codes[rows_of_model]
                for local in _runs(codes):
                    rows = rows_of_model[local]
                    first = int(rows[0])
                    key = (
                        model,
                        index,
                        value_names[int(value_codes[int(local[0])])],
                        floor(times[first] / bucket_s) * bucket_s,
                    )
                    found.append((first, index, key, rows))
        found.sort(key=lambda f: (f[0], f[1]))
        seg_groups: dict[Any, Any] = {key: rows for _, _, key, rows in found}
        seg_groups = self._fold_groups(seg_groups, 2, _segment_cap(models), self._seg_deltas)
        for (model, index, value, start), rows in seg_groups.items():
            rows = np.asarray(rows, dtype=np.intp)
            summarise_rows(
                models[model],
                spread.columns[model],
                spread.local(model, rows),
                self._segment(model, index, value, start),
                segment=True,
            )

    def _add_checked_out(self, rejected: list[tuple[str, str, float, list[str] | None]]) -> None:
        """Count events rejected after decoding (wrong types, duplicates) into their bucket.

        Their bucket: the event's model, variant (allowlist applied, the cap folds it later with
        the others) and event time, so the counts merge exactly like every other delta.
        ``rejected``: (model, variant, ts, the wrong-typed features or None for a duplicate).
        """
        bucket_s = self.bucket_s
        for model, variant, ts, wrong in rejected:
            allowed = self.models[model].variants
            variant = variant or DEFAULT_VARIANT
            if allowed is not None:
                variant = admit(variant, allowed)
            summary = self._bucket(model, variant, math.floor(ts / bucket_s) * bucket_s)
            if wrong is None:
                add_count(summary, REJECTED, [0, 1])
                continue
            add_count(summary, REJECTED, [1, 0])
            for name in wrong:
                add_count(summary, wrong_type_name(name), [1])

    def _add_label_deltas(self, deltas: list[LabelDelta]) -> None:
        groups: dict[tuple[str, str, float, int], list[LabelDelta]] = defaultdict(list)
        seg_groups: dict[tuple[str, int, str, float, int], list[LabelDelta]] = defaultdict(list)
        segment_index = {
            name: {s.field: i for i, s in enumerate(spec.segments)} for name, spec in self.models.items()
        }
        bucket_s = self.bucket_s
        floor = math.floor
        for d in deltas:
            start = floor(d.ts / bucket_s) * bucket_s
            groups[(d.model, d.variant, start, d.sign)].append(d)
            for name, value in d.segments:
                index = segment_index[d.model].get(name)
                if index is not None:  # a field no longer configured is no segment any more
                    seg_groups[(d.model, index, value, start, d.sign)].append(d)
        for (model, variant, start, sign), group in groups.items():
            self._add_labels(self._bucket(model, variant, start), model, group, sign)
        for (model, index, value, start, sign), group in seg_groups.items():
            # Segments export no calibration metrics and read their AUC from the score_bins
            # histograms: a window per segment value holding the fine ones would cost 26 KB a bucket.
            self._add_labels(self._segment(model, index, value, start), model, group, sign, segment=True)

    def _add_labels(
        self, summary: BucketSummary, model: str, group: list[LabelDelta], sign: int, segment: bool = False
    ) -> None:
        spec = self.models[model]
        _LABELLED[spec.task](spec, summary, group, sign, segment)

    def take_partials(self) -> list[Partial]:
        """The deltas since the last call, one :class:`Partial` per model (every model, even if empty)."""
        partials = {name: Partial(name, self.source, self.watermark) for name in self.models}
        for (model, variant, start), summary in self._deltas.items():
            partials[model].buckets[(variant, start)] = summary
        for (model, index, value, start), summary in self._seg_deltas.items():
            partials[model].segments[(self.models[model].segments[index].field, value, start)] = summary
        self._deltas = {}
        self._seg_deltas = {}
        return list(partials.values())


def _binary_labelled(
    spec: ModelSpec, summary: BucketSummary, group: list[LabelDelta], sign: int, segment: bool
) -> None:
    """Labelled predictions of a binary model: confusion, score histograms, calibration."""
    n = len(group)
    summary.add_labels(
        np.fromiter(map(_LABEL, group), dtype=np.int64, count=n),
        np.fromiter(map(_PREDICTED, group), dtype=np.int64, count=n),
        np.fromiter(map(_SCORE, group), dtype=np.float64, count=n),
        spec.score_bins,
        sign=sign,
        calibration_bins=None if segment else spec.calibration_bins,
        fine=not segment,
    )


def _regression_labelled(
    spec: ModelSpec, summary: BucketSummary, group: list[LabelDelta], sign: int, segment: bool
) -> None:
    """Labelled predictions of a regression model: the exact error sums, residuals and targets."""
    n = len(group)
    regression.add_labelled(
        summary,
        np.fromiter(map(_SCORE, group), dtype=np.float64, count=n),  # the predicted values
        np.fromiter(map(_LABEL, group), dtype=np.float64, count=n),
        sign,
    )


def _multiclass_labelled(
    spec: ModelSpec, summary: BucketSummary, group: list[LabelDelta], sign: int, segment: bool
) -> None:
    """Labelled predictions of a multiclass model: confusion, top-k, one-vs-rest histograms, log loss."""
    n, k = len(group), len(spec.classes)
    multiclass.add_labelled(
        summary,
        np.array([d.scores for d in group], dtype=np.float64).reshape(n, k),
        np.fromiter(map(_PREDICTED, group), dtype=np.int64, count=n),
        np.fromiter(map(_LABEL, group), dtype=np.int64, count=n),  # the actual class indices
        k,
        spec.top_k,
        sign,
        histograms=not segment,
    )


# How labelled predictions count into a summary, per model task (ModelSpec.task).
_LABELLED: dict[str, Callable[[ModelSpec, BucketSummary, list[LabelDelta], int, bool], None]] = {
    "binary": _binary_labelled,
    "regression": _regression_labelled,
    "multiclass": _multiclass_labelled,
}
