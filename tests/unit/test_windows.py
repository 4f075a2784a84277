"""Windowed against a brute-force recomputation (exact integer oracle).

The windows as documented in streamon/core/state/windows.py, for event time ``now``:

* bucket of a delta: ``start = floor(ts / bucket) * bucket``;
* current window: ``start >= current_start`` where
  ``current_start = floor(now / bucket) * bucket - current + bucket``;
* reference window: ``start < current_start`` and its coarse (reference) bucket
  ``floor(start / reference_bucket) * reference_bucket >= current_start - reference``
  (whole reference buckets are kept or dropped);
* anything older is dropped, and counted in ``dropped`` when it arrives already too old.

The brute force re-sums every delta ever added; no tolerance (integers).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamon.core.state.windows import Windowed, floor_to


class Count:
    """The simplest mergeable: an integer."""

    def __init__(self, n: int = 0) -> None:
        self.n = n

    def __iadd__(self, other: Count) -> Count:
        self.n += other.n
        return self

    def __isub__(self, other: Count) -> Count:
        self.n -= other.n
        return self

    def copy(self) -> Count:
        return Count(self.n)


def brute_force(
    deltas: list[tuple[float, int]],
    now: float,
    bucket: float,
    current: float,
    reference: float,
    ref_bucket: float,
) -> tuple[int, int]:
    ref_bucket = max(ref_bucket, bucket)
    cur_start = math.floor(now / bucket) * bucket - current + bucket
    cur = ref = 0
    for ts, v in deltas:
        start = math.floor(ts / bucket) * bucket
        if start >= cur_start:
            cur += v
        elif reference > 0 and math.floor(start / ref_bucket) * ref_bucket >= cur_start - reference:
            ref += v
    return cur, ref


# (bucket, current, reference, reference_bucket): aligned and unaligned geometries.
GEOMETRIES = [
    (60.0, 600.0, 3600.0, 600.0),
    (60.0, 300.0, 1000.0, 240.0),  # reference not a multiple of its bucket
    (10.0, 10.0, 95.0, 30.0),  # current = one bucket
    (7.0, 49.0, 0.0, 14.0),  # no rolling reference (pinned profile)
    (60.0, 120.0, 600.0, 30.0),  # reference bucket smaller than bucket: raised to bucket
]


def make(geom: tuple[float, float, float, float]) -> Windowed[Count]:
    b, c, r, rb = geom
    return Windowed(Count, bucket_s=b, current_s=c, reference_s=r, reference_bucket_s=rb)


streams = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=20_000.0), st.integers(-5, 20)), min_size=1, max_size=150
)


@settings(max_examples=200, deadline=None)
@given(deltas=streams, geom=st.sampled_from(GEOMETRIES), jitter=st.floats(0.0, 3000.0))
def test_matches_brute_force_after_every_step(
    deltas: list[tuple[float, int]], geom: tuple[float, float, float, float], jitter: float
) -> None:
    """Out-of-order and late deltas: after every add the windows equal the brute force at ``w.now``."""
    w = make(geom)
    seen: list[tuple[float, int]] = []
    dropped = 0
    for ts, v in deltas:
        # A delta already too old for the current reference window is dropped and counted.
        if w.now is not None and ts <= w.now:
            cur_start = floor_to(w.now, w.bucket_s) - w.current_s + w.bucket_s
            start = floor_to(ts, w.bucket_s)
            too_old = start < cur_start and (
                geom[2] <= 0 or floor_to(start, w.reference_bucket_s) < cur_start - w.reference_s
            )
        else:
            too_old = False
        kept = w.add(ts, Count(v))
        assert kept is not too_old
        dropped += too_old
        seen.append((ts, v))
        assert w.now == max(t for t, _ in seen)
        assert (w.current.n, w.reference.n) == brute_force(seen, w.now, *geom)
    assert w.dropped == dropped
    # Advancing further (no new data) keeps matching, and never moves backwards.
    later = w.now + jitter
    w.advance(later)
    w.advance(later - 1.0)
    assert w.now == later
    assert (w.current.n, w.reference.n) == brute_force(seen, later, *geom)
    # The fine buckets hold exactly the current window, oldest first.
    starts = [s for s, _ in w.buckets()]
    assert starts == sorted(starts)
    assert sum(b.n for _, b in w.buckets()) == w.current.n


@settings(max_examples=100, deadline=None)
@given(
    deltas=streams, geom=st.sampled_from(GEOMETRIES), seed=st.integers(0, 2**32 - 1), extra=st.floats(0, 5000)
)
def test_final_state_independent_of_arrival_order(
    deltas: list[tuple[float, int]], geom: tuple[float, float, float, float], seed: int, extra: float
) -> None:
    now = max(t for t, _ in deltas) + extra
    results = []
    for order_seed in (None, seed, seed + 1):
        order = list(deltas)
        if order_seed is not None:
            random.Random(order_seed).shuffle(order)
        w = make(geom)
        for ts, v in order:
            w.add(ts, Count(v))
        w.advance(now)
        results.append((w.current.n, w.reference.n, sorted((s, b.n) for s, b in w.buckets())))
    assert results[0] == results[1] == results[2]
    assert results[0][:2] == brute_force(deltas, now, *geom)


def test_doc_example_and_dropped_count() -> None:
    w = Windowed(Count, bucket_s=60, current_s=120, reference_s=600, reference_bucket_s=60)
    for ts in (0, 30, 70, 130, 190):
        assert w.add(ts, Count(1))
    assert (w.current.n, w.reference.n) == (2, 3)  # current [120, 240), reference [-480, 120)
    w.advance(800.0)  # current [720, 840), reference [120, 720): the three oldest have expired
    assert (w.current.n, w.reference.n) == (0, 2)
    assert not w.add(100.0, Count(1))  # older than the reference window
    assert not w.add(119.9, Count(1))
    assert w.add(120.0, Count(1))  # first reference bucket
    assert w.dropped == 2
    assert (w.current.n, w.reference.n) == (0, 3)
    with pytest.raises(ValueError):
        Windowed(Count, bucket_s=60, current_s=30)
    with pytest.raises(ValueError):
        Windowed(Count, bucket_s=0, current_s=30)


def test_delta_is_copied_not_aliased() -> None:
    """The caller's delta object must not become a bucket (later mutation must not leak in)."""
    w = Windowed(Count, bucket_s=60, current_s=600, reference_s=600, reference_bucket_s=60)
    d = Count(5)
    w.add(10.0, d)
    d.n = 1000
    w.add(20.0, Count(1))
    w.advance(10_000.0)  # everything leaves both windows: subtracting the buckets must give exactly 0
    assert (w.current.n, w.reference.n) == (0, 0)
    assert w.n_buckets == 0


@pytest.mark.parametrize("geom", [(60.0, 3600.0, 6 * 3600.0, 600.0), (60.0, 600.0, 0.0, 3600.0)])
def test_memory_bounded_by_buckets_not_events(geom: tuple[float, float, float, float]) -> None:
    """1e5 events over ~2 days: kept buckets <= current/bucket + reference/reference_bucket + 2."""
    b, c, r, rb = geom
    bound = c / b + r / max(rb, b) + 2
    rng = np.random.default_rng(11)
    ts = np.sort(rng.uniform(0, 2 * 86400, 100_000))
    late = ts - rng.exponential(1800.0, ts.size) * (rng.random(ts.size) < 0.1)  # 10% late by ~30 min
    w = make(geom)
    peak = 0
    for i, t in enumerate(late.tolist()):
        w.add(t, Count(1))
        if i % 97 == 0:
            peak = max(peak, w.n_buckets)
            assert w.n_buckets <= bound
    peak = max(peak, w.n_buckets)
    assert peak <= bound
    assert w.n_buckets <= bound
    # And the numbers are still right at the end (brute force over all 1e5 deltas).
    assert (w.current.n, w.reference.n) == brute_force([(t, 1) for t in late.tolist()], w.now, *geom)
    assert w.current.n + w.reference.n + w.dropped <= late.size
