"""Data integrity per feature: exact counts through stage 1 and stage 2, split invariance, caps.

Hand-built streams with known anomalies (values outside the reference's range, unseen
categories, wrong types, undeclared keys, a feature that disappears) go through stage 1
(:class:`PartitionProcessor`), are merged by stage 2 (:class:`Aggregator`) and evaluated; every
ratio is checked against the count computed from the raw events (exact: integer counts). The
same stream split over 3 partitions gives identical samples. Against a rolling reference the
out-of-range count comes from the sketches: checked against numpy within the stated bound.
"""

from __future__ import annotations

import math
import random
import zlib
from typing import Any

import numpy as np
import orjson
import pytest

from streamon.core.catalogue import METRICS
from streamon.core.events import Decoder, Prediction
from streamon.core.profile import (
    FeatureSpec,
    ModelSpec,
    SegmentSpec,
    build_profile,
    profile_from_bytes,
    profile_to_bytes,
)
from streamon.core.stages.evaluate import EvalSettings, Snapshot
from streamon.core.stages.join import MemoryStore
from streamon.core.stages.stage1 import Partial, PartitionProcessor
from streamon.core.stages.stage2 import Aggregator, WindowSettings
from streamon.core.state.cardinality import OTHER, bottom_k
from streamon.core.state.sketch import LogSketch
from streamon.core.state.summary import merge_all
from streamon.core.statistics import integrity
from streamon.core.statistics.integrity import (
    ABSENT,
    KEYS,
    MAX_UNEXPECTED_KEYS,
    NAMES,
    OUT_OF_RANGE_RATIO,
    REJECTED,
    UNEXPECTED_KEY_RATIO,
    UNSEEN_CATEGORY_RATIO,
    WRONG_TYPE_RATIO,
    sketch_out_of_range,
)

MODEL = "m"
HOUR = 3600.0
T0 = 100 * 86400.0  # event times: the reference hour [T0, T0 + 1h), the current hour after it
WINDOWS = WindowSettings(bucket_s=60.0, current_s=HOUR, reference_s=HOUR, reference_bucket_s=600.0)
SETTINGS = EvalSettings(current_s=HOUR, min_drift_samples=50, estimation_enabled=False)
FEATURES = [
    FeatureSpec("amount", "numeric"),
    FeatureSpec("hour", "numeric"),
    FeatureSpec("country", "categorical"),
]


def spec(**kw: Any) -> ModelSpec:
    return ModelSpec(MODEL, features=list(FEATURES), segments=[SegmentSpec("channel")], **kw)


def event(i: int, ts: float, features: dict[str, Any], variant: str = "") -> dict[str, Any]:
    e: dict[str, Any] = {"prediction_id": f"p{i}", "model": MODEL, "ts": ts, "score": (i % 100) / 100}
    if variant:
        e["variant"] = variant
    e["features"] = features
    return e


def reference_events(n: int = 400, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        f = {
            "amount": round(rng.lognormvariate(3, 1), 2),
            "hour": rng.randrange(24),
            "country": rng.choice(["DE", "FR", "IT"]),
            "channel": rng.choice(["web", "app"]),
        }
        out.append(event(i, T0 + i * HOUR / n, f, rng.choice(["A", "B"])))
    return out


def current_events(n: int = 600, seed: int = 2) -> list[dict[str, Any]]:
    """Drifted traffic with anomalies: large amounts, unseen countries, wrong types, extra keys."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        f: dict[str, Any] = {
            "amount": round(rng.lognormvariate(3.5, 1.2), 2),
            "hour": rng.randrange(26),  # 24 and 25 are outside the reference's [0, 23]
            "country": rng.choice(["DE", "FR", "IT", "ES", "PL"]),
            "channel": rng.choice(["web", "app"]),
        }
        r = rng.random()
        if r < 0.05:
            f["amount"] = "12.5"  # wrong type: a dead letter
        elif r < 0.07:
            f["amount"], f["hour"] = "n/a", "7"  # two wrong types in one event
        elif r < 0.12:
            f["amount"] = None  # missing: not present, not out of range
        if rng.random() < 0.3:
            f[f"extra_{rng.randrange(40)}"] = 1  # undeclared keys, 40 of them
        if rng.random() < 0.1:
            f["debug"] = "x"
        out.append(event(10_000 + i, T0 + HOUR + i * HOUR / n, f, rng.choice(["A", "B"])))
    # Duplicates of earlier predictions: dead letters that reached the type check.
    out += [e | {"score": 0.5} for e in out[10:20]]
    return out


def partition_of(pid: str, n: int) -> int:
    return zlib.crc32(pid.encode()) % n


def run(
    model: ModelSpec, events: list[dict[str, Any]], parts: int = 1, batch: int = 97
) -> tuple[list[Partial], list[Any]]:
    """Stage 1 over ``events`` split by prediction_id hash into ``parts`` partitions."""
    procs = [
        PartitionProcessor({MODEL: model}, MemoryStore(), bucket_s=WINDOWS.bucket_s, source=f"p:{i}")
        for i in range(parts)
    ]
    partials: list[Partial] = []
    rejected: list[Any] = []
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        for i, proc in enumerate(procs):
            mine = [orjson.dumps(e) for e in chunk if partition_of(e["prediction_id"], parts) == i]
            rejected.extend(proc.process(mine, []))
            partials.extend(proc.take_partials())
    return partials, rejected


def evaluate(model: ModelSpec, partials: list[Partial], at: float, seed: int | None = None) -> Snapshot:
    agg = Aggregator({MODEL: model}, WINDOWS, SETTINGS)
    order = list(partials)
    if seed is not None:
        random.Random(seed).shuffle(order)
    for p in order:
        agg.apply(Partial.from_bytes(p.to_bytes()))  # through the wire format
    return agg.evaluate(at)


def integrity_samples(snap: Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, s.labels): s.value for s in snap.samples if s.name in NAMES}


def gauge(snap: Snapshot, name: str, variant: str = "all", **labels: str) -> float:
    return snap.value(name, model=MODEL, variant=variant, window="current", **labels)


def accepted(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events stage 1 summarises: numeric features numbers or null, first of each id."""
    seen, out = set(), []
    for e in events:
        if integrity.wrong_typed(e["features"], ["amount", "hour"]) or e["prediction_id"] in seen:
            continue
        seen.add(e["prediction_id"])
        out.append(e)
    return out


def key_ratios(snap: Snapshot, variant: str) -> dict[str, float]:
    return {
        dict(s.labels)["key"]: s.value
        for s in snap.series(UNEXPECTED_KEY_RATIO)
        if ("variant", variant) in s.labels
    }


def expected_key_ratios(ok: list[dict[str, Any]]) -> dict[str, float]:
    """Per undeclared key, the share of ``ok`` events carrying it: the bottom-20 keys, the rest OTHER."""
    counts: dict[str, int] = {}
    for e in ok:
        for k in e["features"]:
            if k not in {"amount", "hour", "country", "channel"}:
                counts[k] = counts.get(k, 0) + 1
    kept = bottom_k(counts, MAX_UNEXPECTED_KEYS)
    out = {k: n / len(ok) for k, n in counts.items() if k in kept}
    folded = sum(n for k, n in counts.items() if k not in kept)
    if folded:
        out[OTHER] = folded / len(ok)
    return out


def pinned() -> ModelSpec:
    decoder = Decoder({MODEL: 0.5})
    preds = [decoder.prediction(orjson.dumps(e)) for e in reference_events()]
    assert all(isinstance(p, Prediction) for p in preds)
    return build_profile(spec(), preds, {})  # type: ignore[arg-type]


END = T0 + 2 * HOUR - 60  # evaluation time: the current window is [T0 + 1h, T0 + 2h)


# ------------------------------------------------------------------ stage 1: wrong types


def test_wrong_type_event_is_a_dead_letter_and_counted() -> None:
    events = [
        event(1, T0, {"amount": 1.0, "hour": 3}),
        event(2, T0 + 1, {"amount": "1.0", "hour": 3}, "B"),
        event(3, T0 + 2, {"amount": "x", "hour": "3"}),
        event(1, T0 + 3, {"amount": 2.0, "hour": 4}),  # duplicate id
    ]
    partials, rejected = run(spec(), events)
    # The dead letters are as before: reason, the first offending field, the raw bytes.
    assert [(r.reason, r.field) for r in rejected] == [
        ("wrong_type", "features.amount"),
        ("wrong_type", "features.amount"),
        ("duplicate_prediction", "prediction_id"),
    ]
    assert [r.raw for r in rejected] == [orjson.dumps(events[i]) for i in (1, 2, 3)]
    buckets = {k: v for p in partials for k, v in p.buckets.items()}
    default, b = buckets[("default", T0)], buckets[("B", T0)]
    assert default.n_predictions == 1 and b.n_predictions == 0
    assert default.counts[REJECTED].tolist() == [1, 1]  # [wrong type, duplicate]
    assert default.counts[integrity.wrong_type_name("amount")].tolist() == [1]
    assert default.counts[integrity.wrong_type_name("hour")].tolist() == [1]  # every bad feature counts
    assert b.counts[REJECTED].tolist() == [1, 0]
    assert b.counts[integrity.wrong_type_name("amount")].tolist() == [1]
    assert integrity.wrong_type_name("hour") not in b.counts


def test_non_scalar_feature_is_rejected_before_the_model_check_and_not_counted() -> None:
    # JSON true, arrays and objects fail the event contract in the decoder, before the model's
    # feature types are looked at: dead letters counted only in streamon_events_invalid_total.
    partials, rejected = run(spec(), [event(1, T0, {"amount": True})])
    assert [(r.reason, r.field) for r in rejected] == [("wrong_type", "features.amount")]
    assert all(p.buckets == {} for p in partials)


def test_clean_events_add_no_integrity_counts() -> None:
    partials, rejected = run(spec(), reference_events(50))
    assert rejected == []
    for p in partials:
        for s in p.buckets.values():
            assert not [n for n in s.counts if n.startswith("integrity:")]
            assert KEYS not in s.categories


def test_restore_counts_nothing() -> None:
    proc = PartitionProcessor({MODEL: spec()}, MemoryStore(), bucket_s=60.0)
    decoder = proc.decoder
    raws = [orjson.dumps(e) for e in current_events(50)]
    proc.process_decoded(list(zip(raws, decoder.predictions(raws), strict=True)), [], partials=False)
    assert all(p.buckets == {} for p in proc.take_partials())


# ------------------------------------------------------------------ through stage 2, exact


def test_every_ratio_exact_against_the_raw_events_pinned_profile() -> None:
    model = pinned()
    assert model.ranges["hour"] == (0.0, 23.0)
    ref_amount = [e["features"]["amount"] for e in reference_events()]
    assert model.ranges["amount"] == (min(ref_amount), max(ref_amount))
    events = current_events()
    partials, _ = run(model, events)
    snap = evaluate(model, partials, END)
    ok = accepted(events)
    checked = len(events)  # every decoded event reaches the type check
    for name in ("amount", "hour"):
        lo, hi = model.ranges[name]
        present = [e["features"][name] for e in ok if e["features"].get(name) is not None]
        outside = sum(1 for v in present if v < lo or v > hi)
        assert outside > 0
        assert gauge(snap, OUT_OF_RANGE_RATIO, feature=name) == outside / len(present)
        wrong = sum(1 for e in events if name in integrity.wrong_typed(e["features"], ["amount", "hour"]))
        assert gauge(snap, WRONG_TYPE_RATIO, feature=name) == wrong / checked
        assert gauge(snap, ABSENT, feature=name) == 0.0
    countries = [e["features"]["country"] for e in ok]
    unseen = sum(1 for c in countries if c not in {"DE", "FR", "IT"})
    assert gauge(snap, UNSEEN_CATEGORY_RATIO, feature="country") == unseen / len(countries)
    # Undeclared keys: "channel" is a segment field, hence declared; the others are not.
    got = key_ratios(snap, "all")
    assert got == expected_key_ratios(ok)
    assert "channel" not in got and len(got) == MAX_UNEXPECTED_KEYS + 1


def test_per_variant_ratios_are_exact() -> None:
    model = pinned()
    events = current_events()
    snap = evaluate(model, run(model, events)[0], END)
    for variant in ("A", "B"):
        mine = [e for e in events if e.get("variant") == variant]
        wrong = sum(1 for e in mine if "amount" in integrity.wrong_typed(e["features"], ["amount", "hour"]))
        assert gauge(snap, WRONG_TYPE_RATIO, variant, feature="amount") == wrong / len(mine)
        ok = [e for e in accepted(events) if e.get("variant") == variant]
        assert key_ratios(snap, variant) == expected_key_ratios(ok)


def test_three_partitions_equal_one() -> None:
    for model in (pinned(), spec()):  # pinned profile and rolling reference
        events = reference_events() + current_events()
        one = integrity_samples(evaluate(model, run(model, events, 1)[0], END))
        three = integrity_samples(evaluate(model, run(model, events, 3, batch=61)[0], END, seed=5))
        assert one.keys() == three.keys() and len(one) > 10
        assert all(one[k] == three[k] or (math.isnan(one[k]) and math.isnan(three[k])) for k in one)


def test_merged_stage1_counts_equal_for_any_split() -> None:
    events = current_events()
    sums = []
    for parts in (1, 2, 3):
        partials, _ = run(pinned(), events, parts, batch=50 + parts)
        merged = merge_all(s for p in partials for s in p.buckets.values())
        sums.append(
            (
                {k: v.tolist() for k, v in merged.counts.items() if k.startswith("integrity:")},
                dict(merged.categories[KEYS]),
            )
        )
    assert sums[0] == sums[1] == sums[2]


def test_unexpected_keys_are_capped_in_stage1_and_on_reading() -> None:
    model = spec(max_categories=30)  # stage 1 keeps 30 keys per summary, the reading 20
    events = [event(i, T0 + HOUR + i, {"amount": 1.0, f"k{i % 500}": 1}) for i in range(2000)]
    partials, _ = run(model, events)
    for p in partials:
        for s in p.buckets.values():
            assert len(s.categories[KEYS]) <= 31  # 30 + __other__
    snap = evaluate(model, partials, END)
    got = {
        dict(s.labels)["key"]: s.value
        for s in snap.series(UNEXPECTED_KEY_RATIO)
        if ("variant", "all") in s.labels
    }
    kept = bottom_k({f"k{i}" for i in range(500)}, MAX_UNEXPECTED_KEYS)
    assert set(got) == kept | {OTHER}
    assert got[OTHER] == pytest.approx((500 - 20) / 500, abs=0)  # each key in 4 of 2000 events
    assert sum(got.values()) == pytest.approx(1.0)


# ------------------------------------------------------------------ absent, min samples, switches


def test_absent_feature_and_minimum_samples() -> None:
    ref = reference_events()
    cur = [event(50_000 + i, T0 + HOUR + i, {"amount": 2.0, "country": "DE"}) for i in range(100)]
    model = spec()
    snap = evaluate(model, run(model, ref + cur)[0], END)
    assert gauge(snap, ABSENT, feature="hour") == 1.0
    assert gauge(snap, ABSENT, feature="amount") == 0.0
    assert gauge(snap, ABSENT, feature="country") == 0.0
    # Below min_drift_samples the ratios against the reference are NaN, the others are not.
    few = evaluate(model, run(model, ref + cur[:10])[0], END)
    for name, feature in (
        (ABSENT, "hour"),
        (OUT_OF_RANGE_RATIO, "amount"),
        (UNSEEN_CATEGORY_RATIO, "country"),
    ):
        assert math.isnan(gauge(few, name, feature=feature))
    assert gauge(few, WRONG_TYPE_RATIO, feature="amount") == 0.0


def test_drift_switched_off_exports_no_integrity_gauge() -> None:
    model = spec()
    agg = Aggregator({MODEL: model}, WINDOWS, EvalSettings(current_s=HOUR, drift_enabled=False))
    for p in run(model, current_events())[0]:
        agg.apply(p)
    assert integrity_samples(agg.evaluate(END)) == {}


def test_every_gauge_is_in_the_catalogue() -> None:
    for name in NAMES:
        assert name in METRICS and METRICS[name].type == "gauge"
    assert METRICS[UNEXPECTED_KEY_RATIO].labels[-1] == "key"


# ------------------------------------------------------------------ profiles and the rolling reference


def test_profile_round_trip_keeps_ranges_and_older_profiles_load() -> None:
    model = pinned()
    back = profile_from_bytes(profile_to_bytes([model]))[MODEL]
    assert back.ranges == model.ranges
    doc = orjson.loads(profile_to_bytes([model]))
    del doc["models"][MODEL]["ranges"]  # a profile written before ranges existed
    old = profile_from_bytes(orjson.dumps(doc))[MODEL]
    assert old.ranges == {}
    # Without ranges the out-of-range ratio comes from the profile's sketches (lower bound).
    old.segments = [SegmentSpec("channel")]
    events = current_events()
    exact = evaluate(model, run(model, events)[0], END)
    approx = evaluate(old, run(old, events)[0], END)
    for name in ("amount", "hour"):
        e, a = gauge(exact, OUT_OF_RANGE_RATIO, feature=name), gauge(approx, OUT_OF_RANGE_RATIO, feature=name)
        assert a <= e and e - a < 0.02


@pytest.mark.parametrize("seed", range(5))
def test_sketch_out_of_range_against_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    alpha = 0.01
    gamma = (1 + alpha) / (1 - alpha)
    ref_values = rng.lognormal(2.0, 1.0, 2000)
    cur_values = rng.lognormal(2.3, 1.3, 3000)
    ref, cur = LogSketch(alpha), LogSketch(alpha)
    ref.add(ref_values)
    cur.add(cur_values)
    lo, hi = ref_values.min(), ref_values.max()
    exact = int(np.count_nonzero((cur_values < lo) | (cur_values > hi)))
    # Values farther than one bucket (a factor gamma) beyond the range are always counted.
    surely = int(np.count_nonzero((cur_values < lo / gamma) | (cur_values > hi * gamma)))
    got = sketch_out_of_range(ref, cur)
    assert surely <= got <= exact
    assert surely < exact  # the bound is not vacuous on this data
    assert math.isnan(sketch_out_of_range(LogSketch(alpha), cur))
    assert sketch_out_of_range(ref, None) == 0.0


def test_rolling_reference_unseen_categories_exact() -> None:
    model = spec()  # no profile: the reference window's own categories
    ref = [event(i, T0 + i, {"amount": 1.0, "country": c}) for i, c in enumerate(["DE", "FR"] * 50)]
    cur = [
        event(500 + i, T0 + HOUR + i, {"amount": 1.0, "country": c})
        for i, c in enumerate(["DE", "ES", "PL", None] * 30)
    ]
    snap = evaluate(model, run(model, ref + cur)[0], END)
    assert gauge(snap, UNSEEN_CATEGORY_RATIO, feature="country") == 60 / 90
