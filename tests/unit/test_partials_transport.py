"""Stage 1's output stays transportable: bounded partials that merge exactly, dead-letter provenance.

A batch spanning hours of event time touches a bucket per minute; its partial grew with
the span (1.4 kB a bucket) past what a Kafka producer accepts. ``Partial.to_messages``
splits it; merging the pieces must equal merging the whole, bit for bit.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections import Counter

import numpy as np
import orjson

from streamon.config import default_settings
from streamon.core.stages.join import MemoryStore
from streamon.core.stages.stage1 import Partial
from streamon.core.state.summary import BucketSummary
from streamon.engine import build_engine
from streamon.traffic import TrafficSpec, generate

LIMIT = 512 * 1024
KAFKA_DEFAULT_MAX = 1_000_000  # librdkafka's message.max.bytes


def _backlog_partials(n: int = 2000, days: float = 8.0, batch: int = 5000) -> tuple[object, list[Partial]]:
    """Partials of a backlog of ``n`` predictions (and their labels) over ``days``, one partition."""
    engine = build_engine(default_settings())
    span = days * 86400
    preds, labels = generate(TrafficSpec(n=n, rate=n / span, start=time.time() - span - 3600, seed=3))
    pp = engine.partition_processor(MemoryStore(), source="predictions:0")
    raw_p = [orjson.dumps(p) for p in preds]
    raw_l = [orjson.dumps(lab) for lab in labels]
    partials: list[Partial] = []
    for i in range(0, max(len(raw_p), len(raw_l)), batch // 2):
        assert pp.process(raw_p[i : i + batch // 2], raw_l[i : i + batch // 2]) == []
        partials.extend(pp.take_partials())
    return engine, partials


def _samples(engine: object, messages: list[bytes], at: float) -> list[tuple[str, tuple, float]]:
    agg = engine.aggregator()  # type: ignore[attr-defined]
    for m in messages:
        agg.apply(Partial.from_bytes(m))
    snap = agg.evaluate(at)
    return sorted((s.name, s.labels, s.value) for s in snap.samples)


def _same(a: list[tuple[str, tuple, float]], b: list[tuple[str, tuple, float]]) -> bool:
    return len(a) == len(b) and all(
        x[:2] == y[:2] and (x[2] == y[2] or (math.isnan(x[2]) and math.isnan(y[2])))
        for x, y in zip(a, b, strict=True)
    )


def test_split_partials_fit_the_limit_and_merge_exactly_like_the_whole() -> None:
    engine, partials = _backlog_partials()
    whole = [p.to_bytes() for p in partials]
    # The premise: unsplit, a batch of this backlog is more than a producer accepts.
    assert max(len(w) for w in whole) > KAFKA_DEFAULT_MAX
    split = [m for p in partials for m in p.to_messages(LIMIT)]
    assert len(split) > len(whole)
    assert max(len(m) for m in split) <= LIMIT
    at = max(p.watermark for p in partials)
    live, expected = _samples(engine, split, at), _samples(engine, whole, at)
    assert len(live) > 100
    assert _same(live, expected)
    # Every bucket lands in exactly one message, in the order of the whole partial.
    for p in partials:
        keys = [k for m in p.to_messages(LIMIT) for k in Partial.from_bytes(m).buckets]
        assert keys == list(p.buckets)


def test_each_piece_is_a_complete_partial_of_the_same_model_source_and_watermark() -> None:
    _, partials = _backlog_partials(n=800, days=3)
    p = max(partials, key=lambda q: len(q.buckets))
    pieces = [Partial.from_bytes(m) for m in p.to_messages(LIMIT)]
    assert len(pieces) > 1
    assert {(q.model, q.source, q.watermark) for q in pieces} == {(p.model, p.source, p.watermark)}


def test_a_small_partial_is_one_message_identical_to_the_documented_encoding() -> None:
    p = Partial("m", "predictions:3", 120.5)
    s = p.buckets[("default", 60.0)] = BucketSummary()
    s.add_predictions(np.array([0.2, 0.9]), np.array([0, 1]), score_bins=10)
    p.segments[("country", "DE", 60.0)] = s.copy()
    doc = {
        "v": 1,
        "model": "m",
        "source": "predictions:3",
        "wm": 120.5,
        "b": [["default", 60.0, s.to_bytes().hex()]],
        "g": [["country", "DE", 60.0, s.to_bytes().hex()]],
    }
    assert p.to_bytes() == orjson.dumps(doc)
    assert p.to_messages(LIMIT) == [p.to_bytes()]
    empty = Partial("m", "predictions:3", -math.inf)  # every model gets a partial, even empty
    assert empty.to_messages(LIMIT) == [empty.to_bytes()]
    assert Partial.from_bytes(empty.to_bytes()).watermark == -math.inf


def test_an_oversized_bucket_is_split_into_parts_that_sum_to_it() -> None:
    big = BucketSummary(category_cap=None)
    big.add_predictions(np.array([0.1, 0.7]), np.array([0, 1]), score_bins=200)
    big.add_categorical_feature("merchant", [f"{i:05d}-" + "m" * 150 for i in range(3000)])
    big.add_categorical_feature("city", ["a", "b", "a"])
    p = Partial("m", "predictions:0", 50.0)
    p.buckets[("default", 0.0)] = BucketSummary(counts={"predictions": np.array([1, 0])})
    p.buckets[("A", 60.0)] = big
    p.buckets[("default", 120.0)] = BucketSummary(counts={"predictions": np.array([2, 1])})
    assert len(p.to_bytes()) > 3 * 262144
    messages = p.to_messages(262144)
    assert max(len(m) for m in messages) <= 262144
    pieces = [Partial.from_bytes(m) for m in messages]
    keys = [k for q in pieces for k in q.buckets]
    assert keys[0] == ("default", 0.0) and keys[-1] == ("default", 120.0)  # order kept
    parts = [q.buckets[("A", 60.0)] for q in pieces if ("A", 60.0) in q.buckets]
    assert len(parts) > 3
    total = BucketSummary(category_cap=None)
    for part in parts:
        total += part
    assert total == big
    assert sum(total.categories["merchant"].values()) == 3000


def test_an_oversized_count_vector_is_split_into_vectors_that_sum_to_it() -> None:
    rng = np.random.default_rng(3)
    dense = BucketSummary(category_cap=None)
    # A fine score histogram (models[].score_bins allows 100,000 bins), nearly every bin hit.
    dense.add_predictions(rng.random(200_000), rng.integers(0, 2, 200_000), score_bins=100_000)
    p = Partial("m", "predictions:0", 50.0, buckets={("default", 0.0): dense})
    assert len(p.to_bytes()) > 2 * 262144
    messages = p.to_messages(262144)
    assert len(messages) > 2 and max(len(m) for m in messages) <= 262144
    total = BucketSummary(category_cap=None)
    for m in messages:
        total += Partial.from_bytes(m).buckets[("default", 0.0)]
    assert total == dense


def test_rejected_messages_carry_their_position_not_their_identity() -> None:
    engine = build_engine(default_settings())
    pp = engine.partition_processor(MemoryStore())
    now = time.time()
    good = orjson.dumps(
        {"prediction_id": "p1", "model": "fraud-detector", "ts": now - 60, "score": 0.4, "features": {}}
    )
    preds = [good, b"", b"x", b"", bytes([120]), b"{", b"x"]
    labels = [b"y", b"", b"y"]
    # CPython shares one object for b"" and for each 1-byte value: identity cannot tell them apart.
    assert preds[1] is preds[3] and preds[2] is preds[4] is preds[6]
    rejected = pp.process(preds, labels, now)
    where = [(r.topic, r.index) for r in rejected]
    assert where == [("predictions", i) for i in (1, 2, 3, 4, 5, 6)] + [("labels", i) for i in (0, 1, 2)]
    for r in rejected:
        assert r.raw is (preds if r.topic == "predictions" else labels)[r.index]
    assert Counter(r.reason for r in rejected) == {"invalid_json": 9}


def test_three_partitions_split_and_interleaved_equal_one_partition_whole() -> None:
    """What 1 and 3 workers send: the same metrics, pieces in any interleaving of sources."""
    engine = build_engine(default_settings())
    span = 8 * 86400
    preds, labels = generate(TrafficSpec(n=1500, rate=1500 / span, start=time.time() - span - 3600, seed=8))
    raw_p = [(p["prediction_id"], orjson.dumps(p)) for p in preds]
    raw_l = [(lab["prediction_id"], orjson.dumps(lab)) for lab in labels]

    def run(n_parts: int) -> list[list[bytes]]:
        per_source = []
        for part in range(n_parts):
            mine_p = [r for k, r in raw_p if zlib.crc32(k.encode()) % n_parts == part]
            mine_l = [r for k, r in raw_l if zlib.crc32(k.encode()) % n_parts == part]
            pp = engine.partition_processor(MemoryStore(), source=f"predictions:{part}")
            out: list[bytes] = []
            for i in range(0, max(len(mine_p), len(mine_l)), 1000):
                assert pp.process(mine_p[i : i + 1000], mine_l[i : i + 1000]) == []
                for partial in pp.take_partials():
                    out += partial.to_messages(LIMIT) if n_parts > 1 else [partial.to_bytes()]
            per_source.append(out)
        return per_source

    three, one = run(3), run(1)
    assert sum(len(s) for s in three) > 3  # split into several messages
    # Interleave the sources at random, each source's messages in order (one partials partition each).
    rng = random.Random(1)
    queues = [list(s) for s in three]
    mixed: list[bytes] = []
    while any(queues):
        mixed.append(rng.choice([q for q in queues if q]).pop(0))
    at = time.time() - 3600
    assert _same(_samples(engine, mixed, at), _samples(engine, one[0], at))
