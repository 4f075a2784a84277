"""Worker memory against the number of pending predictions in the join store.

Run from the repository root (no Kafka broker needed)::

    .venv/bin/python benchmarks/bench_join_memory.py              # 100k and 2M pending (minutes)
    .venv/bin/python benchmarks/bench_join_memory.py --sizes 100000 400000

Each size runs in a fresh subprocess: a stage-1 :class:`~streamon.core.stages.stage1.PartitionProcessor`
built the way the worker's ``_open_partition`` builds it
(``build_engine(settings).partition_processor(StagedStore(RocksStore(path)), source=...)``)
is fed prediction messages (8 numeric + 2 categorical features, uuid4 ids, event times over
2 days so none reaches the 30-day label horizon) in batches of 5,000, 2% of them followed by
a label whose prediction never comes (held for the grace period); the staged writes are
committed per batch with an offset marker, the partial deltas taken per batch, as the worker
does. Reported per size, side by side: resident set size (RSS) after the fill, the pending
predictions and labels, the fill rate, and the reopen of the store (a restart: a new store
handle and processor over the same directory) with its RSS and time. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import psutil

BATCH = 5000
NUMERIC = [f"n{i}" for i in range(8)]
CATEGORIES = ["grocery", "travel", "electronics", "fuel", "dining", "other"]
CHANNELS = ["web", "app", "pos"]


def _settings() -> object:
    from streamon.config import Settings

    return Settings.from_dict(
        {
            "models": [
                {
                    "name": "fraud",
                    "features": [{"name": f, "type": "numeric"} for f in NUMERIC]
                    + [{"name": c, "type": "categorical"} for c in ("category", "channel")],
                }
            ]
        }
    )


def _batch(
    rng: np.random.Generator, start: int, n: int, t0: float, per_s: float
) -> tuple[list[bytes], list[bytes]]:
    ids = rng.bytes(16 * n)
    cols = np.round(rng.lognormal(3.0, 1.0, (n, len(NUMERIC))), 3).tolist()
    scores = np.round(rng.beta(1.2, 9.0, n), 6).tolist()
    cats = rng.integers(0, len(CATEGORIES), n).tolist()
    chans = rng.integers(0, len(CHANNELS), n).tolist()
    preds, labels = [], []
    for i in range(n):
        ts = round(t0 + (start + i) / per_s, 3)
        preds.append(
            orjson.dumps(
                {
                    "prediction_id": str(uuid.UUID(bytes=ids[16 * i : 16 * i + 16], version=4)),
                    "model": "fraud",
                    "ts": ts,
                    "score": scores[i],
                    "features": {
                        **dict(zip(NUMERIC, cols[i], strict=True)),
                        "category": CATEGORIES[cats[i]],
                        "channel": CHANNELS[chans[i]],
                    },
                }
            )
        )
        if (start + i) % 50 == 0:  # a label for a prediction that never comes: held, then orphaned
            labels.append(orjson.dumps({"prediction_id": f"ghost-{start + i}", "label": 1, "ts": ts}))
    return preds, labels


def _rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 1e6


def child(n: int, workdir: Path) -> dict[str, float]:
    from streamon.core.stages.join import StagedStore
    from streamon.engine import build_engine
    from streamon.runtime.store import RocksStore

    engine = build_engine(_settings())  # type: ignore[arg-type]
    path = workdir / "store"
    rng = np.random.default_rng(7)
    t0 = time.time() - 3 * 86400
    per_s = n / (2 * 86400)  # the n predictions span 2 days of event time
    store = RocksStore(path)
    processor = engine.partition_processor(StagedStore(store), source="predictions:0")
    start_rss = _rss_mb()
    started = time.perf_counter()
    compute = 0.0
    for b in range(0, n, BATCH):
        preds, labels = _batch(rng, b, min(BATCH, n - b), t0, per_s)
        c = time.perf_counter()
        processor.process(preds, labels, now=time.time())
        processor.take_partials()
        processor.joiner.store.commit(RocksStore.marker({"predictions": b + len(preds)}))  # type: ignore[attr-defined]
        compute += time.perf_counter() - c
    fill_s = time.perf_counter() - started
    filled_rss = _rss_mb()
    db = store._db
    buffers = ("rocksdb.cur-size-all-mem-tables", "rocksdb.block-cache-usage")
    rocks_mb = sum(int(db.property_int_value(p) or 0) for p in buffers) / 1e6
    readers_mb = int(db.property_int_value("rocksdb.estimate-table-readers-mem") or 0) / 1e6
    pending = (processor.joiner.pending_predictions, processor.joiner.pending_labels)
    stored = (sum(1 for _ in store.items(b"p:")), sum(1 for _ in store.items(b"l:")))
    del processor
    store.close()
    # A restart: a new handle and processor over the same directory (what _open_partition does).
    c = time.perf_counter()
    store = RocksStore(path)
    processor = engine.partition_processor(StagedStore(store), source="predictions:0")
    reopen_s = time.perf_counter() - c
    reopened = (processor.joiner.pending_predictions, processor.joiner.pending_labels)
    reopen_rss = _rss_mb()
    store.close()
    return {
        "n": n,
        "start_rss_mb": start_rss,
        "rss_mb": filled_rss,
        "rocks_mb": rocks_mb,
        "readers_mb": readers_mb,
        "pending_predictions": pending[0],
        "pending_labels": pending[1],
        "stored_predictions": stored[0],
        "stored_labels": stored[1],
        "fill_rate": n / compute,
        "fill_s": fill_s,
        "reopen_s": reopen_s,
        "reopen_pending_predictions": reopened[0],
        "reopen_rss_mb": reopen_rss,
        "store_mb": sum(f.stat().st_size for f in path.glob("*") if f.is_file()) / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 400_000, 2_000_000])
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.dir)))
        return
    rows = []
    for n in args.sizes:
        workdir = Path(tempfile.mkdtemp(prefix="streamon-bench-join-memory-"))
        try:
            print(f"filling {n:,} pending predictions ...", file=sys.stderr, flush=True)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(n), "--dir", str(workdir)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    base = rows[0]
    print("| pending predictions | waiting labels | RSS after fill | vs. first | of it RocksDB memtables + "
          "block cache | RocksDB filters + indexes | RSS at start | fill rate | store on disk "
          "| reopen (restart) | pending after reopen | RSS after reopen |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['pending_predictions']:,} | {r['pending_labels']:,} | {r['rss_mb']:.0f} MB "
            f"| {r['rss_mb'] - base['rss_mb']:+.0f} MB | {r['rocks_mb']:.0f} MB | {r['readers_mb']:.1f} MB "
            f"| {r['start_rss_mb']:.0f} MB "
            f"| {r['fill_rate']:,.0f}/s | {r['store_mb']:.0f} MB | {r['reopen_s'] * 1000:.0f} ms "
            f"| {r['reopen_pending_predictions']:,} of {r['stored_predictions']:,} "
            f"| {r['reopen_rss_mb']:.0f} MB |"
        )


if __name__ == "__main__":
    main()
