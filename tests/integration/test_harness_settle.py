"""The harness's "stage 2 has applied every partial" check, against the real broker.

The worker tests compare metrics once the workers have settled; settling too early (a
final partial not yet merged) reads as a stage that lost data.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streamon.config import Settings
from tests.integration import harness as h

pytestmark = pytest.mark.integration


def _commit(bootstrap: str, group: str, topic: str, partition: int, offset: int) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    finally:
        c.close()


def test_a_final_transaction_of_two_partials_is_not_applied_until_committed(kafka_bootstrap, make_topic):
    topic = make_topic("partials", partitions=2)
    d = h.settings_dict(kafka_bootstrap, partitions=1)
    d["kafka"]["topics"]["partials"] = topic
    settings = Settings.from_dict(d)
    group = f"{settings.kafka.group_id}-aggregate"
    p = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"t-{uuid.uuid4().hex[:8]}"})
    p.init_transactions(30)
    for values in ([b"a"], [b"b", b"c"]):  # offsets 0 (+ marker 1), then 2, 3 (+ marker 4)
        p.begin_transaction()
        for v in values:
            p.produce(topic, value=v, partition=1)
        p.commit_transaction(30)
    _commit(kafka_bootstrap, group, topic, 1, 1)  # stage 2 has merged the first partial only
    # What the old check summed: within the markers' slack, though two partials are unread.
    assert h.committed_total(kafka_bootstrap, group, [topic]) >= h.end_offsets(kafka_bootstrap, [topic]) - 4
    assert h.committed_ends(kafka_bootstrap, topic) == {0: 0, 1: 4}
    assert not h.partials_applied(kafka_bootstrap, settings)
    _commit(kafka_bootstrap, group, topic, 1, 4)
    assert h.partials_applied(kafka_bootstrap, settings)
    # An aborted transaction after it (a stage-1 retry) adds nothing for stage 2 to read.
    p.begin_transaction()
    p.produce(topic, value=b"aborted", partition=1)
    p.flush(30)
    p.abort_transaction(30)
    assert h.committed_ends(kafka_bootstrap, topic) == {0: 0, 1: 4}
    assert h.partials_applied(kafka_bootstrap, settings)
