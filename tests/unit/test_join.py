"""Joiner, MemoryStore and StagedStore: labels meet their predictions days apart (design.md §2)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import orjson

from streamon.core.events import Label, Prediction
from streamon.core.stages.join import Joiner, LabelDelta, MemoryStore, StagedStore

HORIZON = 1000.0
GRACE = 100.0


def pred(pid: str, ts: float, score: float = 0.9, predicted: int = 1, variant: str = "A") -> Prediction:
    return Prediction(pid, "m", ts=ts, score=score, predicted=predicted, variant=variant)


def joiner(store: MemoryStore | None = None) -> Joiner:
    return Joiner(
        store if store is not None else MemoryStore(), label_horizon_s=HORIZON, orphan_grace_s=GRACE
    )


def test_label_before_prediction_joins_when_prediction_arrives() -> None:
    j = joiner()
    assert j.add_label(Label("p1", 1, ts=5.0)) == []
    assert j.pending_labels == 1 and j.stats.joined == 0
    out = j.add_prediction(pred("p1", ts=10.0, score=0.8))
    # The delta goes to the PREDICTION's event time, not the label's.
    assert out == [LabelDelta("m", "A", 10.0, 0.8, 1, 1, 1)]
    assert j.pending_labels == 0 and j.pending_predictions == 1 and j.stats.joined == 1
    # The held label is gone from the store; a repeat of the same label is now a duplicate.
    assert list(j.store.items(b"l:")) == []
    assert j.add_label(Label("p1", 1, ts=30.0)) == []
    assert j.stats.duplicate_labels == 1


def test_label_after_prediction_joins() -> None:
    j = joiner()
    assert j.add_prediction(pred("p1", ts=10.0, score=0.2, predicted=0)) == []
    assert j.add_label(Label("p1", 0, ts=50.0)) == [LabelDelta("m", "A", 10.0, 0.2, 0, 0, 1)]
    assert j.stats.joined == 1 and j.stats.corrections == 0


def test_correction_retracts_then_adds() -> None:
    j = joiner()
    j.add_prediction(pred("p1", ts=10.0, score=0.7))
    j.add_label(Label("p1", 1, ts=20.0))
    out = j.add_label(Label("p1", 0, ts=30.0))
    assert out == [LabelDelta("m", "A", 10.0, 0.7, 1, 1, -1), LabelDelta("m", "A", 10.0, 0.7, 1, 0, 1)]
    assert j.stats.corrections == 1 and j.stats.joined == 1
    # Correcting back retracts the 0 and adds the 1 again.
    out = j.add_label(Label("p1", 1, ts=40.0))
    assert [(d.label, d.sign) for d in out] == [(0, -1), (1, 1)]
    assert j.stats.corrections == 2


def test_net_effect_of_random_label_sequences() -> None:
    """Whatever sequence of labels arrives, the deltas sum to exactly the last label."""
    rnd = random.Random(3)
    for _ in range(200):
        j = joiner()
        labels = [rnd.randint(0, 1) for _ in range(rnd.randint(1, 6))]
        pred_first = rnd.random() < 0.5
        deltas: list[LabelDelta] = []
        if pred_first:
            deltas += j.add_prediction(pred("x", ts=1.0))
        for i, lab in enumerate(labels):
            deltas += j.add_label(Label("x", lab, ts=2.0 + i))
        if not pred_first:
            deltas += j.add_prediction(pred("x", ts=1.0))
        net = {0: 0, 1: 0}
        for d in deltas:
            net[d.label] += d.sign
        assert net == {labels[-1]: 1, 1 - labels[-1]: 0}


def test_duplicate_identical_label_is_a_no_op() -> None:
    j = joiner()
    j.add_prediction(pred("p1", ts=10.0))
    assert len(j.add_label(Label("p1", 1, ts=20.0))) == 1
    before = dict(j.store.data)
    for k in range(3):
        assert j.add_label(Label("p1", 1, ts=21.0 + k)) == []
    assert j.stats.duplicate_labels == 3 and j.stats.corrections == 0 and j.stats.joined == 1
    assert j.store.data == before


def test_orphan_label_counted_only_after_grace() -> None:
    j = joiner()
    j.add_prediction(pred("other-0", ts=1000.0))
    assert j.add_label(Label("ghost", 1, ts=900.0)) == []  # grace runs from max(watermark, label ts)
    expires = 1000.0 + GRACE
    j.add_prediction(pred("other-1", ts=expires - 1))
    assert j.expire() == (0, 0)
    assert j.stats.orphaned == 0 and j.pending_labels == 1
    j.add_prediction(pred("other-2", ts=expires))  # the prediction watermark passes the grace
    assert j.expire() == (0, 1)
    assert j.stats.orphaned == 1 and j.pending_labels == 0
    assert j.store.get(b"l:ghost") is None
    assert j.expire() == (0, 0)  # counted once
    assert j.stats.orphaned == 1


def test_orphan_grace_restarts_when_the_label_is_repeated() -> None:
    j = joiner()
    j.add_prediction(pred("w", ts=0.0))
    j.add_label(Label("ghost", 1, ts=0.0))
    j.add_prediction(pred("w2", ts=50.0))
    j.add_label(Label("ghost", 0, ts=50.0))  # repeated while held: one pending label, new deadline 150
    assert j.pending_labels == 1
    j.add_prediction(pred("w3", ts=120.0))
    assert j.expire() == (0, 0)  # the stale deadline (100) is ignored
    j.add_prediction(pred("w4", ts=150.0))
    assert j.expire() == (0, 1)
    assert j.stats.orphaned == 1 and j.pending_labels == 0


def test_prediction_forgotten_after_horizon_then_late_label_held_and_orphaned() -> None:
    j = joiner()
    j.add_prediction(pred("old", ts=0.0, predicted=1))
    j.add_prediction(pred("w1", ts=HORIZON - 1))
    assert j.expire() == (0, 0) and j.contains_prediction("old")
    j.add_prediction(pred("w2", ts=HORIZON))
    assert j.expire() == (1, 0)
    assert not j.contains_prediction("old")
    assert j.stats.expired_unlabelled == 1 and j.pending_predictions == 2
    # Its label now arrives: nothing to join, so it is held ...
    assert j.add_label(Label("old", 1, ts=HORIZON + 5)) == []
    assert j.pending_labels == 1
    # ... and orphaned once the watermark passes the grace period.
    j.add_prediction(pred("w3", ts=HORIZON + 5 + GRACE))
    assert j.expire() == (0, 1)
    assert j.stats.orphaned == 1 and j.stats.joined == 0


def test_labelled_prediction_expiry_is_not_counted_unlabelled() -> None:
    j = joiner()
    j.add_prediction(pred("a", ts=0.0))
    j.add_label(Label("a", 0, ts=1.0))
    j.add_prediction(pred("b", ts=HORIZON + 1))
    assert j.expire() == (1, 0)
    assert j.stats.expired_unlabelled == 0


def test_restore_rebuilds_pending_counts_and_expiry() -> None:
    store = MemoryStore()
    a = joiner(store)
    for i in range(20):
        a.add_prediction(pred(f"p{i}", ts=10.0 * i))
    for i in range(0, 20, 3):
        a.add_label(Label(f"p{i}", i % 2, ts=300.0))
    for i in range(4):
        a.add_label(Label(f"ghost{i}", 1, ts=150.0 + 10 * i))
    a.expire()
    b = joiner(store)  # a fresh worker on the same (persisted) store
    assert b.restore() == a.pending_predictions + a.pending_labels == 24
    assert (b.pending_predictions, b.pending_labels, b.watermark) == (20, 4, 190.0)
    # From here on a restored joiner (on a copy of the store) makes the same decisions as the
    # original: the expiry index was rebuilt correctly.
    store_b = MemoryStore()
    store_b.write(dict(store.data))
    c = joiner(store_b)
    c.restore()
    steps = [195.0, 250.0, 289.0, 291.0, 1005.0, 1100.0, 1300.0]
    for k, t in enumerate(steps):
        ra = (a.add_prediction(pred(f"n{k}", ts=t)), a.expire())
        rc = (c.add_prediction(pred(f"n{k}", ts=t)), c.expire())
        assert ra == rc, t
        assert (a.pending_predictions, a.pending_labels) == (c.pending_predictions, c.pending_labels)
    assert store.data == store_b.data
    assert c.pending_labels == 0 and c.pending_predictions == 3  # only the newest predictions remain


def test_restore_of_empty_store() -> None:
    j = joiner()
    assert j.restore() == 0
    assert j.expire() == (0, 0)


def test_memory_store_items_and_deletes() -> None:
    s = MemoryStore()
    s.write({b"p:1": b"a", b"p:2": b"b", b"l:1": b"c"})
    s.write({b"p:2": None, b"p:3": b"d", b"missing": None})
    assert sorted(s.items(b"p:")) == [(b"p:1", b"a"), (b"p:3", b"d")]
    assert s.get(b"p:2") is None and s.get(b"l:1") == b"c"


def test_staged_store_discard_leaves_base_untouched() -> None:
    base = MemoryStore()
    base.write({b"p:1": b"a", b"p:2": b"b"})
    snapshot = dict(base.data)
    staged = StagedStore(base)
    staged.write({b"p:1": b"A", b"p:2": None, b"p:3": b"c"})
    # Reads see the staged view ...
    assert staged.get(b"p:1") == b"A" and staged.get(b"p:2") is None and staged.get(b"p:3") == b"c"
    assert sorted(staged.items(b"p:")) == [(b"p:1", b"A"), (b"p:3", b"c")]
    # ... the base does not, and discard drops everything.
    assert base.data == snapshot
    staged.discard()
    assert base.data == snapshot
    assert staged.get(b"p:1") == b"a" and sorted(staged.items(b"p:")) == [(b"p:1", b"a"), (b"p:2", b"b")]
    staged.commit()
    assert base.data == snapshot


def test_staged_store_commit_applies_everything_plus_extra_keys() -> None:
    base = MemoryStore()
    base.write({b"p:1": b"a", b"p:2": b"b", b"offset": b"0"})
    staged = StagedStore(base)
    staged.write({b"p:1": b"A", b"p:2": None})
    staged.write({b"p:3": b"c"})
    staged.commit(extra={b"offset": b"42", b"p:1": b"A2"})
    assert base.data == {b"p:1": b"A2", b"p:3": b"c", b"offset": b"42"}
    assert staged.pending == {}
    staged.commit()  # nothing pending: a no-op
    assert base.data == {b"p:1": b"A2", b"p:3": b"c", b"offset": b"42"}


def test_joiner_over_staged_store_discard_then_replay() -> None:
    """An aborted batch leaves no trace in the base store; replaying it gives the same result."""
    base = MemoryStore()
    j1 = joiner(StagedStore(base))  # type: ignore[arg-type]
    j1.add_prediction(pred("p1", ts=1.0))
    out1 = j1.add_label(Label("p1", 1, ts=2.0))
    assert base.data == {}
    j1.store.discard()  # type: ignore[attr-defined]
    assert base.data == {}
    j2 = joiner(StagedStore(base))  # type: ignore[arg-type]
    j2.restore()
    j2.add_prediction(pred("p1", ts=1.0))
    assert j2.add_label(Label("p1", 1, ts=2.0)) == out1
    j2.store.commit(extra={b"offset": b"7"})  # type: ignore[attr-defined]
    assert base.get(b"offset") == b"7" and base.get(b"p:p1") is not None
    j3 = joiner(base)
    assert j3.restore() == 1
    assert j3.add_label(Label("p1", 1, ts=3.0)) == []  # already joined: a duplicate


# ---------------------------------------------------------------------- the index in the store


def _stream(seed: int, n: int = 600) -> list[list[Prediction | Label]]:
    """Batches of predictions and labels: labels before and after their predictions, corrections,
    labels whose prediction never comes, and late predictions (behind the watermark)."""
    rnd = random.Random(seed)
    events: list[tuple[float, Prediction | Label]] = []
    for i in range(n):
        ts = 5.0 * i
        late = rnd.random() < 0.05
        events.append((ts, pred(f"p{i}", ts - (HORIZON * 1.5 if late else 0.0), score=rnd.random())))
        if rnd.random() < 0.7:  # a label, before (negative delay) or after its prediction
            events.append((ts + rnd.uniform(-60, 400), Label(f"p{i}", rnd.randint(0, 1), ts=ts + 1)))
        if rnd.random() < 0.1:  # a correction
            events.append((ts + rnd.uniform(0, 800), Label(f"p{i}", rnd.randint(0, 1), ts=ts + 2)))
        if rnd.random() < 0.1:  # its prediction never comes
            events.append((ts, Label(f"ghost{i}", 1, ts=ts)))
    events.sort(key=lambda e: e[0])
    batches, size = [], 0
    while size < len(events):
        step = rnd.randint(1, 40)
        batches.append([e for _, e in events[size : size + step]])
        size += step
    return batches


def _feed(j: Joiner, batch: list[Prediction | Label]) -> tuple[list[LabelDelta], tuple[int, int]]:
    out: list[LabelDelta] = []
    for e in batch:
        out += j.add_prediction(e) if isinstance(e, Prediction) else j.add_label(e)
    return out, j.expire()


def _state(j: Joiner) -> tuple[object, ...]:
    return (j.pending_predictions, j.pending_labels, j.watermark, j.stats)


def _records(store: MemoryStore) -> tuple[int, int, int]:
    return tuple(sum(1 for _ in store.items(p)) for p in (b"p:", b"l:", b"x:"))  # type: ignore[return-value]


def test_restart_continues_exactly_from_the_store() -> None:
    """A new Joiner over the same store (a restart) after any batch decides exactly like an
    uninterrupted one: same deltas, expiries, orphans, pending counts, watermark and store."""
    for seed in range(4):
        batches = _stream(seed)
        whole = joiner()
        expected = [_feed(whole, b) for b in batches]
        assert whole.stats.orphaned > 0 and whole.stats.expired_unlabelled > 0
        store = MemoryStore()
        j = joiner(store)
        rnd = random.Random(100 + seed)
        for b, want in zip(batches, expected, strict=True):
            if rnd.random() < 0.3:
                j = joiner(store)  # restart: nothing but the store carries over
            assert _feed(j, b) == want
        assert _state(j) == _state(whole)
        assert store.data == whole.store.data  # type: ignore[attr-defined]
        # The pending counts are the records in the store; one index entry per record.
        p, lab, x = _records(store)
        assert (p, lab, x) == (j.pending_predictions, j.pending_labels, p + lab)


def test_staged_store_commit_discard_and_restart_over_the_index() -> None:
    """The worker's way: writes staged per batch, committed, some batches aborted (discarded,
    counters reloaded, replayed), restarts in between: the same result as one clean run."""
    batches = _stream(7)
    whole = joiner()
    expected = [_feed(whole, b) for b in batches]
    base = MemoryStore()
    staged = StagedStore(base)
    j = joiner(staged)  # type: ignore[arg-type]
    rnd = random.Random(5)
    for b, want in zip(batches, expected, strict=True):
        if rnd.random() < 0.2:  # the Kafka transaction of this batch fails: discard, replay
            _feed(j, b)
            staged.discard()
            assert j.restore() == j.pending_predictions + j.pending_labels
        assert _feed(j, b) == want
        staged.commit({b"\x00offsets": b"{}"})
        if rnd.random() < 0.2:
            staged = StagedStore(base)
            j = joiner(staged)  # type: ignore[arg-type]
    assert _state(j) == _state(whole)
    assert {k: v for k, v in base.data.items() if k != b"\x00offsets"} == whole.store.data  # type: ignore[attr-defined]


def test_joiner_holds_nothing_per_pending_record() -> None:
    store = MemoryStore()
    j = joiner(store)
    before = {k: type(v) for k, v in vars(j).items()}
    for i in range(2000):
        j.add_prediction(pred(f"p{i}", ts=float(i % 50)))
        j.add_label(Label(f"ghost{i}", 1, ts=1.0))
    j.expire()
    assert {k: type(v) for k, v in vars(j).items()} == before
    assert not [v for v in vars(j).values() if isinstance(v, list | dict | set | tuple)]
    assert (j.pending_predictions, j.pending_labels) == (2000, 2000) == _records(store)[:2]


def test_store_without_index_is_reindexed_once() -> None:
    """A store written before the index existed (records only): indexed on open, then as if new."""
    a = joiner()
    for i in range(30):
        a.add_prediction(pred(f"p{i}", ts=10.0 * i))
    a.add_label(Label("ghost", 1, ts=100.0))
    a.expire()
    legacy = MemoryStore()
    legacy.write({k: v for k, v in a.store.data.items() if k.startswith((b"p:", b"l:"))})  # type: ignore[attr-defined]
    b = joiner(legacy)
    assert (b.pending_predictions, b.pending_labels, b.watermark) == (30, 1, 290.0)
    for j in (a, b):
        j.add_prediction(pred("late", ts=HORIZON + 150.0))
    assert a.expire() == b.expire() == (16, 1)
    assert _records(legacy) == _records(a.store)  # type: ignore[arg-type]


def test_changed_label_horizon_reindexes_the_predictions() -> None:
    store = MemoryStore()
    a = joiner(store)
    a.add_prediction(pred("p", ts=0.0))
    a.add_prediction(pred("w", ts=HORIZON / 2))
    a.expire()
    b = Joiner(store, label_horizon_s=HORIZON / 4, orphan_grace_s=GRACE)
    assert b.expire() == (1, 0)  # p (0 + HORIZON/4) is past the watermark HORIZON/2 now
    assert not b.contains_prediction("p") and b.pending_predictions == 1


def test_staged_items_merge_in_key_order() -> None:
    base = MemoryStore()
    base.write({b"x:1": b"a", b"x:3": b"c", b"x:5": b"e", b"y:0": b"-"})
    staged = StagedStore(base)
    staged.write({b"x:2": b"B", b"x:3": None, b"x:6": b"F", b"x:0": b"Z"})
    assert list(staged.items(b"x:")) == [(b"x:0", b"Z"), (b"x:1", b"a"), (b"x:2", b"B"),
                                         (b"x:5", b"e"), (b"x:6", b"F")]  # fmt: skip
    assert [k for k, _ in staged.items(b"x:", start=b"x:2")] == [b"x:2", b"x:5", b"x:6"]


def test_rocksdb_store_with_reopens_matches_memory(tmp_path: Path) -> None:
    """The worker's stack (StagedStore over RocksStore, committed per batch, reopened on restart)
    makes the decisions of the in-memory run (= streamon replay)."""
    from streamon.runtime.store import RocksStore

    batches = _stream(11)
    whole = joiner()
    expected = [_feed(whole, b) for b in batches]
    path = tmp_path / "store"
    rocks = RocksStore(path)
    staged = StagedStore(rocks)
    j = joiner(staged)  # type: ignore[arg-type]
    for i, (b, want) in enumerate(zip(batches, expected, strict=True)):
        assert _feed(j, b) == want
        staged.commit(RocksStore.marker({"predictions": i}))
        if i % 25 == 24:
            rocks.close()
            rocks = RocksStore(path)
            staged = StagedStore(rocks)
            j = joiner(staged)  # type: ignore[arg-type]
    assert _state(j) == _state(whole)
    assert dict(rocks.items(b"")) == {**whole.store.data, b"\x00offsets": rocks.get(b"\x00offsets")}  # type: ignore[attr-defined]
    rocks.close()


# ---------------------------------------------------------------------- batch lookups


def test_get_many_of_memory_and_staged_stores() -> None:
    base = MemoryStore()
    base.write({b"p:a": b"1", b"p:b": b"2", b"p:c": b"3"})
    keys = [b"p:c", b"p:x", b"p:a", b"p:b", b"p:a", b"p:new"]
    assert base.get_many(keys) == [b"3", None, b"1", b"2", b"1", None]
    assert base.get_many([]) == []
    staged = StagedStore(base)
    assert staged.get_many(keys) == base.get_many(keys)  # nothing staged
    staged.write({b"p:a": None, b"p:b": b"22", b"p:new": b"n"})  # a delete, an overwrite, a put
    want = [b"3", None, None, b"22", None, b"n"]
    assert staged.get_many(keys) == want == [staged.get(k) for k in keys]
    staged.commit()
    assert base.get_many(keys) == want


def test_get_many_of_rocksdb_store(tmp_path: Path) -> None:
    from streamon.runtime.store import RocksStore

    rocks = RocksStore(tmp_path / "store")
    rocks.write({b"p:a": b"1", b"p:b": b"", b"l:a": b"3"})
    keys = [b"l:a", b"p:zz", b"p:b", b"p:a", b"p:a"]
    assert rocks.get_many(keys) == [b"3", None, b"", b"1", b"1"] == [rocks.get(k) for k in keys]
    assert rocks.get_many([]) == []
    rocks.write({b"p:a": None})
    staged = StagedStore(rocks)
    staged.write({b"p:zz": b"z"})
    assert staged.get_many(keys) == [b"3", b"z", b"", None, None]
    rocks.close()


def _stream_with_duplicates(seed: int) -> list[list[Prediction | Label]]:
    """_stream plus predictions repeated, in the same batch and in later ones."""
    rnd = random.Random(seed)
    batches = _stream(seed)
    seen: list[Prediction] = []
    for batch in batches:
        for e in list(batch):
            if isinstance(e, Prediction):
                seen.append(e)
        if rnd.random() < 0.3 and seen:
            batch.insert(rnd.randint(0, len(batch)), rnd.choice(seen))
    return batches


def _feed_batch(j: Joiner, batch: list[Prediction | Label], prefetch: bool) -> tuple[object, ...]:
    """The processor's way: duplicate check, predictions, then labels, then expire."""
    if prefetch:
        j.prefetch([e.prediction_id for e in batch])
    out: list[LabelDelta] = []
    dupes = 0
    for e in batch:
        if isinstance(e, Prediction):
            if j.contains_prediction(e.prediction_id):
                dupes += 1
            else:
                out += j.add_prediction(e)
    for e in batch:
        if isinstance(e, Label):
            out += j.add_label(e)
    return out, dupes, j.expire()


def test_prefetched_batches_decide_as_point_lookups() -> None:
    """One multi-get per batch gives the deltas, duplicates, expiries, counters and store of one
    lookup per event: duplicates in one batch, a label with its prediction, corrections, orphans."""
    for seed in range(6):
        batches = _stream_with_duplicates(seed)
        plain, batched = joiner(), joiner(StagedStore(MemoryStore()))  # type: ignore[arg-type]
        dupes = 0
        for b in batches:
            want = _feed_batch(plain, b, prefetch=False)
            assert _feed_batch(batched, b, prefetch=True) == want
            dupes += want[1]  # type: ignore[operator]
            batched.store.commit()  # type: ignore[attr-defined]
        assert dupes > 0 and plain.stats.corrections > 0 and plain.stats.orphaned > 0
        assert plain.stats.expired_unlabelled > 0
        assert _state(batched) == _state(plain)
        assert batched.store.base.data == plain.store.data  # type: ignore[attr-defined]


def test_prefetched_records_are_dropped_by_expire_and_restore() -> None:
    base = MemoryStore()
    staged = StagedStore(base)
    j = joiner(staged)  # type: ignore[arg-type]
    j.prefetch(["a"])
    j.add_prediction(pred("a", ts=1.0))
    staged.discard()  # the batch's transaction failed
    j.restore()
    assert not j.contains_prediction("a")  # not the prefetched copy of the discarded write
    j.prefetch(["a"])
    j.add_prediction(pred("a", ts=1.0))
    j.expire()
    staged.commit()
    base.write({b"p:a": None})  # outside the join, after the batch
    assert not j.contains_prediction("a")


def _raw_batches(seed: int) -> list[tuple[list[bytes], list[bytes]]]:
    """Stage-1 input batches: predictions (some repeated, in one batch and across batches) and
    labels (before, with and after their prediction, corrections, some never predicted)."""
    rnd = random.Random(seed)
    out: list[tuple[list[bytes], list[bytes]]] = []
    sent: list[bytes] = []
    i = 0
    for _ in range(60):
        preds: list[bytes] = []
        labels: list[bytes] = []
        for _ in range(rnd.randint(0, 30)):
            i += 1
            ts = 5.0 * i - (HORIZON * 1.5 if rnd.random() < 0.05 else 0.0)
            doc = {"prediction_id": f"p{i}", "model": "m", "ts": ts, "score": rnd.random(),
                   "features": {"x": rnd.random(), "seg": rnd.choice("ab")}}  # fmt: skip
            preds.append(orjson.dumps(doc))
            if rnd.random() < 0.2:
                preds.append(rnd.choice([*sent, preds[-1]]))  # a duplicate
            for _ in range(rnd.choice([0, 1, 1, 2])):  # labels: in this batch, or before / later
                lab = orjson.dumps({"prediction_id": f"p{i + rnd.randint(-20, 5)}",
                                    "label": rnd.randint(0, 1), "ts": 5.0 * i + 1})  # fmt: skip
                labels.append(lab)
            if rnd.random() < 0.05:
                labels.append(orjson.dumps({"prediction_id": f"ghost{i}", "label": 1, "ts": 5.0 * i}))
        sent += preds
        out.append((preds, labels))
    return out


def test_processor_batched_lookups_equal_per_event_ones(monkeypatch: object) -> None:
    """PartitionProcessor (one multi-get per batch) against the same with one lookup per event:
    the same rejections, partials, join state and store; without partials (a restore), the same
    join state and store."""
    import pytest

    from streamon.core.events import DUPLICATE_PREDICTION
    from streamon.core.profile import FeatureSpec, ModelSpec, SegmentSpec
    from streamon.core.stages.stage1 import PartitionProcessor

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    spec = ModelSpec("m", features=[FeatureSpec("x", "numeric")], segments=[SegmentSpec("seg")])

    def processor() -> PartitionProcessor:
        return PartitionProcessor({"m": spec}, MemoryStore(), bucket_s=60.0, label_horizon_s=HORIZON,
                                  orphan_grace_s=GRACE)  # fmt: skip

    for seed in range(3):
        batched, plain, replayed = processor(), processor(), processor()
        # plain: a point lookup per duplicate check and label, one store write per prediction.
        joiner = plain.joiner
        monkeypatch.setattr(
            joiner, "prefetch", lambda ids, j=joiner: {i for i in ids if j.contains_prediction(i)}
        )
        monkeypatch.setattr(
            joiner,
            "add_predictions",
            lambda batch, j=joiner: [d for one in batch for d in Joiner.add_predictions(j, [one])],
        )
        for preds, labels in _raw_batches(seed):
            got = [(r.topic, r.reason, r.detail, r.index) for r in batched.process(preds, labels)]
            want = [(r.topic, r.reason, r.detail, r.index) for r in plain.process(preds, labels)]
            assert got == want
            got_partials = [p.to_bytes() for p in batched.take_partials()]
            assert got_partials == [p.to_bytes() for p in plain.take_partials()]
            decoded = (
                [(r, replayed.decoder.prediction(r)) for r in preds],
                [(r, replayed.decoder.label(r)) for r in labels],
            )
            rejected = replayed.process_decoded(*decoded, partials=False)
            assert [(r.topic, r.reason, r.detail, r.index) for r in rejected] == want
        stats = plain.joiner.stats
        assert stats.corrections and stats.orphaned and stats.expired_unlabelled and stats.joined
        assert plain.counts.invalid[("predictions", DUPLICATE_PREDICTION)] > 0
        for other in (batched, replayed):
            assert _state(other.joiner) == _state(plain.joiner)
            assert other.joiner.store.data == plain.joiner.store.data  # type: ignore[attr-defined]
            assert other.counts == plain.counts
            assert other.watermark == plain.watermark
        assert all(not p.buckets and not p.segments for p in replayed.take_partials())


def test_add_predictions_equal_one_by_one() -> None:
    """A batch written at once (add_predictions) against the same predictions added one by one:
    the same deltas (waiting labels joined, with segments), counters, watermark, scan start and
    store, with the batch's records prefetched or not."""
    rng = random.Random(5)
    for prefetch in (False, True):
        one, many = (Joiner(StagedStore(MemoryStore()), HORIZON, GRACE) for _ in range(2))
        n = 0
        for _ in range(6):
            labels = [
                Label(f"p{n + rng.randrange(40)}", rng.randrange(2), ts=rng.uniform(0, 3000))
                for _ in range(15)
            ]
            batch = []
            for _ in range(30):
                segs = (("c", rng.choice("ab")),) if rng.random() < 0.5 else ()
                # event times go back as well as forward: some predictions are already due
                p = Prediction(f"p{n}", "m", ts=rng.uniform(-2000, 3000), score=rng.random(), predicted=1)
                batch.append((p, segs))
                n += 1
            for j in (one, many):
                for lab in labels:
                    j.add_label(lab)
                if prefetch:
                    assert j.prefetch([p.prediction_id for p, _ in batch]) == set()
            want = [d for p, segs in batch for d in one.add_prediction(p, segs)]
            assert many.add_predictions(batch) == want
            assert _state(many) == _state(one) and many._scan_from == one._scan_from
            assert many.store.pending == one.store.pending  # type: ignore[attr-defined]
            for j in (one, many):
                j.expire()
                j.store.commit()  # type: ignore[attr-defined]
        assert one.stats.joined > 0 and one.stats.expired_unlabelled > 0
        assert many.store.base.data == one.store.base.data  # type: ignore[attr-defined]


def test_sortable_many_equals_sortable() -> None:
    from streamon.core.stages.join import sortable, sortable_many

    rng = random.Random(3)
    xs = [rng.uniform(-1e12, 1e12) for _ in range(500)] + [rng.gauss(0, 1e-300) for _ in range(50)]
    xs += [0.0, -0.0, math.inf, -math.inf, 5e-324, -5e-324, 1.7e308, -1.7e308]
    assert sortable_many(xs) == b"".join(map(sortable, xs))


def test_staged_items_equal_a_sorted_merge() -> None:
    """StagedStore.items (a lazy heap over the staged keys) against sorting everything, from
    any start, under any prefix (the empty one and one ending in 0xff included)."""
    rng = random.Random(11)
    alphabet = [b"", b"\x00", b"a", b"x:", b"x\xff", b"\xff", b"\xff\xff"]
    keys = [rng.choice(alphabet) + bytes([rng.randrange(256)]) for _ in range(300)]
    base = MemoryStore()
    base.write({k: b"b" for k in keys[:150]})
    staged = StagedStore(base)
    staged.write({k: (None if rng.random() < 0.3 else b"s") for k in keys[100:]})
    view = dict(base.data)
    view.update(staged.pending)
    for prefix in (b"", b"x:", b"x\xff", b"\xff", b"a"):
        for start in (None, prefix + b"\x80", b"x"):
            lo = start if start is not None and start > prefix else prefix
            want = sorted(
                (k, v) for k, v in view.items() if v is not None and k.startswith(prefix) and k >= lo
            )
            assert list(staged.items(prefix, start)) == want
