"""Stage-1 partials on a backlog spanning days: message size and count per batch, unsplit vs split.

Run from the repository root::

    .venv/bin/python benchmarks/bench_partials.py                        # 210k predictions, ~1-2 min
    .venv/bin/python benchmarks/bench_partials.py --quick                # 42k predictions
    .venv/bin/python benchmarks/bench_partials.py --bootstrap HOST:PORT  # + compression on a broker

The shape of the backlog an operator could not drain: 210,000 predictions over 8 days
(~18 a minute), every one labelled, in 6 co-partitioned partitions (by a hash of the
prediction id, as a producer keyed by it does), the shipped configuration
(kafka.batch_size 5000, 1-minute buckets). A stage-1 batch is modelled as 5,000
consecutive messages of ONE partition (2,500 predictions + the labels of the same
offsets range), the worst case of a consume of 5,000: the partial of that batch.

Printed side by side, per batch: the one message per model the old encoding produced
(``Partial.to_bytes``) and the messages of ``Partial.to_messages(kafka.max_partial_bytes)``.
With ``--bootstrap``, the split messages are also produced through librdkafka with each
``compression.type`` (none, lz4, zstd) and the bytes it sent (its ``txbytes`` statistic)
and the produce+flush time are compared; nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamon.config import default_settings  # noqa: E402
from streamon.core.stages.join import MemoryStore  # noqa: E402
from streamon.engine import build_engine  # noqa: E402
from streamon.runtime.topics import produce_limit  # noqa: E402
from streamon.traffic import TrafficSpec, generate  # noqa: E402

PRODUCER_DEFAULT_MAX = 1_000_000  # librdkafka's message.max.bytes: larger messages are refused


def batches(n: int, days: float, partitions: int, batch: int) -> list[list[tuple[list[bytes], list[bytes]]]]:
    """Per partition, its batches of (predictions, labels) raw values in offset order."""
    span = days * 86400
    preds, labels = generate(TrafficSpec(n=n, rate=n / span, start=time.time() - span - 3600, seed=4))
    by_part_p: list[list[bytes]] = [[] for _ in range(partitions)]
    by_part_l: list[list[bytes]] = [[] for _ in range(partitions)]
    for p in preds:
        by_part_p[zlib.crc32(p["prediction_id"].encode()) % partitions].append(orjson.dumps(p))
    for lab in labels:
        by_part_l[zlib.crc32(lab["prediction_id"].encode()) % partitions].append(orjson.dumps(lab))
    half = batch // 2
    out = []
    for bp, bl in zip(by_part_p, by_part_l, strict=True):
        steps = range(0, max(len(bp), len(bl)), half)
        out.append([(bp[i : i + half], bl[i : i + half]) for i in steps])
    return out


def measure(n: int, days: float = 8.0) -> tuple[dict[str, Any], list[bytes]]:
    settings = default_settings()
    k = settings.kafka
    engine = build_engine(settings)
    whole_sizes: list[int] = []
    split_counts: list[int] = []
    split_sizes: list[int] = []
    buckets: list[int] = []
    encode_whole = encode_split = 0.0
    sample: list[bytes] = []
    for part, todo in enumerate(batches(n, days, k.partitions, k.batch_size)):
        pp = engine.partition_processor(MemoryStore(), source=f"predictions:{part}")
        for preds, labels in todo:
            pp.process(preds, labels)
            for partial in pp.take_partials():
                t = time.perf_counter()
                whole = partial.to_bytes()
                encode_whole += time.perf_counter() - t
                t = time.perf_counter()
                pieces = partial.to_messages(k.max_partial_bytes)
                encode_split += time.perf_counter() - t
                whole_sizes.append(len(whole))
                split_counts.append(len(pieces))
                split_sizes.extend(len(m) for m in pieces)
                buckets.append(len(partial.buckets))
                if len(sample) < 40:
                    sample.extend(pieces)
    return {
        "batches": len(whole_sizes),
        "buckets": buckets,
        "whole": whole_sizes,
        "counts": split_counts,
        "sizes": split_sizes,
        "encode_whole": encode_whole,
        "encode_split": encode_split,
        "limit": k.max_partial_bytes,
        "produce_limit": produce_limit(settings),
    }, sample


def compression(bootstrap: str, messages: list[bytes], limit: int) -> list[tuple[str, int, float]]:
    """(codec, bytes librdkafka sent, seconds to produce+flush) for the same messages."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    out = []
    for codec in ("none", "lz4", "zstd", "none", "lz4", "zstd"):  # interleaved; best of 2
        topic = f"bench-partials-{codec}-{uuid.uuid4().hex[:6]}"
        cfg = {"max.message.bytes": str(limit)}
        admin.create_topics([NewTopic(topic, 1, 1, config=cfg)])[topic].result(30)
        stats: list[dict[str, Any]] = []
        keep = stats.append
        p = Producer(
            {
                "bootstrap.servers": bootstrap,
                "compression.type": codec,
                "message.max.bytes": limit,
                "batch.size": limit,
                "linger.ms": 5,
                "statistics.interval.ms": 1000,
                "stats_cb": lambda raw, keep=keep: keep(json.loads(raw)),
            }
        )
        p.poll(1.5)
        before = sum(b["txbytes"] for b in stats[-1]["brokers"].values()) if stats else 0
        t = time.perf_counter()
        for m in messages:
            p.produce(topic, key=b"fraud-detector", value=m)
            p.poll(0)
        p.flush(60)
        seconds = time.perf_counter() - t
        seen = len(stats)
        while len(stats) == seen:
            p.poll(0.2)
        sent = sum(b["txbytes"] for b in stats[-1]["brokers"].values()) - before
        out.append((codec, sent, seconds))
        admin.delete_topics([topic])
    best: dict[str, tuple[str, int, float]] = {}
    for codec, sent, seconds in out:
        if codec not in best or seconds < best[codec][2]:
            best[codec] = (codec, sent, seconds)
    return list(best.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="42k predictions instead of 210k")
    ap.add_argument("--bootstrap", help="HOST:PORT of a running broker: also compare compression codecs")
    args = ap.parse_args()
    n = 42_000 if args.quick else 210_000
    t = time.perf_counter()
    r, sample = measure(n)
    print(f"measured in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    whole, counts, sizes = r["whole"], r["counts"], r["sizes"]
    over = sum(1 for w in whole if w > PRODUCER_DEFAULT_MAX)
    print(f"\n{n:,} predictions + labels, 8 days, 6 partitions, batches of 5,000 messages of a partition\n")
    print("| per batch and model | unsplit (`to_bytes`, before) | split (`to_messages`, now) |")
    print("| --- | --- | --- |")
    print(f"| batches | {r['batches']} | {r['batches']} |")
    b = r["buckets"]
    print(f"| buckets per batch, median / max | {statistics.median(b):.0f} / {max(b)} | same |")
    print(f"| messages per batch, median / max | 1 / 1 | {statistics.median(counts):.0f} / {max(counts)} |")
    print(
        f"| message size, median / max | {statistics.median(whole) / 1e6:.2f} MB / {max(whole) / 1e6:.2f} MB"
        f" | {statistics.median(sizes) / 1e3:.0f} kB / {max(sizes) / 1e3:.0f} kB (limit {r['limit']:,}) |"
    )
    print(
        f"| batches with a message over 1,000,000 B (refused by the producer) | {over} of {len(whole)} | "
        f"{sum(1 for s in sizes if s > r['limit'])} |"
    )
    mean_whole, mean_split = sum(whole) / len(whole) / 1e6, sum(sizes) / len(whole) / 1e6
    print(f"| bytes per batch, mean | {mean_whole:.2f} MB | {mean_split:.2f} MB |")
    print(
        f"| encoding time, all batches | {r['encode_whole']:.2f} s | {r['encode_split']:.2f} s "
        f"(x{r['encode_split'] / r['encode_whole']:.2f}) |"
    )
    print(f"\nstage-1 producer message.max.bytes = batch.size = {r['produce_limit']:,}")
    if args.bootstrap:
        rows = compression(args.bootstrap, sample, r["produce_limit"])
        raw = sum(len(m) for m in sample)
        print(f"\n{len(sample)} split partials messages ({raw / 1e6:.1f} MB) via librdkafka, best of 2:\n")
        print("| compression.type | bytes sent | ratio | produce + flush |")
        print("| --- | --- | --- | --- |")
        base = next(s for c, s, _ in rows if c == "none")
        for codec, sent, seconds in rows:
            print(f"| {codec} | {sent / 1e6:.2f} MB | {base / sent:.1f}x | {seconds * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
