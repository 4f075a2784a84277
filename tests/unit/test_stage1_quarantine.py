"""The worker's quarantine rule: which failed stage-1 transactions count, how the batch is
isolated, and when the message at fault is set aside.

Drives ``Worker._note_stage1_failure`` / ``_note_stage1_commit`` (no Kafka client involved:
they only read the batch's messages and the error) with plain message records; the real
broker path is tests/integration/faults/test_poison.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException

from streamon.config import default_settings
from streamon.runtime.worker import Worker


@dataclass
class Msg:
    """What the quarantine rule reads of a consumed message."""

    _offset: int
    _topic: str = "predictions"
    _partition: int = 0

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None


def worker(quarantine_after: int = 3, batch_size: int = 5000) -> Worker:
    d = default_settings().model_dump(by_alias=True, mode="json")
    d["kafka"]["quarantine_after"] = quarantine_after
    d["kafka"]["batch_size"] = batch_size
    w = Worker.__new__(Worker)  # the rule's state only: no clients, no HTTP server
    w.settings = type(default_settings()).from_dict(d)
    w._buffer = []
    w._fail_streak = 0
    w._batch_cap = None
    w._isolate_until = {}
    w._failed_in = {}
    w._quarantine = {}
    return w


TOO_LARGE = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large"))
TRANSPORT = KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))


def commit(w: Worker, batch: list[Msg]) -> None:
    last: dict[tuple[str, int], int] = {}
    for m in batch:
        last[(m.topic(), m.partition())] = m.offset()
    w._note_stage1_commit(last)


def test_the_message_at_fault_is_quarantined_after_bounded_tries_and_nothing_else() -> None:
    w = worker()
    batch = [Msg(i) for i in range(10)]  # offset 4 cannot be delivered
    for _ in range(2):
        w._note_stage1_failure(batch, TOO_LARGE)
        assert w._batch_cap is None  # perhaps passing: the same batch again, whole
    w._note_stage1_failure(batch, TRANSPORT)  # says nothing about the content: not counted
    assert w._batch_cap is None
    w._note_stage1_failure(batch, TOO_LARGE)  # the third failure: isolate
    assert w._batch_cap == 1 and not w._quarantine
    pos = 0
    attempts = 0
    while pos < 10 and attempts < 50:  # what the worker does: batches of _batch_cap, in order
        attempts += 1
        part = batch[pos : pos + (w._batch_cap or 5000)]
        if any(m.offset() == 4 for m in part) and (0, 4) not in {k[1:] for k in w._quarantine}:
            w._note_stage1_failure(part, TOO_LARGE)
            continue
        commit(w, part)
        pos += len(part)
    assert pos == 10 and attempts < 20
    assert w._batch_cap is None  # whole batches again once the message at fault is set aside
    assert not w._quarantine  # committed, so forgotten


def test_only_a_message_failing_alone_is_quarantined() -> None:
    w = worker()
    batch = [Msg(i) for i in range(8)]
    for _ in range(3):
        w._note_stage1_failure(batch, TOO_LARGE)
    assert w._batch_cap == 1 and not w._quarantine
    w._note_stage1_failure(batch[:1], TOO_LARGE)  # alone, and in 3 failed transactions before
    assert list(w._quarantine) == [("predictions", 0, 0)]
    assert w._quarantine[("predictions", 0, 0)].startswith("MSG_SIZE_TOO_LARGE: ")


def test_a_failure_caused_by_the_batch_as_a_whole_quarantines_nothing() -> None:
    w = worker(batch_size=16)
    batch = [Msg(i) for i in range(16)]
    for _ in range(3):  # e.g. too much for a topic together, each message fine alone
        w._note_stage1_failure(batch, TOO_LARGE)
    pos = 0
    while pos < 16:
        part = batch[pos : pos + (w._batch_cap or 16)]
        commit(w, part)  # every smaller batch goes through
        pos += len(part)
    assert not w._quarantine and w._batch_cap is None


def test_one_message_batches_are_quarantined_after_the_configured_tries() -> None:
    w = worker(quarantine_after=2, batch_size=1)
    lone = [Msg(7)]
    w._note_stage1_failure(lone, TOO_LARGE)
    assert not w._quarantine
    w._note_stage1_failure(lone, TOO_LARGE)
    assert list(w._quarantine) == [("predictions", 0, 7)]


FAILED_TXN = KafkaException(
    KafkaError(KafkaError._STATE, "Unable to produce message: Local: Erroneous state")
)


def test_a_failed_transaction_state_is_evidence_but_never_quarantines_alone() -> None:
    # A message the broker refused makes the rest of its transaction fail with _STATE.
    w = worker()
    batch = [Msg(i) for i in range(4)]
    w._note_stage1_failure(batch, TOO_LARGE)
    w._note_stage1_failure(batch, FAILED_TXN)
    w._note_stage1_failure(batch, FAILED_TXN)
    assert w._batch_cap == 1
    for _ in range(3):
        w._note_stage1_failure(batch[:1], FAILED_TXN)
    assert not w._quarantine
    w._note_stage1_failure(batch[:1], TOO_LARGE)
    assert list(w._quarantine) == [("predictions", 0, 0)]


def test_isolated_batches_take_one_partition_in_order() -> None:
    w = worker()
    bad = Msg(3, "predictions", 1)
    buffer = [
        Msg(0, "labels", 0),
        Msg(1, "labels", 0),
        Msg(2, "predictions", 1),
        bad,
        Msg(4, "predictions", 1),
    ]
    for _ in range(2):
        w._note_stage1_failure(buffer, TOO_LARGE)
    w._note_stage1_failure(buffer[2:], TOO_LARGE)  # the predictions partition failed more often
    w._buffer = list(buffer)
    assert w._take_batch(2) == buffer[2:4]  # a prefix of that partition
    assert w._buffer == [buffer[0], buffer[1], buffer[4]]  # the others wait, in order
    w._batch_cap = None
    assert w._take_batch(2) == buffer[:2]
