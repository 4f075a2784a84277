"""Stage 1 on columns: a batch decoded into columns decides and adds what its events do one by one.

The columnar path (``PartitionProcessor.process``: ``Decoder.prediction_columns``, then
``process_columns``) is checked against the per-event decoding (``Decoder._prediction`` of
each message, turned into columns by ``PredictionColumns.from_events``), and its grouping and
summaries against a grouping made one event at a time, summarised by ``profile.summarise``.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any

import orjson
import pytest

from streamon.core import events
from streamon.core.events import Invalid, Prediction, PredictionColumns
from streamon.core.profile import FeatureSpec, ModelSpec, SegmentSpec, summarise
from streamon.core.stages.join import MemoryStore, StagedStore
from streamon.core.stages.stage1 import PartitionProcessor, segment_value
from streamon.core.state.cardinality import DEFAULT_VARIANT, admit
from streamon.core.state.summary import BucketSummary
from streamon.core.statistics.integrity import KEYS, unexpected_keys

T0 = 1_700_000_000.0
FEATURES = [FeatureSpec("x", "numeric"), FeatureSpec("y", "numeric"), FeatureSpec("c", "categorical")]
MODELS = {
    "b1": ModelSpec(
        "b1",
        features=FEATURES,
        segments=[SegmentSpec("country", max_values=3), SegmentSpec("c", values=frozenset({"u", "v"}))],
        max_variants=3,
    ),
    "b2": ModelSpec("b2", threshold=0.3, features=FEATURES[:1], variants=frozenset({"A", "B"})),
    "r": ModelSpec("r", task="regression", features=FEATURES),
    "mc": ModelSpec("mc", task="multiclass", classes=("a", "b", "c"), features=FEATURES),
}


def _prediction(rng: random.Random, pid: str, ts: float, kinds: list[str]) -> bytes | None:
    model = rng.choice(kinds) if rng.random() < 0.3 else "b1"
    doc: dict[str, Any] = {"prediction_id": pid, "model": model, "ts": round(ts, 3)}
    if model == "r":
        doc["value"] = rng.gauss(0, 10)
    elif model == "mc":
        p = [rng.random() + 0.01 for _ in range(3)]
        doc["scores"] = {k: v / sum(p) for k, v in zip("abc", p, strict=True)}
    else:
        doc["score"] = rng.random()
        if rng.random() < 0.1:
            doc["predicted"] = rng.choice([0, 1, True, False])
    if rng.random() < 0.85:
        features: dict[str, Any] = {
            "x": rng.choice([rng.random() * 100, rng.randint(0, 50), None]),
            "y": rng.gauss(0, 1),
            "c": rng.choice("uvw"),
            "country": rng.choice(["DE", "FR", "US", "IT", "ES", 7, None]),
        }
        if rng.random() < 0.05:
            features["x"] = rng.choice(["3", [1]])  # wrong types, after or at decoding
        if rng.random() < 0.05:
            features["extra"] = 1  # an undeclared key
        if rng.random() < 0.1:
            del features["y"]
        doc["features"] = features
    if rng.random() < 0.7:
        doc["variant"] = rng.choice(["A", "B", "C", "D", "E", ""])
    if rng.random() < 0.8:
        doc["latency_ms"] = rng.random() * 50
    odd = rng.random()
    if odd < 0.02:
        doc["ts"] = "2023-11-14T22:13:20Z"  # valid, but not for the typed decoder
    elif odd < 0.04:
        doc["source"] = "web"  # an unknown field: the same
    elif odd < 0.05:
        doc["score"] = 1.5
    elif odd < 0.06:
        return b"not json"
    elif odd < 0.065:
        return None
    elif odd < 0.075:
        doc["ts"] = ts - 40 * 86400  # too old for the clock
    elif odd < 0.08:
        doc["model"] = "nope"
    return orjson.dumps(doc)


def _stream(seed: int, kinds: list[str]) -> list[tuple[list[bytes | None], list[bytes | None], float | None]]:
    """Batches of (predictions, labels, clock): duplicates in and across batches, labels before,
    with and after their prediction, corrections, orphans, invalid labels."""
    rng = random.Random(seed)
    sent: list[str] = []
    targets: list[str] = []  # the ids labels are for
    out = []
    ts = T0
    for b in range(25):
        preds: list[bytes | None] = []
        for _ in range(rng.choice([0, 1, 40, 300])):
            ts += rng.random() * 3
            pid = rng.choice(sent) if sent and rng.random() < 0.04 else f"p{len(sent)}"
            sent.append(pid)
            preds.append(_prediction(rng, pid, ts, kinds))
            if b'"model":"r"' not in (preds[-1] or b""):
                # No label for a regression model here: a correction of one labelled in an earlier
                # batch cannot be retracted from a stage-1 delta (a LogSketch subtraction fails).
                targets.append(pid)
            if rng.random() < 0.02:
                preds.append(preds[-1])  # the same message twice
        labels: list[bytes | None] = [
            orjson.dumps(
                {
                    "prediction_id": rng.choice(targets[-400:])
                    if targets and rng.random() < 0.8
                    else f"g{b}",
                    "label": rng.choice([0, 1, 1, 0, "a", "b", 2.5]),
                    "ts": round(ts - rng.random() * 100, 3),
                }
            )
            for _ in range(rng.choice([0, 10, 80]))
        ]
        out.append((preds, labels, ts + 5 if b % 3 == 0 else None))
    return out


def _processor() -> PartitionProcessor:
    return PartitionProcessor(
        MODELS, StagedStore(MemoryStore()), bucket_s=60.0, label_horizon_s=600.0, orphan_grace_s=120.0
    )


def _rejections(rejected: list[Any]) -> list[tuple[Any, ...]]:
    return [(r.topic, r.index, r.reason, r.detail, r.field, r.raw) for r in rejected]


@pytest.mark.parametrize(("seed", "kinds"), [(1, ["b1", "b2"]), (2, ["b1", "b2", "r", "mc"]), (3, ["b1"])])
def test_columnar_batches_equal_per_event_decoding(
    seed: int, kinds: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    general = [0]
    from_events = PredictionColumns.from_events.__func__  # type: ignore[attr-defined]

    def counted(cls: type[PredictionColumns], decoded: list[Prediction | Invalid]) -> PredictionColumns:
        general[0] += bool(decoded)
        return from_events(cls, decoded)  # type: ignore[no-any-return]

    columnar, per_event, restored = _processor(), _processor(), _processor()
    batches = _stream(seed, kinds)
    for preds, labels, now in batches:
        with monkeypatch.context() as m:
            m.setattr(PredictionColumns, "from_events", classmethod(counted))
            got = columnar.process(preds, labels, now)
            decoder = restored.decoder  # a restore: the join alone, from the same columns
            decoded_labels = list(zip(labels, decoder.labels(labels), strict=True))
            rest = restored.process_columns(
                preds, decoder.prediction_columns(preds), decoded_labels, partials=False
            )
        d = per_event.decoder
        want = per_event.process_decoded(
            [(raw, d._prediction(raw, now)) for raw in preds], [(raw, d._label(raw, now)) for raw in labels]
        )
        assert _rejections(got) == _rejections(want)
        assert [p.to_bytes() for p in columnar.take_partials()] == [
            p.to_bytes() for p in per_event.take_partials()
        ]
        if now is None:  # the same clock as the restore's
            assert _rejections(rest) == _rejections(want)
        for p in (columnar, per_event, restored):
            p.joiner.store.commit()  # type: ignore[attr-defined]
    store = per_event.joiner.store.base.data  # type: ignore[attr-defined]
    assert columnar.joiner.store.base.data == store  # type: ignore[attr-defined]
    assert columnar.joiner.stats == per_event.joiner.stats and columnar.counts == per_event.counts
    assert columnar.watermark == per_event.watermark
    stats = per_event.joiner.stats
    assert stats.joined and stats.corrections and stats.orphaned and stats.duplicate_labels
    invalid = per_event.counts.invalid
    assert (
        invalid[("predictions", events.DUPLICATE_PREDICTION)] and invalid[("predictions", events.WRONG_TYPE)]
    )
    # Only batches whose predictions the typed structs cannot carry (a regression or
    # multiclass model's) take the general path; the binary ones stay columnar.
    assert (general[0] == 0) == ("r" not in kinds), general


def _by_event(spec_of: dict[str, ModelSpec], decoded: list[Prediction], bucket_s: float) -> dict[Any, Any]:
    """Groups and segment groups built one event at a time, in the order events first name them."""
    groups: dict[Any, list[Prediction]] = defaultdict(list)
    segs: dict[Any, list[Prediction]] = defaultdict(list)
    for p in decoded:
        spec = spec_of[p.model]
        variant = (
            admit(p.variant or DEFAULT_VARIANT, spec.variants)
            if spec.variants
            else p.variant or DEFAULT_VARIANT
        )
        start = math.floor(p.ts / bucket_s) * bucket_s
        groups[(p.model, variant, start)].append(p)
        for index, s in enumerate(spec.segments):
            segs[(p.model, index, admit(segment_value(p.features.get(s.field)), s.values), start)].append(p)
    return {"groups": groups, "segments": segs}


def test_groups_and_summaries_equal_a_grouping_event_by_event() -> None:
    # Predictions only (no labels), variants and segments within their caps, plain numbers:
    # every partial bucket is the summary of its events, in event order, as summarise makes it.
    rng = random.Random(5)
    models = {
        "b1": ModelSpec("b1", features=FEATURES, segments=[SegmentSpec("country", max_values=10)]),
        "b2": ModelSpec("b2", threshold=0.3, features=FEATURES[:1], variants=frozenset({"A"})),
    }
    for _ in range(3):
        pp = PartitionProcessor(models, MemoryStore(), bucket_s=60.0)
        raws = []
        for i in range(2000):
            doc = {
                "prediction_id": f"p{i}-{rng.random()}", "model": rng.choice(["b1", "b1", "b2"]),
                "ts": T0 + rng.random() * 600, "score": rng.random(), "variant": rng.choice(["A", "B", ""]),
                "latency_ms": rng.random(),
                "features": {"x": rng.random(), "y": rng.random(), "c": rng.choice("uv"),
                             "country": rng.choice("DEF")},
            }  # fmt: skip
            raws.append(orjson.dumps(doc))
        assert pp.process(raws, []) == []
        decoded = [pp.decoder._prediction(raw, None) for raw in raws]
        assert all(isinstance(p, Prediction) for p in decoded)
        want = _by_event(models, decoded, 60.0)  # type: ignore[arg-type]
        partials = {p.model: p for p in pp.take_partials()}
        got_groups = [(m, v, s) for m, p in partials.items() for (v, s) in p.buckets]
        assert sorted(got_groups) == sorted(want["groups"])
        for (model, variant, start), group in want["groups"].items():
            spec = models[model]
            expect = summarise(spec, group, BucketSummary())
            declared = frozenset(f.name for f in spec.features) | {s.field for s in spec.segments}
            keys = unexpected_keys([p.features for p in group], declared)
            if keys:  # b2 declares x alone
                expect.add_categorical_feature(KEYS, keys)
            assert partials[model].buckets[(variant, start)].to_bytes() == expect.to_bytes()
        for (model, index, value, start), group in want["segments"].items():
            field = models[model].segments[index].field
            expect = summarise(models[model], group, BucketSummary())
            assert partials[model].segments[(field, value, start)].to_bytes() == expect.to_bytes()
        # The order the buckets are written in: that of their first event.
        for model, p in partials.items():
            assert list(p.buckets) == [(v, s) for (m, v, s) in want["groups"] if m == model]
