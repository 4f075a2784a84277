"""Joining labels to the predictions they judge, days or weeks apart.

A prediction is kept (compactly) until its label horizon passes; a label looks its
prediction up by ``prediction_id`` and yields a :class:`LabelDelta` for the bucket
of the PREDICTION's event time. A second, different label is a correction: the old
contribution is retracted (sign -1) and the new one added. A label whose prediction
is unknown waits ``orphan_grace_s`` for it, then is counted as orphaned.

Time is the partition's prediction watermark (the largest prediction event time
seen), so a replay of the same partition makes the same decisions.

Storage is behind :class:`KeyValueStore`; :class:`MemoryStore` serves tests and
``streamon replay``, the runtime backs it with RocksDB. :class:`StagedStore` buffers
the writes of one batch so they reach the real store only after the Kafka
transaction that carries their effects has committed.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import orjson

from streamon.core.events import Label, Prediction

_PRED = b"p:"


def _pack(record: list[object]) -> bytes:
    """orjson bytes trimmed to size: orjson's result keeps a ~4 KB buffer per object, which
    held for every pending prediction costs gigabytes (measured in docs/benchmarks.md)."""
    return bytes(memoryview(orjson.dumps(record)))


_LABEL = b"l:"


class KeyValueStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def write(self, changes: dict[bytes, bytes | None]) -> None:
        """Apply puts (bytes) and deletes (None) atomically."""
        ...

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


class MemoryStore:
    """A dict-backed :class:`KeyValueStore`.

    >>> s = MemoryStore()
    >>> s.write({b"p:1": b"x"})
    >>> s.get(b"p:1"), list(s.items(b"p:"))
    (b'x', [(b'p:1', b'x')])
    """

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in list(self.data.items()):
            if key.startswith(prefix):
                yield key, value


class StagedStore:
    """Buffers writes over a base store until :meth:`commit` (or :meth:`discard`)."""

    def __init__(self, base: KeyValueStore) -> None:
        self.base = base
        self.pending: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.pending:
            return self.pending[key]
        return self.base.get(key)

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        self.pending.update(changes)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        seen = set()
        for key, value in self.base.items(prefix):
            seen.add(key)
            staged = self.pending.get(key, value) if key in self.pending else value
            if staged is not None:
                yield key, staged
        for key, staged in list(self.pending.items()):
            if key.startswith(prefix) and key not in seen and staged is not None:
                yield key, staged

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
    label: int
    sign: int
    # The prediction's segments as (field, value) pairs: named, so a label that arrives after
    # the config's segments were reordered or changed still lands in the right segments.
    segments: tuple[tuple[str, str], ...] = ()


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
    >>> j.add_prediction(Prediction("p1", "m", ts=10.0, score=0.9, predicted=1))
    [LabelDelta(model='m', variant='', ts=10.0, score=0.9, predicted=1, label=1, sign=1, segments=())]
    >>> [d.sign for d in j.add_label(Label("p1", 0, ts=20.0))]   # a correction
    [-1, 1]
    """

    def __init__(self, store: KeyValueStore, label_horizon_s: float, orphan_grace_s: float) -> None:
        self.store = store
        self.label_horizon_s = label_horizon_s
        self.orphan_grace_s = orphan_grace_s
        self.watermark = -math.inf
        self.stats = JoinStats()
        self.pending_predictions = 0
        self.pending_labels = 0
        # (expires_at, key) with lazy deletion: an entry is acted on only if the stored
        # record still carries the same expiry.
        self._expiry: list[tuple[float, bytes]] = []

    def restore(self) -> int:
        """Rebuild the in-memory expiry index from the store (after a restart). Returns records."""
        self._expiry = []
        self.pending_predictions = self.pending_labels = 0
        for key, value in self.store.items(_PRED):
            rec = orjson.loads(value)
            self._expiry.append((rec[2] + self.label_horizon_s, key))
            self.pending_predictions += 1
            self.watermark = max(self.watermark, rec[2])
        for key, value in self.store.items(_LABEL):
            rec = orjson.loads(value)
            self._expiry.append((rec[2], key))
            self.pending_labels += 1
        heapq.heapify(self._expiry)
        return self.pending_predictions + self.pending_labels

    # ------------------------------------------------------------------ events

    def contains_prediction(self, prediction_id: str) -> bool:
        return self.store.get(_PRED + prediction_id.encode()) is not None

    def add_prediction(self, p: Prediction, segments: tuple[tuple[str, str], ...] = ()) -> list[LabelDelta]:
        """Remember ``p``; if its label already waits, join now. Caller rejects duplicates first.

        ``segments``: the prediction's (field, value) pairs, kept so its label lands in the same segments.
        """
        key = _PRED + p.prediction_id.encode()
        label = -1
        out: list[LabelDelta] = []
        lkey = _LABEL + p.prediction_id.encode()
        waiting = self.store.get(lkey)
        changes: dict[bytes, bytes | None] = {}
        if waiting is not None:
            label = orjson.loads(waiting)[0]
            changes[lkey] = None
            self.pending_labels -= 1
            self.stats.joined += 1
            out.append(LabelDelta(p.model, p.variant, p.ts, p.score, p.predicted, label, 1, segments))
        # [model, variant, ts, score, predicted, label(, [field, value, ...])]: a few dozen bytes.
        # The segment list is appended only for models with segments; records without it
        # (written before segments were configured) still read, with no segment.
        rec: list[object] = [p.model, p.variant, p.ts, p.score, p.predicted, label]
        if segments:
            rec.append([x for pair in segments for x in pair])
        changes[key] = _pack(rec)
        self.store.write(changes)
        heapq.heappush(self._expiry, (p.ts + self.label_horizon_s, key))
        self.pending_predictions += 1
        self.watermark = max(self.watermark, p.ts)
        return out

    def add_label(self, lab: Label) -> list[LabelDelta]:
        """Join ``lab`` to its prediction (or hold it); corrections retract the old label."""
        key = _PRED + lab.prediction_id.encode()
        raw = self.store.get(key)
        if raw is None:
            lkey = _LABEL + lab.prediction_id.encode()
            if self.store.get(lkey) is None:
                self.pending_labels += 1
            expires = max(self.watermark, lab.ts) + self.orphan_grace_s
            self.store.write({lkey: _pack([lab.label, lab.ts, expires])})
            heapq.heappush(self._expiry, (expires, lkey))
            return []
        rec = orjson.loads(raw)
        model, variant, ts, score, predicted, old = rec[:6]
        flat = rec[6] if len(rec) > 6 else ()
        segments = tuple(zip(flat[::2], flat[1::2], strict=True))
        if old == lab.label:
            self.stats.duplicate_labels += 1
            return []
        out = []
        if old != -1:
            self.stats.corrections += 1
            out.append(LabelDelta(model, variant, ts, score, predicted, old, -1, segments))
        else:
            self.stats.joined += 1
        out.append(LabelDelta(model, variant, ts, score, predicted, lab.label, 1, segments))
        rec[5] = lab.label
        self.store.write({key: _pack(rec)})
        return out

    def expire(self) -> tuple[int, int]:
        """Forget predictions past their horizon and count labels that waited in vain.

        Returns (expired predictions, newly orphaned labels).
        """
        expired = orphaned = 0
        changes: dict[bytes, bytes | None] = {}
        while self._expiry and self._expiry[0][0] <= self.watermark:
            due, key = heapq.heappop(self._expiry)
            raw = changes.get(key, b"") if key in changes else self.store.get(key)
            if raw is None:
                continue
            rec = orjson.loads(raw)
            if key.startswith(_PRED):
                if rec[2] + self.label_horizon_s != due:
                    continue
                expired += 1
                self.pending_predictions -= 1
                if rec[5] == -1:
                    self.stats.expired_unlabelled += 1
            else:
                if rec[2] != due:
                    continue
                orphaned += 1
                self.pending_labels -= 1
            changes[key] = None
        if changes:
            self.store.write(changes)
        self.stats.orphaned += orphaned
        return expired, orphaned
