"""``streamon simulate``: fraud-like traffic, live to any Kafka cluster or to files.

The per-event model is :func:`streamon.traffic.generate` (seeded, drift on demand);
this module turns it into a live stream: predictions are produced as wall-clock time
passes (event time = wall clock), each label is held back until its delay has
elapsed, and drift is switched on ``drift_after_s`` seconds into the run.
:func:`write_files` (``--out DIR``) writes the same traffic, in event time, to the
JSONL files that ``streamon replay``, ``streamon reference build`` and ``streamon ab
report`` read.

Drift kinds (``SimulationSpec.drift``), as documented in :mod:`streamon.traffic`:

- ``sudden``: transaction_amount x2.5 + 40 and days_since_last_transaction x3;
- ``categorical``: merchant_category shifts towards electronics, travel and gaming;
- ``missing``: 40% of transaction_amount values are null;
- ``calibration``: scores x1.6 (clipped to 1);
- ``degrade``: scores lose most of their signal (0.25 x score + 0.75 x noise);
- ``gradual`` (added here): the drifted share of traffic ramps linearly from 0 to
  100% over ``drift_ramp_s`` seconds instead of switching at once. Alone it ramps the
  ``sudden`` shift; with other kinds it ramps those.

The drifted and undrifted versions of a chunk are generated from the same seed, so
an event has the same id, time, fraud truth and label either way; drift then picks,
per event, which version is sent.
"""

from __future__ import annotations

import heapq
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import orjson

from streamon.errors import InputError, KafkaUnavailableError, StreamonError
from streamon.kafka_client import kafka_client_config, probe
from streamon.traffic import TrafficSpec, generate

if TYPE_CHECKING:
    from streamon.config import Settings

DRIFT_KINDS = ("sudden", "gradual", "categorical", "missing", "calibration", "degrade")
# Kinds that traffic.generate implements; "gradual" is a ramp over the others.
_GENERATED_KINDS = ("sudden", "categorical", "missing", "calibration", "degrade")


@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate. Times are seconds; ``drift_after_s`` counts from the start of the run.

    >>> SimulationSpec(rate=10, drift=("gradual",), drift_after_s=60).drifted_share(90)
    0.25
    >>> SimulationSpec(rate=10, drift=("sudden",), drift_after_s=60).drifted_share(59.9)
    0.0
    """

    rate: float = 50.0  # predictions per second
    models: tuple[str, ...] = ("fraud-detector",)
    variants: tuple[str, ...] = ()  # A/B arms; two arms are routed with assign_variant(entity_id)
    experiment: str = "exp-1"
    fraud_rate: float = 0.03
    label_fraction: float = 1.0  # share of predictions that ever get a label
    label_delay_s: float = 30.0  # mean of an exponential delay
    label_noise: float = 0.0  # share of labels flipped
    drift: tuple[str, ...] = ()
    drift_after_s: float = 60.0
    drift_ramp_s: float = 120.0  # for "gradual"
    drift_variants: tuple[str, ...] = ()  # drift only these arms (empty = all traffic)
    seed: int = 7
    # Models of ``models`` that are regression models (``task: regression`` in the config):
    # credit-limit traffic, a predicted ``value`` and a numeric label (streamon.traffic).
    regression: tuple[str, ...] = ()
    # Models of ``models`` that are multiclass models (``task: multiclass``): transaction-
    # router traffic, ``scores`` and class-name labels; ``classes`` pairs each with its classes.
    multiclass: tuple[str, ...] = ()
    classes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise InputError(f"rate must be > 0 predictions per second (got {self.rate:g})")
        if not self.models or any(not m for m in self.models):
            raise InputError("give at least one model name")
        for name, value in (
            ("fraud rate", self.fraud_rate),
            ("label fraction", self.label_fraction),
            ("label noise", self.label_noise),
        ):
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must be in [0, 1] (got {value:g})")
        for name, value in (
            ("label delay", self.label_delay_s),
            ("drift after", self.drift_after_s),
            ("drift ramp", self.drift_ramp_s),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be a number of seconds >= 0 (got {value:g})")
        unknown = [k for k in self.drift if k not in DRIFT_KINDS]
        if unknown:
            raise InputError(f"unknown drift kind {unknown[0]!r}; use one of: {', '.join(DRIFT_KINDS)}")
        if len(set(self.variants)) != len(self.variants) or any(not v for v in self.variants):
            raise InputError(f"variants must be distinct non-empty names (got {','.join(self.variants)})")
        stray = [v for v in self.drift_variants if v not in self.variants]
        if stray:
            raise InputError(f"drift variant {stray[0]!r} is not one of the variants {self.variants}")

    @property
    def generated_drift(self) -> tuple[str, ...]:
        """The traffic.generate drift kinds of the drifted version of the traffic."""
        kinds = tuple(k for k in self.drift if k in _GENERATED_KINDS)
        return kinds or (("sudden",) if "gradual" in self.drift else ())

    def drifted_share(self, elapsed: float) -> float:
        """Share of the traffic drifted ``elapsed`` seconds into the run."""
        if not self.drift:
            return 0.0
        since = elapsed - self.drift_after_s
        if "gradual" in self.drift:
            if self.drift_ramp_s == 0:
                return 1.0 if since >= 0 else 0.0
            return float(min(max(since / self.drift_ramp_s, 0.0), 1.0))
        return 1.0 if since >= 0 else 0.0


class TrafficSource:
    """Events of consecutive time intervals of a run that started at ``start`` (epoch seconds).

    Exactly ``rate`` predictions per second on average (fractions carry over), event
    times inside the interval asked for, prediction ids unique within the run
    (``<id_prefix>-<n>``). Labels carry their due time as ``ts``.

    >>> src = TrafficSource(SimulationSpec(rate=20), start=1_800_000_000.0, id_prefix="t")
    >>> preds, labels = src.between(1_800_000_000.0, 1_800_000_001.0)
    >>> len(preds), preds[0]["prediction_id"], all(l["ts"] > 1_800_000_000.0 for l in labels)
    (20, 't-000000000', True)
    """

    def __init__(self, spec: SimulationSpec, start: float, id_prefix: str | None = None) -> None:
        self.spec = spec
        self.start = start
        self.id_prefix = id_prefix or f"sim{spec.seed}-{int(start * 1000):x}"
        self.produced = 0
        self._chunk = 0
        self._carry = 0.0
        self._pick = np.random.default_rng([spec.seed, 0x5EED])

    def _seed(self) -> int:
        return int(np.random.SeedSequence([self.spec.seed, self._chunk]).generate_state(1)[0])

    def between(
        self, t0: float, t1: float, limit: int | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(predictions, labels) with event times in [t0, t1); at most ``limit`` predictions."""
        spec = self.spec
        expected = spec.rate * max(t1 - t0, 0.0) + self._carry
        n = int(expected)
        self._carry = expected - n
        if limit is not None:
            n = min(n, limit)
        if n == 0:
            return [], []
        self._chunk += 1
        base = TrafficSpec(
            n=n,
            start=t0,
            rate=n / (t1 - t0),
            models=spec.models,
            variants=spec.variants,
            experiment=spec.experiment,
            fraud_rate=spec.fraud_rate,
            label_fraction=spec.label_fraction,
            label_delay_s=spec.label_delay_s if spec.label_delay_s > 0 else 1e-9,
            label_noise=spec.label_noise,
            drift_at=None,
            seed=self._seed(),
            regression=spec.regression,
            multiclass=spec.multiclass,
            classes=dict(spec.classes),
        )
        preds, labels = generate(base)
        if len(spec.variants) == 2:
            # The project's deterministic routing: a card always lands in the same arm.
            from streamon.core.statistics.ab import assign_variant  # imports scipy: only when routing

            for p in preds:
                arm = assign_variant(p["entity_id"], spec.experiment)
                p["variant"] = spec.variants[0 if arm == "A" else 1]
        shares = np.array([spec.drifted_share(p["ts"] - self.start) for p in preds])
        if shares.any():
            drifted, drifted_labels = generate(replace(base, drift_at=-1.0, drift=spec.generated_drift))
            pick = self._pick.random(n) < shares
            moved = set()
            for i in np.flatnonzero(pick):
                if spec.drift_variants and preds[i].get("variant") not in spec.drift_variants:
                    continue
                if "variant" in preds[i]:
                    drifted[i]["variant"] = preds[i]["variant"]  # the routed arm, not generate's draw
                preds[i] = drifted[i]
                moved.add(preds[i]["prediction_id"])
            # A drifted credit limit or transaction has its own true value or class (a fraud flag does not).
            if spec.regression or spec.multiclass:
                truth = {lab["prediction_id"]: lab["label"] for lab in drifted_labels}
                for lab in labels:
                    pid = lab["prediction_id"]
                    if pid in moved and truth.get(pid) is not None:
                        lab["label"] = truth[pid]
        ids = {}
        for p in preds:
            new = f"{self.id_prefix}-{self.produced:09d}"
            ids[p["prediction_id"]] = new
            p["prediction_id"] = new
            self.produced += 1
        for label in labels:
            label["prediction_id"] = ids[label["prediction_id"]]
        return preds, labels


class LabelQueue:
    """Labels waiting for their due time (their ``ts``).

    >>> q = LabelQueue()
    >>> q.push([{"prediction_id": "a", "label": 0, "ts": 5.0}, {"prediction_id": "b", "label": 1, "ts": 2.0}])
    >>> [lab["prediction_id"] for lab in q.due(3.0)], len(q)
    (['b'], 1)
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, dict[str, Any]]] = []
        self._seq = 0

    def push(self, labels: list[dict[str, Any]]) -> None:
        for label in labels:
            self._seq += 1
            heapq.heappush(self._heap, (float(label["ts"]), self._seq, label))

    def due(self, now: float) -> Iterator[dict[str, Any]]:
        while self._heap and self._heap[0][0] <= now:
            yield heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)


def rename_fields(event: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """Rename streamon's field names to the user's configured ones (config ``fields``).

    >>> rename_fields({"ts": 1.0, "score": 0.5}, {"ts": "event_time", "score": "score"})
    {'event_time': 1.0, 'score': 0.5}
    """
    if all(k == v for k, v in mapping.items()):
        return event
    return {mapping.get(k, k): v for k, v in event.items()}


class Sink(Protocol):
    """Where simulated events go: a Kafka producer, or a list in tests."""

    def send(self, topic: str, key: bytes, value: bytes) -> None: ...

    def poll(self) -> None: ...

    def flush(self, timeout: float) -> int: ...


@dataclass
class SimStats:
    predictions: int = 0
    labels: int = 0
    pending_labels: int = 0
    started: float = 0.0
    elapsed: float = 0.0
    drifted_share: float = 0.0
    undelivered: int = 0
    stopped_early: bool = False
    last_error: str = ""
    drift_scope: str = ""  # "" = all traffic, else the arms drift applies to

    def line(self) -> str:
        rate = self.predictions / self.elapsed if self.elapsed > 0 else 0.0
        scope = f" of arm {self.drift_scope}" if self.drift_scope else ""
        drift = f"; drifted share {self.drifted_share:.0%}{scope}" if self.drifted_share else ""
        err = f"; kafka: {self.last_error}" if self.last_error else ""
        return (
            f"{self.elapsed:6.0f}s  {self.predictions:,} predictions ({rate:.1f}/s), "
            f"{self.labels:,} labels sent, {self.pending_labels:,} labels pending{drift}{err}"
        )


@dataclass
class Topics:
    predictions: str
    labels: str
    prediction_fields: dict[str, str] = field(default_factory=dict)
    label_fields: dict[str, str] = field(default_factory=dict)


class Simulator:
    """Sends a :class:`TrafficSource`'s events to a :class:`Sink` as wall-clock time passes."""

    def __init__(
        self,
        spec: SimulationSpec,
        sink: Sink,
        topics: Topics,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        tick_s: float = 0.1,
        id_prefix: str | None = None,
    ) -> None:
        self.spec = spec
        self.sink = sink
        self.topics = topics
        self.clock = clock
        self.sleep = sleep
        self.tick_s = tick_s
        self.start = clock()
        self.source = TrafficSource(spec, self.start, id_prefix)
        self.labels = LabelQueue()
        self.stats = SimStats(started=self.start, drift_scope=",".join(spec.drift_variants))

    def _send(self, topic: str, event: dict[str, Any], mapping: dict[str, str]) -> None:
        key = str(event["prediction_id"]).encode()
        self.sink.send(topic, key, orjson.dumps(rename_fields(event, mapping)))

    def run(
        self,
        duration: float | None = None,
        count: int | None = None,
        stop: threading.Event | None = None,
        status: Callable[[SimStats], None] | None = None,
        status_every: float = 5.0,
        wait_for_labels: bool = False,
    ) -> SimStats:
        """Produce until ``duration`` seconds, ``count`` predictions, or ``stop`` is set.

        With ``wait_for_labels`` the labels still pending at the end are sent when due
        (the run lasts until the last one); otherwise they are counted as pending.
        """
        t = self.topics
        sent_until = self.start
        end = None if duration is None else self.start + duration
        next_status = self.start + status_every
        producing = True
        try:
            while True:
                if stop is not None and stop.is_set():
                    self.stats.stopped_early = True
                    break
                now = self.clock()
                if producing:
                    upto = now if end is None else min(now, end)
                    left = None if count is None else count - self.stats.predictions
                    if upto > sent_until:
                        preds, labels = self.source.between(sent_until, upto, left)
                        sent_until = upto
                        for p in preds:
                            self._send(t.predictions, p, t.prediction_fields)
                        self.stats.predictions += len(preds)
                        self.labels.push(labels)
                    done = (end is not None and now >= end) or (
                        count is not None and self.stats.predictions >= count
                    )
                    producing = not done
                for label in self.labels.due(now):
                    self._send(t.labels, label, t.label_fields)
                    self.stats.labels += 1
                self.sink.poll()
                self._update(now)
                if status is not None and now >= next_status:
                    status(self.stats)
                    next_status = now + status_every
                if not producing and not (wait_for_labels and len(self.labels)):
                    break
                self.sleep(max(0.0, self.tick_s - (self.clock() - now)))
        finally:
            self.stats.undelivered = self.sink.flush(10.0)
            self._update(self.clock())
        return self.stats

    def _update(self, now: float) -> None:
        self.stats.elapsed = now - self.start
        self.stats.pending_labels = len(self.labels)
        self.stats.drifted_share = self.spec.drifted_share(self.stats.elapsed)


# --------------------------------------------------------------------------- Kafka edge


def kafka_logger(name: str = "streamon.kafka") -> logging.Logger:
    """A logger for librdkafka's own log lines, silent unless someone adds a handler.

    librdkafka otherwise writes every connection failure to stderr, several per second,
    which buries the one line that says what is wrong.
    """
    log = logging.getLogger(name)
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def cluster_address_check(client: Any, bootstrap: str, timeout: float = 5.0) -> dict[str, int]:
    """Topic -> partition count, or one KafkaUnavailableError line when the cluster is unreachable."""
    from confluent_kafka import KafkaException

    try:
        # In short attempts: refused credentials raise from the client's SecurityWatch at once.
        md = probe(client, timeout)
    except KafkaException as exc:
        reason = exc.args[0].str() if hasattr(exc.args[0], "str") else str(exc)
        raise KafkaUnavailableError(
            f"cannot reach Kafka at {bootstrap} ({reason}): check --bootstrap-servers / "
            "kafka.bootstrap_servers and that the brokers run"
        ) from None
    return {name: len(tp.partitions) for name, tp in md.topics.items() if tp.error is None}


class KafkaSink:
    """A confluent-kafka producer with short timeouts; delivery failures stop the run."""

    def __init__(self, bootstrap: str, client: dict[str, Any] | None = None) -> None:
        from confluent_kafka import Producer

        self.bootstrap = bootstrap
        self.last_error = ""
        self.failed = 0
        self._first_failure = ""
        # The SecurityWatch of kafka_client_config: refused credentials end the run in one line.
        self._watch = (client or {}).get("error_cb")
        self.producer = Producer(
            {
                **(client or {}),
                "bootstrap.servers": bootstrap,
                "linger.ms": 20,
                "message.timeout.ms": 15_000,
                "socket.timeout.ms": 5_000,
                "logger": kafka_logger(),
                "error_cb": self._on_error,
            }
        )

    def _on_error(self, err: Any) -> None:
        self.last_error = err.str()
        if self._watch is not None:
            self._watch(err)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed += 1
            self._first_failure = self._first_failure or err.str()

    def check(self, timeout: float = 5.0) -> dict[str, int]:
        return cluster_address_check(self.producer, self.bootstrap, timeout)

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, on_delivery=self._on_delivery)
                return
            except BufferError:  # the local queue is full: let deliveries drain
                self.producer.poll(0.5)
                self.poll()

    def poll(self) -> None:
        self.producer.poll(0)
        if self.failed:
            raise KafkaUnavailableError(
                f"Kafka at {self.bootstrap} refused {self.failed} messages ({self._first_failure}); stopped"
            )

    def flush(self, timeout: float) -> int:
        return int(self.producer.flush(timeout))

    def ensure_topics(self, predictions: str, labels: str, partitions: int, replication: int) -> None:
        """Create the two input topics when missing, co-partitioned; refuse when they are not."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        existing = self.check()
        n_pred, n_lab = existing.get(predictions), existing.get(labels)
        if n_pred is not None and n_lab is not None:
            if n_pred != n_lab:
                raise StreamonError(
                    f"topics {predictions} ({n_pred} partitions) and {labels} ({n_lab} partitions) are not "
                    "co-partitioned: give them the same partition count"
                )
            return
        count = n_pred or n_lab or partitions
        missing = [t for t, n in ((predictions, n_pred), (labels, n_lab)) if n is None]
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "logger": kafka_logger()}
        admin = AdminClient(conf)
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=count, replication_factor=replication) for t in missing],
            request_timeout=10,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=15)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise StreamonError(f"cannot create topic {name}: {exc.args[0].str()}") from None


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM set ``stop``; a second Ctrl-C interrupts for real."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def parse_variants(text: str | None) -> tuple[str, ...]:
    """``"A,B"`` -> ``("A", "B")``.

    >>> parse_variants("A, B"), parse_variants(None)
    (('A', 'B'), ())
    """
    if not text:
        return ()
    return tuple(v.strip() for v in text.split(",") if v.strip())


def parse_drift(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeated and/or comma-separated drift kinds, validated.

    >>> parse_drift(("sudden,degrade", "gradual"))
    ('sudden', 'degrade', 'gradual')
    """
    kinds = tuple(k.strip().lower() for v in values for k in v.split(",") if k.strip())
    for k in kinds:
        if k not in DRIFT_KINDS:
            raise InputError(f"unknown drift kind {k!r}; use one of: {', '.join(DRIFT_KINDS)}")
    return tuple(dict.fromkeys(kinds))


def check_request(settings: Any, spec: SimulationSpec, duration: float | None, count: int | None) -> None:
    """The checks every simulate run makes of its models and bounds (Kafka and files alike)."""
    unknown = [m for m in spec.models if m not in settings.model_names]
    if unknown:
        raise InputError(
            f"model {unknown[0]!r} is not in the config (configured: {', '.join(settings.model_names)})"
        )
    if duration is not None and count is not None:
        raise InputError("give --duration or --count, not both")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise InputError(f"--duration must be > 0 seconds (got {duration:g})")
    if count is not None and count <= 0:
        raise InputError(f"--count must be > 0 (got {count})")


def run_simulation(
    settings: Settings,
    spec: SimulationSpec,
    duration: float | None,
    count: int | None,
    wait_for_labels: bool,
    echo: Callable[[str], None],
    stop: threading.Event | None = None,
) -> SimStats:
    """``streamon simulate``: check the cluster, prepare the topics, produce until done."""
    check_request(settings, spec, duration, count)
    k = settings.kafka
    sink = KafkaSink(k.bootstrap_servers, kafka_client_config(settings))
    sink.ensure_topics(k.topics.predictions, k.topics.labels, k.partitions, k.replication_factor)
    topics = Topics(
        k.topics.predictions,
        k.topics.labels,
        settings.fields.prediction.model_dump(),
        settings.fields.label.model_dump(),
    )
    sim = Simulator(spec, sink, topics)
    bound = (
        f"for {duration:g}s"
        if duration is not None
        else f"{count:,} predictions"
        if count is not None
        else "until Ctrl-C"
    )
    drift = (
        f"; drift {'+'.join(spec.drift)} after {spec.drift_after_s:g}s"
        + (f" ramping over {spec.drift_ramp_s:g}s" if "gradual" in spec.drift else "")
        if spec.drift
        else ""
    )
    echo(
        f"simulate: {spec.rate:g} predictions/s to {k.topics.predictions} and labels "
        f"(mean delay {spec.label_delay_s:g}s) to {k.topics.labels} at {k.bootstrap_servers}, {bound}{drift}"
    )

    def status(stats: SimStats) -> None:
        stats.last_error = sink.last_error
        echo("simulate: " + stats.line())

    own_stop = stop or threading.Event()
    with stop_on_signals(own_stop):
        stats = sim.run(duration, count, own_stop, status, wait_for_labels=wait_for_labels)
    if stats.undelivered:
        raise KafkaUnavailableError(
            f"{stats.undelivered} messages were not delivered to {k.bootstrap_servers} within 10s"
        )
    return stats


# --------------------------------------------------------------------------- files

PREDICTIONS_FILE = "predictions.jsonl"
LABELS_FILE = "labels.jsonl"
REFERENCE_FILE = "reference.jsonl"
DEFAULT_FILE_COUNT = 10_000
_FILE_STEP_S = 10.0  # event time generated per step: big enough to amortise generate()


@dataclass
class FileStats:
    """What :func:`write_files` wrote; times are epoch seconds of event time."""

    predictions: int = 0
    labels: int = 0
    reference: int = 0
    start: float = 0.0  # the first prediction's interval starts here (drift_after_s counts from it)
    end: float = 0.0  # the predictions span [start, end)
    last: float = 0.0  # the newest event time written (usually a label)
    paths: tuple[Path, ...] = ()


def default_file_start(spec: SimulationSpec, count: int, now: float) -> float:
    """A start that puts the whole stream, labels included, in the past of ``now``.

    Predictions span ``count / rate`` seconds; label delays are exponential, so a margin
    of ``label_delay * (ln(count) + 10)`` covers the latest label except with probability
    about ``e^-10``. Whole seconds, so the printed times read cleanly.

    >>> default_file_start(SimulationSpec(rate=10, label_delay_s=0), 100, 1_800_000_000.5)
    1799999990.0
    """
    tail = spec.label_delay_s * (math.log(max(count, 1)) + 10.0)
    return float(math.floor(now - count / spec.rate - tail))


def _jsonl(event: dict[str, Any], mapping: dict[str, str]) -> bytes:
    return orjson.dumps(rename_fields(event, mapping)) + b"\n"


def write_files(
    settings: Settings,
    spec: SimulationSpec,
    out_dir: Path,
    count: int,
    start: float,
    reference_count: int,
    tick: Callable[[int], None] | None = None,
) -> FileStats:
    """Write ``count`` predictions, their labels and ``reference_count`` reference events.

    - ``predictions.jsonl``: the traffic of ``spec`` from ``start`` on, in event time
      (``rate`` predictions per second of event time), drift from ``start +
      drift_after_s`` exactly as the Kafka mode switches it on after ``drift_after_s``;
    - ``labels.jsonl``: their labels, ``ts`` = when the label arrives, sorted by it;
    - ``reference.jsonl``: undrifted traffic of the ``reference_count / rate`` seconds
      before ``start`` (another seed), every prediction with its ``label``: the input of
      ``streamon reference build``.

    Field names follow the config's ``fields``. The same ``spec`` (seed), ``count``,
    ``start`` and ``reference_count`` give byte-identical files.
    """
    if count <= 0:
        raise InputError(f"--count must be > 0 (got {count})")
    if reference_count < 0:
        raise InputError(f"--reference-count must be >= 0 (got {reference_count})")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create --out directory {out_dir}: {exc.strerror or exc}") from None
    pred_fields = settings.fields.prediction.model_dump()
    label_fields = settings.fields.label.model_dump()
    paths = tuple(out_dir / name for name in (PREDICTIONS_FILE, LABELS_FILE, REFERENCE_FILE))
    stats = FileStats(start=start, end=start + count / spec.rate, paths=paths)
    step = tick or (lambda _n: None)
    try:
        with paths[0].open("wb") as preds_out, paths[1].open("wb") as labels_out:
            source = TrafficSource(spec, start, id_prefix=f"sim{spec.seed}")
            queue = LabelQueue()
            t = start
            while stats.predictions < count:
                upto = t + _FILE_STEP_S
                preds, labels = source.between(t, upto, count - stats.predictions)
                t = upto
                preds_out.write(b"".join(_jsonl(p, pred_fields) for p in preds))
                queue.push(labels)
                # Labels due by now come before every label of a later prediction: sorted output.
                due = list(queue.due(upto))
                labels_out.write(b"".join(_jsonl(lab, label_fields) for lab in due))
                stats.predictions += len(preds)
                stats.labels += len(due)
                if preds:
                    stats.last = max(stats.last, preds[-1]["ts"])
                step(len(preds))
            rest = list(queue.due(math.inf))
            labels_out.write(b"".join(_jsonl(lab, label_fields) for lab in rest))
            stats.labels += len(rest)
            if rest:
                stats.last = max(stats.last, rest[-1]["ts"])
        with paths[2].open("wb") as ref_out:
            stats.reference = _write_reference(spec, start, reference_count, pred_fields, ref_out, step)
    except OSError as exc:
        raise InputError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    return stats


def _write_reference(
    spec: SimulationSpec,
    start: float,
    count: int,
    pred_fields: dict[str, str],
    out: Any,
    step: Callable[[int], None],
) -> int:
    """Undrifted, fully labelled traffic just before ``start``: what the model looked like."""
    if count == 0:
        return 0
    ref_spec = replace(spec, drift=(), drift_variants=(), label_fraction=1.0, seed=spec.seed + 1_000)
    ref_start = start - count / spec.rate
    source = TrafficSource(ref_spec, ref_start, id_prefix=f"ref{spec.seed}")
    written = 0
    t = ref_start
    while written < count:
        upto = t + _FILE_STEP_S
        preds, labels = source.between(t, upto, count - written)
        t = upto
        truth = {lab["prediction_id"]: lab["label"] for lab in labels}
        out.write(b"".join(_jsonl({**p, "label": truth[p["prediction_id"]]}, pred_fields) for p in preds))
        written += len(preds)
        step(len(preds))
    return written
