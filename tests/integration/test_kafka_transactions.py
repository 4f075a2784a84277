"""The exactly-once building blocks streamon relies on, against the real broker."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

pytestmark = pytest.mark.integration


def _drain(consumer: Consumer, want: int, timeout_s: float = 30.0) -> list:
    import time

    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=500, timeout=0.5):
            if msg.error() is None:
                got.append(msg)
    return got


def test_transactional_produce_read_committed_and_offset_commit(kafka_bootstrap, make_topic):
    topic = make_topic("tx", partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{topic}"})
    producer.init_transactions(30)

    # An aborted transaction must stay invisible to a read_committed consumer.
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, key=f"k{i}", value=b"aborted")
    producer.flush(30)
    producer.abort_transaction(30)

    producer.begin_transaction()
    for i in range(100):
        producer.produce(topic, key=f"k{i}", value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    msgs = _drain(consumer, 100)
    values = sorted(m.value() for m in msgs)
    assert len(values) == 100
    assert all(v.startswith(b"committed-") for v in values)

    # Commit the consumed offsets and read them back from the group coordinator.
    consumer.commit(asynchronous=False)
    positions = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=30)
    # Each partition holds 10 aborted records + 1 abort marker + its committed records + 1 commit marker,
    # so committed offsets are past the committed records: their sum covers all 100 + markers.
    assert sum(tp.offset for tp in positions) >= 100
    consumer.close()

    # A new consumer of the same group resumes after the committed offsets: nothing re-read.
    again = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    again.subscribe([topic])
    assert _drain(again, 1, timeout_s=5.0) == []
    again.close()


def test_offsets_committed_inside_a_transaction(kafka_bootstrap, make_topic):
    """Consume-transform-produce: output and input offsets land together or not at all."""
    source = make_topic("src")
    sink = make_topic("sink")
    group = f"g-{uuid.uuid4().hex[:8]}"
    seed = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(50):
        seed.produce(source, value=str(i).encode())
    seed.flush(30)

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([source])
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"ctp-{source}"})
    producer.init_transactions(30)
    msgs = _drain(consumer, 50)
    assert len(msgs) == 50

    producer.begin_transaction()
    for m in msgs:
        producer.produce(sink, value=str(int(m.value()) * 2).encode())
    producer.send_offsets_to_transaction(
        consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
    )
    producer.commit_transaction(30)
    consumer.close()

    committed = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    [tp] = committed.committed([TopicPartition(source, 0)], timeout=30)
    assert tp.offset == 50
    committed.close()

    reader = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"r-{group}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    reader.subscribe([sink])
    out = sorted(int(m.value()) for m in _drain(reader, 50))
    reader.close()
    assert out == [2 * i for i in range(50)]
