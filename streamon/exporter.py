"""Prometheus exposition of streamon's snapshots (the edge that imports prometheus_client).

:class:`SnapshotCollector` reads the latest :class:`~streamon.core.stages.evaluate.Snapshot`
at scrape time (nothing is pushed into global gauges from the hot path). The live
``/metrics`` endpoint and ``streamon replay --metrics-out`` both render through it,
so their names, labels and HELP texts are identical.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from streamon.core.catalogue import METRICS
from streamon.core.stages.evaluate import Sample, Snapshot


def _family(name: str) -> Metric:
    info = METRICS[name]
    if info.type == "counter":
        # prometheus_client appends _total itself; give it the base name.
        base = name[: -len("_total")] if name.endswith("_total") else name
        return CounterMetricFamily(base, info.help, labels=list(info.labels))
    if info.type == "histogram":
        return HistogramMetricFamily(name, info.help, labels=list(info.labels))
    return GaugeMetricFamily(name, info.help, labels=list(info.labels))


def families(snapshot: Snapshot | None, extra: list[Sample] | None = None) -> Iterator[Metric]:
    """Metric families of a snapshot plus extra (operational) samples, in catalogue order."""
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for s in (snapshot.samples if snapshot else []) + (extra or []):
        if s.name not in METRICS:
            raise KeyError(f"metric {s.name!r} is not in the catalogue")
        grouped[s.name].append(s)
    hist_grouped = defaultdict(list)
    for h in snapshot.histograms if snapshot else []:
        hist_grouped[h.name].append(h)
    for name in METRICS:
        if name in grouped:
            fam = _family(name)
            info = METRICS[name]
            order = info.labels
            if info.optional:
                # Samples of one family with different label sets (a binary model's precision
                # without class, a multiclass model's with class or average): each sample
                # carries the labels it has, in catalogue order; add_metric would give the
                # missing ones "".
                sample_name = f"{fam.name}_total" if info.type == "counter" else fam.name
                for s in grouped[name]:
                    labels = dict(s.labels)
                    present = {k: labels.get(k, "") for k in order if k in labels or k not in info.optional}
                    fam.add_sample(sample_name, present, s.value)
            else:
                for s in grouped[name]:
                    labels = dict(s.labels)
                    fam.add_metric([labels.get(k, "") for k in order], s.value)  # type: ignore[attr-defined]
            yield fam
        if name in hist_grouped:
            hfam = HistogramMetricFamily(name, METRICS[name].help, labels=list(METRICS[name].labels))
            for h in hist_grouped[name]:
                labels = dict(h.labels)
                buckets = [
                    ("+Inf" if math.isinf(le) else repr(float(le)), float(c))
                    for le, c in zip(h.upper_bounds, h.cumulative_counts, strict=True)
                ]
                hfam.add_metric([labels.get(k, "") for k in METRICS[name].labels], buckets, h.sum)
            yield hfam


class SnapshotCollector(Collector):
    """Collects whatever ``source()`` returns at scrape time."""

    def __init__(self, source: Callable[[], tuple[Snapshot | None, list[Sample]]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        snapshot, extra = self.source()
        yield from families(snapshot, extra)


def render(snapshot: Snapshot | None, extra: list[Sample] | None = None) -> bytes:
    """Prometheus text exposition of a snapshot (what /metrics serves)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: (snapshot, extra or [])))
    return generate_latest(registry)
