"""RocksDB-backed join store of one input partition (rocksdict).

Holds the pending predictions, waiting labels, their expiry index and the join's
counters of one partition (see :mod:`streamon.core.stages.join`) plus an offset marker:
the input offsets the store's
content corresponds to. The marker is written in the same RocksDB write batch as the
join changes, after the Kafka transaction carrying their effects has committed, so
on restart the store is never ahead of the committed offsets; when it is behind, the
worker replays the source topics from the marker (see :mod:`streamon.runtime.restore`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager

from streamon.errors import StreamonError

MARKER = b"\x00offsets"  # sorts before every record prefix
log = logging.getLogger("streamon.store")

# One memory budget for all the join stores of a process (a worker opens one per input
# partition): RocksDB's defaults (64 MB memtables x 2 and a 32 MB block cache per store)
# would grow a worker by up to ~160 MB per partition. Shared, the stores use at most
# these, however many predictions are pending (docs/benchmarks.md, bench_join_memory.py).
BLOCK_CACHE_BYTES = 16 << 20  # data blocks read (point lookups of labels)
MEMTABLE_BYTES = 16 << 20  # unflushed writes of every store together
_shared: tuple[Cache, WriteBufferManager] | None = None


def _options() -> Options:
    global _shared
    if _shared is None:
        _shared = (Cache(BLOCK_CACHE_BYTES), WriteBufferManager(MEMTABLE_BYTES, False))
    cache, buffers = _shared
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_manager(buffers)
    opts.set_write_buffer_size(8 << 20)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    # Most lookups are misses (the duplicate check of every new prediction id): a bloom
    # filter answers them without reading a data block. Filters and indexes stay outside
    # the cache (~1.5 bytes per record): evicting them made every lookup read the disk.
    table.set_bloom_filter(10, False)
    opts.set_block_based_table_factory(table)
    return opts


class RocksStore:
    """A :class:`streamon.core.stages.join.KeyValueStore` on RocksDB."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._failed = False  # a write failed: RocksDB refuses every later write and the close
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = Rdict(str(path), _options())
        except Exception as exc:  # rocksdict raises a bare Exception carrying RocksDB's status
            raise self._error("open", exc) from None

    def _error(self, doing: str, exc: Exception) -> StreamonError:
        """One line for the operator: a full disk, a read-only or broken state dir while running.
        Every write follows the Kafka commit it belongs to: a restart on a fixed directory
        replays from Kafka what the store missed."""
        return StreamonError(
            f"state dir {self.path.parent}: cannot {doing} the join store {self.path.name} ({exc}): "
            "free space on it or fix it, then restart the worker (it replays what the store missed)"
        )

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """One RocksDB multi-get for a batch's keys (rocksdict's ``get`` of a list)."""
        if not keys:
            return []
        return [None if v is None else bytes(v) for v in self._db.get(keys)]

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete  # a batch's changes: two per prediction
        for key, value in changes.items():
            if value is None:
                delete(key)
            else:
                put(key, value)
        try:
            self._db.write(batch)
        except Exception as exc:  # e.g. "IO error: No space left on device: While appending to file: ..."
            self._failed = True
            raise self._error("write", exc) from None

    def items(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries under ``prefix`` in key order (RocksDB's), from ``start`` when given."""
        lo = start if start is not None and start > prefix else prefix
        for key, value in self._db.items(from_key=lo):
            if not key.startswith(prefix):
                break
            yield bytes(key), bytes(value)

    # ------------------------------------------------------------------ offsets

    def offsets(self) -> dict[str, int] | None:
        """The input offsets (topic -> next offset) this store reflects, or None when new."""
        raw = self.get(MARKER)
        return None if raw is None else {k: int(v) for k, v in orjson.loads(raw).items()}

    @staticmethod
    def marker(offsets: dict[str, int]) -> dict[bytes, bytes | None]:
        """The change that records ``offsets``; pass it with the batch it belongs to."""
        return {MARKER: orjson.dumps(offsets)}

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.glob("*") if f.is_file())

    def close(self) -> None:
        """Close, even on a full disk: a failed close (RocksDB flushing its memtable) loses
        nothing, every write that returned is in the write-ahead log, so it is only logged
        (and not at all after a failed write, which already raised)."""
        try:
            self._db.close()
        except Exception as exc:
            if not self._failed:
                log.warning("%s", self._error("close", exc))

    def destroy(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
