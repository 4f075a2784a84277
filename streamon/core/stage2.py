"""Stage 2: merge the partial deltas of every partition into global windows.

An :class:`Aggregator` owns the models whose partials it receives. It keeps, per
model and variant, a :class:`~streamon.core.windows.Windowed` summary. Windows move
only with the buckets of the deltas they receive and with :meth:`evaluate`'s ``now``,
so their state depends on the set of partials, never on the order they arrived in.
The live worker evaluates at :attr:`Aggregator.latest` (the newest event time any
source reported); replay evaluates at event-time interval boundaries.
:meth:`evaluate` turns the windows into a :class:`~streamon.core.evaluate.Snapshot`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamon.core.catalogue import OUTCOMES
from streamon.core.evaluate import (
    EvalSettings,
    Sample,
    Snapshot,
    bucket_error_rates,
    evaluate_model,
    latency_histogram,
)
from streamon.core.profile import ModelSpec
from streamon.core.stage1 import Partial
from streamon.core.summary import LATENCY, LATENCY_BUCKETS_S, OUTCOMES_ADDED, BucketSummary
from streamon.core.windows import Windowed

ALL_VARIANTS = "all"


@dataclass
class WindowSettings:
    bucket_s: float = 60.0
    current_s: float = 86400.0
    reference_s: float = 7 * 86400.0
    reference_bucket_s: float = 3600.0


@dataclass
class ModelState:
    spec: ModelSpec
    windows: dict[str, Windowed[BucketSummary]] = field(default_factory=dict)  # by variant
    # Monotonic totals for counters (never retracted): outcomes added and latency.
    totals: dict[str, BucketSummary] = field(default_factory=dict)


class Aggregator:
    """Global, windowed state of the models this stage-2 instance owns."""

    def __init__(
        self,
        models: dict[str, ModelSpec],
        windows: WindowSettings | None = None,
        settings: EvalSettings | None = None,
        baselines: dict[str, dict[str, float]] | None = None,
    ) -> None:
        self.windows = windows or WindowSettings()
        self.settings = settings or EvalSettings(current_s=self.windows.current_s)
        self.baselines = baselines or {}
        self.models = {name: ModelState(spec) for name, spec in models.items()}
        self.source_watermarks: dict[str, float] = {}
        self.dropped = 0

    def _window(self, state: ModelState, variant: str) -> Windowed[BucketSummary]:
        w = state.windows.get(variant)
        if w is None:
            pinned = state.spec.reference is not None
            w = state.windows[variant] = Windowed(
                BucketSummary,
                self.windows.bucket_s,
                self.windows.current_s,
                0.0 if pinned else self.windows.reference_s,
                self.windows.reference_bucket_s,
            )
        return w

    @property
    def now(self) -> float | None:
        """The low watermark: every source has processed predictions up to here."""
        finite = [wm for wm in self.source_watermarks.values() if math.isfinite(wm)]
        # Undefined until every source has reported an event time.
        return min(finite) if finite and len(finite) == len(self.source_watermarks) else None

    @property
    def latest(self) -> float | None:
        """The newest event time any source has reported (what "now" is for a live evaluation)."""
        finite = [wm for wm in self.source_watermarks.values() if math.isfinite(wm)]
        return max(finite) if finite else None

    def apply(self, partial: Partial) -> None:
        """Merge one partial (from any source, in any order)."""
        state = self.models.get(partial.model)
        if state is None:
            return
        prev = self.source_watermarks.get(partial.source, -math.inf)
        self.source_watermarks[partial.source] = max(prev, partial.watermark)
        for (variant, start), summary in partial.buckets.items():
            if not self._window(state, variant).add(start, summary):
                self.dropped += 1
            total = state.totals.setdefault(variant, BucketSummary())
            for name in (OUTCOMES_ADDED, LATENCY):
                if name in summary.counts:
                    total._add(name, summary.counts[name])

    def advance(self, now: float | None = None) -> None:
        target = self.now if now is None else now
        if target is None:
            return
        for state in self.models.values():
            for w in state.windows.values():
                w.advance(target)

    def evaluate(self, now: float | None = None) -> Snapshot:
        """Metrics of every owned model, per variant and over all variants."""
        self.advance(now)
        at = now if now is not None else (self.now or 0.0)
        snap = Snapshot(event_time=at)
        for name, state in self.models.items():
            if not state.windows:
                continue
            spec = state.spec
            # Feature drift computed once per (current, reference) pair in this evaluation.
            memo: dict[Any, Any] = {}
            windows = sorted(state.windows.items())
            for variant, w in windows:
                ref = spec.reference if spec.reference is not None else w.reference
                snap.samples.extend(
                    evaluate_model(
                        spec, variant, w.current, ref, self.settings, self.baselines.get(name), memo=memo
                    )
                )
            if len(windows) == 1:
                # "all" of a single variant IS that variant: the same summaries, not merged copies
                # (equal values, so equal metrics), and the memo skips recomputing feature drift.
                w = windows[0][1]
                cur_all = w.current
                ref_all = spec.reference if spec.reference is not None else w.reference
                rates = bucket_error_rates(b.confusion for _, b in w.buckets())
            else:
                cur_all, ref_all = BucketSummary(), BucketSummary()
                per_bucket: dict[float, np.ndarray] = {}  # confusion counts per bucket, over variants
                for _variant, w in windows:
                    cur_all += w.current
                    if spec.reference is None:
                        ref_all += w.reference
                    for start, b in w.buckets():
                        conf = per_bucket.get(start)
                        per_bucket[start] = b.confusion if conf is None else conf + b.confusion
                ref_all = spec.reference if spec.reference is not None else ref_all
                rates = bucket_error_rates(per_bucket[k] for k in sorted(per_bucket))
            snap.samples.extend(
                evaluate_model(
                    spec,
                    ALL_VARIANTS,
                    cur_all,
                    ref_all,
                    self.settings,
                    self.baselines.get(name),
                    rates,
                    memo=memo,
                )
            )
            self._counters(snap, name, state)
        return snap

    def _counters(self, snap: Snapshot, model: str, state: ModelState) -> None:
        everything = BucketSummary()
        for variant, total in sorted(state.totals.items()):
            everything += total
            self._counter_samples(snap, model, variant, total)
        self._counter_samples(snap, model, ALL_VARIANTS, everything)

    @staticmethod
    def _counter_samples(snap: Snapshot, model: str, variant: str, total: BucketSummary) -> None:
        added = total.vector(OUTCOMES_ADDED, 4)
        for i, outcome in enumerate(OUTCOMES):
            snap.samples.append(
                Sample(
                    "ml_predictions_total",
                    (("model", model), ("variant", variant), ("outcome", outcome)),
                    float(added[i]),
                )
            )
        hist = latency_histogram(model, variant, total, LATENCY_BUCKETS_S)
        if hist is not None:
            snap.histograms.append(hist)
