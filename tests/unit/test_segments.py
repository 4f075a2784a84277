"""Segment monitoring: per-segment metrics are global (1 vs 3 partitions identical) and correct.

The stream of tests/unit/test_stages.py (drift, delayed labels, corrections, two A/B arms)
gets two extra feature keys: ``country`` (6 values, some events without it) and
``merchant_id`` (~300 values, capped at 10 segments), both segment fields. Oracles:

- split invariance: every exported series (segment ones included) is EXACTLY equal for
  1 partition and 3 partitions applied in a shuffled order (integer summaries, no tolerance);
- sklearn on the events of each country segment in the current window: accuracy,
  precision, recall, F1 exactly (to 1e-12); AUC-ROC to 0.01 (the summary's AUC comes from
  a 200-bin score histogram, ties within a bin counting half);
- the capped field keeps the bottom-10 values by stable hash of all values seen, and
  ``__other__`` holds exactly the remaining events.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from streamon.config import Settings
from streamon.core.stages.evaluate import Snapshot
from streamon.core.stages.join import Joiner, MemoryStore
from streamon.core.stages.stage1 import Partial
from streamon.core.state.cardinality import MISSING, OTHER, bottom_k
from streamon.core.state.windows import floor_to
from streamon.engine import Engine, build_engine
from tests.unit.test_stages import (
    HOUR,
    MODEL,
    Stream,
    assert_identical,
    checkpoints,
    evaluate_run,
    run_stage1,
)
from tests.unit.test_stages import stream as base_stream  # noqa: F401  (the module fixture)

COUNTRIES = ["DE", "FR", "US", "BR", "IN", "JP"]
MERCHANT_CAP = 10
BUCKET = 900.0


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
                    "segments": [
                        {"field": "country"},
                        {"field": "merchant_id", "max_values": MERCHANT_CAP},
                    ],
                }
            ],
            # 15-minute buckets (test_stages uses 5): a window per segment value costs stage-2 time.
            "windows": {"bucket": "15m", "current": "6h", "reference": "1d"},
        }
    )


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine(settings())


@pytest.fixture(scope="module")
def stream(base_stream: Stream) -> Stream:  # noqa: F811
    rng = random.Random(8)
    preds = []
    for p in base_stream.predictions:
        features = dict(p["features"])
        if rng.random() > 0.03:  # some events carry no country: the __missing__ segment
            features["country"] = COUNTRIES[zlib.crc32(p["prediction_id"].encode()) % len(COUNTRIES)]
        features["merchant_id"] = f"m{rng.randrange(300)}"
        preds.append(dict(p, features=features))
    return Stream(preds, base_stream.labels, base_stream.start, base_stream.end, base_stream.last)


@pytest.fixture(scope="module")
def one(engine: Engine, stream: Stream) -> list[Snapshot]:
    stage1, rejected = run_stage1(engine, stream, 1)
    assert rejected == []
    return evaluate_run(engine, stage1, checkpoints(stream), shuffle_seed=None)


def segment_values(snap: Snapshot, field: str) -> set[str]:
    return {
        dict(s.labels)["segment"]
        for s in snap.series("streamon_segment_predictions_in_window")
        if dict(s.labels)["segment_field"] == field
    }


def test_segment_metrics_three_partitions_equal_one(
    engine: Engine, stream: Stream, one: list[Snapshot]
) -> None:
    three, rejected = run_stage1(engine, stream, 3)
    assert rejected == []
    times = checkpoints(stream)
    shuffled = evaluate_run(engine, three, times, shuffle_seed=3)
    for a, b in zip(one, shuffled, strict=True):
        assert_identical(a, b)
    # Both regimes are covered: below the cap (countries) and above it (merchant ids) ...
    end = one[2]
    assert segment_values(end, "country") == {*COUNTRIES, MISSING}
    merchants = segment_values(end, "merchant_id")
    assert len(merchants) == MERCHANT_CAP + 1 and OTHER in merchants
    # ... and the segment series are there for every family.
    assert len([s for s in end.samples if s.name.startswith("streamon_segment_")]) > 200

    # Every partial through the wire format, in a random order: the same final numbers.
    every = [Partial.from_bytes(p.to_bytes()) for _, parts in three for p in parts]
    random.Random(4).shuffle(every)
    agg = engine.aggregator()
    for p in every:
        agg.apply(p)
    assert_identical(end, agg.evaluate(times[2]))


def _window_events(stream: Stream, now: float) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Predictions in the current window at ``now`` and the final label of each prediction."""
    lo = floor_to(now, BUCKET) - 6 * HOUR + BUCKET
    preds = [p for p in stream.predictions if lo <= floor_to(p["ts"], BUCKET) <= now]
    final: dict[str, int] = {}
    for lab in stream.labels:  # in time order: the last one wins (corrections)
        final[lab["prediction_id"]] = lab["label"]
    return preds, final


def test_segment_performance_matches_sklearn(stream: Stream, one: list[Snapshot]) -> None:
    end, now = one[2], checkpoints(stream)[2]
    preds, final = _window_events(stream, now)
    checked = 0
    for country in COUNTRIES:
        mine = [p for p in preds if p["features"].get("country") == country]
        labelled = [p for p in mine if p["prediction_id"] in final]
        y = np.array([final[p["prediction_id"]] for p in labelled])
        yhat = np.array([int(p["score"] >= 0.5) for p in labelled])
        scores = np.array([p["score"] for p in labelled])
        key = {"model": MODEL, "segment_field": "country", "segment": country, "window": "current"}
        assert end.value("streamon_segment_predictions_in_window", **key) == len(mine)
        assert end.value("streamon_segment_labelled_in_window", **key) == len(labelled)
        pos_rate = np.mean([p["score"] >= 0.5 for p in mine])
        assert end.value("streamon_segment_positive_rate", **key) == pytest.approx(pos_rate, abs=1e-12)
        assert len(labelled) >= 50  # above min_samples: the metrics are defined
        oracle = {
            "streamon_segment_accuracy": accuracy_score(y, yhat),
            "streamon_segment_precision": precision_score(y, yhat, zero_division=0),
            "streamon_segment_recall": recall_score(y, yhat, zero_division=0),
            "streamon_segment_f1_score": f1_score(y, yhat, zero_division=0),
        }
        for name, expected in oracle.items():
            assert end.value(name, **key) == pytest.approx(expected, abs=1e-12), (country, name)
        auc = roc_auc_score(y, scores)
        assert end.value("streamon_segment_auc_roc", **key) == pytest.approx(auc, abs=0.01)
        checked += 1
    assert checked == len(COUNTRIES)


def test_capped_segment_other_holds_exactly_the_rest(stream: Stream, one: list[Snapshot]) -> None:
    end, now = one[2], checkpoints(stream)[2]
    preds, final = _window_events(stream, now)
    # Stage 2 keeps the bottom-K of every value seen so far (not just of this window).
    kept = bottom_k({p["features"]["merchant_id"] for p in stream.predictions}, MERCHANT_CAP)
    assert segment_values(end, "merchant_id") == {*kept, OTHER}
    counts = Counter(p["features"]["merchant_id"] for p in preds)
    labelled = Counter(p["features"]["merchant_id"] for p in preds if p["prediction_id"] in final)

    def get(name: str, segment: str) -> float:
        return end.value(name, model=MODEL, segment_field="merchant_id", segment=segment)

    for value in kept:
        assert get("streamon_segment_predictions_in_window", value) == counts[value]
        assert get("streamon_segment_labelled_in_window", value) == labelled[value]
    rest = sum(n for v, n in counts.items() if v not in kept)
    assert rest > 0
    assert get("streamon_segment_predictions_in_window", OTHER) == rest
    assert get("streamon_segment_labelled_in_window", OTHER) == sum(
        n for v, n in labelled.items() if v not in kept
    )
    # Overflow counter: every prediction ever attributed to __other__ (lifetime, not windowed).
    lifetime_rest = sum(1 for p in stream.predictions if p["features"]["merchant_id"] not in kept)
    overflow = end.value("streamon_cardinality_overflow_total", model=MODEL, label="segment:merchant_id")
    assert overflow == lifetime_rest
    assert end.value("streamon_cardinality_overflow_total", model=MODEL, label="segment:country") == 0


def test_segment_drift_uses_the_segments_own_reference(stream: Stream, one: list[Snapshot]) -> None:
    before, end = one[0], one[2]
    key = {"model": MODEL, "segment_field": "country", "segment": "DE", "feature": "transaction_amount"}
    # Drift starts at hour 17: visible in a segment at the end, not before.
    assert end.value("streamon_segment_drift_psi_score", **key) > 0.2
    assert before.value("streamon_segment_drift_psi_score", **key) < 0.1
    # Below min_samples (100 predictions) drift is NaN, like the model's own.
    small = {**key, "segment": MISSING}
    n_missing = end.value(
        "streamon_segment_predictions_in_window", model=MODEL, segment_field="country", segment=MISSING
    )
    assert n_missing < 100
    assert math.isnan(end.value("streamon_segment_drift_psi_score", **small))
    # Score PSI is exported too.
    score_key = {**key, "feature": "score"}
    assert end.value("streamon_segment_drift_psi_score", **score_key) >= 0.0


def test_join_record_carries_segments_and_reads_old_records() -> None:
    from streamon.core.events import Label, Prediction

    store = MemoryStore()
    j = Joiner(store, label_horizon_s=3600, orphan_grace_s=60)
    j.add_prediction(
        Prediction("p1", "m", ts=10.0, score=0.9, predicted=1), (("country", "DE"), ("shop", "m7"))
    )
    [delta] = j.add_label(Label("p1", 1, ts=20.0))
    assert delta.segments == (("country", "DE"), ("shop", "m7"))
    retract, add = j.add_label(Label("p1", 0, ts=30.0))  # a correction keeps the segments
    assert retract.segments == add.segments == (("country", "DE"), ("shop", "m7"))
    # A record written without segments (before they were configured) still joins.
    store.write({b"p:old": b'["m","",10.0,0.9,1,-1]'})
    [old] = j.add_label(Label("old", 1, ts=20.0))
    assert old.segments == () and old.label == 1


def test_pending_labels_land_in_their_segments_after_the_segments_config_changes() -> None:
    """Join records name their segment fields: reordering or dropping a field is safe."""
    from streamon.core.profile import ModelSpec, SegmentSpec
    from streamon.core.stages.stage1 import PartitionProcessor

    store = MemoryStore()
    before = ModelSpec("m", segments=[SegmentSpec("country"), SegmentSpec("shop")])
    pp = PartitionProcessor({"m": before}, store, bucket_s=60)
    preds = [
        orjson.dumps({"prediction_id": f"p{i}", "model": "m", "ts": 61, "score": 0.9,
                      "features": {"country": "DE" if i < 3 else "FR", "shop": "s1"}})
        for i in range(5)
    ]  # fmt: skip
    assert pp.process(preds, [], now=None) == []
    pp.take_partials()
    # The labels arrive after a restart with the fields reordered and "country" removed.
    after = ModelSpec("m", segments=[SegmentSpec("region"), SegmentSpec("shop")])
    pp = PartitionProcessor({"m": after}, store, bucket_s=60)
    labels = [orjson.dumps({"prediction_id": f"p{i}", "label": 1, "ts": 90}) for i in range(5)]
    assert pp.process([], labels, now=None) == []
    [partial] = pp.take_partials()
    assert {(f, v): s.confusion.tolist() for (f, v, _), s in partial.segments.items()} == {
        ("shop", "s1"): [5, 0, 0, 0]
    }
