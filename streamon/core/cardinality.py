"""Cardinality caps on values that come from data: the bottom-K-by-stable-hash rule.

A value (a category, a variant, a segment) keeps its own name in a summary iff it is
among the ``k`` values with the smallest stable hash of the values present in that
summary; every other value is folded into ``OTHER``. The rule looks at values only,
never at arrival order, so it commutes with merging: a value kept in the whole is
kept in every part (a part's values are a subset), and a value folded in a part has
``k`` smaller-hash values in that part, hence in the whole. Truncating each part and
again after merging therefore gives exactly the truncation of the whole, for any
split of the events between partitions, flushes or workers.

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


@lru_cache(maxsize=1 << 16)
def stable_hash(value: str) -> int:
    """64-bit blake2b of ``value``; the same on every worker and every run.

    >>> stable_hash("a") == stable_hash("a"), 0 <= stable_hash("b") < 2**64
    (True, True)
    """
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


def _rank(value: str) -> tuple[int, str]:
    return stable_hash(value), value  # the value breaks (astronomically rare) hash ties


def bottom_k(values: Iterable[str], k: int) -> set[str]:
    """The ``k`` values of ``values`` with the smallest stable hash (exempt values not counted).

    >>> kept = bottom_k([f"v{i}" for i in range(10)], 3)
    >>> len(kept), kept <= bottom_k([f"v{i}" for i in range(20)], 3) | kept
    (3, True)
    """
    candidates = [v for v in values if v not in EXEMPT]
    if len(candidates) <= k:
        return set(candidates)
    return set(heapq.nsmallest(k, candidates, key=_rank))


def fold_counter(counter: Counter[str], k: int) -> int:
    """Fold the values of ``counter`` outside its bottom-``k`` into OTHER; returns the count folded.

    >>> c = Counter({f"v{i}": 1 for i in range(5)})
    >>> fold_counter(c, 3), c[OTHER], len(c)
    (2, 2, 4)
    """
    if len(counter) <= k or sum(1 for v in counter if v not in EXEMPT) <= k:
        return 0
    kept = bottom_k(counter, k)
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
    the newcomer hashes smaller; the caller folds the displaced value's state into OTHER.
    The final set is the bottom-``k`` of every value ever offered, whatever the order.

    >>> b = BottomK(2)
    >>> for v in ("a", "b", "c", "d", "a"):
    ...     _ = b.offer(v)
    >>> b.kept == bottom_k(["a", "b", "c", "d"], 2)
    True
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.kept: set[str] = set()
        self._heap: list[tuple[int, str]] = []  # max-heap by hash (negated); ties (p ~ 2**-64) aside

    def offer(self, value: str) -> tuple[bool, str | None]:
        """(is ``value`` kept, the value it displaced or None)."""
        if value in EXEMPT or value in self.kept:
            return True, None
        h = stable_hash(value)
        if len(self.kept) < self.k:
            self.kept.add(value)
            heapq.heappush(self._heap, (-h, value))
            return True, None
        worst_h, worst_v = -self._heap[0][0], self._heap[0][1]
        if h >= worst_h:
            return False, None
        heapq.heapreplace(self._heap, (-h, value))
        self.kept.discard(worst_v)
        self.kept.add(value)
        return True, worst_v
