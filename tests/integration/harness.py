"""Helpers for the worker integration tests: configs, traffic, worker processes, scrapes."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests
import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streamon.config import Settings, default_settings
from streamon.engine import build_engine
from streamon.exporter import render
from streamon.replay import replay_files
from streamon.traffic import TrafficSpec, generate

STREAMON = str(Path(sys.executable).parent / "streamon")
# Series that describe one worker, not the monitored models: excluded from comparisons.
OPERATIONAL_PREFIXES = ("system_", "streamon_events", "streamon_rebalances", "streamon_transaction",
                        "streamon_consumer_lag", "streamon_join_store", "streamon_labels_orphaned",
                        "streamon_label_corrections", "streamon_end_to_end", "streamon_late_deltas",
                        "streamon_batch", "streamon_restore", "streamon_last_commit",
                        "streamon_worker_stalled")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_dict(bootstrap: str, partitions: int = 3, **windows: Any) -> dict[str, Any]:
    """A config with unique topic names, short windows and 5-minute evaluations."""
    sfx = uuid.uuid4().hex[:8]
    d = default_settings().model_dump(by_alias=True, mode="json")
    d["kafka"]["bootstrap_servers"] = bootstrap
    d["kafka"]["group_id"] = f"streamon-{sfx}"
    d["kafka"]["topics"] = {
        k: f"{k.replace('_', '-')}-{sfx}"
        for k in ("predictions", "labels", "partials", "alerts", "dead_letter")
    }
    d["kafka"]["partitions"] = partitions
    d["kafka"]["partials_partitions"] = 2
    d["kafka"]["batch_size"] = 2000
    d["windows"].update({"current": 6 * 3600.0, "reference": 86400.0, **windows})
    for fam in ("model_performance", "data_drift", "business_metrics"):
        d["monitoring"]["custom_metrics"][fam]["collection_interval"] = 300.0
    d["data_drift"]["schedule"] = {}
    return d


def write_config(tmp: Path, d: dict[str, Any]) -> tuple[Path, Settings]:
    path = tmp / f"config-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path, Settings.from_dict(d)


def traffic(n: int = 12_000, **kw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Events that end well before now (so none is 'in the future'), drift after 70% of the span."""
    rate = kw.pop("rate", 0.5)
    span = n / rate
    spec = TrafficSpec(
        n=n,
        rate=rate,
        start=time.time() - span - 4 * 3600,
        drift_at=kw.pop("drift_at", 0.7 * span),
        drift=kw.pop("drift", ("sudden", "degrade")),
        label_delay_s=kw.pop("label_delay_s", 900.0),
        **kw,
    )
    return generate(spec)


def produce(
    bootstrap: str, topic: str, events: Iterable[dict[str, Any] | bytes], key: str = "prediction_id"
) -> int:
    """Produce ``events`` in order: each partition holds its events in the order given.

    Idempotent, so a retried request (typically the first ones, to a topic a worker is still
    creating) cannot land after later ones: the worker would then see a prediction hours of
    event time late, after its label's orphan grace, and orphan the label where replay,
    which sorts by event time, joins it.
    """
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    placed: list[tuple[int, int] | str | None] = []  # (partition, offset) of each event, in order

    def delivered(i: int) -> Any:
        def cb(err: KafkaError | None, msg: Any) -> None:
            placed[i] = str(err) if err is not None else (msg.partition(), msg.offset())

        return cb

    n = 0
    for e in events:
        placed.append(None)
        if isinstance(e, bytes):
            p.produce(topic, key=b"junk", value=e, on_delivery=delivered(n))
        else:
            k = e.get(key)
            kb = str(k).encode() if k is not None else None
            p.produce(topic, key=kb, value=orjson.dumps(e), on_delivery=delivered(n))
        n += 1
        if n % 20_000 == 0:
            p.flush()
    p.flush(60)
    failed = [x for x in placed if not isinstance(x, tuple)]
    assert not failed, f"{len(failed)} of {n} events not delivered to {topic}: {failed[:3]}"
    last: dict[int, int] = {}
    for part, offset in placed:  # type: ignore[misc]
        assert offset > last.get(part, -1), f"{topic} partition {part} holds the events out of order"
        last[part] = offset
    return n


def replay_samples(
    settings: Settings, tmp: Path, preds: list[dict | bytes], labels: list[dict | bytes]
) -> dict[tuple, float]:
    """The model series ``streamon replay`` gives for these events (bytes: a message as sent)."""
    pp, lp = tmp / "p.jsonl", tmp / "l.jsonl"
    pp.write_bytes(b"\n".join(e if isinstance(e, bytes) else orjson.dumps(e) for e in preds))
    lp.write_bytes(b"\n".join(e if isinstance(e, bytes) else orjson.dumps(e) for e in labels))
    result = replay_files(build_engine(settings), pp, lp)
    return model_samples(render(result.snapshot).decode())


def model_samples(text: str) -> dict[tuple, float]:
    """(name, sorted labels) -> value of the model series of a /metrics text."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith(OPERATIONAL_PREFIXES):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def diff(a: dict[tuple, float], b: dict[tuple, float]) -> list[tuple]:
    return [
        (k, a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if k not in a or k not in b or not same(a[k], b[k])
    ]


@dataclass
class WorkerProc:
    config: Path
    state_dir: Path
    instance: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self) -> WorkerProc:
        self.log = self.state_dir.parent / f"{self.instance}.log"
        env = {**os.environ, "STREAMON_EVAL_SECONDS": "1"}
        with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [STREAMON, "worker", "--config", str(self.config), "--state-dir", str(self.state_dir),
                 "--instance-id", self.instance, "--metrics-port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        return self

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def scrape(self) -> str | None:
        try:
            r = requests.get(self.url(), timeout=5)
        except requests.RequestException:
            return None
        return r.text if r.status_code == 200 else None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log else ""


def wait_ready(workers: list[WorkerProc], timeout: float = 120.0, settle: float = 5.0) -> None:
    """Until every worker answers /readyz with 200, then ``settle`` seconds for the last rebalance."""
    deadline = time.monotonic() + timeout
    pending = list(workers)
    while pending and time.monotonic() < deadline:
        for w in list(pending):
            assert w.alive(), f"worker {w.instance} died:\n{w.tail()}"
            try:
                if requests.get(w.url("/readyz"), timeout=2).status_code == 200:
                    pending.remove(w)
            except requests.RequestException:
                pass
        time.sleep(0.3)
    assert not pending, f"workers not ready: {[w.instance for w in pending]}"
    time.sleep(settle)


def metric(workers: list[WorkerProc], name: str, **labels: str) -> float:
    """Sum of the live workers' samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for w in workers:
        text = w.scrape()
        if not text:
            continue
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
    return total


def processed(workers: list[WorkerProc], topic: str) -> float:
    return metric(workers, "streamon_events_processed_total", topic=topic)


def committed_total(bootstrap: str, group: str, topics: list[str]) -> int:
    """Sum of the group's committed offsets over the topics' partitions."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        md = c.list_topics(timeout=10)
        tps = [TopicPartition(t, p) for t in topics for p in md.topics[t].partitions]
        try:
            return sum(max(tp.offset, 0) for tp in c.committed(tps, timeout=30))
        except KafkaException as exc:
            # A fresh broker's group coordinator may still be loading: nothing committed yet.
            if exc.args[0].retriable() or exc.args[0].code() == KafkaError.NOT_COORDINATOR:
                return 0
            raise
    finally:
        c.close()


def end_offsets(bootstrap: str, topics: list[str]) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        md = c.list_topics(timeout=10)
        return sum(
            c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
            for t in topics
            for p in md.topics[t].partitions
        )
    finally:
        c.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset of each partition of ``topic`` (negative: none; {}: unknown yet)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        md = c.list_topics(topic, timeout=10)
        tps = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
        try:
            return {tp.partition: tp.offset for tp in c.committed(tps, timeout=30)}
        except KafkaException as exc:
            if exc.args[0].retriable() or exc.args[0].code() == KafkaError.NOT_COORDINATOR:
                return {}
            raise
    finally:
        c.close()


def committed_ends(bootstrap: str, topic: str, timeout: float = 20.0) -> dict[int, int]:
    """Per partition, the offset just after its last committed message (0 if none): what a
    read_committed consumer that has consumed all of it commits. Transaction markers and
    aborted messages after that message are not counted, unlike in the high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ends-{uuid.uuid4().hex[:6]}",
                  "isolation.level": "read_committed", "enable.partition.eof": True,
                  "enable.auto.commit": False})  # fmt: skip
    try:
        md = c.list_topics(topic, timeout=10)
        ends = dict.fromkeys(md.topics[topic].partitions, 0)
        starts, todo = [], set()
        for p in ends:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                starts.append(TopicPartition(topic, p, low))
                todo.add(p)
        c.assign(starts)
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=0.2):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        todo.discard(m.partition())
                    continue
                ends[m.partition()] = max(ends[m.partition()], m.offset() + 1)
        assert not todo, f"could not read {topic} partitions {sorted(todo)} to their end"
        return ends
    finally:
        c.close()


def partials_applied(bootstrap: str, settings: Settings) -> bool:
    """Stage 2 has committed, so applied, every committed partial: exact per partition.

    Stage 2 commits the offset after the last partial it applied, so that is the target; a
    sum of offsets against the high watermarks with slack for the markers let a final stage-1
    transaction of up to two partials count as applied before stage 2 had read it.
    """
    t = settings.kafka.topics
    done = committed_offsets(bootstrap, f"{settings.kafka.group_id}-aggregate", t.partials)
    ends = committed_ends(bootstrap, t.partials)
    return bool(done) and all(done.get(p, -1) >= end for p, end in ends.items() if end > 0)


def wait_metrics(
    workers: list[WorkerProc], settings: Settings, timeout: float = 240.0, stable_for: float = 4.0
) -> dict[tuple, float]:
    """Union of the workers' model series once the input is fully committed and the series are stable."""
    bootstrap = settings.kafka.bootstrap_servers
    t = settings.kafka.topics
    inputs = [t.predictions, t.labels]
    deadline = time.monotonic() + timeout
    last: dict[tuple, float] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        for w in workers:
            assert w.alive(), f"worker {w.instance} died:\n{w.tail()}"
        caught_up = committed_total(bootstrap, settings.kafka.group_id, inputs) >= end_offsets(
            bootstrap, inputs
        )
        # Once the input is committed, no partial is added: every one must then be applied.
        partials_done = caught_up and partials_applied(bootstrap, settings)
        merged: dict[tuple, float] = {}
        for w in workers:
            text = w.scrape()
            if text:
                merged.update(model_samples(text))
        if caught_up and partials_done and merged and last is not None and not diff(merged, last):
            if time.monotonic() - since >= stable_for:
                return merged
        else:
            since = time.monotonic()
        last = merged
        time.sleep(1.0)
    raise AssertionError("metrics did not settle in time:\n" + "\n".join(w.tail() for w in workers))


def read_topic(bootstrap: str, topic: str, timeout: float = 20.0, expect: int = 0) -> list[Any]:
    """Committed messages of ``topic``, read to the end of every partition and to ``expect`` messages."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                  "enable.partition.eof": True})  # fmt: skip
    md = c.list_topics(topic, timeout=10)
    parts = set(md.topics[topic].partitions)
    c.subscribe([topic])
    out, done = [], set()
    deadline = time.monotonic() + timeout
    while (done != parts or len(out) < expect) and time.monotonic() < deadline:
        for m in c.consume(500, timeout=0.5):
            if m.error() is not None:
                if m.error().code() == -191:  # _PARTITION_EOF
                    done.add(m.partition())
                continue
            out.append(m)
    c.close()
    return out
