"""Poison input never fails stage 1's transaction: dead letters are bounded, provenance is by
position, and a message that keeps failing the transaction is quarantined, not retried forever.

On the shared session broker: the faults here are in the data and in a topic's config.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from tests.integration import harness as h
from tests.integration.faults.helpers import Scenario, scenario_settings

pytestmark = pytest.mark.integration

POISON = b"A" * 999_960  # accepted by the broker; value + dead-letter headers exceed 1,000,000


def produce_raw(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> list[int]:
    """Produce (key, value) pairs to partition 0, in order; returns their offsets."""
    offsets: dict[int, int] = {}
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 1_048_576})
    for i, (key, value) in enumerate(values):

        def done(err: Any, msg: Any, i: int = i) -> None:
            assert err is None, err
            offsets[i] = msg.offset()

        p.produce(topic, key=key, value=value, partition=0, on_delivery=done)
        p.poll(0)
    assert p.flush(30) == 0
    return [offsets[i] for i in range(len(values))]


def headers(m: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in (m.headers() or [])}


def setup(bootstrap: str, tmp: Path) -> tuple[Path, Any, h.WorkerProc]:
    d = h.settings_dict(bootstrap, partitions=2)
    d["kafka"]["flush_interval"] = 0.3
    config, settings = h.write_config(tmp, d)
    worker = h.WorkerProc(config, tmp / "state", f"poison-{tmp.name[-6:]}").start()
    h.wait_ready([worker], timeout=60, settle=1.0)
    return config, settings, worker


def test_a_1mb_poison_and_empty_values_are_dead_lettered_and_the_rest_counted(
    kafka_bootstrap: str, session_scenario: Callable[[dict[str, Any]], Scenario]
) -> None:
    d = scenario_settings(kafka_bootstrap, partitions=2)
    d["kafka"]["flush_interval"] = 0.3
    sc = session_scenario(d)
    settings = sc.settings
    worker = sc.worker("poison-1")
    h.wait_ready(sc.live(), timeout=60, settle=1.0)
    t = settings.kafka.topics
    preds, labels = h.traffic(1500, seed=5)
    sc.produce(preds[:700], [])
    # Junk among valid events: CPython shares one object for every b"" and every 1-byte
    # value, so provenance by identity gave these the wrong offsets (and counts).
    junk_p = [(b"K", POISON), (b"e1", b""), (b"x1", b"x"), (b"e2", b""), (b"x2", b"x"), (b"n", b"7")]
    junk_l = [(b"e3", b""), (b"x3", b"x"), (b"x4", b"x"), (b"k" * 2000, b"x")]  # a key over 1 KiB
    offsets_p = produce_raw(kafka_bootstrap, t.predictions, junk_p)
    offsets_l = produce_raw(kafka_bootstrap, t.labels, junk_l)
    sc.produce(preds[700:], labels)  # the scenario replays what it produced: not the junk
    live = sc.wait_consumed(timeout=90)
    aborts = h.metric([worker], "streamon_transaction_aborts_total")
    invalid = {
        (topic, reason): h.metric([worker], "streamon_events_invalid_total", topic=topic, reason=reason)
        for topic in (t.predictions, t.labels)
        for reason in ("too_large", "invalid_json", "not_an_object")
    }
    assert sc.exits == [], sc.tails()  # the counters are one process's
    assert aborts == 0, worker.tail()
    assert invalid == {
        (t.predictions, "too_large"): 1,
        (t.predictions, "invalid_json"): 4,
        (t.predictions, "not_an_object"): 1,  # b"7" is JSON, not an object
        (t.labels, "too_large"): 0,
        (t.labels, "invalid_json"): 4,
        (t.labels, "not_an_object"): 0,
    }
    # (i) equal to replay of the valid events (ii) orphans as replay's (iii) no alert fired
    # twice (iv) no stall. Stops the worker.
    sc.check(live)

    letters = h.read_topic(kafka_bootstrap, t.dead_letter, expect=len(junk_p) + len(junk_l))
    got = {
        (headers(m)["streamon.source.topic"], int(headers(m)["streamon.source.offset"])): m for m in letters
    }
    assert len(letters) == len(got) == len(junk_p) + len(junk_l)  # each message once, at its own offset
    for topic, junk, offsets in ((t.predictions, junk_p, offsets_p), (t.labels, junk_l, offsets_l)):
        for (key, value), offset in zip(junk, offsets, strict=True):
            m = got[(topic, offset)]
            hd = headers(m)
            assert hd["streamon.source.partition"] == "0"
            if len(key) > 1024:  # dropped, its size kept: the dead letter stays bounded
                assert m.key() is None and hd["streamon.source.key_bytes"] == str(len(key))
            else:
                assert m.key() == key  # the message's own key: its provenance is right
            assert hd["streamon.source.bytes"] == str(len(value))
            if value is POISON:
                assert hd["streamon.reason"] == "too_large"
                assert hd["streamon.truncated"] == "true"
                assert m.value() == POISON[:1024]  # a reference, not the megabyte
            else:
                assert "streamon.truncated" not in hd
                assert (m.value() or b"") == value


def test_a_message_that_keeps_failing_the_transaction_is_quarantined(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    _config, settings, worker = setup(kafka_bootstrap, tmp_path)
    t = settings.kafka.topics
    preds, labels = h.traffic(1200, seed=9)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        h.produce(kafka_bootstrap, t.predictions, preds[:600])
        h.produce(kafka_bootstrap, t.labels, labels[: len(labels) // 2])
        h.wait_metrics([worker], settings, timeout=60, stable_for=1.0)
        # An operator lowers the dead-letter topic's limit while the worker runs: the dead
        # letter of a 60 kB invalid message (kept whole: under kafka.max_message_bytes) is now
        # refused by the broker, and the transaction carrying it fails on every retry.
        resource = ConfigResource(
            ConfigResource.Type.TOPIC,
            t.dead_letter,
            incremental_configs=[
                ConfigEntry("max.message.bytes", "4096", incremental_operation=AlterConfigOpType.SET)
            ],
        )
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(30)
        time.sleep(1.0)  # the broker applies topic configs asynchronously
        # Not JSON, and incompressible: the broker checks the compressed (zstd) record batch.
        bad = b'{"prediction_id": "' + random.Random(5).randbytes(60_000)
        (offset,) = produce_raw(kafka_bootstrap, t.predictions, [(b"bad", bad)])
        h.produce(kafka_bootstrap, t.predictions, preds[600:])
        h.produce(kafka_bootstrap, t.labels, labels[len(labels) // 2 :])
        live = h.wait_metrics([worker], settings, timeout=90)
        aborts = h.metric([worker], "streamon_transaction_aborts_total")
        quarantined = h.metric(
            [worker], "streamon_events_invalid_total", topic=t.predictions, reason="quarantined"
        )
        invalid_json = h.metric(
            [worker], "streamon_events_invalid_total", topic=t.predictions, reason="invalid_json"
        )
    finally:
        worker.terminate()
    log = worker.tail(400)
    assert quarantined == 1 and invalid_json == 0, log
    # Three tries of the batch, then it is isolated: a bounded number of aborts, not a loop.
    assert 3 <= aborts <= 12, log
    assert f"quarantining {t.predictions}:0@{offset}" in log
    assert h.diff(live, h.replay_samples(settings, tmp_path, preds, labels)) == []
    (letter,) = h.read_topic(kafka_bootstrap, t.dead_letter, expect=1)
    hd = headers(letter)
    assert hd["streamon.reason"] == "quarantined"
    assert "MSG_SIZE_TOO_LARGE" in hd["streamon.detail"]
    assert (hd["streamon.source.topic"], hd["streamon.source.offset"]) == (t.predictions, str(offset))
    assert hd["streamon.truncated"] == "true" and hd["streamon.source.bytes"] == str(len(bad))
    assert letter.value() == bad[:1024]
