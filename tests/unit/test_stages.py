"""The key invariant of design.md §1: global metrics do not depend on how many workers made them.

A stream (generated traffic with drift, delayed labels, label corrections, two A/B arms) is
processed by ONE stage-1 :class:`PartitionProcessor`, and by THREE (events split by a hash of
``prediction_id``, so a prediction and its labels share a partition). The partials are applied to
a stage-2 :class:`Aggregator` in order (1 partition) or in a shuffled, interleaved order (3
partitions). ``Aggregator.evaluate(now).samples`` must be IDENTICAL (exact float equality,
NaN == NaN) at every checkpoint: every summary is integer counts, so there is no tolerance.

Windows: current 6h, reference 1d, 5-minute buckets (stage-2 cost grows with the bucket count;
this keeps the module at a few seconds); ~10k predictions over ~25 h of event time, drift from hour 17.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest

from streamon.config import Settings
from streamon.core.stages.evaluate import Snapshot
from streamon.core.stages.stage1 import Partial, PartitionProcessor
from streamon.core.stages.stage2 import Aggregator
from streamon.core.state.summary import BucketSummary
from streamon.engine import Engine, build_engine
from streamon.traffic import TrafficSpec, generate

SLICE_S = 1800.0  # one stage-1 batch = 30 min of event time
HOUR = 3600.0
MODEL = "fraud-detector"


def settings() -> Settings:
    return Settings.from_dict(
        {
            "models": [
                {
                    "name": MODEL,
                    "features": [
                        {"name": "transaction_amount", "type": "numeric"},
                        {"name": "merchant_category", "type": "categorical"},
                        {"name": "transaction_hour", "type": "numeric"},
                        {"name": "days_since_last_transaction", "type": "numeric"},
                    ],
                }
            ],
            "windows": {"bucket": "5m", "current": "6h", "reference": "1d"},
        }
    )


@dataclass
class Stream:
    predictions: list[dict[str, Any]]
    labels: list[dict[str, Any]]  # including corrections
    start: float
    end: float  # last prediction time
    last: float  # last event time (labels come after the last prediction)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine(settings())


@pytest.fixture(scope="module")
def stream() -> Stream:
    spec = TrafficSpec(
        n=10_000,
        rate=0.1125,  # ~24.7 h of event time
        variants=("A", "B"),
        label_fraction=0.85,
        label_delay_s=HOUR,
        drift_at=17 * HOUR,
        drift=("sudden", "degrade", "categorical", "missing"),
        seed=21,
    )
    preds, labels = generate(spec)
    rng = random.Random(5)
    # Corrections: a second, flipped label for some predictions, hours later.
    corrections = [
        {"prediction_id": lab["prediction_id"], "label": 1 - lab["label"], "ts": lab["ts"] + 2 * HOUR}
        for lab in rng.sample(labels, 300)
    ]
    # And some identical repeats (duplicates, a no-op).
    repeats = [dict(lab, ts=lab["ts"] + 60.0) for lab in rng.sample(labels, 100)]
    # Labels that would arrive after the last prediction are left out, so the end of the stream is
    # both the last event and the last prediction (the current window then holds recent predictions).
    end = preds[-1]["ts"]
    all_labels = sorted((e for e in labels + corrections + repeats if e["ts"] <= end), key=lambda e: e["ts"])
    return Stream(preds, all_labels, preds[0]["ts"], end, max(end, all_labels[-1]["ts"]))


def partition_of(pid: str, n: int) -> int:
    return zlib.crc32(pid.encode()) % n


def slices(stream: Stream) -> dict[float, list[tuple[str, bytes, str | None]]]:
    """Slice end -> [(kind "p"/"l", raw bytes, prediction_id)] of the 30-min slice, in event-time order."""
    events: list[tuple[float, int, str, bytes, str]] = []
    for p in stream.predictions:
        events.append((p["ts"], 0, "p", orjson.dumps(p), p["prediction_id"]))
    for lab in stream.labels:
        events.append((lab["ts"], 1, "l", orjson.dumps(lab), lab["prediction_id"]))
    events.sort(key=lambda e: (e[0], e[1]))
    out: dict[float, list[tuple[str, bytes, str | None]]] = {}
    for ts, _, kind, raw, pid in events:
        end = (math.floor((ts - stream.start) / SLICE_S) + 1) * SLICE_S + stream.start
        out.setdefault(end, []).append((kind, raw, pid))
    return out


def run_stage1(
    engine: Engine,
    stream: Stream,
    n_partitions: int,
    salt: dict[float, list[tuple[str, bytes, int]]] | None = None,
) -> tuple[list[tuple[float, list[Partial]]], list[Any]]:
    """Stage 1 over the stream: per slice end, the partials of all partitions; plus all rejections."""
    procs = [engine.partition_processor(source=f"predictions:{i}") for i in range(n_partitions)]
    out: list[tuple[float, list[Partial]]] = []
    rejected: list[Any] = []
    for end, evs in sorted(slices(stream).items()):
        batches: list[tuple[list[bytes], list[bytes]]] = [([], []) for _ in procs]
        for kind, raw, pid in evs:
            part = partition_of(pid, n_partitions) if pid is not None else 0
            batches[part][0 if kind == "p" else 1].append(raw)
        for kind, raw, part in (salt or {}).get(end, []):
            batches[part % n_partitions][0 if kind == "p" else 1].append(raw)
        partials: list[Partial] = []
        for proc, (preds, labs) in zip(procs, batches, strict=True):
            rejected.extend(proc.process(preds, labs))
            partials.extend(proc.take_partials())
        out.append((end, partials))
    return out, rejected


def checkpoints(stream: Stream) -> list[float]:
    """Evaluation times: before the drift, mid-drift, the end, and later (windows expire).

    Each is at or after the watermark of every partial applied before it (an evaluation time
    below a source's watermark is not order independent: see test_variant_windows_share_one_clock).
    """
    return [stream.start + 10 * HOUR, stream.start + 20 * HOUR, stream.last, stream.last + 20 * HOUR]


def evaluate_run(
    engine: Engine, stage1: list[tuple[float, list[Partial]]], times: list[float], shuffle_seed: int | None
) -> list[Snapshot]:
    """Apply the partials (optionally shuffled within each checkpoint segment) and evaluate at ``times``."""
    agg = engine.aggregator()
    rng = random.Random(shuffle_seed)
    snaps = []
    i = 0
    for t in times:
        segment: list[Partial] = []
        while i < len(stage1) and stage1[i][0] <= t:
            segment.extend(stage1[i][1])
            i += 1
        if t >= times[-2]:  # the end: everything left
            while i < len(stage1):
                segment.extend(stage1[i][1])
                i += 1
        if shuffle_seed is not None:
            rng.shuffle(segment)
        for partial in segment:
            agg.apply(partial)
        snaps.append(agg.evaluate(t))
    return snaps


def as_dict(snap: Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for s in snap.samples:
        key = (s.name, s.labels)
        assert key not in out, f"duplicate series {key}"
        out[key] = s.value
    for h in snap.histograms:
        out[(h.name + "_count", h.labels)] = float(h.count)
        out[(h.name + "_sum", h.labels)] = h.sum
        for le, c in zip(h.upper_bounds, h.cumulative_counts, strict=True):
            out[(h.name + "_bucket", (*h.labels, ("le", repr(le))))] = float(c)
    return out


def assert_identical(a: Snapshot, b: Snapshot) -> None:
    """Exact equality of every series, NaN == NaN (no tolerance: integer summaries)."""
    da, db = as_dict(a), as_dict(b)
    assert da.keys() == db.keys()
    diff = {
        k: (da[k], db[k]) for k in da if not (da[k] == db[k] or (math.isnan(da[k]) and math.isnan(db[k])))
    }
    assert not diff, f"{len(diff)} series differ, e.g. {list(diff.items())[:5]}"


def value(snap: Snapshot, name: str, **labels: str) -> float:
    return snap.value(name, model=MODEL, **labels)


@pytest.fixture(scope="module")
def one_partition(engine: Engine, stream: Stream) -> list[tuple[float, list[Partial]]]:
    stage1, rejected = run_stage1(engine, stream, 1)
    assert rejected == []
    return stage1


@pytest.fixture(scope="module")
def clean_snapshots(engine: Engine, stream: Stream, one_partition: list[tuple[float, list[Partial]]]):
    return evaluate_run(engine, one_partition, checkpoints(stream), shuffle_seed=None)


def test_three_partitions_equal_one(
    engine: Engine, stream: Stream, one_partition: list[tuple[float, list[Partial]]], clean_snapshots
) -> None:
    three, rejected = run_stage1(engine, stream, 3)
    assert rejected == []
    times = checkpoints(stream)
    shuffled = evaluate_run(engine, three, times, shuffle_seed=1)
    for t, a, b in zip(times, clean_snapshots, shuffled, strict=True):
        assert len(a.samples) > 150, t
        assert_identical(a, b)

    # A fully random order of every partial (through the wire format) gives the same final numbers.
    every = [Partial.from_bytes(p.to_bytes()) for _, parts in three for p in parts]
    random.Random(2).shuffle(every)
    agg = engine.aggregator()
    for p in every:
        agg.apply(p)
    assert_identical(clean_snapshots[2], agg.evaluate(times[2]))

    # The numbers are meaningful (drift and degradation are visible, windows are populated) ...
    end = clean_snapshots[2]
    assert value(end, "ml_data_drift_psi_score", variant="all", feature="transaction_amount") > 0.2
    assert value(end, "streamon_labelled_in_window", variant="all", window="current") > 500
    acc_cur = value(end, "ml_model_accuracy", variant="all", window="current")
    assert acc_cur < value(end, "ml_model_accuracy", variant="all", window="reference")
    before = clean_snapshots[0]
    assert value(before, "ml_data_drift_psi_score", variant="all", feature="transaction_amount") < 0.1
    later = clean_snapshots[3]
    assert value(later, "streamon_predictions_in_window", variant="all", window="current") == 0
    ref_later = value(later, "streamon_predictions_in_window", variant="all", window="reference")
    ref_end = value(end, "streamon_predictions_in_window", variant="all", window="reference")
    assert (
        0
        < ref_later
        < ref_end + value(end, "streamon_predictions_in_window", variant="all", window="current")
    )

    # ... and partition-local statistics are NOT the global ones (so this test can fail):
    # the PSI of one third of the traffic differs from the PSI of all of it.
    local = engine.aggregator()
    for _, parts in three:
        for p in parts:
            if p.source == "predictions:0":
                local.apply(p)
    local_snap = local.evaluate(times[2])
    key = {"variant": "all", "feature": "transaction_amount"}
    assert value(local_snap, "ml_data_drift_psi_score", **key) != value(end, "ml_data_drift_psi_score", **key)


def test_variant_windows_share_one_clock(engine: Engine) -> None:
    t = 1_767_225_600.0 + 30 * HOUR

    def one_prediction() -> BucketSummary:
        s = BucketSummary()
        s.add_predictions(np.array([0.9]), np.array([1]), 200)
        return s

    def run(first: str, second: str) -> dict[str, float]:
        agg = engine.aggregator()
        agg.apply(Partial(MODEL, "predictions:1", -math.inf))  # a source with no prediction yet
        agg.apply(Partial(MODEL, "predictions:0", t, {(first, t - 7 * HOUR): one_prediction()}))
        agg.apply(Partial(MODEL, "predictions:1", t, {(second, t - 7 * HOUR): one_prediction()}))
        snap = agg.evaluate(t - 6.5 * HOUR)
        return {
            v: value(snap, "streamon_predictions_in_window", variant=v, window="current") for v in ("A", "B")
        }

    assert run("A", "B") == run("B", "A")


def test_partial_wire_round_trip(one_partition: list[tuple[float, list[Partial]]]) -> None:
    n = 0
    for _, parts in one_partition[::7]:
        for p in parts:
            back = Partial.from_bytes(p.to_bytes())
            assert (back.model, back.source, back.watermark) == (p.model, p.source, p.watermark)
            assert back.buckets.keys() == p.buckets.keys()
            for k in p.buckets:
                assert back.buckets[k] == p.buckets[k]
                n += 1
    assert n > 20
    empty = Partial(MODEL, "predictions:9", -math.inf)
    back = Partial.from_bytes(empty.to_bytes())
    assert back.watermark == -math.inf and back.buckets == {}
    doc = orjson.loads(empty.to_bytes())
    doc["v"] = 99
    with pytest.raises(ValueError, match="unsupported partial version"):
        Partial.from_bytes(orjson.dumps(doc))


def _bad_inputs(stream: Stream) -> tuple[dict[float, list[tuple[str, bytes, int]]], Counter[tuple[str, str]]]:
    """Bad messages salted into the slices, and the (topic, reason) counts they must produce."""
    rng = random.Random(9)
    ends = sorted(slices(stream))
    good = stream.predictions[100]
    bad: list[tuple[str, bytes, str]] = [
        ("p", b"{not json", "invalid_json"),
        ("p", b"", "invalid_json"),
        ("p", b"[1, 2]", "not_an_object"),
        (
            "p",
            orjson.dumps({k: v for k, v in good.items() if k != "ts"} | {"prediction_id": "x1"}),
            "missing_field",
        ),
        (
            "p",
            orjson.dumps({k: v for k, v in good.items() if k != "score"} | {"prediction_id": "x2"}),
            "missing_field",
        ),
        ("p", orjson.dumps(good | {"prediction_id": "x3", "score": 1.5}), "score_out_of_range"),
        ("p", orjson.dumps(good | {"prediction_id": "x4", "score": -0.1}), "score_out_of_range"),
        ("p", orjson.dumps(good | {"prediction_id": "x5", "model": "no-such-model"}), "unknown_model"),
        ("p", orjson.dumps(good | {"prediction_id": "x6", "score": "0.5"}), "wrong_type"),
        (
            "p",
            orjson.dumps(
                good | {"prediction_id": "x7", "features": {**good["features"], "transaction_amount": "12"}}
            ),
            "wrong_type",
        ),
        ("l", b"{{", "invalid_json"),
        ("l", orjson.dumps({"label": 1, "ts": good["ts"]}), "missing_field"),
        ("l", orjson.dumps({"prediction_id": "x8", "label": "1", "ts": good["ts"]}), "wrong_type"),
    ]
    salt: dict[float, list[tuple[str, bytes, int]]] = {}
    expected: Counter[tuple[str, str]] = Counter()
    for i, (kind, raw, reason) in enumerate(bad * 3):
        end = ends[rng.randrange(len(ends))]
        salt.setdefault(end, []).append((kind, raw, i))
        expected[("predictions" if kind == "p" else "labels", reason)] += 1
    # Duplicate prediction_ids (different content) after the original: in a later batch and in the same batch.
    for k, p in enumerate(stream.predictions[200:2000:150]):
        end = (math.floor((p["ts"] - stream.start) / SLICE_S) + 1) * SLICE_S + stream.start
        later = end if k % 2 else ends[min(ends.index(end) + 3, len(ends) - 1)]
        dup = orjson.dumps(p | {"score": 0.999, "features": {**p["features"], "transaction_amount": 1e6}})
        salt.setdefault(later, []).append(("p", dup, partition_of(p["prediction_id"], 3)))
        expected[("predictions", "duplicate_prediction")] += 1
    return salt, expected


def test_bad_input_rejected_and_metrics_equal_clean_stream(
    engine: Engine, stream: Stream, clean_snapshots: list[Snapshot]
) -> None:
    salt, expected = _bad_inputs(stream)
    three, rejected = run_stage1(engine, stream, 3, salt=salt)
    got = Counter(("predictions" if r.topic == "predictions" else "labels", r.reason) for r in rejected)
    assert got == expected
    # Each rejection keeps the original bytes for the dead-letter topic.
    salted = {raw for evs in salt.values() for _, raw, _ in evs}
    assert all(r.raw in salted for r in rejected)
    assert all(r.detail for r in rejected)
    shuffled = evaluate_run(engine, three, checkpoints(stream), shuffle_seed=3)
    for a, b in zip(clean_snapshots, shuffled, strict=True):
        assert_identical(a, b)


def test_processor_counts(engine: Engine, stream: Stream) -> None:
    proc: PartitionProcessor = engine.partition_processor()
    preds = [orjson.dumps(p) for p in stream.predictions[:3000]]
    labs = [orjson.dumps(lab) for lab in stream.labels if lab["ts"] <= stream.predictions[2999]["ts"]]
    assert proc.process(preds, labs) == []
    assert proc.counts.predictions == 3000 and proc.counts.labels == len(labs)
    stats = proc.joiner.stats
    assert (
        stats.joined > 1000 and stats.duplicate_labels > 0 and stats.corrections > 0 and stats.orphaned == 0
    )
    parts = proc.take_partials()
    assert [p.model for p in parts] == [MODEL]
    assert sum(s.n_predictions for s in parts[0].buckets.values()) == 3000
    assert {v for v, _ in parts[0].buckets} == {"A", "B"}
    assert proc.take_partials()[0].buckets == {}  # handed over: the next flush starts afresh


def test_aggregator_ignores_unknown_model(engine: Engine) -> None:
    agg: Aggregator = engine.aggregator()
    agg.apply(Partial("someone-else", "predictions:0", 100.0))
    assert agg.evaluate(100.0).samples == []
