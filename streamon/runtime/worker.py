"""``streamon worker``: both stages of design.md §1 in one process.

Stage 1 consumes the co-partitioned predictions and labels topics (consumer group
``kafka.group_id``, range assignment so partition *i* of both topics lands on the same
worker), runs one :class:`~streamon.core.stage1.PartitionProcessor` per partition with
a RocksDB join store, and publishes the partial deltas, the dead letters and the input
offsets in ONE Kafka transaction per batch.

Stage 2 consumes the partials topic (group ``<group_id>-aggregate``, read_committed),
merges them into an :class:`~streamon.core.stage2.Aggregator`, evaluates on the
configured interval, and publishes alert events in a transaction with the partials
offsets. After a rebalance it rebuilds from the partials topic (its changelog).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import os
import signal
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from streamon.config import Settings
from streamon.core.alerts import AlertEngine
from streamon.core.evaluate import HistogramSample, Sample, Snapshot
from streamon.core.join import StagedStore
from streamon.core.stage1 import Partial, PartitionProcessor
from streamon.core.stage2 import Aggregator
from streamon.engine import Engine, build_engine
from streamon.errors import StreamonError
from streamon.exporter import SnapshotCollector
from streamon.kafka_client import SecurityWatch, install_log_scrubber, kafka_client_config
from streamon.runtime.http import MetricsServer
from streamon.runtime.store import RocksStore
from streamon.runtime.topics import ensure_topics, partition_counts

log = logging.getLogger("streamon.worker")

BATCH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Ops:
    """Per-worker operational counters, exported as streamon_* metrics."""

    processed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    invalid: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    rebalances: int = 0
    aborts: int = 0
    batch_counts: list[int] = field(default_factory=lambda: [0] * (len(BATCH_BUCKETS_S) + 1))
    batch_sum: float = 0.0
    last_loop: float = field(default_factory=time.monotonic)
    newest_event: float = -math.inf
    restore_seconds: float = 0.0
    # Join counters of partitions this worker no longer owns (keeps the counters monotonic).
    orphaned_before: int = 0
    corrections_before: int = 0


def _client_base(settings: Settings) -> dict[str, Any]:
    # librdkafka's own log lines (one per failed connection attempt, per client) go to a
    # logger that is silent unless debugging; streamon reports what matters in one line.
    quiet = logging.getLogger("streamon.librdkafka")
    if not quiet.level:
        quiet.setLevel(logging.DEBUG if logging.getLogger().isEnabledFor(logging.DEBUG) else logging.CRITICAL)
    # Secrets resolved from kafka.client's _file / _env keys; error_cb is a SecurityWatch.
    return {"logger": quiet, **kafka_client_config(settings)}


class Worker:
    """One streamon worker process (stage 1 + stage 2)."""

    def __init__(
        self,
        settings: Settings,
        state_dir: Path,
        instance_id: str | None = None,
        metrics_port: int | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or build_engine(settings)
        self.state_dir = state_dir
        self.instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.topics = settings.kafka.topics
        self.ops = Ops()
        self.stopping = threading.Event()
        self.ready = False
        self.processors: dict[int, PartitionProcessor] = {}
        self.stores: dict[int, RocksStore] = {}
        self.aggregator: Aggregator = self.engine.aggregator()
        self.alerts = AlertEngine(self.engine.rules)
        self.alerts_infra = AlertEngine(self.engine.rules)  # per-worker samples, wall-clock time
        self.snapshot: Snapshot | None = None
        self._stage2_dirty = True  # rebuild stage-2 state before the next step
        self._assigned1 = self._assigned2 = False
        self._buffer: list[Message] = []
        self._buffer_since = 0.0
        self._next_eval = 0.0

        base = _client_base(settings)
        self.security: SecurityWatch = base["error_cb"]
        install_log_scrubber(self.security.secrets)  # librdkafka texts may echo configuration
        group = settings.kafka.group_id
        self.admin = AdminClient(base)
        # Fails fast, in one line, when Kafka is unreachable or refuses the credentials.
        partition_counts(self.admin)
        common_consumer = {
            **base,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            # Range assignment keeps partition i of both input topics on one worker.
            "partition.assignment.strategy": "range",
            "max.poll.interval.ms": 600_000,  # restores run inside the rebalance callback
            "statistics.interval.ms": 5000,  # refreshes the cached high watermarks used for lag
        }
        self.c1 = Consumer({**common_consumer, "group.id": group})
        self.c2 = Consumer({**common_consumer, "group.id": f"{group}-aggregate"})
        producer = {**base, "transaction.timeout.ms": 15_000, "linger.ms": 5, "compression.type": "lz4"}
        # Stable transactional ids: a restarted worker fences its predecessor's open transaction.
        self.p1 = Producer({**producer, "transactional.id": f"{group}-s1-{self.instance_id}"})
        self.p2 = Producer({**producer, "transactional.id": f"{group}-s2-{self.instance_id}"})

        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(self._scrape))
        port = settings.monitoring.prometheus.port if metrics_port is None else metrics_port
        host = settings.monitoring.prometheus.bind_address
        web_file = settings.monitoring.prometheus.web_config_file
        # Read again (validated at config load): the certificates in use are those on disk now.
        from streamon.webconfig import load_web_config

        web = load_web_config(web_file) if web_file is not None else None
        try:
            self.http = MetricsServer(
                registry,
                host,
                port,
                settings.monitoring.prometheus.metrics_path,
                healthy=lambda: time.monotonic() - self.ops.last_loop < 60,
                ready=lambda: self.ready,
                web_config=web,
                health_without_auth=settings.monitoring.prometheus.health_without_auth,
            )
        except OSError as exc:
            raise StreamonError(
                f"cannot serve metrics on {host}:{port} ({exc.strerror}): free the port or set "
                "monitoring.prometheus.port / --metrics-port"
            ) from None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ensure_topics(self.admin, self.settings)
        if self.settings.monitoring.dashboards.auto_deploy:
            from streamon.dashboards import auto_deploy

            # A slow or absent Grafana must not delay processing; auto_deploy never raises.
            threading.Thread(target=auto_deploy, args=(self.settings, log), daemon=True).start()
        self.http.start()
        log.info("metrics on %s", self.http.url(self.settings.monitoring.prometheus.metrics_path))
        self.p1.init_transactions(30)
        self.p2.init_transactions(30)
        self.c1.subscribe(
            [self.topics.predictions, self.topics.labels],
            on_assign=self._on_assign1,
            on_revoke=self._on_revoke1,
        )
        self.c2.subscribe([self.topics.partials], on_assign=self._on_assign2, on_revoke=self._on_revoke2)

    def run(self, timeout_s: float | None = None) -> None:
        """Process until SIGTERM / :meth:`stop` (or ``timeout_s``), then shut down cleanly."""
        self.start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while not self.stopping.is_set() and (deadline is None or time.monotonic() < deadline):
                self.step()
        finally:
            self.close()

    def stop(self) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def close(self) -> None:
        """Finish: the current batch is already committed; leave both groups, close stores."""
        for consumer in (self.c1, self.c2):
            try:
                consumer.close()
            except KafkaException:
                pass
        for store in self.stores.values():
            store.close()
        self.stores.clear()
        self.p1.flush(10)
        self.p2.flush(10)
        self.http.stop()

    def _heartbeat(self) -> None:
        self.ops.last_loop = time.monotonic()

    def step(self) -> None:
        self.ops.last_loop = time.monotonic()
        self.security.check()  # credentials refused (e.g. rotated): stop with one line
        self._stage1_step()
        self._stage2_step()
        # Ready once both groups have assigned this worker its share (possibly none) and it is restored.
        self.ready = (
            self._assigned1 and self._assigned2 and not (self._stage2_dirty and bool(self.c2.assignment()))
        )

    # ------------------------------------------------------------------ stage 1

    def _store_path(self, partition: int) -> Path:
        return self.state_dir / f"{self.settings.kafka.group_id}-{self.topics.predictions}-{partition}"

    def _on_assign1(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.ops.rebalances += 1
        by_topic: dict[str, set[int]] = defaultdict(set)
        for tp in partitions:
            by_topic[tp.topic].add(tp.partition)
        if by_topic[self.topics.predictions] != by_topic[self.topics.labels]:
            # Cannot happen with range assignment and equal partition counts; refuse loudly if it does.
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "inputs not co-partitioned"))
        started = time.monotonic()
        committed = consumer.committed(partitions, timeout=30)
        for part in sorted(by_topic[self.topics.predictions]):
            offsets = {tp.topic: tp.offset for tp in committed if tp.partition == part}
            self._open_partition(part, offsets)
        self.ops.restore_seconds = time.monotonic() - started
        self._assigned1 = True
        log.info(
            "assigned input partitions %s, restored in %.2fs",
            sorted(by_topic[self.topics.predictions]),
            self.ops.restore_seconds,
            extra={"partitions": sorted(by_topic[self.topics.predictions]), "stage": 1},
        )

    def _open_partition(self, part: int, committed: dict[str, int]) -> None:
        """Open the partition's join store and bring it up to the committed offsets."""
        from streamon.runtime.restore import restore_partition

        store = RocksStore(self._store_path(part))
        marker = store.offsets()
        if marker is not None and any(marker.get(t, 0) > max(o, 0) for t, o in committed.items()):
            # The store is ahead of the group (offsets reset by an operator): start it afresh.
            store.destroy()
            store = RocksStore(self._store_path(part))
            marker = None
        staged = StagedStore(store)  # writes reach RocksDB only after the Kafka commit
        processor = self.engine.partition_processor(staged, source=f"{self.topics.predictions}:{part}")
        restore_partition(
            self.settings, processor, store, part, marker or {}, committed, heartbeat=self._heartbeat
        )
        self.stores[part] = store
        self.processors[part] = processor

    def _on_revoke1(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {tp.partition for tp in partitions}
        self._buffer = [m for m in self._buffer if m.partition() not in revoked]  # the next owner reads them
        for part in revoked:
            processor = self.processors.pop(part, None)
            if processor is not None:
                self.ops.orphaned_before += processor.joiner.stats.orphaned
                self.ops.corrections_before += processor.joiner.stats.corrections
            store = self.stores.pop(part, None)
            if store is not None:
                store.close()

    def _stage1_step(self) -> None:
        # Messages wait in a buffer until a batch is full or flush_interval has passed: one
        # transaction per flush, never an open transaction across a rebalance callback.
        room = self.settings.kafka.batch_size - len(self._buffer)
        fresh = self.c1.consume(num_messages=max(room, 1), timeout=0.2)
        if fresh and not self._buffer:
            self._buffer_since = time.monotonic()
        self._buffer.extend(fresh)
        due = time.monotonic() - self._buffer_since >= self.settings.kafka.flush_interval
        if not self._buffer or (len(self._buffer) < self.settings.kafka.batch_size and not due):
            return
        msgs, self._buffer = self._buffer, []
        started = time.perf_counter()
        batches: dict[int, tuple[list[Message], list[Message]]] = defaultdict(lambda: ([], []))
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            if m.error() is not None:
                if m.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", m.error())
                continue
            topic, part = m.topic(), m.partition()
            batches[part][0 if topic == self.topics.predictions else 1].append(m)
            last[(topic, part)] = m.offset()
        now = time.time()
        self.p1.begin_transaction()
        try:
            for part, (preds, labels) in batches.items():
                processor = self.processors.get(part)
                if processor is None:  # revoked in between; its offsets are not committed here
                    continue
                rejected = processor.process([m.value() for m in preds], [m.value() for m in labels], now)
                self._dead_letters(rejected, preds, labels)
                for partial in processor.take_partials():
                    self.p1.produce(
                        self.topics.partials, key=partial.model.encode(), value=partial.to_bytes()
                    )
                self.ops.processed[self.topics.predictions] += len(preds)
                self.ops.processed[self.topics.labels] += len(labels)
                if math.isfinite(processor.watermark):
                    self.ops.newest_event = max(self.ops.newest_event, processor.watermark)
            offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items() if p in self.processors]
            self.p1.send_offsets_to_transaction(offsets, self.c1.consumer_group_metadata(), 30)
            self.p1.commit_transaction(30)
        except KafkaException as exc:
            self._abort_stage1(exc)
            return
        for part in batches:
            store = self.stores.get(part)
            if store is None:
                continue
            marker = {t: o + 1 for (t, p), o in last.items() if p == part}
            previous = store.offsets() or {}
            self.processors[part].joiner.store.commit(RocksStore.marker({**previous, **marker}))  # type: ignore[attr-defined]
        self._observe_batch(time.perf_counter() - started)

    def _observe_batch(self, seconds: float) -> None:
        self.ops.batch_counts[bisect.bisect_left(BATCH_BUCKETS_S, seconds)] += 1
        self.ops.batch_sum += seconds

    def _dead_letters(self, rejected: list[Any], preds: list[Message], labels: list[Message]) -> None:
        if not rejected:
            return
        # Map each rejected raw value back to its message (by identity of the bytes object).
        index = {id(m.value()): m for m in preds + labels}
        for r in rejected:
            m = index.get(id(r.raw))
            topic = m.topic() if m is not None else r.topic
            headers = [
                ("streamon.reason", r.reason.encode()),
                ("streamon.detail", r.detail.encode()[:1000]),
                ("streamon.source.topic", topic.encode()),
            ]
            if m is not None:
                headers += [
                    ("streamon.source.partition", str(m.partition()).encode()),
                    ("streamon.source.offset", str(m.offset()).encode()),
                ]
            self.p1.produce(
                self.topics.dead_letter, key=m.key() if m is not None else None, value=r.raw, headers=headers
            )
            self.ops.invalid[(topic, r.reason)] += 1

    def _abort_stage1(self, exc: KafkaException) -> None:
        """Abort the batch, forget its in-memory effects and rewind to the committed offsets."""
        log.warning("stage-1 transaction failed, aborting: %s", exc)
        self.ops.aborts += 1
        try:
            self.p1.abort_transaction(30)
        except KafkaException as again:
            log.error("abort failed: %s", again)
        assignment = self.c1.assignment()
        for processor in self.processors.values():
            processor.joiner.store.discard()  # type: ignore[attr-defined]
            processor.joiner.restore()
            processor.take_partials()
        committed = self.c1.committed(assignment, timeout=30)
        for tp in committed:
            self.c1.seek(
                TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
            )

    # ------------------------------------------------------------------ stage 2

    def _on_assign2(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.ops.rebalances += 1
        self._stage2_dirty = True
        self._assigned2 = True

    def _on_revoke2(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The models of these partitions now belong to another worker: stop exporting them here.
        self.aggregator = self.engine.aggregator()
        self.alerts = AlertEngine(self.engine.rules)
        self.snapshot = None
        self._stage2_dirty = True

    def _rebuild_stage2(self) -> None:
        """Fresh aggregator from the partials topic (to the committed offsets) and alert state."""
        from streamon.runtime.restore import read_range

        assignment = self.c2.assignment()
        self.aggregator = self.engine.aggregator()
        self.alerts = AlertEngine(self.engine.rules)
        if assignment:
            committed = {tp.partition: tp.offset for tp in self.c2.committed(assignment, timeout=30)}
            for msg in read_range(self.settings, self.topics.partials, committed):
                self._apply_partial(msg)
            self.alerts.restore(self._read_alert_history())
        self._stage2_dirty = False

    def _read_alert_history(self) -> list[dict[str, Any]]:
        from streamon.runtime.restore import read_to_end

        out = []
        for msg in read_to_end(self.settings, self.topics.alerts):
            try:
                out.append(orjson.loads(msg.value()))
            except orjson.JSONDecodeError:
                continue
        return out

    def _apply_partial(self, msg: Message) -> None:
        try:
            partial = Partial.from_bytes(msg.value())
        except (ValueError, KeyError, TypeError) as exc:
            log.error("unreadable partial at %s:%d@%d: %s", msg.topic(), msg.partition(), msg.offset(), exc)
            self.ops.invalid[(self.topics.partials, "unreadable_partial")] += 1
            return
        self.aggregator.apply(partial)

    def _stage2_step(self) -> None:
        if self._stage2_dirty and self.c2.assignment():
            self._rebuild_stage2()
        # No waiting here: stage 1's consume already idles when there is nothing to do.
        msgs = self.c2.consume(num_messages=self.settings.kafka.batch_size, timeout=0)
        last: dict[int, int] = {}
        for m in msgs:
            if m.error() is not None:
                continue
            self._apply_partial(m)
            last[m.partition()] = m.offset()
        due = time.monotonic() >= self._next_eval
        if not last and not due:
            return
        self.p2.begin_transaction()
        try:
            if due:
                self._evaluate()
            if last:
                offsets = [TopicPartition(self.topics.partials, p, o + 1) for p, o in last.items()]
                self.p2.send_offsets_to_transaction(offsets, self.c2.consumer_group_metadata(), 30)
            self.p2.commit_transaction(30)
        except KafkaException as exc:
            log.warning("stage-2 transaction failed, rebuilding: %s", exc)
            self.ops.aborts += 1
            try:
                self.p2.abort_transaction(30)
            except KafkaException:
                pass
            self._stage2_dirty = True

    def _evaluate(self) -> None:
        self._next_eval = time.monotonic() + self.eval_interval_wall
        now = self.aggregator.latest
        snap = self.aggregator.evaluate(now) if now is not None else None
        # Infrastructure rules (CPU, memory, lag) see this worker's own samples, labelled with
        # its id so each worker's alert has its own fingerprint; they run on wall-clock time.
        worker = ("worker", self.instance_id)
        infra = [
            Sample(s.name, (*s.labels, worker), s.value)
            for s in self.operational_samples()
            if s.name.startswith("system_") or s.name == "streamon_consumer_lag_messages"
        ]
        events = self.alerts_infra.evaluate(Snapshot(time.time(), infra))
        if snap is not None:
            events += self.alerts.evaluate(snap)
            self.snapshot = snap
        for event in events:
            self.p2.produce(self.topics.alerts, key=event["fingerprint"].encode(), value=orjson.dumps(event))

    @property
    def eval_interval_wall(self) -> float:
        """Wall-clock evaluation cadence: the event-time interval, at most 5 s while catching up."""
        return min(self.engine.eval_interval_s, float(os.environ.get("STREAMON_EVAL_SECONDS", 5.0)))

    def evaluate_now(self) -> Snapshot | None:
        """Force an evaluation (tests and the demo)."""
        self._next_eval = 0.0
        self._stage2_step()
        return self.snapshot

    # ------------------------------------------------------------------ /metrics

    def _scrape(self) -> tuple[Snapshot | None, list[Sample]]:
        model = self.snapshot or Snapshot(event_time=0.0)
        counts = self.ops.batch_counts
        batch = HistogramSample(
            "streamon_batch_seconds",
            (("stage", "1"),),
            (*BATCH_BUCKETS_S, math.inf),
            tuple(itertools.accumulate(counts)),
            self.ops.batch_sum,
            sum(counts),
        )
        return Snapshot(
            model.event_time, model.samples, [*model.histograms, batch]
        ), self.operational_samples()

    def operational_samples(self) -> list[Sample]:
        ops = self.ops
        out = [
            Sample("system_cpu_usage_percent", (), psutil.cpu_percent(interval=None)),
            Sample("system_memory_usage_percent", (), psutil.virtual_memory().percent),
            Sample("system_disk_usage_percent", (), psutil.disk_usage(str(self.state_dir)).percent),
            Sample("streamon_rebalances_total", (), float(ops.rebalances)),
            Sample("streamon_transaction_aborts_total", (), float(ops.aborts)),
            Sample("streamon_late_deltas_dropped_total", (), float(self.aggregator.dropped)),
        ]
        for topic, n in sorted(ops.processed.items()):
            out.append(Sample("streamon_events_processed_total", (("topic", topic),), float(n)))
        for (topic, reason), n in sorted(ops.invalid.items()):
            out.append(
                Sample("streamon_events_invalid_total", (("topic", topic), ("reason", reason)), float(n))
            )
        stats = [p.joiner for p in self.processors.values()]
        out.append(Sample("streamon_labels_orphaned_total", (), float(sum(j.stats.orphaned for j in stats))))
        out.append(
            Sample("streamon_label_corrections_total", (), float(sum(j.stats.corrections for j in stats)))
        )
        out.append(
            Sample(
                "streamon_join_store_pending",
                (("kind", "prediction"),),
                float(sum(j.pending_predictions for j in stats)),
            )
        )
        out.append(
            Sample(
                "streamon_join_store_pending",
                (("kind", "label"),),
                float(sum(j.pending_labels for j in stats)),
            )
        )
        if self.snapshot is not None and math.isfinite(ops.newest_event):
            out.append(
                Sample(
                    "streamon_end_to_end_delay_seconds", (), max(0.0, time.time() - self.snapshot.event_time)
                )
            )
        for tp in self.c1.assignment() if self.ready else []:
            try:
                _, high = self.c1.get_watermark_offsets(tp, cached=True)
                pos = self.c1.position([tp])[0].offset
            except KafkaException:
                continue
            if high >= 0 and pos >= 0:
                out.append(
                    Sample(
                        "streamon_consumer_lag_messages",
                        (("topic", tp.topic), ("partition", str(tp.partition))),
                        float(high - pos),
                    )
                )
        return out
