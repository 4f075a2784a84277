"""Event-time windows over any mergeable summary, built once and reused everywhere.

A :class:`Windowed` keeps a ring of fine buckets (default 1 minute) for the ``current``
window and coarser buckets (default 1 hour) for the rolling ``reference`` window just
before it. The two window aggregates are maintained incrementally: a bucket is added
to ``current`` when data for it arrives, moved to ``reference`` when it leaves the
current window, and subtracted when it leaves the reference window. Evaluating a
window is therefore O(1) in the number of buckets, and memory is bounded by the
number of buckets, never by the number of events.

Late data (a label weeks after its prediction) is added to the bucket of its event
time, wherever that bucket now is; data older than the reference window is dropped
and counted in :attr:`Windowed.dropped`.

Because ``now`` only moves forward, the final aggregates depend only on the set of
deltas and the final ``now``, not on the order the deltas arrived in: the property
that makes 1 worker and N workers agree.

Fine buckets are copies of the deltas merged into them (so they keep the deltas' own
merge rules, e.g. a cardinality cap); the window aggregates and the coarse reference
buckets, which are maintained by subtraction, are made by ``factory`` (which may make
an exact, uncapped summary: subtracting a bucket from a capped sum would not undo it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar


class Mergeable(Protocol):
    # ``Any`` rather than Self: mypy cannot apply in-place operators through a bound TypeVar.
    def __iadd__(self, other: Any, /) -> Any: ...
    def __isub__(self, other: Any, /) -> Any: ...
    def copy(self) -> Any: ...


S = TypeVar("S", bound=Mergeable)


def _plus(a: S, b: S) -> S:
    a += b  # type: ignore[operator]  # mypy cannot see __iadd__ through a bound TypeVar
    return a


def _minus(a: S, b: S) -> S:
    a -= b  # type: ignore[operator]
    return a


def floor_to(ts: float, step: float) -> float:
    """Start of the ``step``-long bucket holding ``ts``.

    >>> floor_to(125.0, 60.0)
    120.0
    """
    return math.floor(ts / step) * step


class Windowed(Generic[S]):
    """Current + rolling reference windows of a mergeable summary.

    >>> from collections import Counter
    >>> class Count:
    ...     def __init__(self, n=0): self.n = n
    ...     def __iadd__(self, o): self.n += o.n; return self
    ...     def __isub__(self, o): self.n -= o.n; return self
    ...     def copy(self): return Count(self.n)
    >>> w = Windowed(Count, bucket_s=60, current_s=120, reference_s=3600, reference_bucket_s=600)
    >>> for ts in (0, 30, 70, 130, 190):
    ...     _ = w.add(ts, Count(1))
    >>> w.current.n, w.reference.n   # now=190: current = [120, 240), reference = [..., 120)
    (2, 3)
    """

    def __init__(
        self,
        factory: Callable[[], S],
        bucket_s: float = 60.0,
        current_s: float = 86400.0,
        reference_s: float = 7 * 86400.0,
        reference_bucket_s: float = 3600.0,
    ) -> None:
        if bucket_s <= 0 or current_s < bucket_s:
            raise ValueError("bucket must be positive and no longer than the current window")
        self.factory = factory
        self.bucket_s = float(bucket_s)
        self.current_s = float(current_s)
        self.reference_s = float(reference_s)
        self.reference_bucket_s = float(max(reference_bucket_s, bucket_s))
        self.current: S = factory()
        self.reference: S = factory()
        self.now: float | None = None
        self.dropped = 0  # deltas older than the reference window
        self._fine: dict[float, S] = {}
        self._coarse: dict[float, S] = {}

    # ------------------------------------------------------------------ bounds

    @property
    def current_start(self) -> float:
        """First bucket start inside the current window."""
        assert self.now is not None
        return floor_to(self.now, self.bucket_s) - self.current_s + self.bucket_s

    @property
    def reference_start(self) -> float:
        """Oldest reference-bucket start still kept (rounded to the reference bucket)."""
        return self.current_start - self.reference_s

    # ------------------------------------------------------------------ updates

    def add(self, ts: float, delta: S) -> bool:
        """Add ``delta`` to the bucket of event time ``ts``. False if it was too old to keep."""
        if self.now is None or ts > self.now:
            self.advance(ts)
        start = floor_to(ts, self.bucket_s)
        if start >= self.current_start:
            bucket = self._fine.get(start)
            if bucket is None:
                self._fine[start] = delta.copy()
            else:
                bucket = _plus(bucket, delta)
            self.current = _plus(self.current, delta)
            return True
        coarse = floor_to(start, self.reference_bucket_s)
        if self.reference_s > 0 and coarse >= self.reference_start:
            kept = self._coarse.get(coarse)
            if kept is None:
                kept = self._coarse[coarse] = self.factory()
            kept = _plus(kept, delta)
            self.reference = _plus(self.reference, delta)
            return True
        self.dropped += 1
        return False

    def advance(self, now: float) -> None:
        """Move the windows forward to event time ``now`` (never backwards)."""
        if self.now is not None and now <= self.now:
            return
        self.now = float(now)
        lo = self.current_start
        for start in sorted(s for s in self._fine if s < lo):
            bucket = self._fine.pop(start)
            self.current = _minus(self.current, bucket)
            if self.reference_s <= 0:
                continue
            coarse = floor_to(start, self.reference_bucket_s)
            kept = self._coarse.get(coarse)
            if kept is None:
                kept = self._coarse[coarse] = self.factory()
            kept = _plus(kept, bucket)
            self.reference = _plus(self.reference, bucket)
        ref_lo = self.reference_start
        for coarse in [c for c in self._coarse if c < ref_lo]:
            self.reference = _minus(self.reference, self._coarse.pop(coarse))

    def would_change(self, now: float) -> bool:
        """True if :meth:`advance` to ``now`` would move or drop a bucket (change an aggregate).

        Monotonic in ``now``: once true it stays true for every later ``now``. Replay uses it
        to skip evaluations that could not see anything new.
        """
        if self.now is not None and now <= self.now:
            return False
        lo = floor_to(now, self.bucket_s) - self.current_s + self.bucket_s  # = current_start at now
        if self._fine and min(self._fine) < lo:
            return True
        return bool(self._coarse) and min(self._coarse) < lo - self.reference_s

    # ------------------------------------------------------------------ reading

    def fine(self, start: float) -> S | None:
        """The fine bucket starting at ``start``, if the current window holds one."""
        return self._fine.get(start)

    def every_bucket(self) -> list[tuple[float, S]]:
        """Coarse reference buckets, then fine ones, each oldest first: adding them all to an
        empty window at the same ``now`` rebuilds this one (how a window is folded into another)."""
        return sorted(self._coarse.items()) + sorted(self._fine.items())

    def buckets(self) -> Iterator[tuple[float, S]]:
        """Fine buckets of the current window, oldest first."""
        for start in sorted(self._fine):
            yield start, self._fine[start]

    @property
    def n_buckets(self) -> int:
        return len(self._fine) + len(self._coarse)
