"""BucketSummary: exact mergeability (design.md §1 "every summary is MERGEABLE").

Everything in a summary is an integer count, so the oracles here are EXACT: the summary of a
whole batch must equal (``==``, no tolerance) the merge of the summaries of any split of it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamon.core.state.cardinality import bottom_k, stable_hash
from streamon.core.state.summary import (
    CONFUSION,
    FN,
    FORMAT_VERSION,
    FP,
    LATENCY,
    LATENCY_BUCKETS_S,
    MAX_CATEGORIES,
    MISSING,
    NEGATIVE_SCORES,
    OTHER,
    OUTCOMES_ADDED,
    POSITIVE_SCORES,
    SCORES,
    TN,
    TP,
    BucketSummary,
    merge_all,
)

SCORE_BINS = 20
CATS = ["a", "b", "c", "d", "e"]


@dataclass
class Row:
    score: float
    predicted: int
    latency_ms: float  # NaN = not reported
    x: float  # numeric feature, NaN = missing
    y: float  # second numeric feature with pinned edges
    cat: str | None  # categorical feature, None = missing
    label: int | None  # None = unlabelled
    sign: int  # +1 add, -1 retract (a corrected label)


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
rows = st.builds(
    Row,
    score=st.floats(min_value=0.0, max_value=1.0),
    predicted=st.integers(0, 1),
    latency_ms=st.one_of(st.just(float("nan")), st.floats(min_value=0.0, max_value=5000.0)),
    x=st.one_of(st.just(float("nan")), finite, st.sampled_from([0.0, -0.0, 1e-12, 1.0])),
    y=st.one_of(st.just(float("nan")), st.floats(min_value=-10, max_value=10)),
    cat=st.one_of(st.none(), st.sampled_from(CATS)),
    label=st.one_of(st.none(), st.integers(0, 1)),
    sign=st.sampled_from([1, 1, -1]),
)
EDGES = np.array([-5.0, 0.0, 2.5, 7.0])


def summarise(batch: list[Row]) -> BucketSummary:
    """One summary of ``batch``, added the way stage 1 adds a group of events."""
    s = BucketSummary()
    if not batch:
        return s
    scores = np.array([r.score for r in batch])
    predicted = np.array([r.predicted for r in batch])
    s.add_predictions(scores, predicted, SCORE_BINS, np.array([r.latency_ms for r in batch]))
    s.add_numeric_feature("x", np.array([r.x for r in batch]))
    s.add_numeric_feature("y", np.array([r.y for r in batch]), edges=EDGES)
    s.add_categorical_feature("cat", [r.cat for r in batch])
    for sign in (1, -1):
        lab = [r for r in batch if r.label is not None and r.sign == sign]
        if lab:
            s.add_labels(
                np.array([r.label for r in lab]),
                np.array([r.predicted for r in lab]),
                np.array([r.score for r in lab]),
                SCORE_BINS,
                sign=sign,
            )
    return s


def split(batch: list[Row], cuts: list[int]) -> list[list[Row]]:
    bounds = sorted({min(c, len(batch)) for c in cuts} | {0, len(batch)})
    return [batch[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(rows, max_size=60), cuts=st.lists(st.integers(0, 60), max_size=5))
def test_summary_of_whole_batch_equals_merge_of_any_split(batch: list[Row], cuts: list[int]) -> None:
    whole = summarise(batch)
    parts = [summarise(p) for p in split(batch, cuts)]
    assert merge_all(parts) == whole  # exact: integer counts
    # The parts are not modified by the merge.
    assert [summarise(p) for p in split(batch, cuts)] == parts


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(rows, max_size=40), perm_seed=st.integers(0, 2**32 - 1), k=st.integers(1, 5))
def test_merge_order_independent(batch: list[Row], perm_seed: int, k: int) -> None:
    parts = [summarise(batch[i::k]) for i in range(k)]
    order = np.random.default_rng(perm_seed).permutation(k)
    forward = merge_all(parts)
    shuffled = merge_all(parts[i] for i in order)
    assert forward == shuffled
    # Pairwise commutativity of the binary operator too.
    assert parts[0] + parts[-1] == parts[-1] + parts[0]
    # Associativity: (a + b) + c == a + (b + c).
    a, b, c = parts[0], parts[len(parts) // 2], parts[-1]
    assert (a + b) + c == a + (b + c)


@settings(max_examples=100, deadline=None)
@given(a_rows=st.lists(rows, max_size=40), b_rows=st.lists(rows, max_size=40))
def test_add_then_subtract_is_identity(a_rows: list[Row], b_rows: list[Row]) -> None:
    a, b = summarise(a_rows), summarise(b_rows)
    before = a.copy()
    assert (a + b) - b == a
    c = a.copy()
    c += b
    c -= b
    assert c == before
    assert a == before and b == summarise(b_rows)  # + and - do not mutate their operands


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(rows, max_size=60), cuts=st.lists(st.integers(0, 60), max_size=3))
def test_wire_round_trip(batch: list[Row], cuts: list[int]) -> None:
    s = merge_all(summarise(p) for p in split(batch, cuts))
    data = s.to_bytes()
    assert data[0] == FORMAT_VERSION
    back = BucketSummary.from_bytes(data)
    assert back == s
    assert back.to_bytes() == BucketSummary.from_bytes(back.to_bytes()).to_bytes()
    # The decoded summary is fully functional: merging it behaves like the original.
    assert back + s == s + s


def test_equality_is_not_vacuous() -> None:
    """A one-count difference anywhere makes summaries unequal (so the properties above can fail)."""
    base = summarise([Row(0.3, 0, 12.0, 1.0, 1.0, "a", 1, 1)])
    variants = [
        [Row(0.9, 0, 12.0, 1.0, 1.0, "a", 1, 1)],  # score bin
        [Row(0.3, 1, 12.0, 1.0, 1.0, "a", 1, 1)],  # predicted
        [Row(0.3, 0, 99.0, 1.0, 1.0, "a", 1, 1)],  # latency
        [Row(0.3, 0, 12.0, 50.0, 1.0, "a", 1, 1)],  # sketch
        [Row(0.3, 0, 12.0, 1.0, 8.0, "a", 1, 1)],  # pinned bin
        [Row(0.3, 0, 12.0, 1.0, 1.0, "b", 1, 1)],  # category
        [Row(0.3, 0, 12.0, 1.0, 1.0, "a", 0, 1)],  # label
        [Row(0.3, 0, 12.0, 1.0, 1.0, "a", 1, -1)],  # sign
        [Row(0.3, 0, 12.0, float("nan"), 1.0, "a", 1, 1)],  # missing
    ]
    for v in variants:
        assert summarise(v) != base, v


def test_counts_of_a_known_batch() -> None:
    batch = [
        Row(0.05, 0, 0.5, 1.0, -6.0, "a", 0, 1),  # TN
        Row(0.95, 1, 3.0, float("nan"), 0.0, None, 1, 1),  # TP
        Row(0.60, 1, float("nan"), -2.0, 2.5, "b", 0, 1),  # FP
        Row(0.40, 0, 2500.0, 0.0, 100.0, "a", 1, 1),  # FN
        Row(0.40, 0, 1.0, 0.0, float("nan"), "a", 1, -1),  # retracted FN
        Row(1.00, 1, 1.0, 3.0, 7.0, "c", None, 1),  # unlabelled
    ]
    s = summarise(batch)
    assert s.n_predictions == 6 and s.n_predicted_positive == 3
    conf = s.counts[CONFUSION].tolist()
    assert conf[TP] == 1 and conf[FP] == 1 and conf[TN] == 1 and conf[FN] == 0  # FN added then retracted
    assert s.counts[OUTCOMES_ADDED].tolist() == [1, 1, 1, 1]  # only additions feed the counter
    assert s.counts[SCORES].sum() == 6 and s.counts[SCORES][SCORE_BINS - 1] == 2  # 0.95 and 1.0
    assert s.counts[POSITIVE_SCORES].sum() == 1 and s.counts[NEGATIVE_SCORES].sum() == 2
    assert s.counts["missing:x"].tolist() == [1, 6]
    assert s.sketches["x"].count == 5
    # Pinned edges [-5, 0, 2.5, 7]: bins (-inf,-5) [-5,0) [0,2.5) [2.5,7) [7,inf); a value on an edge goes up.
    assert s.counts["bins:y"].tolist() == [1, 0, 1, 1, 2]
    assert s.categories["cat"] == Counter({"a": 3, "b": 1, "c": 1, MISSING: 1})


def test_unsupported_version_byte_raises() -> None:
    s = summarise([Row(0.5, 1, 3.0, 1.0, 1.0, "a", 1, 1)])
    data = s.to_bytes()
    for bad in (bytes([FORMAT_VERSION + 1]) + data[1:], bytes([0]) + data[1:], b""):
        with pytest.raises(ValueError, match="unsupported summary format"):
            BucketSummary.from_bytes(bad)


def test_categorical_cap_folds_into_other() -> None:
    s = BucketSummary()
    values = [f"v{i}" for i in range(MAX_CATEGORIES + 250)]
    s.add_categorical_feature("cat", values)
    counter = s.categories["cat"]
    assert len(counter) == MAX_CATEGORIES + 1  # the cap plus OTHER
    assert counter[OTHER] == 250
    assert sum(counter.values()) == len(values)  # nothing lost
    # The kept values are the bottom-K by stable hash, whatever the arrival order.
    kept = bottom_k(values, MAX_CATEGORIES)
    assert set(counter) - {OTHER} == kept
    # A kept value keeps counting; a folded one keeps folding; missing is never folded.
    inside = min(kept, key=stable_hash)
    outside = max(values, key=stable_hash)
    s.add_categorical_feature("cat", [inside, outside, None, None])
    assert counter[inside] == 2 and counter[OTHER] == 251 and counter[MISSING] == 2
    assert outside not in counter
    # Round trip keeps the folded counts.
    assert BucketSummary.from_bytes(s.to_bytes()).categories["cat"] == counter


def test_categorical_cap_is_split_invariant() -> None:
    values = [f"v{i}" for i in range(MAX_CATEGORIES + 10)]
    whole = BucketSummary()
    whole.add_categorical_feature("cat", values)
    parts = [BucketSummary(), BucketSummary()]
    parts[0].add_categorical_feature("cat", values[::2])
    parts[1].add_categorical_feature("cat", values[1::2])
    assert merge_all(parts) == whole


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.sampled_from([f"c{i}" for i in range(40)] + [None]), min_size=1, max_size=300),
    cap=st.integers(min_value=1, max_value=12),
    n_parts=st.integers(min_value=1, max_value=5),
    data=st.data(),
)
def test_truncate_of_merge_is_truncate_of_whole(
    values: list[str | None], cap: int, n_parts: int, data: st.DataObject
) -> None:
    """truncate(merge(truncate(part) for part in split)) == truncate(whole), for any split."""
    owner = data.draw(st.lists(st.integers(0, n_parts - 1), min_size=len(values), max_size=len(values)))
    whole = BucketSummary(category_cap=cap)
    whole.add_categorical_feature("cat", values)
    parts = [BucketSummary(category_cap=cap) for _ in range(n_parts)]
    for part_index, part in enumerate(parts):
        # Each part in several small batches: truncation after every batch composes too.
        mine = [v for v, o in zip(values, owner, strict=True) if o == part_index]
        for i in range(0, len(mine), 7):
            part.add_categorical_feature("cat", mine[i : i + 7])
    order = data.draw(st.permutations(range(n_parts)))
    merged = BucketSummary(category_cap=cap)
    for i in order:
        merged += parts[i]
    assert merged == whole
    # Uncapped exact sums, capped when read, agree as well (how window aggregates work).
    exact = BucketSummary(category_cap=None)
    for part in parts:
        exact += part
    assert exact.capped(cap) == whole
    assert sum(whole.categories["cat"].values()) == len(values)


@settings(max_examples=60, deadline=None)
@given(
    lat=st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=10_000.0),
            st.sampled_from([b * 1000.0 for b in LATENCY_BUCKETS_S]),  # exactly on a bound: le is inclusive
            st.just(float("nan")),
        ),
        min_size=1,
        max_size=200,
    )
)
def test_latency_histogram_matches_numpy(lat: list[float]) -> None:
    arr = np.array(lat)
    s = BucketSummary()
    s.add_predictions(np.full(len(arr), 0.5), np.zeros(len(arr)), SCORE_BINS, arr)
    present = arr[~np.isnan(arr)]
    if len(present) == 0:
        assert LATENCY not in s.counts or not s.counts[LATENCY].any()
        return
    vec = s.counts[LATENCY]
    hist, total_us, count = vec[:-2], int(vec[-2]), int(vec[-1])
    assert len(hist) == len(LATENCY_BUCKETS_S) + 1
    # Prometheus "le" buckets: cumulative count of values <= bound (exact integer oracle).
    expected_cum = [int(np.count_nonzero(present <= b * 1000.0)) for b in LATENCY_BUCKETS_S]
    assert np.cumsum(hist)[:-1].tolist() == expected_cum
    assert int(hist.sum()) == count == len(present)
    # Sum in whole microseconds: each value rounds by at most 0.5 us.
    assert abs(total_us - present.sum() * 1000.0) <= 0.5 * len(present) + 1e-6 * present.sum()
