"""Restore paths: bring a join store up to the committed offsets; re-read a topic range.

Join stores are restored by replaying the SOURCE topics (predictions + labels of the
partition) from the store's offset marker to the group's committed offsets, through
the same stage-1 decoding, validation and join code, without computing partial deltas
(they were published when the events were first processed). A worker that takes a partition over with no local
store replays from the start of the retained input, so the input topics must retain
at least the label horizon. Chosen over a changelog topic because it adds nothing to
the hot path (a changelog doubles the bytes produced per prediction); its cost,
restore time, is measured in docs/benchmarks.md. Opening a store needs no restore of its
own: the join's expiry index, watermark and counters are in it (see streamon.core.stages.join).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from operator import methodcaller

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from streamon.config import Settings
from streamon.core.stages.stage1 import PartitionProcessor
from streamon.kafka_client import kafka_client_config
from streamon.logs import librdkafka_logger
from streamon.runtime.store import RocksStore

log = logging.getLogger("streamon.restore")


def _reader(settings: Settings) -> Consumer:
    return Consumer(
        {
            **kafka_client_config(settings),
            "logger": librdkafka_logger(settings.kafka.client),  # JSON lines, never raw text
            "group.id": f"streamon-restore-{uuid.uuid4().hex[:8]}",  # never commits
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )


_ERROR = methodcaller("error")
_TOPIC = methodcaller("topic")
_PARTITION = methodcaller("partition")
_OFFSET = methodcaller("offset")
_VALUE = methodcaller("value")
_NO_ERROR = frozenset({type(None)})


def _clear(msgs: list[Message], todo: set[tuple[str, int]], ends: dict[tuple[str, int], int]) -> bool:
    """True if every message of the batch is to be replayed and none reaches its partition's
    end: no error (nor end-of-partition event), every partition still to do, and each one's
    last offset (the highest: a partition is consumed in offset order) before its end."""
    # By type: a KafkaError compared with None raises.
    if not msgs or not _NO_ERROR.issuperset(map(type, map(_ERROR, msgs))):
        return False
    keys = zip(map(_TOPIC, msgs), map(_PARTITION, msgs), strict=True)
    last = dict(zip(keys, map(_OFFSET, msgs), strict=True))
    return all(key in todo and offset + 1 < ends[key] for key, offset in last.items())


def read_assigned(
    settings: Settings, starts: list[TopicPartition], ends: dict[tuple[str, int], int], batch: int = 5000
) -> Iterator[list[Message]]:
    """Batches of messages of ``starts`` up to (excluding) the end offsets, in consumption order."""
    todo = {
        (tp.topic, tp.partition)
        for tp in starts
        if ends.get((tp.topic, tp.partition), -1) > max(tp.offset, 0)
    }
    if not todo:
        return
    consumer = _reader(settings)
    try:
        consumer.assign([tp for tp in starts if (tp.topic, tp.partition) in todo])
        idle_since = time.monotonic()
        while todo:
            msgs = consumer.consume(num_messages=batch, timeout=1.0)
            if _clear(msgs, todo, ends):  # the common batch, checked without a loop in Python
                idle_since = time.monotonic()
                yield msgs
                continue
            out = []
            for m in msgs:
                key = (m.topic(), m.partition())
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        todo.discard(key)  # end of what is committed: nothing more to read
                    continue
                if key in todo and m.offset() < ends[key]:
                    out.append(m)
                    if m.offset() + 1 >= ends[key]:
                        todo.discard(key)
            if out:
                idle_since = time.monotonic()
                yield out
            elif time.monotonic() - idle_since > 30:
                raise TimeoutError(f"restore stalled reading {sorted(todo)}")
    finally:
        consumer.close()


def read_range(settings: Settings, topic: str, ends: dict[int, int]) -> Iterator[Message]:
    """Every message of ``topic``'s partitions from the beginning up to ``ends`` (committed offsets)."""
    starts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends]
    for batch in read_assigned(settings, starts, {(topic, p): o for p, o in ends.items()}):
        yield from batch


def read_to_end(settings: Settings, topic: str) -> Iterator[Message]:
    """Every committed message of ``topic`` (all partitions) as it stands now."""
    consumer = _reader(settings)
    try:
        md = consumer.list_topics(topic, timeout=10)
        parts = list(md.topics[topic].partitions) if topic in md.topics else []
        ends = {}
        for p in parts:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
    finally:
        consumer.close()
    yield from read_range(settings, topic, ends)


def restore_partition(
    settings: Settings,
    processor: PartitionProcessor,
    store: RocksStore,
    partition: int,
    marker: dict[str, int],
    committed: dict[str, int],
    heartbeat: Callable[[], None] = lambda: None,
) -> int:
    """Replay the partition's inputs from ``marker`` to ``committed`` into the join store.

    Returns the number of messages replayed.
    """
    topics = settings.kafka.topics
    started = time.monotonic()
    starts = [
        TopicPartition(t, partition, marker.get(t, OFFSET_BEGINNING))
        for t in (topics.predictions, topics.labels)
    ]
    ends = {(t, partition): committed.get(t, -1) for t in (topics.predictions, topics.labels)}
    n = 0
    progress = dict(marker)
    decoder = processor.decoder
    for batch in read_assigned(settings, starts, ends):
        names = list(map(_TOPIC, batch))
        values = list(map(_VALUE, batch))
        if topics.labels in names:
            labels = [v for v, t in zip(values, names, strict=True) if t == topics.labels]
            preds = [v for v, t in zip(values, names, strict=True) if t == topics.predictions]
        else:
            labels, preds = [], values
        # Decoded into columns as PartitionProcessor.process does; the join store alone is
        # updated: the partial deltas were published when the events were first processed.
        processor.process_columns(
            preds,
            decoder.prediction_columns(preds),
            list(zip(labels, decoder.labels(labels), strict=True)),
            partials=False,
        )
        n += len(batch)
        # Commit batch by batch (never past the committed offsets): memory stays flat however
        # many predictions are pending, and an interrupted restore resumes where it stopped.
        # One partition per topic, read in offset order: a topic's last message is its highest.
        last = dict(zip(names, map(_OFFSET, batch), strict=True))
        for t, offset in last.items():
            progress[t] = max(progress.get(t, 0), offset + 1)
        processor.joiner.store.commit(RocksStore.marker(progress))  # type: ignore[attr-defined]
        heartbeat()  # a long restore is progress, not a hung worker (/healthz)
    final = {t: o for t, o in committed.items() if o >= 0}
    processor.joiner.store.commit(RocksStore.marker({**progress, **final}))  # type: ignore[attr-defined]
    processor.counts.invalid.clear()
    if n:
        log.info(
            "restored partition %d: %d messages, %d pending predictions in %.2fs",
            partition,
            n,
            processor.joiner.pending_predictions,
            time.monotonic() - started,
            extra={"partition": partition, "restored_messages": n},
        )
    return n
