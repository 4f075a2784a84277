"""Benchmarks of the streaming runtime against a REAL Kafka broker (issue "Streaming runtime").

Run from the repository root::

    .venv/bin/python benchmarks/bench_runtime.py                      # full run (< ~10 min)
    .venv/bin/python benchmarks/bench_runtime.py --quick              # smaller inputs (< ~3 min)
    .venv/bin/python benchmarks/bench_runtime.py --bootstrap 127.0.0.1:9092   # use a running broker
    .venv/bin/python benchmarks/bench_runtime.py --ab /path/to/other/tree    # A/B, no broker

Without ``--bootstrap`` a single-node Kafka 4.x broker is started with
``deploy/kafka/broker.py`` and stopped at the end. Prints one markdown table (plus the
cProfile of the worker loop). The machine is small and shared: rates that are compared
are measured side by side in the same run, interleaved, best of 2, and the RATIO is
printed next to the absolute numbers. Nothing here asserts on timings.

What is measured (see docs/benchmarks.md, section "Streaming runtime"):

1. Stage 1, one worker, 10-feature predictions (8 numeric + 2 categorical, ~250 bytes,
   pinned reference profile, event times at 2,000 predictions/s so a batch spans one or
   two 1-minute buckets as in a live high-rate stream) pre-produced to a 6-partition
   topic, uncompressed. Order a, b, c, d, a, c, d, b (interleaved, best of each):
   (a) ceiling: a plain confluent_kafka Consumer, ``consume(num_messages=5000)``,
       read_committed, + ``orjson.loads`` of every value;
   (b) a :class:`streamon.runtime.worker.Worker` driven in-process (``start()`` then
       ``step()`` until every event is processed; a step returns only after its
       batch's Kafka transaction committed, so "processed" = "committed"; checked
       against the group's committed offsets at the end). Includes decoding +
       validation, the RocksDB join store, partial deltas, transactions and stage 2
       (same loop). Kafka client calls, the two stage steps and
       ``PartitionProcessor.process`` are timed (wall clock) to split the loop;
   (c) ``PartitionProcessor.process`` alone on the same bytes (RocksDB store, no Kafka):
       the ceiling of the current core code;
   (d) the same with a label for every prediction, each call carrying the labels of the
       call before (they join): predictions + labels per second, what labels cost.
   ``--batch-size N`` runs the workers with ``kafka.batch_size`` N (default: the config's).
   (a) and (b) are timed from the end of the first consume that returned data / the
   assignment (group join, ``init_transactions``, restores excluded and reported) to
   the last committed event. A further run under cProfile gives where the time goes.
2. The same work as a straightforward faust-streaming agent (subprocess,
   ``app.main()``, ``store="memory://"``, processing_guarantee exactly_once, JSON
   decoded with orjson, per-(model, minute) counts and per-feature histograms in plain
   dicts), timed from its first event to the moment its group's committed offsets
   reach the end of the topic (polled with ``Consumer.committed()``). The ratio uses
   the streamon runs right before and right after it, so both see the same load.
3. Join store: bytes per pending prediction in RocksDB (RocksStore written through
   Joiner + StagedStore, uuid4 prediction ids, commit every 5000 like the worker,
   then flush + full compaction) and the restore of a partition holding N pending
   predictions through :func:`streamon.runtime.restore.restore_partition` (replays the
   predictions topic from offset 0 into a fresh store), with its peak memory, next to its
   ceiling: (a)'s consume + ``orjson.loads`` over the same topic, before and after it;
   the restore's rate is also given from its first batch, as the ceiling is timed.

``--ab OLD_TREE`` measures only the core code, (c) and the restore's core (the join alone,
RocksDB, no Kafka), of another checkout and of this one in alternating fresh subprocesses
(best of ``--ab-rounds`` per side): a before/after comparison in one run.
4. Alert latency: a ``streamon worker`` subprocess (STREAMON_EVAL_SECONDS=1), a steady
   background stream (1,000/s) at wall-clock event time, then bursts of 2,500 drifted
   events that push the PSI of one feature over a ``for: 0`` rule (1 s buckets, 5 s
   current window, pinned reference); latency = produce time of the burst -> arrival of
   the firing alert on the alerts topic (read_committed). The next burst waits for
   the resolve event (the burst leaving the window).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "deploy" / "kafka"))

MODEL = "fraud-detector"
NUMERIC = ("amount", "hour", "days", "tx24h", "avg7d", "dist", "age", "risk")
CATEGORICAL = ("mcc", "chan")
CATEGORIES = ("grocery", "electronics", "travel", "gaming", "fuel", "restaurants", "fashion", "pharmacy")
CATEGORY_P = (0.30, 0.12, 0.08, 0.05, 0.15, 0.15, 0.10, 0.05)
CHANNELS = ("pos", "ecommerce", "atm")
CHANNEL_P = (0.6, 0.3, 0.1)
CHUNK = 20_000
ALERT_RULE = "BenchFeatureDrift"
DRIFT_FEATURE = "amount"


# ---------------------------------------------------------------------- events


def events(
    n: int, start: float, span: float, seed: int, prefix: str = "p", uuids: bool = False, drift: bool = False
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of ``n`` prediction events, event times spread over [start, start + span)."""
    for c0 in range(0, n, CHUNK):
        m = min(CHUNK, n - c0)
        rng = np.random.default_rng([seed, c0])
        ts = np.round(start + span * (c0 + np.arange(m) + rng.random(m)) / max(n, 1), 3).tolist()
        amount = rng.lognormal(3.5, 1.0, m)
        if drift:
            amount = amount * 8.0 + 400.0
        cols = [
            np.round(amount, 2).tolist(),
            rng.integers(0, 24, m).tolist(),
            np.round(rng.exponential(5.0, m), 3).tolist(),
            rng.poisson(3.0, m).tolist(),
            np.round(rng.lognormal(3.5, 0.6, m), 2).tolist(),
            np.round(rng.exponential(15.0, m), 1).tolist(),
            rng.integers(1, 3650, m).tolist(),
            np.round(rng.beta(2.0, 5.0, m), 4).tolist(),
        ]
        cat = rng.choice(len(CATEGORIES), m, p=CATEGORY_P).tolist()
        chan = rng.choice(len(CHANNELS), m, p=CHANNEL_P).tolist()
        score = np.round(rng.beta(1.2, 9.0, m), 6).tolist()
        lat = np.round(rng.gamma(2.0, 8.0, m), 3).tolist()
        ids = rng.bytes(16 * m) if uuids else b""
        for i in range(m):
            pid = (
                str(uuid.UUID(bytes=ids[16 * i : 16 * i + 16], version=4))
                if uuids
                else f"{prefix}-{c0 + i:09d}"
            )
            features: dict[str, Any] = {name: col[i] for name, col in zip(NUMERIC, cols, strict=True)}
            features["mcc"] = CATEGORIES[cat[i]]
            features["chan"] = CHANNELS[chan[i]]
            doc = {
                "prediction_id": pid,
                "model": MODEL,
                "ts": ts[i],
                "score": score[i],
                "latency_ms": lat[i],
                "features": features,
            }
            yield pid.encode(), orjson.dumps(doc)


def produce(bootstrap: str, topic: str, items: Iterator[tuple[bytes, bytes]]) -> tuple[int, int]:
    """Produce everything (uncompressed: aiokafka, under faust, needs an extra package for lz4)."""
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "queue.buffering.max.messages": 500_000,
            "batch.size": 1_000_000,
        }
    )
    n = size = 0
    for key, value in items:
        while True:
            try:
                p.produce(topic, key=key, value=value)
                break
            except BufferError:
                p.poll(0.05)
        n += 1
        size += len(value)
        if n % 10_000 == 0:
            p.poll(0)
    if p.flush(120) != 0:
        raise RuntimeError(f"could not deliver everything to {topic}")
    return n, size


def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in topics.items()]
    )
    for f in futures.values():
        f.result(timeout=30)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
    try:
        md = c.list_topics(topic, timeout=10)
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in md.topics[topic].partitions
        }
    finally:
        c.close()


def committed(bootstrap: str, group: str, topic: str, parts: list[int]) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return {
            tp.partition: tp.offset
            for tp in c.committed([TopicPartition(topic, p) for p in parts], timeout=30)
        }
    finally:
        c.close()


# ---------------------------------------------------------------------- config


def build_profile_file(path: Path, n: int = 20_000) -> None:
    """A pinned reference profile of the 10-feature model (quantile edges of normal traffic)."""
    from streamon.core.events import Decoder, Invalid
    from streamon.core.profile import FeatureSpec, ModelSpec, build_profile, profile_to_bytes

    spec = ModelSpec(
        MODEL,
        features=[FeatureSpec(f, "numeric") for f in NUMERIC]
        + [FeatureSpec(f, "categorical") for f in CATEGORICAL],
    )
    dec = Decoder({MODEL: 0.5})
    preds = [
        p
        for _, raw in events(n, 1.7e9, 86400.0, seed=99, prefix="ref")
        if not isinstance(p := dec.prediction(raw), Invalid)
    ]
    path.write_bytes(profile_to_bytes([build_profile(spec, preds, {}, bins=10)]))


BATCH_SIZE: int | None = None  # --batch-size: kafka.batch_size of every worker (default: the config's)


def settings_dict(
    bootstrap: str, profile: Path, inputs: tuple[str, str], sfx: str, partitions: int
) -> dict[str, Any]:
    from streamon.config import default_settings

    d = default_settings().model_dump(by_alias=True, mode="json")
    d["kafka"]["bootstrap_servers"] = bootstrap
    d["kafka"]["group_id"] = f"streamon-bench-{sfx}"
    d["kafka"]["topics"] = {
        "predictions": inputs[0],
        "labels": inputs[1],
        "partials": f"partials-{sfx}",
        "alerts": f"alerts-{sfx}",
        "dead_letter": f"dead-letter-{sfx}",
    }
    d["kafka"]["partitions"] = partitions
    if BATCH_SIZE is not None:
        d["kafka"]["batch_size"] = BATCH_SIZE
    d["models"] = [
        {
            "name": MODEL,
            "threshold": 0.5,
            "score_bins": 200,
            "reference_profile": str(profile),
            "baseline": {},
            "features": [{"name": f, "type": "numeric"} for f in NUMERIC]
            + [{"name": f, "type": "categorical"} for f in CATEGORICAL],
        }
    ]
    d["monitoring"]["prometheus"]["bind_address"] = "127.0.0.1"
    return d


def make_settings(d: dict[str, Any]) -> Any:
    from streamon.config import Settings

    return Settings.from_dict(d)


# ---------------------------------------------------------------------- part 1: stage 1


def run_baseline(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    """Plain consumer + orjson.loads: the ceiling of any Python consumer on this machine."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-baseline-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    t_start = time.perf_counter()
    c.subscribe([topic])
    got = n0 = 0
    t0 = math.nan
    loads = orjson.loads
    try:
        while got < n:
            msgs = c.consume(num_messages=5000, timeout=1.0)
            for m in msgs:
                if m.error() is None:
                    loads(m.value())  # type: ignore[arg-type]
                    got += 1
            if msgs and math.isnan(t0):
                t0, n0 = time.perf_counter(), got
            if time.perf_counter() - t_start > 300:
                raise TimeoutError("baseline consumer stalled")
        t1 = time.perf_counter()
    finally:
        c.close()
    return {"rate": (n - n0) / (t1 - t0), "startup_s": t0 - t_start, "seconds": t1 - t0}


class _Timed:
    """Proxy of a Kafka client that adds the wall time of each method call to ``timers``."""

    def __init__(self, inner: Any, tag: str, timers: dict[str, float]) -> None:
        self._inner, self._tag, self._timers = inner, tag, timers

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr
        key = f"{self._tag}.{name}"

        def call(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return attr(*a, **k)
            finally:
                self._timers[key] += time.perf_counter() - t

        return call


def run_worker(
    settings: Any, state_dir: Path, n: int, profile: cProfile.Profile | None = None
) -> dict[str, Any]:
    """A streamon Worker in this process until ``n`` predictions are processed (and committed).

    Wall time of the stage-1 / stage-2 steps, of ``PartitionProcessor.process`` and of
    each Kafka client call is accumulated (a few hundred timer calls per run: no
    measurable overhead) to split the loop's wall time without a profiler.
    """
    from streamon.core.stages.stage1 import PartitionProcessor
    from streamon.runtime.worker import Worker

    topic = settings.kafka.topics.predictions
    timers: dict[str, float] = defaultdict(float)
    t_start = time.perf_counter()
    w = Worker(settings, state_dir, instance_id="bench", metrics_port=0)
    w.start()
    processed = w.ops.processed
    t0 = math.nan
    n0 = 0
    original_process = PartitionProcessor.process
    try:
        while math.isnan(t0):  # join the group, get the assignment (restores run here)
            w.step()
            if w.processors:
                t0, n0 = time.perf_counter(), processed[topic]
            if time.perf_counter() - t_start > 120:
                raise TimeoutError("worker got no assignment")

        def timed_process(self: Any, *a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return original_process(self, *a, **k)
            finally:
                timers["PartitionProcessor.process"] += time.perf_counter() - t

        instrument = profile is None  # under cProfile the proxies would hide the callers
        if instrument:
            PartitionProcessor.process = timed_process  # type: ignore[method-assign]
        for name in ("_stage1_step", "_stage2_step") if instrument else ():
            step = getattr(w, name)

            def timed_step(step: Any = step, name: str = name) -> None:
                t = time.perf_counter()
                try:
                    step()
                finally:
                    timers[name] += time.perf_counter() - t

            setattr(w, name, timed_step)
        for tag in ("c1", "c2", "p1", "p2") if instrument else ():
            setattr(w, tag, _Timed(getattr(w, tag), tag, timers))
        if profile is not None:
            profile.enable()
        t0 = time.perf_counter()  # the assignment step is excluded (restores, rebalance)
        while processed[topic] < n:
            w.step()
            if time.perf_counter() - t0 > 600:
                raise TimeoutError(f"worker stalled at {processed[topic]} of {n}")
        t1 = time.perf_counter()
        if profile is not None:
            profile.disable()
        out = {
            "rate": (processed[topic] - n0) / (t1 - t0),
            "startup_s": t0 - t_start,
            "seconds": t1 - t0,
            "aborts": w.ops.aborts,
            "invalid": sum(w.ops.invalid.values()),
            "batches": sum(w.ops.batch_counts),
            "pending": sum(p.joiner.pending_predictions for p in w.processors.values()),
            "store_mb": sum(s.size_bytes() for s in w.stores.values()) / 1e6,
            "timers": dict(timers),
        }
    finally:
        PartitionProcessor.process = original_process  # type: ignore[method-assign]
        w.close()
    ends = end_offsets(settings.kafka.bootstrap_servers, topic)
    done = committed(settings.kafka.bootstrap_servers, settings.kafka.group_id, topic, list(ends))
    out["committed_ok"] = all(done[p] == ends[p] for p in ends)
    return out


def wall_split(run: dict[str, Any]) -> list[tuple[str, float]]:
    """Rows of the unprofiled wall-clock split of a worker run (seconds)."""
    t = defaultdict(float, run["timers"])
    txn = (
        "begin_transaction",
        "send_offsets_to_transaction",
        "commit_transaction",
        "consumer_group_metadata",
    )
    s1_kafka = (
        t["c1.consume"] + t["p1.produce"] + sum(t[f"p1.{x}"] for x in txn) + t["c1.consumer_group_metadata"]
    )
    s2_kafka = (
        t["c2.consume"] + t["p2.produce"] + sum(t[f"p2.{x}"] for x in txn) + t["c2.consumer_group_metadata"]
    )
    return [
        ("worker loop (wall)", run["seconds"]),
        ("stage 1 step", t["_stage1_step"]),
        (
            "  PartitionProcessor.process (decode, validate, join store, summarise)",
            t["PartitionProcessor.process"],
        ),
        ("  Consumer.consume (stage 1)", t["c1.consume"]),
        (
            "  transaction calls (begin, send_offsets, commit, group metadata)",
            sum(t[f"p1.{x}"] for x in txn) + t["c1.consumer_group_metadata"],
        ),
        (
            "  the rest (partials to_bytes + produce, RocksDB commit, bookkeeping)",
            t["_stage1_step"] - t["PartitionProcessor.process"] - s1_kafka + t["p1.produce"],
        ),
        ("stage 2 step", t["_stage2_step"]),
        ("  Consumer.consume (stage 2, timeout 0.05 s)", t["c2.consume"]),
        ("  transaction calls (stage 2)", sum(t[f"p2.{x}"] for x in txn) + t["c2.consumer_group_metadata"]),
        ("  the rest (apply partials, evaluate, rules)", t["_stage2_step"] - s2_kafka),
    ]


def labels_for(values: list[bytes]) -> list[bytes]:
    """A label for every prediction, 0 or 1, a minute after it (row 1d's labels)."""
    docs = map(orjson.loads, values)
    return [
        orjson.dumps({"prediction_id": d["prediction_id"], "label": int(i % 7 == 0), "ts": d["ts"] + 60})
        for i, d in enumerate(docs)
    ]


def run_core(
    engine: Any, values: list[bytes], workdir: Path, per_call: int = 2500, labels: list[bytes] | None = None
) -> dict[str, float]:
    """Stage 1 without Kafka: PartitionProcessor.process + partials to_bytes + RocksDB commits.

    With ``labels`` (one per prediction, in the same order), each call also carries the labels
    of the previous call's predictions, which join them: the rate counts both.
    """
    from streamon.core.stages.join import StagedStore
    from streamon.runtime.store import RocksStore

    path = workdir / f"core-{uuid.uuid4().hex[:8]}"
    store = RocksStore(path)
    pp = engine.partition_processor(StagedStore(store))
    now = time.time()
    n = len(values)
    t = time.perf_counter()
    for i in range(0, n + (per_call if labels else 0), per_call):
        late = labels[max(i - per_call, 0) : i] if labels else []
        pp.process(values[i : i + per_call], late, now)
        for partial in pp.take_partials():
            partial.to_bytes()
        pp.joiner.store.commit(RocksStore.marker({"predictions": i + per_call}))
    seconds = time.perf_counter() - t
    store.destroy()
    return {"rate": (n + (len(labels) if labels else 0)) / seconds, "seconds": seconds}


def run_restore_core(
    engine: Any, values: list[bytes], workdir: Path, per_call: int = 5000
) -> dict[str, float]:
    """The restore's core without Kafka: the join alone (no partials), RocksDB commit per batch."""
    from streamon.core.stages.join import StagedStore
    from streamon.runtime.store import RocksStore

    path = workdir / f"restore-{uuid.uuid4().hex[:8]}"
    store = RocksStore(path)
    pp = engine.partition_processor(StagedStore(store))
    decoder = pp.decoder
    columnar = hasattr(pp, "process_columns")  # the code before had process_decoded alone
    t = time.perf_counter()
    for i in range(0, len(values), per_call):
        batch = values[i : i + per_call]
        if columnar:
            pp.process_columns(batch, decoder.prediction_columns(batch), [], partials=False)
        else:
            pp.process_decoded(list(zip(batch, decoder.predictions(batch), strict=True)), [], partials=False)
        pp.joiner.store.commit(RocksStore.marker({"predictions": i + per_call}))
    seconds = time.perf_counter() - t
    store.destroy()
    return {"rate": len(values) / seconds, "seconds": seconds}


def ab_child(kind: str, tree: str, n: int) -> None:
    """One run of the core code of the streamon in ``tree``; prints its result as JSON (--ab)."""
    sys.path.insert(0, tree)
    import streamon
    from streamon.engine import build_engine

    workdir = Path(tempfile.mkdtemp(prefix="streamon-bench-ab-"))
    try:
        profile = workdir / "reference.profile.json"
        build_profile_file(profile)
        engine = build_engine(make_settings(settings_dict("127.0.0.1:1", profile, ("p", "l"), "ab", 1)))
        start = round(time.time() - 3600.0)
        if kind == "core":  # as 1c
            values = [v for _, v in events(n, start, n / 2000.0, seed=1)]
            result = run_core(engine, values, workdir)
        else:  # as part 3's restore: uuid4 ids, 5,000 a batch
            values = [v for _, v in events(n, start, n / 2000.0, seed=3, uuids=True)]
            result = run_restore_core(engine, values, workdir)
        print(orjson.dumps({**result, "streamon": streamon.__file__}).decode())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_ab(old: str, n: int, rounds: int) -> list[tuple[str, str, str]]:
    """Same-run A/B of the core code: the tree ``old`` and this one, alternating in fresh
    subprocesses (old, new, new, old, ...), best of ``rounds`` per side."""
    trees = {"before": old, "after": str(ROOT)}
    rows = []
    for kind, label in (("core", "1c. PartitionProcessor.process (+ partials, RocksDB commit)"),
                        ("restore", "restore core (join alone, RocksDB, 5,000 a batch)")):  # fmt: skip
        rates: dict[str, list[float]] = {"before": [], "after": []}
        for r in range(rounds):
            for side in ("before", "after") if r % 2 == 0 else ("after", "before"):
                out = subprocess.run(
                    [sys.executable, __file__, "--ab-child", kind, trees[side], "--ab-n", str(n)],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                result = orjson.loads(out.stdout.strip().splitlines()[-1])
                rates[side].append(result["rate"])
                print(f"{kind} {side}: {result['rate']:,.0f}/s ({result['streamon']})", file=sys.stderr)
        best = {side: max(v) for side, v in rates.items()}
        us = {side: 1e6 / v for side, v in best.items()}
        rows.append(
            (
                f"{label}, {n:,} predictions, best of {rounds}",
                f"{best['before']:,.0f} -> {best['after']:,.0f} events/s",
                f"{us['before']:.1f} -> {us['after']:.1f} us/event, x{best['after'] / best['before']:.2f}; "
                f"all runs before {', '.join(f'{x:,.0f}' for x in rates['before'])}; "
                f"after {', '.join(f'{x:,.0f}' for x in rates['after'])}",
            )
        )
    return rows


def profile_breakdown(prof: cProfile.Profile) -> tuple[list[tuple[str, float]], str]:
    """(component, seconds) of the worker loop from the profile, and the pstats top 15 text."""
    st = pstats.Stats(prof)
    stats: dict[tuple[str, int, str], Any] = st.stats  # type: ignore[attr-defined]

    def match(key: tuple[str, int, str], file_part: str, func: str) -> bool:
        if key[0] == "~":  # C functions: "<method 'consume' of 'cimpl.Consumer' objects>", "<orjson.loads>"
            return file_part == "~" and func in key[2]
        return key[0].endswith(file_part) and key[2] == func

    def cum(file_part: str, func: str, caller: str | None = None) -> float:
        """Cumulative seconds of a function (only through ``caller``); NaN if the code has none."""
        total, found = 0.0, False
        for key, (_cc, _nc, _tt, ct, callers) in stats.items():
            if match(key, file_part, func):
                found = True
                total += ct if caller is None else sum(v[3] for k, v in callers.items() if k[2] == caller)
        return total if found else math.nan

    def own(file_part: str, func: str) -> float:
        return sum(v[2] for k, v in stats.items() if match(k, file_part, func)) or math.nan

    def c_method(name: str, caller: str) -> float:
        return cum("~", f"<method '{name}' of 'cimpl.", caller)

    def add(*xs: float) -> float:
        found = [x for x in xs if not math.isnan(x)]
        return sum(found) if found else math.nan

    rows = [
        ("Worker.step (total)", cum("worker.py", "step")),
        ("stage-1 Consumer.consume (fetch + wait, timeout 0.2 s)", c_method("consume", "_stage1_step")),
        (
            "decode + validate into columns (Decoder.prediction_columns, + per-event fallbacks)",
            cum("events.py", "prediction_columns"),
        ),
        (
            "  of which msgspec decode",
            cum("~", "<method 'decode' of 'msgspec.json.Decoder'", "prediction_columns"),
        ),
        (
            "  of which the per-event path (orjson, fast path, fastjsonschema)",
            cum("events.py", "_prediction"),
        ),
        (
            "type + duplicate checks over the columns (PartitionProcessor._refuse)",
            cum("stage1.py", "_refuse"),
        ),
        ("batch lookup + duplicate ids (Joiner.prefetch)", cum("join.py", "prefetch")),
        ("  RocksDB multi-gets (RocksStore.get_many)", cum("store.py", "get_many")),
        ("join store add (Joiner.add_columns, one staged write)", cum("join.py", "add_columns")),
        ("grouping + summaries (PartitionProcessor._summarise)", cum("stage1.py", "_summarise")),
        ("  of which summarise_rows (per bucket group, vectorised)", cum("profile.py", "summarise_rows")),
        (
            "  of which _feature_values (feature columns, once per batch)",
            cum("profile.py", "_feature_values"),
        ),
        ("  of which add_categorical_feature", cum("summary.py", "add_categorical_feature")),
        ("  of which LogSketch.add", cum("sketch.py", "add", "add_numeric_feature")),
        ("process_columns own time (labels loop, bookkeeping)", own("stage1.py", "process_columns")),
        ("Joiner.expire", cum("join.py", "expire")),
        (
            "take_partials + Partial.to_bytes",
            add(cum("stage1.py", "take_partials"), cum("stage1.py", "to_bytes", "_stage1_step")),
        ),
        ("Producer.produce (partials)", c_method("produce", "_stage1_step")),
        (
            "begin + send_offsets + commit_transaction (stage 1)",
            add(
                c_method("begin_transaction", "_stage1_step"),
                c_method("send_offsets_to_transaction", "_stage1_step"),
                c_method("commit_transaction", "_stage1_step"),
            ),
        ),
        (
            "RocksDB batch write (StagedStore.commit after the Kafka commit)",
            cum("join.py", "commit", "_stage1_step"),
        ),
        ("stage 2 (_stage2_step, total)", cum("worker.py", "_stage2_step")),
        ("  stage-2 Consumer.consume (timeout 0.05 s)", c_method("consume", "_stage2_step")),
        (
            "  stage-2 apply partials (Partial.from_bytes + merge)",
            cum("worker.py", "_apply_partial", "_stage2_step"),
        ),
        ("  stage-2 evaluate + alert rules", cum("worker.py", "_evaluate")),
        (
            "  stage-2 begin/send_offsets/commit_transaction",
            add(
                c_method("begin_transaction", "_stage2_step"),
                c_method("send_offsets_to_transaction", "_stage2_step"),
                c_method("commit_transaction", "_stage2_step"),
            ),
        ),
    ]
    buf = __import__("io").StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(15)
    return rows, buf.getvalue()


# ---------------------------------------------------------------------- part 2: faust


FAUST_ENV = "STREAMON_BENCH_FAUST"


def faust_worker_main() -> None:
    """Entry point of the faust subprocess (``bench_runtime.py --faust-worker``)."""
    import bisect
    import logging

    import faust

    cfg = orjson.loads(os.environ[FAUST_ENV])
    logging.basicConfig(level=logging.WARNING)
    app = faust.App(
        cfg["app_id"],
        broker=f"kafka://{cfg['bootstrap']}",
        store="memory://",
        processing_guarantee=cfg["guarantee"],
        web_enabled=False,
        topic_replication_factor=1,
        topic_partitions=cfg["partitions"],
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(
        cfg["topic"], key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    edges: dict[str, list[float]] = cfg["edges"]
    counts: dict[tuple[str, int], int] = defaultdict(int)  # (model, minute) -> predictions
    hist: dict[str, dict[Any, int]] = {name: defaultdict(int) for name in [*NUMERIC, *CATEGORICAL]}
    marks = Path(cfg["marks"])
    seen = 0

    @app.agent(topic)
    async def monitor(stream: Any) -> None:
        nonlocal seen
        async for value in stream:
            e = orjson.loads(value)
            counts[(e["model"], int(e["ts"] // 60))] += 1
            for name, v in e["features"].items():
                if name in edges:
                    hist[name][None if v is None else bisect.bisect_right(edges[name], v)] += 1
                else:
                    hist[name][v] += 1
            seen += 1
            if seen == 1:
                (marks / "first").write_text(repr(time.time()))
            if seen == cfg["n"]:
                (marks / "last").write_text(repr(time.time()))

    sys.argv = ["faust", "worker", "-l", "warn"]
    app.main()


def run_faust(
    bootstrap: str, topic: str, n: int, workdir: Path, edges: dict[str, list[float]], guarantee: str
) -> dict[str, Any]:
    marks = workdir / f"faust-{guarantee}"
    marks.mkdir()
    app_id = f"bench-faust-{uuid.uuid4().hex[:8]}"
    cfg = {
        "app_id": app_id,
        "bootstrap": bootstrap,
        "guarantee": guarantee,
        "topic": topic,
        "n": n,
        "partitions": len(end_offsets(bootstrap, topic)),
        "edges": edges,
        "marks": str(marks),
    }
    ends = end_offsets(bootstrap, topic)
    log = open(marks / "faust.log", "wb")  # noqa: SIM115 - closed below
    t_spawn = time.time()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--faust-worker"],
        env={**os.environ, FAUST_ENV: orjson.dumps(cfg).decode(), "PYTHONWARNINGS": "ignore"},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(marks),
    )
    t_done = math.nan
    last_total = -1
    stalled_since = time.time()
    try:
        probe = Consumer({"bootstrap.servers": bootstrap, "group.id": app_id})
        tps = [TopicPartition(topic, p) for p in ends]
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"faust exited with {proc.returncode}: {(marks / 'faust.log').read_text()[-2000:]}"
                )
            try:
                offs = {tp.partition: tp.offset for tp in probe.committed(tps, timeout=10)}
            except Exception:  # the group may not exist yet
                offs = {}
            total = sum(max(o, 0) for o in offs.values())
            if offs and all(offs[p] >= ends[p] for p in ends):
                t_done = time.time()
                break
            if total != last_total:
                last_total, stalled_since = total, time.time()
            elif time.time() - stalled_since > 90:
                raise TimeoutError(f"faust ({guarantee}) made no progress for 90s at {total}/{n}")
            time.sleep(0.1)
        probe.close()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
    first = float((marks / "first").read_text())
    last = float((marks / "last").read_text()) if (marks / "last").exists() else math.nan
    return {
        "guarantee": guarantee,
        "rate": (n - 1) / (t_done - first),
        "rate_processing": (n - 1) / (last - first),
        "startup_s": first - t_spawn,
        "seconds": t_done - first,
    }


# ---------------------------------------------------------------------- part 3: join store


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class PeakRss:
    """Samples this process' RSS in a thread; ``peak - start`` is what the measured code added."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.start = self.peak = self.proc.memory_info().rss
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def added_mb(self) -> float:
        return (self.peak - self.start) / 1e6


def bench_store_size(workdir: Path, n: int) -> dict[str, float]:
    """Bytes per pending prediction in RocksDB, written the way the worker writes them."""
    from streamon.core.events import Prediction
    from streamon.core.stages.join import Joiner, StagedStore
    from streamon.runtime.store import RocksStore

    path = workdir / "store-size"
    store = RocksStore(path)
    empty = dir_bytes(path)
    staged = StagedStore(store)
    joiner = Joiner(staged, label_horizon_s=30 * 86400.0, orphan_grace_s=3600.0)
    rng = np.random.default_rng(5)
    ts0 = time.time() - 3 * 86400
    ids = rng.bytes(16 * n)
    scores = np.round(rng.beta(1.2, 9.0, n), 6).tolist()
    tss = np.round(ts0 + np.sort(rng.uniform(0, 3 * 86400, n)), 3).tolist()
    logical = 0
    t0 = time.perf_counter()
    for i in range(n):
        pid = str(uuid.UUID(bytes=ids[16 * i : 16 * i + 16], version=4))
        p = Prediction(
            pid, MODEL, ts=tss[i], score=scores[i], predicted=int(scores[i] >= 0.5), variant="default"
        )
        joiner.contains_prediction(pid)  # the worker's duplicate check
        joiner.add_prediction(p)
        if (i + 1) % 5000 == 0:
            logical += sum(len(k) + len(v or b"") for k, v in staged.pending.items())
            staged.commit(RocksStore.marker({"predictions": i + 1}))
    logical += sum(len(k) + len(v or b"") for k, v in staged.pending.items())
    staged.commit(RocksStore.marker({"predictions": n}))
    write_s = time.perf_counter() - t0
    db = store._db
    db.flush()
    before_compact = dir_bytes(path)
    db.compact_range(None, None)
    sst = int(db.property_int_value("rocksdb.total-sst-files-size") or 0)
    after = dir_bytes(path)
    store.close()
    shutil.rmtree(path, ignore_errors=True)
    return {
        "n": n,
        "write_rate": n / write_s,
        "logical_per": logical / n,
        "flushed_per": (before_compact - empty) / n,
        "dir_per": (after - empty) / n,
        "sst_per": sst / n,
        "dir_mb": after / 1e6,
    }


def bench_restore(bootstrap: str, workdir: Path, profile: Path, n: int) -> dict[str, float]:
    """restore_partition of a partition whose predictions topic holds ``n`` pending predictions."""
    from streamon.core.stages.join import StagedStore
    from streamon.engine import build_engine
    from streamon.runtime.restore import restore_partition
    from streamon.runtime.store import RocksStore

    sfx = uuid.uuid4().hex[:8]
    topic = f"restore-predictions-{sfx}"
    create_topics(bootstrap, {topic: 1})
    t = time.perf_counter()
    _, size = produce(bootstrap, topic, events(n, time.time() - 2 * 86400, 2 * 86400.0, seed=3, uuids=True))
    produce_s = time.perf_counter() - t
    settings = make_settings(settings_dict(bootstrap, profile, (topic, f"restore-labels-{sfx}"), sfx, 1))
    engine = build_engine(settings)
    path = workdir / "restore-store"
    store = RocksStore(path)
    processor = engine.partition_processor(StagedStore(store), source=f"{topic}:0")
    end = end_offsets(bootstrap, topic)[0]
    # The ceiling on the same topic right before and after the restore (the machine is noisy).
    ceilings = [run_baseline(bootstrap, topic, n)["rate"]]
    gc.collect()
    # The time of the first batch: the ceiling is timed from its first non-empty consume, so
    # the restore is also given from there (its consumer's start and first fetch excluded).
    import streamon.runtime.restore as restore_module

    inner = restore_module.read_assigned
    first: list[float] = []

    def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for batch in inner(*args, **kwargs):
            if not first:
                first.append(time.perf_counter())
            yield batch

    restore_module.read_assigned = timed  # type: ignore[assignment]
    try:
        with PeakRss() as mem:
            t0 = time.perf_counter()
            replayed = restore_partition(settings, processor, store, 0, {}, {topic: end})
            t1 = time.perf_counter()
            seconds = t1 - t0
    finally:
        restore_module.read_assigned = inner
    ceilings.append(run_baseline(bootstrap, topic, n)["rate"])
    pending = processor.joiner.pending_predictions
    store._db.flush()
    store._db.compact_range(None, None)
    size_per = dir_bytes(path) / max(pending, 1)
    store.close()
    shutil.rmtree(path, ignore_errors=True)
    AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic])
    return {
        "n": replayed,
        "pending": pending,
        "seconds": seconds,
        "rate": replayed / seconds,
        "first_batch_s": first[0] - t0 if first else math.nan,
        "rate_from_first": replayed / (t1 - first[0]) if first else math.nan,
        "ceiling_before": ceilings[0],
        "ceiling_after": ceilings[1],
        "peak_mb": mem.added_mb,
        "event_bytes": size / n,
        "produce_s": produce_s,
        "dir_per": size_per,
    }


# ---------------------------------------------------------------------- part 4: alert latency


class Background(threading.Thread):
    """Steady stream of normal predictions at wall-clock event time."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.topic, self.rate = topic, rate
        self.p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.pool = [orjson.loads(v) for _, v in events(2000, 0.0, 1.0, seed=42)]
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:
        tick = 0.05
        per_tick = max(1, int(self.rate * tick))
        i = 0
        next_t = time.monotonic()
        while not self.stopping.is_set():
            now = time.time()
            for _ in range(per_tick):
                doc = dict(self.pool[i % len(self.pool)])
                doc["prediction_id"] = f"bg-{i:010d}"
                doc["ts"] = round(now, 3)
                self.p.produce(self.topic, key=doc["prediction_id"].encode(), value=orjson.dumps(doc))
                i += 1
            self.sent = i
            self.p.poll(0)
            next_t += tick
            self.stopping.wait(max(0.0, next_t - time.monotonic()))
        self.p.flush(10)


def bench_alert_latency(
    bootstrap: str, workdir: Path, profile: Path, rounds: int, rate: float, burst: int
) -> dict[str, Any]:
    sfx = uuid.uuid4().hex[:8]
    preds, labels = f"alert-predictions-{sfx}", f"alert-labels-{sfx}"
    create_topics(bootstrap, {preds: 3, labels: 3})
    d = settings_dict(bootstrap, profile, (preds, labels), sfx, 3)
    d["kafka"]["partials_partitions"] = 2
    d["windows"].update({"bucket": 1.0, "current": 5.0, "reference": 60.0})
    d["alerts"]["rules"] = [
        {
            "alert": ALERT_RULE,
            "metric": "ml_data_drift_psi_score",
            "op": ">",
            "threshold": 0.2,
            "for": 0.0,
            "severity": "critical",
            "category": "data_quality",
            "summary": "PSI of {{ feature }} above 0.2",
        }
    ]
    settings = make_settings(d)
    config = workdir / f"alert-config-{sfx}.yaml"
    config.write_text(yaml.safe_dump(d, sort_keys=False))
    alerts_topic = settings.kafka.topics.alerts
    bg = Background(bootstrap, preds, rate)
    bg.start()
    log = open(workdir / "alert-worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "streamon"),
            "worker",
            "--config",
            str(config),
            "--state-dir",
            str(workdir / "alert-state"),
            "--instance-id",
            "bench-alert",
            "--metrics-port",
            "0",
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "STREAMON_EVAL_SECONDS": "1"},
    )
    state: dict[str, str] = {}
    lat_recv: list[float] = []
    lat_created: list[float] = []
    resolve_s: list[float] = []
    c: Consumer | None = None

    def poll_alert(deadline: float) -> tuple[dict[str, Any], float, float] | None:
        assert c is not None
        while time.time() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited: {(workdir / 'alert-worker.log').read_text()[-2000:]}")
            m = c.poll(0.02)
            if m is None or m.error() is not None:
                continue
            got = time.time()
            a = orjson.loads(m.value())  # type: ignore[arg-type]
            state[a["fingerprint"]] = a["status"]
            if a["alertname"] == ALERT_RULE and a["labels"].get("feature") == DRIFT_FEATURE:
                return a, got, m.timestamp()[1] / 1000.0
        return None

    try:
        # Wait for the worker to create the alerts topic and to consume the background stream.
        deadline = time.time() + 90
        while time.time() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited: {(workdir / 'alert-worker.log').read_text()[-2000:]}")
            try:
                done = committed(bootstrap, settings.kafka.group_id, preds, [0, 1, 2])
            except Exception:
                done = {}
            if sum(max(o, 0) for o in done.values()) > rate * 2:
                break
            time.sleep(0.5)
        c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-alerts-{sfx}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        c.assign([TopicPartition(alerts_topic, 0, 0)])
        time.sleep(6.0)  # a full current window of background traffic
        while poll_alert(time.time() + 1.0) is not None:  # drain start-up alerts (tiny windows are noisy)
            pass
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        for r in range(rounds):
            # The feature's alert must be resolved before the next burst.
            fp_firing = [f for f, s in state.items() if s == "firing"]
            wait_until = time.time() + 30
            while fp_firing and time.time() < wait_until:
                poll_alert(time.time() + 0.5)
                fp_firing = [f for f, s in state.items() if s == "firing"]
            time.sleep(0.5)
            now = time.time()
            burst_events = list(events(burst, now, 0.05, seed=1000 + r, prefix=f"burst{r}", drift=True))
            t0 = time.time()
            for key, value in burst_events:
                producer.produce(preds, key=key, value=value)
            producer.flush(10)
            while True:
                hit = poll_alert(t0 + 30)
                if hit is None:
                    raise TimeoutError(f"round {r}: no firing alert within 30s")
                a, got, created = hit
                if a["status"] == "firing":
                    lat_recv.append(got - t0)
                    lat_created.append(created - t0)
                    break
            while True:
                hit = poll_alert(t0 + 60)
                if hit is None:
                    raise TimeoutError(f"round {r}: not resolved within 60s")
                if hit[0]["status"] == "resolved":
                    resolve_s.append(hit[1] - t0)
                    break
    finally:
        bg.stopping.set()
        bg.join(15)
        if c is not None:
            c.close()
        worker.terminate()
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    return {"rounds": len(lat_recv), "recv": lat_recv, "created": lat_created, "resolve": resolve_s}


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 20 samples is the largest)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


# ---------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", help="HOST:PORT of a running broker (default: start one)")
    ap.add_argument("--quick", action="store_true", help="smaller inputs (< ~3 minutes)")
    ap.add_argument("--parts", default="1,2,3,4", help="comma-separated subset of 1,2,3,4")
    ap.add_argument("--restore-only", action="store_true", help="part 3: the restore alone")
    ap.add_argument("--ab", metavar="OLD_TREE", help="only an A/B of the core code: OLD_TREE vs this tree")
    ap.add_argument("--ab-rounds", type=int, default=6, help="--ab: runs per side")
    ap.add_argument("--ab-n", type=int, default=50_000, help="--ab: predictions per run")
    ap.add_argument("--batch-size", type=int, help="kafka.batch_size of the workers (default: the config's)")
    ap.add_argument("--ab-child", nargs=2, metavar=("KIND", "TREE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    global BATCH_SIZE
    BATCH_SIZE = args.batch_size
    if args.ab_child:
        ab_child(args.ab_child[0], args.ab_child[1], args.ab_n)
        return
    if args.ab:
        for row in run_ab(args.ab, args.ab_n, args.ab_rounds):
            print("| " + " | ".join(row) + " |")
        return
    parts = {int(p) for p in args.parts.split(",")}
    q = args.quick
    n1 = 50_000 if q else 300_000
    n3_store = 100_000 if q else 1_000_000
    n3_restore = 100_000 if q else 1_000_000
    rounds = 5 if q else 20

    broker_dir = None
    bootstrap = args.bootstrap
    if not bootstrap:
        import broker as broker_script  # deploy/kafka/broker.py

        broker_dir = Path(tempfile.mkdtemp(prefix="streamon-bench-kafka-"))
        info = broker_script.start(broker_dir, heap="1g")
        bootstrap = info.bootstrap
        print(f"started Kafka at {bootstrap} in {info.started_s}s", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="streamon-bench-runtime-"))
    profile = workdir / "reference.profile.json"
    build_profile_file(profile)
    rows: list[tuple[str, str, str]] = []
    notes: list[str] = []
    started = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    try:
        topic = f"bench-predictions-{uuid.uuid4().hex[:8]}"
        labels = topic.replace("predictions", "labels")
        start1 = round(time.time() - 3600.0)  # event times: an hour ago, at 2,000 predictions/s
        if parts & {1, 2}:
            create_topics(bootstrap, {topic: 6, labels: 6})
            t = time.perf_counter()
            n, size = produce(bootstrap, topic, events(n1, start1, n1 / 2000.0, seed=1))
            say(f"produced {n:,} events of {size / n:.0f} bytes on average in {time.perf_counter() - t:.1f}s")
            rows.append(
                (
                    "input",
                    f"{n:,} predictions, 10 features, {size / n:.0f} B avg, 6 partitions, uncompressed",
                    "",
                )
            )

        base: list[dict[str, Any]] = []
        work: list[dict[str, Any]] = []
        core: list[dict[str, Any]] = []
        core_labels: list[dict[str, Any]] = []

        def worker_run() -> dict[str, Any]:
            sfx = uuid.uuid4().hex[:8]
            s = make_settings(settings_dict(bootstrap, profile, (topic, labels), sfx, 6))
            work.append(run_worker(s, workdir / f"state-{sfx}", n1))
            say(f"(b) streamon worker: {work[-1]['rate']:,.0f}/s in {work[-1]['seconds']:.1f}s")
            return work[-1]

        if 1 in parts:
            from streamon.engine import build_engine

            values = [v for _, v in events(n1, start1, n1 / 2000.0, seed=1)]  # the same bytes as produced
            label_values = labels_for(values)
            core_engine = build_engine(
                make_settings(settings_dict(bootstrap, profile, (topic, labels), "core", 6))
            )
            for rep in range(2):  # interleaved a, b, c, a, c, b: each sees the same noise
                base.append(run_baseline(bootstrap, topic, n1))
                say(f"(a) consume + orjson.loads: {base[-1]['rate']:,.0f}/s")
                if rep == 0:
                    worker_run()
                core.append(run_core(core_engine, values, workdir))
                say(f"(c) PartitionProcessor alone: {core[-1]['rate']:,.0f}/s")
                core_labels.append(run_core(core_engine, values, workdir, labels=label_values))
                say(f"(d) PartitionProcessor alone + a label each: {core_labels[-1]['rate']:,.0f}/s")
            worker_run()  # last, so that it sits next to the faust run
            del values, label_values
            # Profile: a fresh group over the first events.
            sfx = uuid.uuid4().hex[:8]
            s = make_settings(settings_dict(bootstrap, profile, (topic, labels), sfx, 6))
            prof = cProfile.Profile()
            pw = run_worker(s, workdir / f"state-{sfx}", min(n1, 40_000), profile=prof)
            say(f"profiled worker run: {pw['rate']:,.0f}/s (cProfile overhead included)")
            breakdown, top = profile_breakdown(prof)

        if 2 in parts:
            from streamon.engine import build_engine

            if not work:
                worker_run()
            before = work[-1]
            s = make_settings(settings_dict(bootstrap, profile, (topic, labels), "edges", 6))
            spec = build_engine(s).models[MODEL]
            edges = {k: v.tolist() for k, v in spec.edges.items()}
            try:
                fr = run_faust(bootstrap, topic, n1, workdir, edges, "exactly_once")
            except (RuntimeError, TimeoutError) as exc:
                notes.append(
                    f"faust exactly_once failed against this broker ({str(exc)[-300:]}); at_least_once used"
                )
                say(notes[-1])
                fr = run_faust(bootstrap, topic, n1, workdir, edges, "at_least_once")
            say(f"faust: {fr}")
            after = worker_run()  # streamon right before and right after faust: the ratio sees the same load
            streamon_rate = (before["rate"] + after["rate"]) / 2
            best_faust = max(fr["rate"], fr["rate_processing"])
            r = streamon_rate / best_faust
            rows_2 = [
                (
                    f"2. faust-streaming agent ({fr['guarantee']}), first event -> offsets committed",
                    f"{fr['rate']:,.0f} events/s",
                    f"agent alone (first -> last event): {fr['rate_processing']:,.0f}/s; "
                    f"start to first event {fr['startup_s']:.1f} s",
                ),
                (
                    "2. streamon worker, runs right before and after faust (mean)",
                    f"{streamon_rate:,.0f} events/s",
                    f"{before['rate']:,.0f} and {after['rate']:,.0f}",
                ),
                (
                    "streamon / faust",
                    f"{r:.1f}x",
                    f"target >= 10x: {'met' if r >= 10 else 'NOT met'} (vs faust's faster figure)",
                ),
            ]

        if work and base:
            a = max(base, key=lambda r: r["rate"])
            b = max(work, key=lambda r: r["rate"])
            c = max(core, key=lambda r: r["rate"])
            ratio = b["rate"] / a["rate"]
            rows += [
                ("1a. consume + orjson.loads (ceiling), best of 2", f"{a['rate']:,.0f} events/s", ""),
                (
                    f"1b. streamon stage 1 worker (in-process), best of {len(work)}",
                    f"{b['rate']:,.0f} events/s",
                    f"target >= 150,000/s: {'met' if b['rate'] >= 150_000 else 'NOT met'}; all runs: "
                    + ", ".join(f"{w['rate']:,.0f}" for w in work),
                ),
                ("1b / 1a", f"{ratio:.1%}", f"target >= 50%: {'met' if ratio >= 0.5 else 'NOT met'}"),
                (
                    "1c. PartitionProcessor.process alone (no Kafka; RocksDB; 2,500/call), best of 2",
                    f"{c['rate']:,.0f} events/s",
                    f"1c / 1a = {c['rate'] / a['rate']:.1%}: the ceiling of the current core code",
                ),
                (
                    "1d. the same with a label per prediction (labels of the call before), best of 2",
                    f"{max(x['rate'] for x in core_labels):,.0f} events/s",
                    f"predictions + labels; 1d / 1c = {max(x['rate'] for x in core_labels) / c['rate']:.1%}",
                ),
                ("1b. worker start to assignment (excluded above)", f"{b['startup_s']:.1f} s", ""),
                (
                    "1b. transactions aborted / events rejected",
                    f"{sum(w['aborts'] for w in work)} / {sum(w['invalid'] for w in work)}",
                    "committed offsets = end: " + ("yes" if all(w["committed_ok"] for w in work) else "NO"),
                ),
                (
                    "1b. join store after run (pending predictions, MB on disk)",
                    f"{b['pending']:,} / {b['store_mb']:.1f} MB",
                    "",
                ),
            ]
            print("\n### Wall-clock split of the worker loop (best unprofiled run)\n")
            print("| part | seconds | share |\n|---|---:|---:|")
            for name, sec in wall_split(b):
                print(f"| {name} | {sec:.2f} | {sec / b['seconds']:.1%} |")
            print("\n### cProfile of the worker loop (top 15 by own time)\n\n```", flush=True)
            print(top.strip())
            print("```\n\n### Where the worker loop's time goes (cumulative seconds, profiled run)\n")
            total = breakdown[0][1]
            print("| component | seconds | share of step() |\n|---|---:|---:|")
            for name, sec in breakdown:
                if not math.isnan(sec):  # rows whose functions the current code does not have are left out
                    print(f"| {name} | {sec:.2f} | {sec / total:.1%} |")
            print(flush=True)
        if 2 in parts:
            rows += rows_2

        if 3 in parts and not args.restore_only:
            st = bench_store_size(workdir, n3_store)
            say(f"store: {st}")
            rows += [
                (
                    f"3. join store, {st['n']:,} pending predictions (uuid4 ids): "
                    "bytes/prediction on disk after flush + compaction",
                    f"{st['dir_per']:.1f} B",
                    f"SST only {st['sst_per']:.1f} B; key+value {st['logical_per']:.1f} B; "
                    f"before compaction {st['flushed_per']:.1f} B",
                ),
                (
                    "3. Joiner -> RocksDB write rate (commit every 5000)",
                    f"{st['write_rate']:,.0f} predictions/s",
                    "",
                ),
            ]
        if 3 in parts:
            # The restore's memory no longer grows with the pending predictions (docs/benchmarks.md),
            # but stay clear of what this machine has free: 1 GB plus ~300 bytes per prediction.
            room = int((psutil.virtual_memory().available - 1e9) / 300)
            if room < n3_restore:
                notes.append(
                    f"restore reduced from {n3_restore:,} to {max(room, 50_000):,} predictions: "
                    f"{psutil.virtual_memory().available / 1e9:.1f} GB free"
                )
                n3_restore = max(room, 50_000)
            rs = bench_restore(bootstrap, workdir, profile, n3_restore)
            say(f"restore: {rs}")
            best = max(rs["ceiling_before"], rs["ceiling_after"])
            rows += [
                (
                    f"3. restore_partition, {rs['pending']:,} pending predictions "
                    f"({rs['event_bytes']:.0f} B events, 1 partition)",
                    f"{rs['seconds']:.1f} s = {rs['rate']:,.0f} events/s",
                    f"peak RSS added {rs['peak_mb']:,.0f} MB (target <= 300 MB); "
                    f"restored store {rs['dir_per']:.1f} B/prediction",
                ),
                (
                    "3. consume + orjson.loads of the same topic (ceiling), before / after the restore",
                    f"{rs['ceiling_before']:,.0f} / {rs['ceiling_after']:,.0f} events/s",
                    f"restore / best ceiling = {rs['rate'] / best:.1%} (target >= 50%)",
                ),
                (
                    "3. restore_partition from its first batch (as the ceiling is timed)",
                    f"{rs['rate_from_first']:,.0f} events/s",
                    f"restore / best ceiling = {rs['rate_from_first'] / best:.1%}; "
                    f"consumer start to first batch {rs['first_batch_s']:.2f} s",
                ),
            ]

        if 4 in parts:
            al = bench_alert_latency(bootstrap, workdir, profile, rounds, rate=1000.0, burst=2500)
            say(f"alerts: {al}")
            rows += [
                (
                    f"4. alert latency, burst produced -> firing alert received ({al['rounds']} rounds)",
                    f"p50 {pct(al['recv'], 50):.2f} s, p99 {pct(al['recv'], 99):.2f} s",
                    f"min {min(al['recv']):.2f} s, max {max(al['recv']):.2f} s",
                ),
                (
                    "4. same, to the alert's produce time (CreateTime)",
                    f"p50 {pct(al['created'], 50):.2f} s, p99 {pct(al['created'], 99):.2f} s",
                    f"resolve after the burst left the 5 s window: p50 {pct(al['resolve'], 50):.1f} s",
                ),
            ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if broker_dir is not None:
            import broker as broker_script

            broker_script.stop(broker_dir)
            shutil.rmtree(broker_dir, ignore_errors=True)

    print(
        f"\n### Streaming runtime ({'quick' if q else 'full'} run, {os.cpu_count()} cores, "
        f"{time.perf_counter() - started:.0f} s)\n"
    )
    print("| measurement | result | ratio / target / detail |\n|---|---|---|")
    for name, value, detail in rows:
        print(f"| {name} | {value} | {detail} |")
    for n_ in notes:
        print(f"\nNote: {n_}")


if __name__ == "__main__":
    if "--faust-worker" in sys.argv:
        faust_worker_main()
    else:
        main()
