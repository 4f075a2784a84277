"""Stage 1 over one partition or several: what the 1-vs-N-partition tests of each model kind share."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence

import orjson

from streamon.core.profile import ModelSpec
from streamon.core.stages.join import MemoryStore
from streamon.core.stages.stage1 import PartitionProcessor
from streamon.core.state.summary import BucketSummary

Buckets = dict[tuple[str, float], BucketSummary]


def merged(summaries: Iterable[BucketSummary]) -> BucketSummary:
    """The sum of ``summaries``."""
    whole = BucketSummary()
    for summary in summaries:
        whole += summary
    return whole


def partition_of(raw: bytes, n: int) -> int:
    """The partition of an event by its prediction id (the predictions' and labels' alike)."""
    return zlib.crc32(orjson.loads(raw)["prediction_id"].encode()) % n


def _of(events: Sequence[bytes], i: int, n: int) -> list[bytes]:
    return [e for e in events if partition_of(e, n) == i]


def buckets_over_partitions(
    models: Callable[[], Mapping[str, ModelSpec]],
    preds: list[bytes],
    labels: list[bytes],
    n: int,
    later_labels: Sequence[bytes] = (),
) -> Buckets:
    """The first model's buckets when ``n`` stage-1 processors each take one partition's events,
    merged bucket by bucket (n = 1: one processor takes everything). ``later_labels`` arrive
    in a second batch, after the first batch's partials were taken."""
    out: Buckets = {}
    for i in range(n):
        pp = PartitionProcessor(dict(models()), MemoryStore(), bucket_s=60)
        pp.process(_of(preds, i, n), _of(labels, i, n))
        partials = pp.take_partials()
        if later_labels:
            pp.process([], _of(later_labels, i, n))
            partials += pp.take_partials()
        for partial in partials:
            for key, summary in partial.buckets.items():
                out[key] = out[key] + summary if key in out else summary
    return out
