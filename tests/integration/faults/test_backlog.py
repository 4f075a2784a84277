"""A backlog spanning days, drained by one worker with the shipped configuration's Kafka limits.

A stage-1 batch of such a backlog touches a bucket per minute of event time, ~1.4 kB of
partial each: one message per model and partition grew past what a producer accepts
(librdkafka's message.max.bytes, 1,000,000) and every transaction aborted, forever. The
partials are now split to kafka.max_partial_bytes; this drains it, aborts nothing and
equals ``streamon replay``, with the fault suite's four checks (``session_scenario``). Runs on
the shared session broker (no broker fault here).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streamon.core.stages.join import MemoryStore
from streamon.core.stages.stage1 import Partial
from streamon.engine import build_engine
from streamon.traffic import TrafficSpec, generate
from tests.integration import harness as h
from tests.integration.faults.helpers import Scenario

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
PRODUCER_DEFAULT_MAX = 1_000_000  # librdkafka's message.max.bytes, what the old partials exceeded


def shipped_settings(bootstrap: str) -> dict[str, Any]:
    """configs/monitoring_config.yaml with unique topics and this broker; its kafka limits
    (batch_size, flush_interval, max_message_bytes, partitions) as shipped."""
    d = yaml.safe_load((ROOT / "configs" / "monitoring_config.yaml").read_text())
    sfx = uuid.uuid4().hex[:8]
    d["kafka"]["bootstrap_servers"] = bootstrap
    d["kafka"]["group_id"] = f"backlog-{sfx}"
    d["kafka"]["topics"] = {
        k: f"{k}-{sfx}" for k in ("predictions", "labels", "partials", "alerts", "dead_letter")
    }
    d["monitoring"]["prometheus"]["bind_address"] = "127.0.0.1"
    # Every family on one event-time interval, so the worker's last evaluation and replay's
    # agree; 6 h keeps replay's evaluations over 8 days few (the worker's run on wall time).
    for family in d["monitoring"]["custom_metrics"].values():
        family["collection_interval"] = 21600
    d["data_drift"].pop("schedule", None)
    return d


def backlog(n: int, days: float, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    span = days * 86400
    # Ends a day before now: inside windows.max_event_age, and its labels (delayed up to hours)
    # and the scenario's tail (windows.orphan_grace after them) all lie in the past.
    spec = TrafficSpec(n=n, rate=n / span, start=time.time() - span - 86400, label_delay_s=1800.0, seed=seed)
    return generate(spec)


def test_a_backlog_of_days_drains_with_the_shipped_limits(
    kafka_bootstrap: str, tmp_path: Path, session_scenario: Callable[[dict[str, Any]], Scenario]
) -> None:
    d = shipped_settings(kafka_bootstrap)
    assert "max_partial_bytes" not in d["kafka"]  # the default applies, as for every shipped config
    # 3 partitions instead of the shipped 6, for speed (the batch size, flush interval, stall
    # timeout and byte limits stay as shipped): 3000 predictions over 8 days put ~1000 in each
    # partition, one per minute bucket, so a batch holding most of one partition (a
    # 5000-message consume of 6000 does) made a partial of ~1000 buckets x 1.4 kB.
    d["kafka"]["partitions"] = d["kafka"]["partials_partitions"] = 3
    sc = session_scenario(d)
    settings = sc.settings
    k = settings.kafka
    preds, labels = backlog(3000, days=8, seed=21)
    one_partition = [orjson.dumps(p) for p in preds[:: k.partitions]]
    pp = build_engine(settings).partition_processor(MemoryStore())
    pp.process(one_partition, [])
    (partial,) = pp.take_partials()
    assert len(partial.to_bytes()) > PRODUCER_DEFAULT_MAX  # what the old code sent as ONE message

    # The backlog is there BEFORE the worker starts (topics made as the worker would).
    from confluent_kafka.admin import AdminClient

    from streamon.runtime.topics import ensure_topics

    ensure_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), settings)
    sc.produce(preds, labels)

    worker = sc.worker("backlog-1")
    # Drained, then a small tail past windows.orphan_grace so that the orphans are final.
    live = sc.wait_consumed(timeout=120)
    aborts = h.metric([worker], "streamon_transaction_aborts_total")
    processed = h.metric([worker], "streamon_events_processed_total")
    assert sc.exits == [], sc.tails()  # one worker process drained it all
    assert aborts == 0, worker.tail()
    assert processed == len(sc.preds) + len(sc.labels)  # the backlog and the tail, each once
    assert len(live) > 100
    # (i) equal to replay (ii) orphans as replay's (iii) no alert fired twice (iv) no stall.
    sc.check(live)

    # The partials really were split, and every message is within the limit.
    messages = h.read_topic(kafka_bootstrap, k.topics.partials, expect=1)
    sizes = [len(m.value()) for m in messages]
    assert max(sizes) <= k.max_partial_bytes
    pieces: dict[tuple[str, float], int] = {}
    for m in messages:
        p = Partial.from_bytes(m.value())
        pieces[(p.source, p.watermark)] = pieces.get((p.source, p.watermark), 0) + 1
    assert max(pieces.values()) > 1, sorted(sizes)[-5:]


def test_a_topic_accepting_less_than_stage_1_produces_is_refused_at_start(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    d = shipped_settings(kafka_bootstrap)
    name = d["kafka"]["topics"]["dead_letter"]
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(name, 1, 1, config={"max.message.bytes": "100000"})])[name].result(30)
    config, _settings = h.write_config(tmp_path, d)
    worker = h.WorkerProc(config, tmp_path / "state", "refused-1").start()
    assert worker.proc is not None
    code = worker.proc.wait(60)
    out = worker.tail(5)
    assert code != 0
    assert f"topic {name} accepts messages up to 100000 bytes" in out and "max.message.bytes=540672" in out
    assert "Traceback" not in out
