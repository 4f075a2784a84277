"""``streamon worker``: both stages of design.md §1 in one process.

Stage 1 consumes the co-partitioned predictions and labels topics (consumer group
``kafka.group_id``, range assignment so partition *i* of both topics lands on the same
worker), runs one :class:`~streamon.core.stages.stage1.PartitionProcessor` per partition with
a RocksDB join store, and publishes the partial deltas, the dead letters and the input
offsets in ONE Kafka transaction per batch.

Stage 2 consumes the partials topic (group ``<group_id>-aggregate``, read_committed),
merges them into an :class:`~streamon.core.stages.stage2.Aggregator`, evaluates on the
configured interval, and publishes alert events in a transaction with the partials
offsets. After a rebalance it rebuilds from the partials topic (its changelog).
"""

from __future__ import annotations

import bisect
import gc
import itertools
import logging
import math
import os
import signal
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
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
from streamon.core.catalogue import METRICS
from streamon.core.events import QUARANTINED
from streamon.core.stages.evaluate import HistogramSample, Sample, Snapshot
from streamon.core.stages.join import StagedStore
from streamon.core.stages.stage1 import Partial, PartitionProcessor, Rejected
from streamon.core.stages.stage2 import Aggregator
from streamon.engine import Engine, build_engine
from streamon.errors import KafkaUnavailableError, StreamonError, WorkerStalledError
from streamon.exporter import SnapshotCollector
from streamon.kafka_client import SecurityWatch, install_log_scrubber, kafka_client_config
from streamon.logs import librdkafka_logger
from streamon.report.collect import WindowView, drawn, history_names, window_views
from streamon.runtime.http import MetricsServer
from streamon.runtime.liveness import (
    ABORT,
    FATAL,
    FENCED,
    RETRY,
    StateDirLock,
    Watchdog,
    backoff,
    classify,
    kafka_error,
    lock_state_dir,
)
from streamon.runtime.store import RocksStore
from streamon.runtime.topics import (
    DEAD_LETTER_KEY_BYTES,
    DEAD_LETTER_PREVIEW_BYTES,
    ensure_topics,
    partition_counts,
    produce_limit,
)

log = logging.getLogger("streamon.worker")
GC_THRESHOLDS = (50_000, 50, 100)  # gc.set_threshold of a worker process (Worker.start)

BATCH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Every blocking Kafka call of the loop waits at most this long (less with a short
# kafka.stall_timeout: Worker.call_timeout); the loop retries with a backoff, and
# kafka.stall_timeout bounds the whole.
KAFKA_TIMEOUT_S = 10.0
METRICS_REFRESH_S = 1.0  # how often the main loop prepares the samples /metrics serves
# The live report keeps this many points of its series (a week of 5-minute evaluations) and
# alert events: bounded memory however long the worker runs.
REPORT_POINTS = 2016
REPORT_ALERTS = 2000

# Produce errors caused by what a message carries: retrying the same messages fails the same way.
CONTENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
    }
)
# A transaction the broker already failed (it refused a message produced earlier in it)
# refuses every later produce with _STATE: evidence against the batch, never enough alone
# to quarantine a message.
FAILED_TRANSACTION = KafkaError._STATE


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
    restored_messages: int = 0  # input messages replayed into join stores (restores)
    # (orphaned, corrections) of each partition this worker owned and gave up. The join keeps
    # them in the partition's store (they survive restarts): a partition owned again reports
    # its store's counts, one given up its last ones, so the sums only grow.
    join_counts_before: dict[int, tuple[int, int]] = field(default_factory=dict)


def _client_base(settings: Settings) -> dict[str, Any]:
    # Secrets resolved from kafka.client's _file / _env keys; error_cb is a SecurityWatch.
    return {"logger": librdkafka_logger(settings.kafka.client), **kafka_client_config(settings)}


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
        # The partials / dead-letter topics' max.message.bytes checked at start (topics.py);
        # off only for the demo's mock cluster, which answers no DescribeConfigs.
        self.check_topic_limits = True
        self.processors: dict[int, PartitionProcessor] = {}
        self.stores: dict[int, RocksStore] = {}
        self.aggregator: Aggregator = self.engine.aggregator()
        self.alerts = AlertEngine(self.engine.rules)
        self.alerts_infra = AlertEngine(self.engine.rules)  # per-worker samples, wall-clock time
        self.snapshot: Snapshot | None = None
        # The live report (/report): the series it draws over time, one point per event-time
        # evaluation interval, and the alert events, both bounded; the windows at the last point.
        self._report_names = history_names(METRICS)
        self._report_points: deque[tuple[float, list[Sample]]] = deque(maxlen=REPORT_POINTS)
        self._report_windows: dict[str, WindowView] = {}
        self._alert_log: deque[dict[str, Any]] = deque(maxlen=REPORT_ALERTS)
        self._stage2_dirty = True  # rebuild stage-2 state before the next step
        # Partials applied but whose offsets are not committed yet (partition -> last offset),
        # and since when: committed with the next evaluation or after kafka.flush_interval.
        self._applied2: dict[int, int] = {}
        self._applied2_since = 0.0
        self._assigned1 = self._assigned2 = False
        self._buffer: list[Message] = []
        self._buffer_since = 0.0
        # Quarantine of a message that keeps failing stage 1's transaction (_note_stage1_failure).
        self._fail_streak = 0  # failed stage-1 transactions since the last commit
        self._batch_cap: int | None = None  # while isolating: at most this many messages per batch
        # While isolating: the last offset of each partition in the batch that kept failing;
        # batches are whole again once all of them are committed.
        self._isolate_until: dict[tuple[str, int], int] = {}
        self._failed_in: dict[tuple[str, int, int], int] = {}  # failed transactions each message was in
        self._quarantine: dict[tuple[str, int, int], str] = {}  # (topic, partition, offset) -> error
        self._next_eval = 0.0
        # Liveness (streamon.runtime.liveness): the state dir is checked and locked before
        # anything else, so a bad --state-dir is one line, not a traceback after connecting.
        self._state_lock: StateDirLock | None = lock_state_dir(state_dir)
        self.stall_timeout = settings.kafka.stall_timeout
        # Short enough that the loop notices a stall soon after kafka.stall_timeout; the watchdog
        # acts only when one call more than this did not return.
        self.call_timeout = min(KAFKA_TIMEOUT_S, max(1.0, self.stall_timeout / 8))
        self.last_commit = {1: 0.0, 2: 0.0}  # unix time of each stage's last committed transaction
        # Per stage, the last moment it committed or had nothing to do: a stage with work is
        # stalled once this is kafka.stall_timeout old (read by /healthz and the watchdog).
        self._calm = {1: time.monotonic(), 2: time.monotonic()}
        self._failures = {1: 0, 2: 0}  # failed attempts in a row
        self._retry_at = {1: 0.0, 2: 0.0}  # backoff: no new attempt before this (monotonic)
        self._last_error = {1: "", 2: ""}
        self._needs_init = {1: False, 2: False}  # a renewed producer still to init_transactions
        self._abort_pending = {1: False, 2: False}  # an abort that did not get through
        self._committing = False  # stage 1's commit_transaction is under way
        self._reload1 = False  # stage 1 resumes from the broker's committed offsets (after fencing)
        # Input offsets committed by this worker's transactions (or found at assignment): the
        # rewind after an abort needs no broker, and the lag is measured against them.
        self._committed: dict[tuple[str, int], int] = {}
        # From the consumers' statistics (stats_cb, every 5 s; no client call): per partition
        # (low watermark, high watermark, last stable offset, next fetch offset).
        self._marks: dict[int, dict[tuple[str, int], tuple[int, int, int, int]]] = {1: {}, 2: {}}
        self._marks_at = {1: -math.inf, 2: -math.inf}  # when the statistics last came (monotonic)
        self._failed_at = {1: -math.inf, 2: -math.inf}  # when the stage last failed (monotonic)
        self._owned2: set[int] = set()
        self._samples: list[Sample] = []  # prepared by the main loop, served by /metrics
        self._samples_at = -math.inf
        self._watchdog: Watchdog | None = None
        self._in_stage = 1  # the stage the loop is running (for the watchdog's line)

        base = _client_base(settings)
        self.security: SecurityWatch = base["error_cb"]
        install_log_scrubber(self.security.secrets)  # librdkafka texts may echo configuration
        group = settings.kafka.group_id
        self.admin = AdminClient(base)
        # Fails fast, in one line, when Kafka is unreachable or refuses the credentials.
        partition_counts(self.admin, bootstrap=settings.kafka.bootstrap_servers)
        session_ms = int(settings.kafka.session_timeout * 1000)
        common_consumer = {
            **base,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            # Range assignment keeps partition i of both input topics on one worker.
            "partition.assignment.strategy": "range",
            "max.poll.interval.ms": 600_000,  # restores run inside the rebalance callback
            "statistics.interval.ms": 5000,  # refreshes the cached high watermarks used for lag
            # A silent worker's partitions move after this; see docs/failure-semantics.md.
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": min(3000, session_ms // 3),
        }
        # Static membership (only for an explicit --instance-id; a generated host-pid id changes
        # with every start): a restarted worker rejoins as the same member within the session
        # timeout, gets its own partitions back without a rebalance and restores only the gap
        # from its local store. Its consumer does not leave the group on close.
        static1 = {"group.instance.id": f"{self.instance_id}-s1"} if instance_id else {}
        static2 = {"group.instance.id": f"{self.instance_id}-s2"} if instance_id else {}
        stats1 = {"stats_cb": lambda raw: self._on_stats(1, raw)}
        stats2 = {"stats_cb": lambda raw: self._on_stats(2, raw)}
        self.c1 = Consumer({**common_consumer, **static1, **stats1, "group.id": group})
        self.c2 = Consumer({**common_consumer, **static2, **stats2, "group.id": f"{group}-aggregate"})
        producer = {**base, "transaction.timeout.ms": 15_000, "linger.ms": 5, "compression.type": "lz4"}
        # Stage 1's messages are bounded (partials split, dead letters cut): its producer accepts
        # all of them and batches no more than the partials and dead-letter topics accept.
        # zstd: hex-encoded partials shrink 17-27x (lz4 7-10x) for ~3 ms/MB more producer time,
        # and the partials topic is kept for the whole reference window (docs/benchmarks.md).
        limit = produce_limit(settings)
        s1_sizes = {"message.max.bytes": limit, "batch.size": limit, "compression.type": "zstd"}
        # Stable transactional ids: a restarted worker fences its predecessor's open transaction.
        # Kept to build a new producer when one is fenced (_renew_producer).
        self._producer_conf = {
            1: {**producer, **s1_sizes, "transactional.id": f"{group}-s1-{self.instance_id}"},
            2: {**producer, "transactional.id": f"{group}-s2-{self.instance_id}"},
        }
        self.p1 = Producer(self._producer_conf[1])
        self.p2 = Producer(self._producer_conf[2])

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
                healthy=self.healthy,
                ready=lambda: self.ready and self.stall() is None,
                web_config=web,
                health_without_auth=settings.monitoring.prometheus.health_without_auth,
                pages={"/report": self.report_html},
            )
        except OSError as exc:
            raise StreamonError(
                f"cannot serve metrics on {host}:{port} ({exc.strerror}): free the port or set "
                "monitoring.prometheus.port / --metrics-port"
            ) from None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        # A batch allocates tens of thousands of short-lived objects: at CPython's default
        # threshold (700) the cyclic collector runs dozens of times per batch and its older
        # generations rescan every long-lived object (settings, windows, the partials of
        # stage 2). Rarer collections: +15% worker throughput (docs/benchmarks.md).
        gc.set_threshold(*GC_THRESHOLDS)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ensure_topics(self.admin, self.settings, check_limits=self.check_topic_limits)
        if self.settings.monitoring.dashboards.auto_deploy:
            from streamon.dashboards import auto_deploy

            # A slow or absent Grafana must not delay processing; auto_deploy never raises.
            threading.Thread(target=auto_deploy, args=(self.settings, log), daemon=True).start()
        self.http.start()
        log.info("metrics on %s", self.http.url(self.settings.monitoring.prometheus.metrics_path))
        for stage, producer in ((1, self.p1), (2, self.p2)):
            try:
                producer.init_transactions(KAFKA_TIMEOUT_S * 3)
            except KafkaException as exc:
                raise KafkaUnavailableError(
                    f"stage-{stage} producer cannot start transactions at "
                    f"{self.settings.kafka.bootstrap_servers} ({kafka_error(exc) or exc}): check that the "
                    "brokers are up and that transaction.state.log.replication.factor fits the cluster"
                ) from None
        self._calm = {1: time.monotonic(), 2: time.monotonic()}
        self.c1.subscribe(
            [self.topics.predictions, self.topics.labels],
            on_assign=self._on_assign1,
            on_revoke=self._on_revoke1,
        )
        self.c2.subscribe([self.topics.partials], on_assign=self._on_assign2, on_revoke=self._on_revoke2)

    def run(self, timeout_s: float | None = None) -> None:
        """Process until SIGTERM / :meth:`stop` (or ``timeout_s``), then shut down cleanly.

        Raises :class:`WorkerStalledError` (exit code 4) when the worker cannot make progress;
        its watchdog thread ends the process (same code) if the loop itself is blocked.
        """
        watchdog = self._watchdog or Watchdog(self._blocked, self.stop, self.settings.kafka.shutdown_grace)
        self._watchdog = watchdog
        watchdog.start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            self.start()
            while not self.stopping.is_set() and (deadline is None or time.monotonic() < deadline):
                self.step()
        except BaseException as exc:
            watchdog.shutting_down(f"after: {exc}")
            raise
        finally:
            watchdog.shutting_down("")
            self.close()
            watchdog.finish()

    def stop(self) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM / SIGINT: finish or abort the batch, leave, exit 0; within kafka.shutdown_grace.

        The handler only runs once the main thread is back in Python, which a librdkafka call
        can delay indefinitely: the watchdog sees the signal at once (set_wakeup_fd) and ends
        the process if the worker is not gone within the grace period, or at a second signal.
        """
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        self._watchdog = Watchdog(self._blocked, self.stop, self.settings.kafka.shutdown_grace)
        self._watchdog.watch_signals()

    def close(self) -> None:
        """Finish: the current batch is committed or aborted; close the consumers and the stores.

        A dynamic member leaves its groups; a static one (``--instance-id``) keeps its
        partitions for the session timeout, so its restart gets them back.

        Bounded: with the brokers gone each call gives up after its timeout, and the watchdog
        ends the process once kafka.shutdown_grace has passed.
        """
        self.http.stop()  # a worker on its way out is not scraped nor probed as if it worked
        for consumer in (self.c1, self.c2):
            try:
                consumer.close()
            except (KafkaException, RuntimeError):
                pass
        for store in self.stores.values():
            store.close()
        self.stores.clear()
        for producer in (self.p1, self.p2):
            try:
                producer.flush(self.call_timeout)
            except (KafkaException, RuntimeError):
                pass
        if self._state_lock is not None:
            self._state_lock.release()
            self._state_lock = None

    def _heartbeat(self) -> None:
        # A long restore is progress: neither a hung loop (/healthz) nor a stall.
        now = time.monotonic()
        self.ops.last_loop = self._calm[1] = self._calm[2] = now

    def step(self) -> None:
        self.ops.last_loop = time.monotonic()
        self.security.check()  # credentials refused (e.g. rotated): stop with one line
        self.admin.poll(0)  # serves the admin client's log lines (and error_cb)
        for stage, run in ((1, self._stage1_step), (2, self._stage2_step)):
            self._in_stage = stage
            try:
                run()
            except (KafkaException, TimeoutError) as exc:  # TimeoutError: a restore read stalled
                self._failed(stage, "step", exc)
        now = time.monotonic()
        for stage in (1, 2):
            if not self._has_work(stage):
                self._calm[stage] = now
        # Ready once both groups have assigned this worker its share (possibly none) and it is restored.
        self.ready = (
            self._assigned1 and self._assigned2 and not (self._stage2_dirty and bool(self.c2.assignment()))
        )
        if now - self._samples_at >= METRICS_REFRESH_S:
            self._samples_at = now
            self._samples = self.operational_samples(live=False)
        reason = self.stall()
        if reason is not None:
            raise WorkerStalledError(reason)

    # ------------------------------------------------------------------ liveness

    def _stalled_for(self, stage: int) -> float:
        return time.monotonic() - self._calm[stage]

    def stall(self) -> str | None:
        """Why the worker counts as stalled, or None: a stage had work and committed nothing
        for kafka.stall_timeout (read from any thread: /healthz, /readyz, the watchdog)."""
        stage = max((1, 2), key=self._stalled_for)
        idle = self._stalled_for(stage)
        if idle < self.stall_timeout:
            return None
        last = self._last_error[stage] or "no error reported"
        if not (self._assigned1 if stage == 1 else self._assigned2):
            return (
                f"stage {stage} has had no partitions assigned for {idle:.0f}s since it started (its "
                f"consumer group's join did not complete within kafka.stall_timeout {self.stall_timeout:g}s; "
                f"last error: {last}): exiting so that a supervisor restarts the worker"
            )
        return (
            f"stage {stage} has had work but committed nothing for {idle:.0f}s (kafka.stall_timeout "
            f"{self.stall_timeout:g}s; last error: {last}): exiting so that a supervisor restarts the worker"
        )

    def healthy(self) -> bool:
        # The loop updates _calm at the end of every step: a loop blocked in a call is a stall too.
        return self.stall() is None

    def _blocked(self) -> str | None:
        """The watchdog's check: a call past the stall deadline did not return, the loop cannot exit."""
        idle = max(self._stalled_for(1), self._stalled_for(2))
        if idle < self.stall_timeout + self.call_timeout + 2.0:
            return None
        stage = self._in_stage
        last = self._last_error[stage] or "none reported"
        return (
            f"nothing committed for {idle:.0f}s and the loop is blocked inside a Kafka call of stage "
            f"{stage} (kafka.stall_timeout {self.stall_timeout:g}s; last error: {last}): exiting so "
            "that a supervisor restarts the worker"
        )

    def _has_work(self, stage: int) -> bool:
        """Something this stage must still commit: buffered or re-read input, a failed attempt,
        or input the consumer has not fetched yet (from the statistics)."""
        if self._abort_pending[stage] or self._needs_init[stage]:
            return True
        # A group that has not given this worker its share since it started (the join has not
        # completed) may be keeping input from anyone: a worker cannot see its lag before its
        # first assignment, so waiting counts as work, and as a stall after kafka.stall_timeout.
        if not (self._assigned1 if stage == 1 else self._assigned2):
            return True
        # A failure is work to redo until statistics taken after it can tell (a rewound consumer
        # shows its input as not fetched yet).
        if self._failures[stage] and self._marks_at[stage] <= self._failed_at[stage]:
            return True
        if stage == 1 and (self._buffer or self._reload1):
            return True
        if stage == 2 and self._stage2_dirty and self._owned2:
            return True
        for (topic, part), (lo, hi, ls, nxt) in self._marks[stage].items():
            owned = (topic, part) in self._committed if stage == 1 else part in self._owned2
            if not owned:
                continue
            end = ls if ls >= 0 else hi
            if nxt >= 0:
                if end > nxt:
                    return True
            elif stage == 1:  # not fetching yet: what is there beyond the committed offset
                done = self._committed.get((topic, part), -1)
                if end > (done if done >= 0 else lo) >= 0:
                    return True
        return False

    def _on_stats(self, stage: int, raw: str) -> None:
        """librdkafka's statistics (stats_cb, served by consume): the watermarks per partition."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        marks: dict[tuple[str, int], tuple[int, int, int, int]] = {}
        for topic, t in (doc.get("topics") or {}).items():
            for key, p in (t.get("partitions") or {}).items():
                part = int(key)
                if part >= 0:
                    marks[(topic, part)] = (
                        int(p.get("lo_offset", -1)),
                        int(p.get("hi_offset", -1)),
                        int(p.get("ls_offset", -1)),
                        int(p.get("next_offset", -1)),
                    )
        self._marks[stage] = marks
        self._marks_at[stage] = time.monotonic()

    def _failed(self, stage: int, what: str, exc: BaseException) -> str:
        """Record a failed attempt: classify it, log one line, back off; renew a fenced producer.

        Raises :class:`WorkerStalledError` for a fatal error (the client cannot recover).
        """
        err = kafka_error(exc)
        action = classify(err) if isinstance(exc, KafkaException) else RETRY
        text = str(err.str() if err is not None else f"{type(exc).__name__}: {exc}")
        name = err.name() if err is not None else type(exc).__name__
        self._last_error[stage] = f"{what}: {name}: {text}"
        if action == FATAL:
            raise WorkerStalledError(
                f"stage {stage} {what} failed with a fatal Kafka error ({name}: {text}): exiting so "
                "that a supervisor restarts the worker"
            ) from None
        self._failures[stage] += 1
        self._failed_at[stage] = time.monotonic()
        delay = backoff(self._failures[stage])
        self._retry_at[stage] = time.monotonic() + delay
        if action == FENCED:
            self._renew_producer(stage)
        what_next = {RETRY: "retrying", ABORT: "aborted, retrying", FENCED: "producer renewed, resuming"}
        log.warning(
            "stage-%d %s failed (%s: %s), %s in %.1fs",
            stage,
            what,
            name,
            text,
            what_next[action],
            delay,
            extra={"stage": stage, "action": action, "failures": self._failures[stage]},
        )
        return action

    def _retrying(self, stage: int, what: str, call: Callable[[], object]) -> None:
        """``call()``, again after a backoff while it fails with a retriable error (timeouts,
        brokers down); gives up (raises) when stopping or past the stage's stall deadline."""
        failures = 0
        while True:
            try:
                call()
                return
            except KafkaException as exc:
                if (
                    classify(kafka_error(exc)) != RETRY
                    or self.stopping.is_set()
                    or self._stalled_for(stage) >= self.stall_timeout
                ):
                    raise
                failures += 1
                delay = min(backoff(failures), max(0.1, self.stall_timeout - self._stalled_for(stage)))
                err = kafka_error(exc)
                self._last_error[stage] = f"{what}: {err.name() if err else ''}: {err.str() if err else exc}"
                log.warning(
                    "stage-%d %s did not complete (%s), retrying in %.1fs",
                    stage,
                    what,
                    err.str() if err else exc,
                    delay,
                    extra={"stage": stage, "action": RETRY},
                )
                self.stopping.wait(delay)

    def _renew_producer(self, stage: int) -> None:
        """A fenced producer cannot be used again: a new one with the same transactional id.

        Its init_transactions (in _recover) also ends the old producer's open transaction
        (commits it if its commit was under way, else aborts it); the stage then resumes from
        what the broker holds, since the outcome of that last transaction is not known here.
        """
        producer = Producer(self._producer_conf[stage])
        if stage == 1:
            self.p1 = producer
            self._reload1 = True
        else:
            self.p2 = producer
            self._stage2_dirty = True
        self._needs_init[stage] = True
        self._abort_pending[stage] = False

    def _recover(self, stage: int) -> bool:
        """Finish what a failure left (a new producer's init, an abort, a reload) once the
        backoff has passed; False while backing off or still failing."""
        if time.monotonic() < self._retry_at[stage]:
            return False
        producer = self.p1 if stage == 1 else self.p2
        try:
            if self._needs_init[stage]:
                producer.init_transactions(self.call_timeout)
                self._needs_init[stage] = False
            if self._abort_pending[stage]:
                self._abort(stage)
            if stage == 1 and self._reload1:
                self._reload_stage1()
        except (KafkaException, TimeoutError) as exc:
            self._failed(stage, "recovery", exc)
            return False
        return True

    def _abort(self, stage: int) -> None:
        """abort_transaction, bounded; left pending (retried by _recover) when it fails."""
        producer = self.p1 if stage == 1 else self.p2
        self._abort_pending[stage] = True
        try:
            producer.abort_transaction(self.call_timeout)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is None or err.code() != KafkaError._STATE:  # _STATE: no transaction to abort
                raise
        self._abort_pending[stage] = False

    def _commit_succeeded(self, stage: int, offsets: list[TopicPartition]) -> None:
        self.last_commit[stage] = time.time()
        self._calm[stage] = time.monotonic()
        if self._failures[stage]:
            log.info(
                "stage-%d commits again after %d failed attempts",
                stage,
                self._failures[stage],
                extra={"stage": stage},
            )
        self._failures[stage] = 0
        self._last_error[stage] = ""
        if stage == 1:
            for tp in offsets:
                self._committed[(tp.topic, tp.partition)] = tp.offset

    def _reload_stage1(self) -> None:
        """Resume stage 1 from the group's committed offsets (after fencing, a commit of unknown
        outcome or a failed assignment): reopen every partition, restore, rewind."""
        inputs = (self.topics.predictions, self.topics.labels)
        assignment = [tp for tp in self.c1.assignment() if tp.topic in inputs]
        committed = self.c1.committed(assignment, timeout=self.call_timeout)
        self._on_revoke1(self.c1, [TopicPartition(t, p) for t in inputs for p in list(self.processors)])
        self._buffer = []
        for part in sorted({tp.partition for tp in committed}):
            self._open_partition(part, {tp.topic: tp.offset for tp in committed if tp.partition == part})
        for tp in committed:
            self._committed[(tp.topic, tp.partition)] = tp.offset
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.c1.seek(TopicPartition(tp.topic, tp.partition, offset))
        self._assigned1 = True
        self._reload1 = False
        log.info("stage 1 resumed from the committed offsets", extra={"stage": 1})

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
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "inputs not co-partitioned", fatal=True))
        started = time.monotonic()
        try:
            committed = consumer.committed(partitions, timeout=self.call_timeout)
            for tp in committed:
                self._committed[(tp.topic, tp.partition)] = tp.offset
            for part in sorted(by_topic[self.topics.predictions]):
                offsets = {tp.topic: tp.offset for tp in committed if tp.partition == part}
                self._open_partition(part, offsets)
        except (KafkaException, TimeoutError) as exc:
            # librdkafka assigns the partitions anyway: the loop reopens them from the broker's
            # committed offsets (_reload_stage1) once it answers.
            self._reload1 = True
            self._assigned1 = True
            self._failed(1, "assignment", exc)
            return
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
        # The join's index, watermark and counters live in the store: the processor continues
        # from them (no scan), and the restore replays only what the store has not seen.
        processor = self.engine.partition_processor(staged, source=f"{self.topics.predictions}:{part}")
        self.ops.restored_messages += restore_partition(
            self.settings, processor, store, part, marker or {}, committed, heartbeat=self._heartbeat
        )
        self.stores[part] = store
        self.processors[part] = processor

    def _on_revoke1(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {tp.partition for tp in partitions}
        for key in [k for k in self._committed if k[1] in revoked]:
            del self._committed[key]
        self._buffer = [m for m in self._buffer if m.partition() not in revoked]  # the next owner reads them
        for part in revoked:
            processor = self.processors.pop(part, None)
            if processor is not None:
                stats = processor.joiner.stats
                self.ops.join_counts_before[part] = (stats.orphaned, stats.corrections)
            store = self.stores.pop(part, None)
            if store is not None:
                store.close()

    def _stage1_step(self) -> None:
        # Messages wait in a buffer until a batch is full or flush_interval has passed: one
        # transaction per flush, never an open transaction across a rebalance callback.
        batch_size = self.settings.kafka.batch_size if self._batch_cap is None else self._batch_cap
        room = batch_size - len(self._buffer)
        fresh = self.c1.consume(num_messages=max(room, 1), timeout=0.2)
        if fresh and not self._buffer:
            self._buffer_since = time.monotonic()
        self._buffer.extend(fresh)
        if not self._recover(1):  # backing off after a failure, or still recovering from one
            return
        due = time.monotonic() - self._buffer_since >= self.settings.kafka.flush_interval
        if not self._buffer or (len(self._buffer) < batch_size and not due):
            return
        msgs = self._take_batch(batch_size)
        started = time.perf_counter()
        batches: dict[int, tuple[list[Message], list[Message]]] = defaultdict(lambda: ([], []))
        last: dict[tuple[str, int], int] = {}
        for m in msgs:
            if m.error() is not None:
                if m.error().fatal():  # e.g. another consumer with this --instance-id: exit (step)
                    raise KafkaException(m.error())
                if m.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", m.error())
                continue
            topic, part = m.topic(), m.partition()
            batches[part][0 if topic == self.topics.predictions else 1].append(m)
            last[(topic, part)] = m.offset()
        now = time.time()
        max_partial = self.settings.kafka.max_partial_bytes
        # Counted once the transaction commits: a retried batch is counted once.
        processed: dict[str, int] = defaultdict(int)
        invalid: dict[tuple[str, str], int] = defaultdict(int)
        try:
            self.p1.begin_transaction()
            for part, (preds, labels) in batches.items():
                processor = self.processors.get(part)
                if processor is None:  # revoked in between; its offsets are not committed here
                    continue
                processed[self.topics.predictions] += len(preds)
                processed[self.topics.labels] += len(labels)
                if self._quarantine:
                    preds, labels = self._set_aside(preds, invalid), self._set_aside(labels, invalid)
                rejected = processor.process([m.value() for m in preds], [m.value() for m in labels], now)
                self._dead_letters(rejected, preds, labels, invalid)
                for partial in processor.take_partials():
                    key = partial.model.encode()
                    for value in partial.to_messages(max_partial):  # in order, one partition: key = model
                        self._produce(self.p1, self.topics.partials, key=key, value=value)
                if math.isfinite(processor.watermark):
                    self.ops.newest_event = max(self.ops.newest_event, processor.watermark)
            offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items() if p in self.processors]
            meta = self.c1.consumer_group_metadata()
            self._retrying(
                1, "offsets", lambda: self.p1.send_offsets_to_transaction(offsets, meta, self.call_timeout)
            )
            self._committing = True  # from here a failure may hide a commit that went through
            self._retrying(1, "commit", lambda: self.p1.commit_transaction(self.call_timeout))
            self._committing = False
        except KafkaException as exc:
            self._abort_stage1(exc)
            self._note_stage1_failure(msgs, exc)
            return
        self._commit_succeeded(1, offsets)
        for topic, n in processed.items():
            self.ops.processed[topic] += n
        for key, n in invalid.items():
            self.ops.invalid[key] += n
        self._note_stage1_commit(last)
        for part in batches:
            store = self.stores.get(part)
            if store is None:
                continue
            marker = {t: o + 1 for (t, p), o in last.items() if p == part}
            previous = store.offsets() or {}
            self.processors[part].joiner.store.commit(RocksStore.marker({**previous, **marker}))  # type: ignore[attr-defined]
        self._observe_batch(time.perf_counter() - started)

    def _produce(self, producer: Producer, topic: str, **kwargs: Any) -> None:
        """``produce``, waiting while librdkafka's local queue is full (brokers slow or away,
        a batch of many dead letters): its BufferError becomes a failed call after
        call_timeout, so the stage aborts and redoes the batch like after any other failure."""
        deadline = time.monotonic() + self.call_timeout
        while True:
            try:
                producer.produce(topic, **kwargs)
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise KafkaException(
                        KafkaError(
                            KafkaError._QUEUE_FULL, f"the producer's local queue stayed full ({topic})"
                        )
                    ) from None
                producer.poll(0.05)  # serves delivery reports: the queue drains as the broker acks

    def _observe_batch(self, seconds: float) -> None:
        self.ops.batch_counts[bisect.bisect_left(BATCH_BUCKETS_S, seconds)] += 1
        self.ops.batch_sum += seconds

    def _dead_letters(
        self,
        rejected: list[Rejected],
        preds: list[Message],
        labels: list[Message],
        invalid: dict[tuple[str, str], int],
    ) -> None:
        for r in rejected:
            # By position in the batch: equal values (b"", one byte) are one shared object.
            m = (preds if r.topic == "predictions" else labels)[r.index]
            self._dead_letter(m, r.reason, r.detail)
            invalid[(m.topic(), r.reason)] += 1

    def _dead_letter(self, m: Message, reason: str, detail: str, whole: bool = True) -> None:
        """Produce ``m`` to the dead-letter topic, never larger than the topic accepts.

        The value is kept whole up to kafka.max_message_bytes (every message larger than that
        is ``too_large``); beyond it, or when not ``whole``, the dead letter is a reference: the
        first DEAD_LETTER_PREVIEW_BYTES bytes, ``streamon.truncated``, and the source
        topic/partition/offset headers that find the original while the topic retains it.
        """
        value, key = m.value(), m.key()
        size = len(value) if value is not None else 0
        headers = [
            ("streamon.reason", reason.encode()),
            ("streamon.detail", detail.encode()[:1000]),
            ("streamon.source.topic", m.topic().encode()),
            ("streamon.source.partition", str(m.partition()).encode()),
            ("streamon.source.offset", str(m.offset()).encode()),
            ("streamon.source.bytes", str(size).encode()),
        ]
        if value is not None and (not whole or size > self.settings.kafka.max_message_bytes):
            value = value[:DEAD_LETTER_PREVIEW_BYTES]
            headers.append(("streamon.truncated", b"true"))
        if key is not None and len(key) > DEAD_LETTER_KEY_BYTES:
            headers.append(("streamon.source.key_bytes", str(len(key)).encode()))
            key = None
        self._produce(self.p1, self.topics.dead_letter, key=key, value=value, headers=headers)

    # ------------------------------------------------------------------ stage 1: quarantine

    def _set_aside(self, msgs: list[Message], invalid: dict[tuple[str, str], int]) -> list[Message]:
        """``msgs`` without the quarantined ones, which are dead-lettered (as references) instead."""
        kept = []
        for m in msgs:
            error = self._quarantine.get((m.topic(), m.partition(), m.offset()))
            if error is None:
                kept.append(m)
                continue
            self._dead_letter(m, QUARANTINED, error, whole=False)
            invalid[(m.topic(), QUARANTINED)] += 1
        return kept

    def _note_stage1_failure(self, msgs: list[Message], exc: KafkaException) -> None:
        """After an aborted stage-1 transaction: find and quarantine a message that keeps failing it.

        Only errors caused by what the batch carries count (CONTENT_ERRORS: a message or batch
        too large for a topic, a record the broker refuses, and the FAILED_TRANSACTION that
        follows such a refusal); retrying those fails the same way forever. After
        kafka.quarantine_after failures with no commit in between, batches are isolated
        (:meth:`_take_batch`): one partition's next message, then twice as many after each
        commit, back to one after each failure. A message that fails alone with a content
        error, having been in quarantine_after failed transactions, is set aside:
        dead-lettered as a reference with reason ``quarantined`` and the error, its offset
        committed, unprocessed.
        """
        if not (self._buffer and msgs and self._buffer[0] is msgs[0]):
            self._buffer = []  # rewound by seeking to the committed offsets: these are read again
        msgs = [m for m in msgs if m.error() is None]
        error = exc.args[0] if exc.args else None
        code = error.code() if isinstance(error, KafkaError) else None
        content = code in CONTENT_ERRORS
        if not msgs or not isinstance(error, KafkaError) or not (content or code == FAILED_TRANSACTION):
            return
        tries = self.settings.kafka.quarantine_after
        self._fail_streak += 1
        for m in msgs:
            where = (m.topic(), m.partition(), m.offset())
            self._failed_in[where] = self._failed_in.get(where, 0) + 1
        if self._batch_cap is None:
            if self._fail_streak < tries:
                return  # perhaps passing: the same batch again, whole
            self._isolate_until = {}
            for m in msgs:
                self._isolate_until[(m.topic(), m.partition())] = m.offset()
            log.warning("stage-1 batch of %d messages keeps failing (%s): isolating", len(msgs), error.str())
        self._batch_cap = 1
        m = msgs[0]
        where = (m.topic(), m.partition(), m.offset())
        if len(msgs) == 1 and content and self._failed_in[where] >= tries:
            self._quarantine[where] = f"{error.name()}: {error.str()}"[:500]
            log.error(
                "quarantining %s:%d@%d after %d failed transactions: %s",
                *where,
                self._failed_in[where],
                error.str(),
                extra={"topic": where[0], "partition": where[1], "offset": where[2], "stage": 1},
            )

    def _take_batch(self, size: int) -> list[Message]:
        """The next batch: the buffer's first ``size`` messages. While isolating, the first
        ``size`` of ONE partition (of the most suspect message): a batch must hold a prefix of
        each partition's messages, and one partition at a time reaches the message at fault
        in a few tries wherever it sits in the consumed order."""
        failed_in = self._failed_in

        def failures(m: Message) -> int:
            return -1 if m.error() is not None else failed_in.get((m.topic(), m.partition(), m.offset()), 0)

        first = max(self._buffer, key=failures) if self._batch_cap is not None else None
        if first is None or first.error() is not None:
            msgs, self._buffer = self._buffer[:size], self._buffer[size:]
            return msgs
        suspect = (first.topic(), first.partition())  # max(): the first of the most failed
        msgs, rest = [], []
        for m in self._buffer:
            if len(msgs) < size and m.error() is None and (m.topic(), m.partition()) == suspect:
                msgs.append(m)
            else:
                rest.append(m)
        self._buffer = rest
        return msgs

    def _note_stage1_commit(self, last: dict[tuple[str, int], int]) -> None:
        """After a committed stage-1 transaction: grow isolated batches, leave isolation when done."""
        self._fail_streak = 0
        if self._batch_cap is None:
            return
        done = [k for k in self._quarantine if last.get(k[:2], -1) >= k[2]]
        for k in done:
            del self._quarantine[k]
        until = self._isolate_until
        for tp in [tp for tp, offset in until.items() if last.get(tp, -1) >= offset]:
            del until[tp]
        if done or not until:
            # The message at fault is set aside, or the failing batch is behind: whole batches.
            self._batch_cap = None
            self._isolate_until = {}
            self._failed_in.clear()
        else:
            self._batch_cap = min(2 * self._batch_cap, self.settings.kafka.batch_size)

    def _abort_stage1(self, exc: KafkaException) -> None:
        """Abort the batch, forget its in-memory effects and rewind to the committed offsets.

        Classified by :meth:`_failed`: a fatal error raises; a fenced producer, or a commit
        given up on with its outcome unknown, makes stage 1 resume from what the broker holds
        (:meth:`_reload_stage1`). Otherwise the transaction is aborted and the consumer rewound
        to the offsets this worker committed last, with no broker call: the brokers may be gone.
        """
        unknown = self._committing
        self._committing = False
        self.ops.aborts += 1
        action = self._failed(1, "commit" if unknown else "transaction", exc)
        for processor in self.processors.values():
            processor.joiner.store.discard()  # type: ignore[attr-defined]
            processor.joiner.restore()
            processor.take_partials()
        if action == FENCED:
            return
        if unknown and action == RETRY:
            self._renew_producer(1)  # its init settles the transaction; the broker says how
            return
        if self.stall() is not None:
            return  # exiting (step raises): the broker aborts the transaction, nothing to rewind
        try:
            self._abort(1)
        except KafkaException as again:
            self._failed(1, "abort", again)
        for (topic, part), offset in self._committed.items():
            if part not in self.processors:
                continue
            try:
                self.c1.seek(TopicPartition(topic, part, offset if offset >= 0 else OFFSET_BEGINNING))
            except KafkaException as again:
                self._reload1 = True
                self._last_error[1] = f"rewind: {again}"

    # ------------------------------------------------------------------ stage 2

    def _on_assign2(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.ops.rebalances += 1
        self._owned2 = {tp.partition for tp in partitions}
        self._stage2_dirty = True
        self._assigned2 = True

    def _on_revoke2(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The models of these partitions now belong to another worker: stop exporting them here.
        self._owned2 -= {tp.partition for tp in partitions}
        self._applied2 = {}  # applied to the state dropped here; the rebuild reads them again
        self.aggregator = self.engine.aggregator()
        self.alerts = AlertEngine(self.engine.rules)
        self.snapshot = None
        self._report_points.clear()
        self._report_windows = {}
        self._stage2_dirty = True

    def _rebuild_stage2(self) -> None:
        """Fresh aggregator from the partials topic (to the committed offsets) and alert state."""
        from streamon.runtime.restore import read_range

        assignment = self.c2.assignment()
        self._applied2 = {}  # re-read from the committed offsets below
        self.aggregator = self.engine.aggregator()
        self.alerts = AlertEngine(self.engine.rules)
        if assignment:
            found = self.c2.committed(assignment, timeout=self.call_timeout)
            committed = {tp.partition: tp.offset for tp in found}
            for n, msg in enumerate(read_range(self.settings, self.topics.partials, committed), 1):
                self._apply_partial(msg)
                if n % 10_000 == 0:
                    self._heartbeat()
            history = self._read_alert_history()
            self.alerts.restore(history)
            self._alert_log.clear()
            self._alert_log.extend(history)
            # Partials consumed after the committed offsets (a failed transaction's) are read again.
            for tp in found:
                self.c2.seek(
                    TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                )
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
        if not self._recover(2):  # backing off after a failure, or still recovering from one
            return
        if self._stage2_dirty and self.c2.assignment():
            self._rebuild_stage2()
        # No waiting here: stage 1's consume already idles when there is nothing to do.
        msgs = self.c2.consume(num_messages=self.settings.kafka.batch_size, timeout=0)
        last = self._applied2
        for m in msgs:
            if m.error() is not None:
                if m.error().fatal():
                    raise KafkaException(m.error())
                continue
            if not last:
                self._applied2_since = time.monotonic()
            self._apply_partial(m)
            last[m.partition()] = m.offset()
        # The offsets of applied partials go with the next evaluation's transaction, or one of
        # their own after flush_interval: one per stage-1 flush cost more than merging the
        # partials (docs/benchmarks.md). Uncommitted, they are only read again by a rebuild,
        # which reads every partial anyway: nothing is counted twice or lost.
        now = time.monotonic()
        due = now >= self._next_eval
        if not due and (not last or now - self._applied2_since < self.settings.kafka.flush_interval):
            return
        committing = False
        try:
            self.p2.begin_transaction()
            if due:
                self._evaluate()
            if last:
                offsets = [TopicPartition(self.topics.partials, p, o + 1) for p, o in last.items()]
                meta = self.c2.consumer_group_metadata()
                timeout = self.call_timeout
                self._retrying(
                    2, "offsets", lambda: self.p2.send_offsets_to_transaction(offsets, meta, timeout)
                )
            committing = True
            self._retrying(2, "commit", lambda: self.p2.commit_transaction(self.call_timeout))
            self._applied2 = {}
        except KafkaException as exc:
            # Whatever the outcome, stage 2 rebuilds from what the broker holds (partials to the
            # committed offsets, alert history), so a commit of unknown outcome needs no more.
            self.ops.aborts += 1
            self._stage2_dirty = True
            action = self._failed(2, "commit" if committing else "transaction", exc)
            if committing and action == RETRY:
                self._renew_producer(2)  # a commit given up on: a new producer settles it
            elif action != FENCED:
                try:
                    self._abort(2)
                except KafkaException as again:
                    self._failed(2, "abort", again)
            return
        self._commit_succeeded(2, [])

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
            if s.name.startswith("system_")
            or s.name in ("streamon_consumer_lag_messages", "streamon_worker_stalled_seconds")
        ]
        events = self.alerts_infra.evaluate(Snapshot(time.time(), infra))
        if snap is not None:
            events += self.alerts.evaluate(snap)
            self.snapshot = snap
            self._keep_for_report(snap)
        self._alert_log.extend(events)
        for event in events:
            self._produce(
                self.p2, self.topics.alerts, key=event["fingerprint"].encode(), value=orjson.dumps(event)
            )

    def _keep_for_report(self, snap: Snapshot) -> None:
        """One point of the live report's series per event-time evaluation interval (a worker
        catching up evaluates every few seconds of wall time, over hours of event time)."""
        last = self._report_points[-1][0] if self._report_points else -math.inf
        if snap.event_time >= last + self.engine.eval_interval_s:
            names = self._report_names
            self._report_points.append(
                (snap.event_time, [x for x in snap.samples if x.name in names and drawn(x)])
            )
            self._report_windows = window_views(self.aggregator)

    def report_html(self) -> bytes:
        """The live report (``/report``, on the HTTP thread): drawn from what the main loop kept,
        so it never touches the aggregator while the loop changes it."""
        from streamon.report.collect import collect
        from streamon.report.render import render_html

        snap = self.snapshot
        if snap is None:
            return (
                b"<!DOCTYPE html><title>streamon</title><p>No evaluation yet: no model owned or no data.</p>"
            )
        data = collect(
            f"streamon worker {self.instance_id}",
            list(self._report_points),
            snap,
            self._report_windows,
            self.engine.rules,
            list(self._alert_log),
        )
        return render_html(data).encode()

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
        """What /metrics serves (on the HTTP thread): the samples the main loop prepared at most
        METRICS_REFRESH_S ago, and the clock-derived ones. It touches no Kafka client, so a
        scrape answers at once however busy or blocked the main loop is."""
        model = self.snapshot or Snapshot(event_time=0.0)
        counts = list(self.ops.batch_counts)
        batch = HistogramSample(
            "streamon_batch_seconds",
            (("stage", "1"),),
            (*BATCH_BUCKETS_S, math.inf),
            tuple(itertools.accumulate(counts)),
            self.ops.batch_sum,
            sum(counts),
        )
        return Snapshot(model.event_time, model.samples, [*model.histograms, batch]), [
            *self._samples,
            *self._live_samples(),
        ]

    def _live_samples(self) -> list[Sample]:
        """Samples computed from plain attributes and the clock (safe on any thread)."""
        out = []
        for stage in (1, 2):
            label = (("stage", str(stage)),)
            out.append(Sample("streamon_last_commit_timestamp_seconds", label, self.last_commit[stage]))
            out.append(Sample("streamon_worker_stalled_seconds", label, max(0.0, self._stalled_for(stage))))
        snapshot = self.snapshot
        if snapshot is not None and math.isfinite(self.ops.newest_event):
            out.append(
                Sample("streamon_end_to_end_delay_seconds", (), max(0.0, time.time() - snapshot.event_time))
            )
        return out

    def operational_samples(self, live: bool = True) -> list[Sample]:
        """This worker's operational samples (main thread: reads the processors and stores).

        ``live=False`` leaves out :meth:`_live_samples` (what /metrics computes at scrape time).
        """
        ops = self.ops
        out = [
            Sample("system_cpu_usage_percent", (), psutil.cpu_percent(interval=None)),
            Sample("system_memory_usage_percent", (), psutil.virtual_memory().percent),
            Sample("system_disk_usage_percent", (), psutil.disk_usage(str(self.state_dir)).percent),
            Sample("streamon_rebalances_total", (), float(ops.rebalances)),
            Sample("streamon_restore_seconds", (), ops.restore_seconds),
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
        counts = dict(ops.join_counts_before)
        for part, processor in self.processors.items():
            counts[part] = (processor.joiner.stats.orphaned, processor.joiner.stats.corrections)
        out.append(Sample("streamon_labels_orphaned_total", (), float(sum(o for o, _ in counts.values()))))
        out.append(Sample("streamon_label_corrections_total", (), float(sum(c for _, c in counts.values()))))
        out.append(Sample("streamon_restored_messages_total", (), float(ops.restored_messages)))
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
        # Lag as kafka-consumer-groups reports it: high watermark - committed offset (the
        # group's, which this worker's transactions set), not the fetch position, which runs
        # ahead of what is committed while transactions fail. High watermarks come from the
        # consumer's statistics: no broker call.
        marks = self._marks[1]
        for (topic, part), done in sorted(self._committed.items()):
            lo, hi = marks.get((topic, part), (-1, -1, -1, -1))[:2]
            start = done if done >= 0 else lo
            if hi >= 0 and start >= 0:
                out.append(
                    Sample(
                        "streamon_consumer_lag_messages",
                        (("topic", topic), ("partition", str(part))),
                        float(max(0, hi - start)),
                    )
                )
        if live:
            out += self._live_samples()
        return out
