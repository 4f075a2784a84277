"""Joining labels to the predictions they judge, days or weeks apart.

A prediction is kept (compactly) until its label horizon passes; a label looks its
prediction up by ``prediction_id`` and yields a :class:`LabelDelta` for the bucket
of the PREDICTION's event time. A second, different label is a correction: the old
contribution is retracted (sign -1) and the new one added. A label whose prediction
is unknown waits ``orphan_grace_s`` for it, then is counted as orphaned. With regression
models configured a label may be any number: one that meets a binary model's prediction
must still be 0 or 1 (see :meth:`Joiner.add_label`). A multiclass model's record holds its
scores vector and class indices, and its label must be one of its declared class names.

Time is the partition's prediction watermark (the largest prediction event time
seen), so a replay of the same partition makes the same decisions.

Everything the join knows lives in the store, so a restart (a new :class:`Joiner`
over the same store) continues exactly and Python memory does not grow with the
number of pending records:

- ``p:<id>``: a pending prediction; ``l:<id>``: a label waiting for its prediction;
- ``x:<expiry><record key>``: the expiry index, time-ordered (:func:`sortable`),
  written and deleted in the same write batch as its record;
- :data:`META`: the watermark, the pending counts and the join counters, written with
  the changes of every :meth:`Joiner.expire` (the end of every batch).

A batch's records are read with one :meth:`KeyValueStore.get_many` (:meth:`Joiner.prefetch`)
rather than one point lookup per event.

Storage is behind :class:`KeyValueStore`; :class:`MemoryStore` serves tests and
``streamon replay``, the runtime backs it with RocksDB. :class:`StagedStore` buffers
the writes of one batch so they reach the real store only after the Kafka
transaction that carries their effects has committed; discarding them discards their
index and counter changes too.
"""

from __future__ import annotations

import heapq
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass
from itertools import repeat
from types import MappingProxyType
from typing import Protocol

import numpy as np
import orjson
from sortedcontainers import SortedDict

from streamon.core.events import SCHEMA_VIOLATION, WRONG_TYPE, Invalid, Label, Prediction, schema_error
from streamon.core.statistics import multiclass

_PRED = b"p:"
_LABEL = b"l:"
_INDEX = b"x:"
META = b"\x00join"  # sorts before every record prefix (beside the runtime's offset marker)
_INDEX_AT = len(_INDEX) + 8  # where the record key starts in an index key
_META_VERSION = 1
_UNREAD = object()  # not prefetched (None means prefetched and absent)


def _pack(record: Sequence[object]) -> bytes:
    """orjson bytes trimmed to size: orjson's result keeps a ~4 KB buffer per object, which
    held for every pending prediction costs gigabytes (measured in docs/benchmarks.md)."""
    return bytes(memoryview(orjson.dumps(record)))


def _pack_all(records: Iterable[Sequence[object]]) -> list[bytes]:
    """:func:`_pack` of each record, the loop in C."""
    return list(map(bytes, map(memoryview, map(orjson.dumps, records))))  # type: ignore[arg-type]


_DOUBLE = struct.Struct(">d")
_U64 = struct.Struct(">Q")
_SIGN = 1 << 63
_ALL = (1 << 64) - 1


def sortable(x: float) -> bytes:
    """8 bytes whose byte order is the numeric order of ``x`` (IEEE 754, sign-adjusted).

    >>> xs = [-math.inf, -2.5, -0.5, 0.0, 1e-9, 3.0, 1.7e9, math.inf]
    >>> sorted(xs, key=sortable) == xs, [unsortable(sortable(x)) for x in xs] == xs
    (True, True)
    """
    (u,) = _U64.unpack(_DOUBLE.pack(x))
    return _U64.pack(u ^ _ALL if u & _SIGN else u | _SIGN)


def unsortable(b: bytes) -> float:
    (u,) = _U64.unpack(b)
    (x,) = _DOUBLE.unpack(_U64.pack(u ^ _SIGN if u & _SIGN else u ^ _ALL))
    return float(x)


def sortable_many(xs: Sequence[float] | np.ndarray) -> bytes:
    """``b"".join(map(sortable, xs))`` in one numpy pass (8 bytes per value), for a batch.

    >>> xs = [-math.inf, -2.5, -0.0, 0.0, 3.0, 1.7e9, math.inf]
    >>> sortable_many(xs) == b"".join(map(sortable, xs))
    True
    """
    u = np.array(xs, dtype=np.float64).view(np.uint64)
    return np.where(u >> np.uint64(63), ~u, u | np.uint64(_SIGN)).astype(">u8").tobytes()


def _index_key(expires: float, key: bytes) -> bytes:
    return _INDEX + sortable(expires) + key


class KeyValueStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """The values of ``keys`` (None where absent), in their order: one lookup for a batch."""
        ...

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        """Apply puts (bytes) and deletes (None) atomically."""
        ...

    def items(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """The entries under ``prefix`` in key order, from ``start`` (a key under it) when given."""
        ...


class MemoryStore:
    """A :class:`KeyValueStore` in memory, ordered by key like RocksDB.

    >>> s = MemoryStore()
    >>> s.write({b"p:2": b"y", b"p:1": b"x", b"q:1": b"z"})
    >>> s.get(b"p:1"), list(s.items(b"p:")), list(s.items(b"p:", start=b"p:2"))
    (b'x', [(b'p:1', b'x'), (b'p:2', b'y')], [(b'p:2', b'y')])
    >>> s.get_many([b"p:2", b"p:3", b"p:1"])
    [b'y', None, b'x']
    """

    def __init__(self) -> None:
        self.data: SortedDict[bytes, bytes] = SortedDict()

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        get = self.data.get
        return [get(key) for key in keys]

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        data = self.data
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value

    def items(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        lo = start if start is not None and start > prefix else prefix
        # A snapshot of the matching keys' positions: the caller may write while iterating.
        keys = self.data.keys()
        i = self.data.bisect_left(lo)
        while i < len(keys):
            key = keys[i]
            if not key.startswith(prefix):
                return
            value = self.data.get(key)
            if value is not None:
                yield key, value
            # Re-find the position: entries before it may have been deleted meanwhile.
            i = self.data.bisect_right(key)


def _prefix_end(prefix: bytes) -> bytes | None:
    r"""The smallest key after every key under ``prefix`` (None: there is none).

    >>> _prefix_end(b"x:"), _prefix_end(b"a\xff"), _prefix_end(b""), _prefix_end(b"\xff")
    (b'x;', b'b', None, None)
    """
    head = prefix.rstrip(b"\xff")
    return head[:-1] + bytes([head[-1] + 1]) if head else None


class StagedStore:
    """Buffers writes over a base store until :meth:`commit` (or :meth:`discard`)."""

    def __init__(self, base: KeyValueStore) -> None:
        self.base = base
        self.pending: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.pending:
            return self.pending[key]
        return self.base.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """Staged values where written (a staged delete reads None), the rest in one base lookup."""
        pending = self.pending
        if not pending:  # right after a commit, as at the start of every batch
            return self.base.get_many(keys)
        out: list[bytes | None] = [None] * len(keys)
        rest: list[int] = []
        for i, key in enumerate(keys):
            if key in pending:
                out[i] = pending[key]
            else:
                rest.append(i)
        if rest:
            for i, value in zip(rest, self.base.get_many([keys[i] for i in rest]), strict=True):
                out[i] = value
        return out

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        self.pending.update(changes)

    def items(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """The base's entries merged in key order with the staged ones (staged writes win)."""
        lo = start if start is not None and start > prefix else prefix
        pending = self.pending.copy()  # a snapshot: the caller may write while iterating
        end = _prefix_end(prefix)
        # Two comparisons (not startswith) per staged key, and a heap rather than a sort:
        # the expiry scan of every batch usually stops after the first few keys.
        staged = [k for k in pending if lo <= k < end] if end is not None else [k for k in pending if k >= lo]
        heapq.heapify(staged)

        def in_order() -> Iterator[tuple[bytes, int, bytes | None]]:
            while staged:
                k = heapq.heappop(staged)
                yield k, 0, pending[k]

        # (key, 0 = staged first at equal keys, value): a staged write shadows the base's entry.
        merged = heapq.merge(in_order(), ((k, 1, v) for k, v in self.base.items(prefix, lo)))
        last = None
        for key, _, value in merged:
            if key == last:
                continue
            last = key
            if value is not None:
                yield key, value

    def commit(self, extra: dict[bytes, bytes | None] | None = None) -> None:
        """Apply the buffered writes (plus ``extra``, e.g. an offset marker) in one batch."""
        if extra:
            self.pending.update(extra)
        if self.pending:
            self.base.write(self.pending)
        self.pending = {}

    def discard(self) -> None:
        self.pending = {}


@dataclass(frozen=True, slots=True)
class LabelDelta:
    """A labelled prediction to add (sign=1) to or retract (sign=-1) from its bucket."""

    model: str
    variant: str
    ts: float
    score: float
    predicted: int
    # 0/1 (an int) for a binary model; the true value for a regression model; the actual
    # class index for a multiclass model (whose ``predicted`` is a class index too).
    label: float
    sign: int
    # The prediction's segments as (field, value) pairs: named, so a label that arrives after
    # the config's segments were reordered or changed still lands in the right segments.
    segments: tuple[tuple[str, str], ...] = ()
    # A multiclass model's probabilities in declared class order (``score`` is the predicted
    # class's); None for the other models.
    scores: list[float] | None = None


@dataclass
class JoinStats:
    joined: int = 0
    corrections: int = 0
    duplicate_labels: int = 0
    orphaned: int = 0
    expired_unlabelled: int = 0


class Joiner:
    """Pure join logic over a key-value store.

    >>> j = Joiner(MemoryStore(), label_horizon_s=3600, orphan_grace_s=60)
    >>> j.add_label(Label("p1", 1, ts=5.0))        # prediction not seen yet: waits
    []
    >>> [(d.model, d.score, d.label, d.sign) for d in j.add_prediction(Prediction("p1", "m", 10.0, 0.9, 1))]
    [('m', 0.9, 1, 1)]
    >>> [d.sign for d in j.add_label(Label("p1", 0, ts=20.0))]   # a correction
    [-1, 1]
    >>> _ = j.expire()                             # end of a batch: the counters are stored
    >>> again = Joiner(j.store, label_horizon_s=3600, orphan_grace_s=60)   # after a restart
    >>> again.pending_predictions, again.watermark, again.stats.corrections
    (1, 10.0, 1)
    """

    def __init__(
        self,
        store: KeyValueStore,
        label_horizon_s: float,
        orphan_grace_s: float,
        regression: frozenset[str] = frozenset(),
        on_misfit: Callable[[Invalid], None] | None = None,
        multiclass: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self.store = store
        # Regression models: their records say "no label yet" with None (-1.0 is a label),
        # and only with one of them configured can a label be anything but 0 or 1.
        self.regression = regression
        # Multiclass models (name -> class name -> index): their records hold the scores
        # vector and class indices (-1 = no label yet); labels are class names.
        self.multiclass = MappingProxyType(dict(multiclass or {}))  # config: fixed, not per record
        self._fit_labels = bool(regression or self.multiclass)
        # Told of each label that waited in the store and turns out not to fit its prediction's
        # model (a non-0/1 label of a binary model) when the prediction arrives: the label is
        # dropped, the caller counts it (its message was consumed batches ago).
        self.on_misfit = on_misfit
        self.label_horizon_s = label_horizon_s
        self.orphan_grace_s = orphan_grace_s
        self.watermark = -math.inf
        self.stats = JoinStats()
        self.pending_predictions = 0
        self.pending_labels = 0
        # Every index entry due before this was deleted by the last expire(): its scan starts
        # here (not at the prefix, where RocksDB would step over the tombstones of the past).
        self._scan_from = -math.inf
        # The records of the current batch's ids read by prefetch(), kept up to date by every
        # write of the join, until expire() or restore(): None outside a batch.
        self._prefetched: dict[bytes, bytes | None] | None = None
        self._no_labels = False  # with _prefetched: no label record was in the store at prefetch()
        self.restore()

    # ------------------------------------------------------------------ persisted state

    def _meta(self) -> bytes:
        wm = self.watermark if math.isfinite(self.watermark) else None
        head = [_META_VERSION, wm, self.label_horizon_s, self.pending_predictions, self.pending_labels]
        return orjson.dumps([*head, *astuple(self.stats)])

    def restore(self) -> int:
        """Load the watermark, pending counts and counters from the store: after a restart, or
        after the staged writes of an aborted batch were discarded. Returns the pending records.

        O(1), except once for a store written without an expiry index (or with another label
        horizon): then its index is rebuilt from the records.
        """
        self._prefetched = None  # the staged writes may have been discarded under it
        raw = self.store.get(META)
        self._scan_from = -math.inf
        if raw is None:
            self.watermark = -math.inf
            self.stats = JoinStats()
            self.pending_predictions = self.pending_labels = 0
            if next(self.store.items(_PRED), None) or next(self.store.items(_LABEL), None):
                self._reindex()  # a store written before the index existed
            return self.pending_predictions + self.pending_labels
        meta = orjson.loads(raw)
        wm, horizon = meta[1], meta[2]
        self.watermark = -math.inf if wm is None else float(wm)
        self.pending_predictions, self.pending_labels = int(meta[3]), int(meta[4])
        self.stats = JoinStats(*(int(v) for v in meta[5:]))
        if horizon != self.label_horizon_s:
            self._reindex()  # windows.label_horizon changed: predictions expire by the new one
        return self.pending_predictions + self.pending_labels

    def _reindex(self) -> None:
        """Rebuild the expiry index and the pending counts by one scan of the records."""
        changes: dict[bytes, bytes | None] = {key: None for key, _ in self.store.items(_INDEX)}
        self.pending_predictions = self.pending_labels = 0
        for key, value in self.store.items(_PRED):
            rec = orjson.loads(value)
            changes[_index_key(rec[2] + self.label_horizon_s, key)] = b""
            self.pending_predictions += 1
            self.watermark = max(self.watermark, rec[2])
        for key, value in self.store.items(_LABEL):
            changes[_index_key(orjson.loads(value)[2], key)] = b""
            self.pending_labels += 1
        changes[META] = self._meta()
        self.store.write(changes)

    # ------------------------------------------------------------------ events

    def prefetch(self, prediction_ids: Iterable[str]) -> set[str]:
        """Read the records of a batch's ids (its predictions' and labels') in one store lookup.
        Returns the ids among them whose prediction is pending (the batch's duplicate check).

        The calls that follow (:meth:`contains_prediction`, :meth:`add_prediction`,
        :meth:`add_label`) read them from memory instead of one point lookup each, and
        decide exactly as without: every write of the join updates them, and
        :meth:`expire` (the end of the batch) or :meth:`restore` drops them. Ids not
        prefetched are read from the store as before.

        >>> j = Joiner(MemoryStore(), label_horizon_s=3600, orphan_grace_s=60)
        >>> j.prefetch(["a", "b"])
        set()
        >>> j.add_prediction(Prediction("a", "m", ts=10.0, score=0.9, predicted=1))
        []
        >>> j.contains_prediction("a"), j.contains_prediction("b")
        (True, False)
        """
        names = list(prediction_ids)
        ids = [pid.encode() for pid in names]
        keys = [_PRED + raw for raw in ids]
        if self.pending_labels:
            keys += [_LABEL + raw for raw in ids]
        values = self.store.get_many(keys)
        self._prefetched = dict(zip(keys, values, strict=True))
        # No label waits in the store (the count is kept exact): until the batch ends, every
        # label key the join has not written itself is absent, prefetched or not.
        self._no_labels = not self.pending_labels
        predictions = values[: len(names)]
        return {pid for pid, value in zip(names, predictions, strict=True) if value is not None}

    def _get(self, key: bytes) -> bytes | None:
        if self._prefetched is not None:
            value = self._prefetched.get(key, _UNREAD)
            if value is not _UNREAD:
                return value  # type: ignore[return-value]
            if self._no_labels and key.startswith(_LABEL):
                return None
        return self.store.get(key)

    def _write(self, changes: dict[bytes, bytes | None]) -> None:
        self.store.write(changes)
        if self._prefetched is not None:
            self._prefetched.update(changes)

    def contains_prediction(self, prediction_id: str) -> bool:
        return self._get(_PRED + prediction_id.encode()) is not None

    def add_prediction(self, p: Prediction, segments: tuple[tuple[str, str], ...] = ()) -> list[LabelDelta]:
        """Remember ``p``; if its label already waits, join now. Caller rejects duplicates first.

        ``segments``: the prediction's (field, value) pairs, kept so its label lands in the same segments.
        """
        return self.add_predictions([(p, segments)])

    def add_predictions(
        self, batch: Sequence[tuple[Prediction, tuple[tuple[str, str], ...]]]
    ) -> list[LabelDelta]:
        """:meth:`add_prediction` of each (prediction, segments) in order, as one store write.

        The ids must be distinct and not pending (the caller rejects duplicates first): then
        no prediction reads what another one of the batch writes, and writing the batch's
        changes at once equals writing them one prediction after the other.

        >>> j = Joiner(MemoryStore(), label_horizon_s=3600, orphan_grace_s=60)
        >>> j.add_label(Label("b", 0, ts=5.0))
        []
        >>> batch = [(Prediction("a", "m", ts=10.0, score=0.9, predicted=1), ()),
        ...          (Prediction("b", "m", ts=12.0, score=0.2, predicted=0), (("c", "DE"),))]
        >>> [(d.ts, d.label, d.sign, d.segments) for d in j.add_predictions(batch)]
        [(12.0, 0, 1, (('c', 'DE'),))]
        >>> j.pending_predictions, j.pending_labels, j.watermark
        (2, 0, 12.0)
        """
        return self.add_columns(
            [p.prediction_id for p, _ in batch],
            [p.model for p, _ in batch],
            [p.variant for p, _ in batch],
            [p.ts for p, _ in batch],
            [p.score for p, _ in batch],
            [p.predicted for p, _ in batch],
            [segments for _, segments in batch],
            [p.scores for p, _ in batch] if self.multiclass else None,
        )

    def add_columns(
        self,
        ids: Sequence[str],
        models: Sequence[str],
        variants: Sequence[str],
        times: Sequence[float],
        scores: Sequence[float],
        predicted: Sequence[int],
        segments: Sequence[tuple[tuple[str, str], ...]] | None = None,
        vectors: Sequence[list[float] | None] | None = None,
    ) -> list[LabelDelta]:
        """:meth:`add_predictions` of a batch given as columns (row i of each is one prediction).

        ``segments``: each row's (field, value) pairs (None: no row has any); ``vectors``: a
        multiclass model's probabilities per row (None: no multiclass model configured). The
        records and their expiry keys are built column by column and written at once; only
        rows whose label waits in the store take a step of their own.
        """
        n = len(ids)
        if not n:
            return []
        encoded = list(map(str.encode, ids))
        keys = [_PRED + pid for pid in encoded]
        expires = np.array(times, dtype=np.float64) + self.label_horizon_s
        order = sortable_many(expires)  # the expiry index keys' time part, 8 bytes each
        index_keys = [
            _INDEX + order[at : at + 8] + key for at, key in zip(range(0, 8 * n, 8), keys, strict=True)
        ]
        regression = self.regression
        multiclass = self.multiclass
        # label: -1 = none yet for a binary model, None for a regression model (whose score
        # is its value and whose label can be -1.0).
        labels: list[float | None] = (
            [None if m in regression else -1 for m in models] if regression else [-1] * n
        )
        # A multiclass model's record holds its scores vector (declared order) in place of the score.
        held_scores: Sequence[object] = scores
        if multiclass and vectors is not None:
            held_scores = [
                v if m in multiclass else s for v, s, m in zip(vectors, scores, models, strict=True)
            ]
        changes: dict[bytes, bytes | None] = {}
        out: list[LabelDelta] = []
        dropped = 0
        # No label waits in the store (the count is kept with every record change, and no
        # label is added meanwhile): no prediction of the batch can join one.
        if self.pending_labels > 0:
            prefetched = self._prefetched if self._prefetched is not None else {}
            get = self.store.get
            fit_labels = self._fit_labels
            for row, pid in enumerate(encoded):
                lkey = _LABEL + pid
                waiting = prefetched.get(lkey, _UNREAD)
                if waiting is _UNREAD:
                    waiting = get(lkey)
                if waiting is None:
                    continue
                held = orjson.loads(waiting)  # type: ignore[arg-type]
                changes[lkey] = None
                changes[_index_key(held[2], lkey)] = None
                model = models[row]
                fitted = self._fitted(model, held[0]) if fit_labels else held[0]
                if isinstance(fitted, Invalid):
                    if self.on_misfit is not None:
                        self.on_misfit(fitted)
                    dropped += 1
                    continue
                labels[row] = fitted
                out.append(
                    LabelDelta(
                        model,
                        variants[row],
                        times[row],
                        scores[row],
                        predicted[row],
                        fitted,
                        1,
                        segments[row] if segments is not None else (),
                        vectors[row] if vectors is not None else None,
                    )
                )
        # [model, variant, ts, score, predicted, label(, [field, value, ...])]: a few dozen bytes
        # (orjson writes a tuple as an array). The segment list is appended only for models
        # with segments; records without it (written before segments were configured) still
        # read, with no segment.
        rows = zip(models, variants, times, held_scores, predicted, labels, strict=True)
        if segments is not None:
            records = [
                (*row, [x for pair in segs for x in pair]) if segs else row
                for row, segs in zip(rows, segments, strict=True)
            ]
            packed = _pack_all(records)
        else:
            packed = _pack_all(rows)
        changes.update(zip(keys, packed, strict=True))
        changes.update(zip(index_keys, repeat(b"")))
        self._write(changes)
        joined = len(out)
        self.pending_labels -= joined + dropped
        self.stats.joined += joined
        self.pending_predictions += n
        first = float(expires.min())
        if first < self._scan_from:  # a late prediction, already due
            self._scan_from = first
        latest = max(times)
        if latest > self.watermark:
            self.watermark = latest
        return out

    def _fitted(self, model: str, label: float | str) -> float | Invalid:
        """``label`` as ``model``'s records hold it, or why it does not fit (a binary model's
        label is 0 or 1: today's reason and detail for any other, as its decoding gives; a
        multiclass model's one of its class names, held as its index)."""
        index = self.multiclass.get(model) if self.multiclass else None
        if index is not None:
            fitted = multiclass.check_class(label, index)
            if isinstance(fitted, multiclass.ScoreProblem):
                return Invalid(fitted.reason, fitted.detail, fitted.field)
            return fitted
        if isinstance(label, str):  # a class name for a model without classes
            kind = "regression_label" if model in self.regression else "label"
            bad = schema_error(kind, {"prediction_id": "-", "label": label, "ts": 0})
            return (
                bad if bad is not None else Invalid(WRONG_TYPE, f"label {label!r} is not a number", "label")
            )
        if model in self.regression:
            return float(label)
        if label == 0 or label == 1:
            return int(label)
        bad = schema_error("label", {"prediction_id": "-", "label": label, "ts": 0})
        return (
            bad if bad is not None else Invalid(SCHEMA_VIOLATION, f"label {label!r} is not 0 or 1", "label")
        )

    def _unlabelled(self, model: str, label: float | None) -> bool:
        """Whether a record's label field means "no label yet" (None, or -1 of a binary model)."""
        return label is None or (label == -1 and model not in self.regression)

    def add_label(self, lab: Label) -> list[LabelDelta] | Invalid:
        """Join ``lab`` to its prediction (or hold it); corrections retract the old label.

        An :class:`Invalid` when the label does not fit its prediction's model (only possible
        with a regression or multiclass model configured): nothing changes, the caller rejects
        the label.
        """
        key = _PRED + lab.prediction_id.encode()
        raw = self._get(key)
        if raw is None:
            lkey = _LABEL + lab.prediction_id.encode()
            held = self._get(lkey)
            changes: dict[bytes, bytes | None] = {}
            if held is None:
                self.pending_labels += 1
            else:  # repeated while held: the grace restarts
                changes[_index_key(orjson.loads(held)[2], lkey)] = None
            expires = max(self.watermark, lab.ts) + self.orphan_grace_s
            changes[lkey] = _pack([lab.label, lab.ts, expires])
            changes[_index_key(expires, lkey)] = b""
            self._write(changes)
            if expires < self._scan_from:
                self._scan_from = expires
            return []
        rec = orjson.loads(raw)
        model, variant, ts, score, predicted, old = rec[:6]
        if self._fit_labels:
            fitted = self._fitted(model, lab.label)
            if isinstance(fitted, Invalid):
                return fitted
            label: float = fitted
        else:  # 0 or 1: without regression or multiclass models the decoder admits nothing else
            label = lab.label  # type: ignore[assignment]
        scores = None
        if isinstance(score, list):  # a multiclass record: the vector, and the predicted class's score
            scores, score = score, score[predicted]
        flat = rec[6] if len(rec) > 6 else ()
        segments = tuple(zip(flat[::2], flat[1::2], strict=True))
        if old == label:
            self.stats.duplicate_labels += 1
            return []
        out = []
        if not self._unlabelled(model, old):
            self.stats.corrections += 1
            out.append(LabelDelta(model, variant, ts, score, predicted, old, -1, segments, scores))
        else:
            self.stats.joined += 1
        out.append(LabelDelta(model, variant, ts, score, predicted, label, 1, segments, scores))
        rec[5] = label
        self._write({key: _pack(rec)})
        return out

    def expire(self) -> tuple[int, int]:
        """Forget predictions past their horizon and count labels that waited in vain; store
        the counters (call it at the end of every batch, as the stage-1 processor does).

        Walks the expiry index from its start up to the watermark. Returns (expired
        predictions, newly orphaned labels).
        """
        self._prefetched = None  # the batch's events are in
        expired = orphaned = 0
        changes: dict[bytes, bytes | None] = {}
        wm = self.watermark
        if math.isfinite(wm):
            start = _index_key(self._scan_from, b"") if math.isfinite(self._scan_from) else None
            due: list[bytes] = []
            for ikey, _ in self.store.items(_INDEX, start):
                if unsortable(ikey[len(_INDEX) : _INDEX_AT]) > wm:
                    break
                key = ikey[_INDEX_AT:]
                changes[ikey] = None
                changes[key] = None
                if key.startswith(_PRED):
                    due.append(key)
                else:
                    orphaned += 1
            expired = len(due)
            for raw in self.store.get_many(due) if due else ():
                if raw is not None:
                    rec = orjson.loads(raw)
                    if self._unlabelled(rec[0], rec[5]):
                        self.stats.expired_unlabelled += 1
            self._scan_from = wm
        self.pending_predictions -= expired
        self.pending_labels -= orphaned
        self.stats.orphaned += orphaned
        changes[META] = self._meta()
        self.store.write(changes)
        return expired, orphaned
