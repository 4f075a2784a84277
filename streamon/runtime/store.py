"""RocksDB-backed join store of one input partition (rocksdict).

Holds the pending predictions and waiting labels of one partition (see
:mod:`streamon.core.join`) plus an offset marker: the input offsets the store's
content corresponds to. The marker is written in the same RocksDB write batch as the
join changes, after the Kafka transaction carrying their effects has committed, so
on restart the store is never ahead of the committed offsets; when it is behind, the
worker replays the source topics from the marker (see :mod:`streamon.runtime.restore`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
from rocksdict import Options, Rdict, WriteBatch

MARKER = b"\x00offsets"  # sorts before every record prefix


class RocksStore:
    """A :class:`streamon.core.join.KeyValueStore` on RocksDB."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self._db = Rdict(str(path), opts)

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._db.write(batch)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=prefix):
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
        self._db.close()

    def destroy(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
