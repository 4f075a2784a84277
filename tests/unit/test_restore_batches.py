"""The restore's batch check: which consumed batches are replayed whole without a per-message loop."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError

from streamon.runtime.restore import _clear


@dataclass
class Msg:
    """What the restore reads of a consumed message (confluent_kafka.Message's accessors)."""

    t: str
    p: int
    o: int
    e: KafkaError | None = None

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def error(self) -> KafkaError | None:
        return self.e

    def value(self) -> bytes:
        return b"{}"


ENDS = {("p", 0): 10, ("l", 0): 5}


def test_a_plain_batch_before_the_ends_is_clear() -> None:
    batch = [Msg("p", 0, 3), Msg("l", 0, 1), Msg("p", 0, 4), Msg("l", 0, 3)]
    assert _clear(batch, {("p", 0), ("l", 0)}, ENDS)


def test_an_error_an_end_or_a_finished_partition_takes_the_loop() -> None:
    todo = {("p", 0), ("l", 0)}
    eof = KafkaError(KafkaError._PARTITION_EOF)  # compared with None, a KafkaError raises
    assert not _clear([Msg("p", 0, 3), Msg("p", 0, -1, eof)], todo, ENDS)
    assert not _clear([Msg("p", 0, 8), Msg("p", 0, 9)], todo, ENDS)  # 9 is the last before the end
    assert not _clear([Msg("l", 0, 1)], {("p", 0)}, ENDS)  # a partition already done
    assert not _clear([], todo, ENDS)
