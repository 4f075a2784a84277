"""Cardinality caps on values that come from data: the bottom-K-by-stable-hash rule.

A value (a category, a variant, a segment) keeps its own name in a summary iff it is
among the ``k`` values with the smallest stable hash of the values present in that
summary; every other value is folded into ``OTHER``. The rule looks at values only,
never at arrival order, so it commutes with merging: a value kept in the whole is
kept in every part (a part's values are a subset), and a value folded in a part has
``k`` smaller-hash values in that part, hence in the whole. Truncating each part and
again after merging therefore gives exactly the truncation of the whole, for any
split of the events between partitions, flushes or workers.

Values that matter are PROTECTED: those named in the config (a variant or segment
allowlist), the default variant, and the categories of the reference profile. A protected
value present in a summary is always kept, and takes one of the ``k`` slots; the remaining
slots go to the bottom-K by hash of the other values. A part holding fewer protected values
keeps more of the others, but each of those has at least as many smaller-hash others in the
whole, so the truncation of the merged parts is still exactly the truncation of the whole:
junk values cannot evict a protected one, whatever their hashes, and the rule still depends
on the set of values only.

The hash is blake2b (8 bytes), stable across processes and Python versions (Python's
``hash()`` of a string is salted per process).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

OTHER = "__other__"
MISSING = "__missing__"
# Never capped: MISSING is a bin of its own, OTHER is where the folded values go.
EXEMPT = frozenset({OTHER, MISSING})
# The variant of predictions that name none: the model's own series, always protected.
DEFAULT_VARIANT = "default"
NOTHING: frozenset[str] = frozenset()


@lru_cache(maxsize=1 << 16)
def stable_hash(value: str) -> int:
    """64-bit blake2b of ``value``; the same on every worker and every run.

    >>> stable_hash("a") == stable_hash("a"), 0 <= stable_hash("b") < 2**64
    (True, True)
    """
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


def _rank(value: str) -> tuple[int, str]:
    return stable_hash(value), value  # the value breaks (astronomically rare) hash ties


def bottom_k(values: Iterable[str], k: int, protected: frozenset[str] = NOTHING) -> set[str]:
    """The values kept under a cap of ``k``: the ``protected`` ones present, then the others with
    the smallest stable hash in the slots left (exempt values not counted).

    >>> kept = bottom_k([f"v{i}" for i in range(10)], 3)
    >>> len(kept), kept <= bottom_k([f"v{i}" for i in range(20)], 3) | kept
    (3, True)
    >>> kept = bottom_k([f"v{i}" for i in range(1000)] + ["real"], 3, frozenset({"real"}))
    >>> len(kept), "real" in kept, kept - {"real"} == bottom_k([f"v{i}" for i in range(1000)], 2)
    (3, True, True)
    """
    if protected:
        values = list(values)
        present = {v for v in values if v in protected and v not in EXEMPT}
        candidates = {v for v in values if v not in EXEMPT and v not in protected}
        k = max(k - len(present), 0)
    else:
        present = set()
        candidates = {v for v in values if v not in EXEMPT}
    if len(candidates) <= k:
        return present.union(candidates)
    return present.union(heapq.nsmallest(k, candidates, key=_rank))


def fold_counter(counter: Counter[str], k: int, protected: frozenset[str] = NOTHING) -> int:
    """Fold the values of ``counter`` outside its bottom-``k`` into OTHER; returns the count folded.

    >>> c = Counter({f"v{i}": 1 for i in range(5)})
    >>> fold_counter(c, 3), c[OTHER], len(c)
    (2, 2, 4)
    """
    if len(counter) <= k or sum(1 for v in counter if v not in EXEMPT) <= k:
        return 0
    kept = bottom_k(counter, k, protected)
    folded = 0
    for value in [v for v in counter if v not in kept and v not in EXEMPT]:
        folded += counter.pop(value)
    if folded:
        counter[OTHER] += folded
    return folded


def admit(value: str, allowed: frozenset[str] | None) -> str:
    """``value`` itself when an explicit allowlist admits it (or there is none), else OTHER.

    >>> admit("x", frozenset({"x"})), admit("y", frozenset({"x"})), admit("y", None)
    ('x', '__other__', 'y')
    """
    if allowed is None or value in allowed or value == MISSING:
        return value
    return OTHER


class BottomK:
    """The kept set of one key space that only grows (stage 2's variants or segment values).

    :meth:`offer` admits a value, and names the value it displaces when the set is full and
    the newcomer hashes smaller (or is protected); the caller folds the displaced value's
    state into OTHER. The final set is :func:`bottom_k` of every value ever offered,
    whatever the order.

    >>> b = BottomK(2, protected=frozenset({"z"}))
    >>> for v in ("a", "b", "c", "z", "d", "a"):
    ...     _ = b.offer(v)
    >>> b.kept == bottom_k(["a", "b", "c", "d", "z"], 2, frozenset({"z"}))
    True
    """

    def __init__(self, k: int, protected: frozenset[str] = NOTHING) -> None:
        self.k = k
        self.protected = protected
        self.kept: set[str] = set()
        self._present = 0  # protected values kept: each takes a slot from the others
        self._heap: list[tuple[int, str]] = []  # max-heap by hash (negated); ties (p ~ 2**-64) aside

    def offer(self, value: str) -> tuple[bool, str | None]:
        """(is ``value`` kept, the value it displaced or None)."""
        if value in EXEMPT or value in self.kept:
            return True, None
        if value in self.protected:
            self.kept.add(value)
            self._present += 1
            if len(self._heap) > max(self.k - self._present, 0):  # one slot fewer for the others
                _, worst_v = heapq.heappop(self._heap)
                self.kept.discard(worst_v)
                return True, worst_v
            return True, None
        h = stable_hash(value)
        if len(self._heap) < self.k - self._present:
            self.kept.add(value)
            heapq.heappush(self._heap, (-h, value))
            return True, None
        if not self._heap:
            return False, None
        worst_h, worst_v = -self._heap[0][0], self._heap[0][1]
        if h >= worst_h:
            return False, None
        heapq.heapreplace(self._heap, (-h, value))
        self.kept.discard(worst_v)
        self.kept.add(value)
        return True, worst_v
