"""Cardinality caps: a producer sending 100k distinct labels cannot explode the series count.

Every event carries a distinct variant, segment value, category value and an undeclared
feature NAME; some events name unknown models. The stream is split over 3 stage-1
partitions in several batches and merged in stage 2. Checked on the rendered /metrics text
(what Prometheus would scrape):

- the series count is the same as for a stream of 1k distinct values (it does not grow
  with the distinct values), and every data-derived label value is within its cap;
- the overflow counter is exact: 100k - K events folded for variants and segments, and
  for the categorical feature everything beyond the bottom-K in each summary;
- the kept values are the bottom-K by stable hash (the value-only rule), so the outcome
  is the same for any split.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamon.config import Settings
from streamon.core.events import UNKNOWN_MODEL
from streamon.core.stages.evaluate import Snapshot
from streamon.core.state.cardinality import OTHER, BottomK, bottom_k, fold_counter, stable_hash
from streamon.engine import build_engine
from streamon.exporter import render

T0 = 1_767_225_600.0
MAX_VARIANTS, MAX_SEGMENTS, MAX_CATEGORIES = 4, 5, 50


def settings() -> Settings:
    return Settings.from_dict(
        {
            "models": [
                {
                    "name": "m",
                    "features": [{"name": "x", "type": "numeric"}, {"name": "cat", "type": "categorical"}],
                    "segments": [{"field": "seg", "max_values": MAX_SEGMENTS}],
                }
            ],
            "limits": {"max_variants_per_model": MAX_VARIANTS, "max_category_values": MAX_CATEGORIES},
        }
    )


def events(n: int) -> tuple[list[bytes], int]:
    """n predictions with distinct variant / segment / category / undeclared feature name, all in
    one 1-minute bucket; plus n // 100 events of unknown models (returned count)."""
    ts = T0 + 5.0
    raws = [
        orjson.dumps(
            {
                "prediction_id": f"p{i}",
                "model": "m",
                "variant": f"v{i}",
                "ts": ts + (i % 50),
                "score": (i % 97) / 97,
                "features": {"x": float(i % 13), "cat": f"c{i}", "seg": f"s{i}", f"u{i}": 1.0},
            }
        )
        for i in range(n)
    ]
    unknown = [
        orjson.dumps({"prediction_id": f"q{i}", "model": f"nope-{i}", "ts": ts, "score": 0.5})
        for i in range(n // 100)
    ]
    return raws + unknown, len(unknown)


def run(n: int, n_partitions: int = 3, batches: int = 4) -> tuple[Snapshot, Counter[str]]:
    engine = build_engine(settings())
    procs = [engine.partition_processor(source=f"predictions:{i}") for i in range(n_partitions)]
    agg = engine.aggregator()
    raws, _ = events(n)
    reasons: Counter[str] = Counter()
    for b in range(batches):
        for i, proc in enumerate(procs):
            mine = raws[b * n_partitions + i :: n_partitions * batches]
            reasons.update(r.reason for r in proc.process(mine, [], now=T0 + 600))
            for partial in proc.take_partials():
                agg.apply(partial)
    return agg.evaluate(T0 + 60.0), reasons


def series(text: bytes) -> list[str]:
    return [line for line in text.decode().splitlines() if line and not line.startswith("#")]


def label_values(lines: list[str], label: str) -> set[str]:
    return {m.group(1) for line in lines for m in [re.search(rf'{label}="([^"]*)"', line)] if m}


@pytest.fixture(scope="module")
def big() -> tuple[Snapshot, Counter[str]]:
    return run(100_000)


def test_series_count_does_not_grow_with_distinct_values(big: tuple[Snapshot, Counter[str]]) -> None:
    snap, reasons = big
    lines = series(render(snap))
    small = series(render(run(1_000)[0]))
    assert len(lines) == len(small) < 1000
    names = [f"v{i}" for i in range(100_000)]
    assert label_values(lines, "variant") == bottom_k(names, MAX_VARIANTS) | {OTHER, "all"}
    segs = bottom_k([f"s{i}" for i in range(100_000)], MAX_SEGMENTS)
    assert label_values(lines, "segment") == segs | {OTHER}
    # Feature NAMES come from the config only; undeclared ones never become labels.
    assert label_values(lines, "feature") == {"x", "cat", "score"}
    # Unknown models are rejected (dead-letter topic), never a label.
    assert label_values(lines, "model") == {"m"}
    assert reasons == Counter({UNKNOWN_MODEL: 1_000})


def test_overflow_is_counted_exactly(big: tuple[Snapshot, Counter[str]]) -> None:
    snap, _ = big
    n = 100_000

    def overflow(label: str) -> float:
        return snap.value("streamon_cardinality_overflow_total", model="m", label=label)

    assert overflow("variant") == n - MAX_VARIANTS
    assert overflow("segment:seg") == n - MAX_SEGMENTS
    # Category values: each kept variant's bucket holds 1 value (nothing folds); the __other__
    # variant's bucket holds the remaining n - K values, of which MAX_CATEGORIES stay.
    assert overflow("category:cat") == n - MAX_VARIANTS - MAX_CATEGORIES
    # Nothing is lost: the __other__ variant holds every folded event.
    assert snap.value("streamon_predictions_in_window", model="m", variant=OTHER, window="current") == (
        n - MAX_VARIANTS
    )
    assert snap.value("streamon_predictions_in_window", model="m", variant="all", window="current") == n
    rendered = render(snap).decode()
    assert 'streamon_cardinality_overflow_total{label="variant",model="m"} 99996.0' in rendered


def test_caps_are_split_invariant() -> None:
    one, _ = run(3_000, n_partitions=1, batches=1)
    many, _ = run(3_000, n_partitions=3, batches=5)
    assert render(one) == render(many)


def test_bottom_k_admission_is_order_free() -> None:
    values = [f"id-{i}" for i in range(500)]
    expected = bottom_k(values, 7)
    for seed in range(3):
        import random

        order = values[:]
        random.Random(seed).shuffle(order)
        b = BottomK(7)
        displaced = [d for v in order for _, d in [b.offer(v)] if d is not None]
        assert b.kept == expected
        assert not set(displaced) & expected  # a displaced value never belonged
    # The hash is the documented one (blake2b, 8 bytes, big-endian): stable across processes.
    import hashlib

    assert stable_hash("DE") == int.from_bytes(hashlib.blake2b(b"DE", digest_size=8).digest(), "big")
    c = Counter({v: 2 for v in values})
    assert fold_counter(c, 7) == 2 * (500 - 7) and set(c) == expected | {OTHER}


@pytest.mark.parametrize(
    ("extra", "limits", "key"),
    [
        ({"segments": [{"field": "c", "max_values": 0}]}, {}, "models.0.segments.0.max_values"),
        (
            {"segments": [{"field": "c", "values": ["a", "b"], "max_values": 1}]},
            {},
            "models.0.segments.0.values",
        ),
        ({"segments": [{"field": "c"}, {"field": "c"}]}, {}, "models.0.segments.1.field"),
        ({"variants": ["A", "B", "C"]}, {"max_variants_per_model": 2}, "models.0.variants"),
        ({}, {"max_category_values": 0}, "limits.max_category_values"),
    ],
)
def test_bad_cap_config_names_the_key(extra: dict[str, object], limits: dict[str, object], key: str) -> None:
    from streamon.config import ConfigError

    model = {"name": "m", "features": [{"name": "x", "type": "numeric"}], **extra}
    with pytest.raises(ConfigError) as info:
        Settings.from_dict({"models": [model], "limits": limits})
    message = str(info.value)
    assert f"{key}:" in message and "\n" not in message


def test_variant_allowlist_folds_the_rest() -> None:
    doc = settings().model_dump(mode="json", by_alias=True)
    doc["models"][0]["variants"] = ["v1", "v2"]
    engine = build_engine(Settings.from_dict(doc))
    proc = engine.partition_processor()
    raws, _ = events(300)
    proc.process(raws[:300], [], now=T0 + 600)
    agg = engine.aggregator()
    for p in proc.take_partials():
        agg.apply(p)
    snap = agg.evaluate(T0 + 60.0)
    variants = {dict(s.labels)["variant"] for s in snap.series("streamon_predictions_in_window")}
    assert variants == {"v1", "v2", OTHER, "all"}
    assert snap.value("streamon_cardinality_overflow_total", model="m", label="variant") == 298


def test_window_aggregates_are_exact_after_expiry() -> None:
    """Subtraction does not undo a fold, so aggregates stay uncapped and are capped when read:
    after buckets expire, the capped current window is the cap of exactly its remaining events."""
    import random

    from streamon.core.state.summary import BucketSummary
    from streamon.core.state.windows import Windowed

    rng = random.Random(3)
    cap = 3
    w: Windowed[BucketSummary] = Windowed(
        lambda: BucketSummary(category_cap=None),
        bucket_s=60,
        current_s=300,
        reference_s=600,
        reference_bucket_s=120,
    )
    raw: dict[float, list[str]] = {}
    for minute in range(20):
        for _ in range(4):  # several deltas per bucket, each capped like a stage-1 delta
            values = [f"c{rng.randrange(12)}" for _ in range(rng.randrange(1, 8))]
            delta = BucketSummary(category_cap=cap)
            delta.add_categorical_feature("cat", values)
            w.add(minute * 60.0 + 1, delta)
            raw.setdefault(minute * 60.0, []).extend(values)
    w.advance(20 * 60.0)
    expected_cur, expected_ref = BucketSummary(category_cap=cap), BucketSummary(category_cap=cap)
    for start, values in raw.items():
        if start >= w.current_start:
            expected_cur.add_categorical_feature("cat", values)
        elif start >= w.current_start - 600:
            expected_ref.add_categorical_feature("cat", values)
    assert w.current.capped(cap) == expected_cur
    assert w.reference.capped(cap) == expected_ref

    # Folding a window into another through every_bucket() is adding its deltas there.
    again: Windowed[BucketSummary] = Windowed(
        lambda: BucketSummary(category_cap=None),
        bucket_s=60,
        current_s=300,
        reference_s=600,
        reference_bucket_s=120,
    )
    assert w.now is not None
    again.advance(w.now)
    for start, bucket in w.every_bucket():
        again.add(start, bucket)
    assert again.current.capped(cap) == expected_cur and again.reference.capped(cap) == expected_ref


# ---------------------------------------------------------------------- protected values

REAL_CATEGORIES = [f"ref{i}" for i in range(8)]
N_REAL = 1_000


def _protected_stream(n_junk: int, arms: tuple[str, ...] = ()) -> list[bytes]:
    """``n_junk`` junk variants (a third with junk category values) interleaved with real
    predictions: no variant (= "default"; or the ``arms`` in turn), categories of the
    reference profile."""
    out = []
    every = (n_junk + N_REAL) // N_REAL
    for i in range(n_junk + N_REAL):
        real = i % every == 0
        doc: dict[str, object] = {"prediction_id": f"p{i}", "model": "m", "ts": T0 + 5.0 + i % 50,
                                  "score": (i % 97) / 97}  # fmt: skip
        cat = f"junk-cat-{i}" if not real and i % 3 == 0 else REAL_CATEGORIES[i % len(REAL_CATEGORIES)]
        doc["features"] = {"x": float(i % 13), "cat": cat}
        if not real:
            doc["variant"] = f"junk-{i}"
        elif arms:
            doc["variant"] = arms[(i // every) % len(arms)]
        out.append(orjson.dumps(doc))
    return out


def _profile(tmp: Path, arms: tuple[str, ...] = ()) -> Path:
    from streamon.core.events import Prediction
    from streamon.core.profile import FeatureSpec as Feature
    from streamon.core.profile import ModelSpec, build_profile, profile_to_bytes

    spec = ModelSpec("m", features=[Feature("x", "numeric"), Feature("cat", "categorical")])
    ref = [
        Prediction(f"r{i}", "m", ts=T0, score=0.5, predicted=0, variant=arms[i % len(arms)] if arms else "",
                   features={"x": float(i % 13), "cat": REAL_CATEGORIES[i % len(REAL_CATEGORIES)]})
        for i in range(400)
    ]  # fmt: skip
    path = tmp / "ref.profile.json"
    path.write_bytes(profile_to_bytes([build_profile(spec, ref, {})]))
    return path


def _run_protected(raws: list[bytes], profile: Path, n_partitions: int, batches: int) -> tuple[Snapshot, Any]:
    model = {
        "name": "m",
        "features": [{"name": "x", "type": "numeric"}, {"name": "cat", "type": "categorical"}],
    }
    limits = {"max_variants_per_model": MAX_VARIANTS, "max_category_values": MAX_CATEGORIES}
    engine = build_engine(Settings.from_dict({"models": [model], "limits": limits}), profile=profile)
    procs = [engine.partition_processor(source=f"predictions:{i}") for i in range(n_partitions)]
    agg = engine.aggregator()
    for b in range(batches):
        for i, proc in enumerate(procs):
            proc.process(raws[b * n_partitions + i :: n_partitions * batches], [], now=T0 + 600)
            for partial in proc.take_partials():
                agg.apply(partial)
    return agg.evaluate(T0 + 60.0), agg


def test_junk_cannot_evict_protected_values(tmp_path: Path) -> None:
    """100k junk variants: the default variant and the reference profile's categories keep
    their own series and counts; the junk fills only the other slots (bottom-K by hash) and
    is counted as overflow."""
    n_junk = 100_000
    snap, agg = _run_protected(_protected_stream(n_junk), _profile(tmp_path), n_partitions=3, batches=2)
    in_window = {
        dict(s.labels)["variant"]: s.value for s in snap.series("streamon_predictions_in_window")
        if dict(s.labels)["window"] == "current"
    }  # fmt: skip
    every = (n_junk + N_REAL) // N_REAL
    junk = [f"junk-{i}" for i in range(n_junk + N_REAL) if i % every]
    assert in_window["default"] == N_REAL
    assert set(in_window) == {"default", OTHER, "all"} | bottom_k(junk, MAX_VARIANTS - 1)
    assert snap.value("streamon_cardinality_overflow_total", model="m", label="variant") == (
        len(junk) - (MAX_VARIANTS - 1)
    )
    # Every reference category survives the cap in the junk-filled __other__ window.
    state = agg.models["m"]
    cats = state.windows[OTHER].current.capped(MAX_CATEGORIES, state.spec.protected_categories)
    assert set(REAL_CATEGORIES) <= set(cats.categories["cat"])
    assert len(cats.categories["cat"]) == MAX_CATEGORIES + 1  # + __other__
    assert snap.value("streamon_cardinality_overflow_total", model="m", label="category:cat") > 0


def test_protected_values_split_invariant(tmp_path: Path) -> None:
    raws, profile = _protected_stream(6_000), _profile(tmp_path)
    one, _ = _run_protected(raws, profile, n_partitions=1, batches=1)
    many, _ = _run_protected(raws, profile, n_partitions=3, batches=4)
    assert render(one) == render(many)
    assert (
        one.value("streamon_predictions_in_window", model="m", variant="default", window="current") == N_REAL
    )


def test_protected_bottom_k_is_merge_invariant() -> None:
    import random

    rnd = random.Random(1)
    protected = frozenset({"a", "b", "c"})
    for _ in range(200):
        values = [f"v{rnd.randrange(60)}" for _ in range(rnd.randrange(1, 40))]
        values += rnd.sample(sorted(protected), rnd.randrange(0, 4))
        k = rnd.randrange(1, 8)
        whole = bottom_k(values, k, protected)
        present = protected & set(values)
        assert present <= whole and len(whole) == max(min(k, len(set(values))), len(present))
        parts = [values[i::3] for i in range(3)]
        merged = set().union(*(bottom_k(p, k, protected) for p in parts))
        assert bottom_k(merged, k, protected) == whole
        b = BottomK(k, protected)
        order = values[:]
        rnd.shuffle(order)
        for v in order:
            b.offer(v)
        assert b.kept == whole


def test_variants_of_the_reference_profile_are_protected(tmp_path: Path) -> None:
    """A/B arms seen in the reference events are kept like an allowlist, the junk takes the rest."""
    from streamon.engine import load_profile

    arms = ("arm-a", "arm-b")
    profile = _profile(tmp_path, arms)
    assert load_profile(profile)["m"].reference_variants == frozenset(arms)
    snap, _ = _run_protected(_protected_stream(20_000, arms), profile, n_partitions=3, batches=2)
    in_window = {
        dict(s.labels)["variant"]: s.value for s in snap.series("streamon_predictions_in_window")
        if dict(s.labels)["window"] == "current"
    }  # fmt: skip
    every = (20_000 + N_REAL) // N_REAL
    junk = [f"junk-{i}" for i in range(20_000 + N_REAL) if i % every]
    assert in_window["arm-a"] + in_window["arm-b"] == N_REAL
    assert set(in_window) == {*arms, OTHER, "all"} | bottom_k(junk, MAX_VARIANTS - len(arms))
