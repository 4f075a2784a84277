"""Stage 2: merge the partial deltas of every partition into global windows.

An :class:`Aggregator` owns the models whose partials it receives. It keeps, per
model and variant, a :class:`~streamon.core.state.windows.Windowed` summary. Windows move
only with the buckets of the deltas they receive and with :meth:`evaluate`'s ``now``,
so their state depends on the set of partials, never on the order they arrived in.
The live worker evaluates at :attr:`Aggregator.latest` (the newest event time any
source reported); replay evaluates at event-time interval boundaries.

Variants and segment values come from data: per model (and segment field) only the
bottom-K by stable hash of every value seen keep a window of their own; a value
displaced by a smaller-hash newcomer has its window folded into the ``__other__``
window (:class:`~streamon.core.state.cardinality.BottomK`). The kept set, and so every
exported number, depends only on the set of values, not on their order.
:meth:`evaluate` turns the windows into a :class:`~streamon.core.stages.evaluate.Snapshot`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamon.core.catalogue import OUTCOMES
from streamon.core.profile import ModelSpec
from streamon.core.stages.evaluate import (
    EvalSettings,
    Sample,
    Snapshot,
    bucket_errors,
    evaluate_model,
    latency_histogram,
)
from streamon.core.stages.stage1 import Partial
from streamon.core.state.cardinality import NOTHING, OTHER, BottomK
from streamon.core.state.summary import (
    LATENCY,
    LATENCY_BUCKETS_S,
    N_PREDICTIONS,
    OUTCOMES_ADDED,
    BucketSummary,
)
from streamon.core.state.windows import Windowed, floor_to
from streamon.core.statistics import multiclass
from streamon.core.statistics.abmetrics import ABSettings, ab_samples
from streamon.core.statistics.estimate import METRIC_NAMES as _ESTIMATED
from streamon.core.statistics.segments import segment_samples

ALL_VARIANTS = "all"
# (start, bucket, its confusion counts, errors, labelled): see Aggregator._errors_of
_BucketErrors = tuple[float, BucketSummary, np.ndarray, int, int]
# Every sample name of the estimated-performance family (estimate.estimation_gauges).
ESTIMATION_NAMES = frozenset(_ESTIMATED.values()) | {
    "ml_model_estimation_calibration_error",
    "streamon_estimation_calibration_p_value",
    "streamon_estimation_reliable",
}


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
    # Monotonic totals for counters (never retracted): outcomes added, latency, predictions.
    totals: dict[str, BucketSummary] = field(default_factory=dict)
    # Segment windows by (segment field, segment value), over all variants.
    segments: dict[tuple[str, str], Windowed[BucketSummary]] = field(default_factory=dict)
    segment_predictions: dict[tuple[str, str], int] = field(default_factory=dict)  # monotonic
    variant_cap: BottomK | None = None
    segment_caps: dict[str, BottomK] = field(default_factory=dict)
    # Events of categorical features whose value was folded into __other__, by feature.
    category_overflow: dict[str, int] = field(default_factory=dict)
    # Start of the oldest bucket ever merged: when this model's monitoring began (the
    # minimum over the set of partials, so independent of their order and of the workers).
    first_bucket: float = math.inf


def _move_window(
    old: Windowed[BucketSummary],
    target: Windowed[BucketSummary],
    add: Callable[[Windowed[BucketSummary], float, BucketSummary], object],
) -> None:
    """Add every bucket of ``old`` to ``target`` at ``old``'s time: how a displaced value's
    window is folded into the ``__other__`` window."""
    if old.now is not None:
        target.advance(old.now)
    for start, bucket in old.every_bucket():
        add(target, start, bucket)


def _other(summary: BucketSummary | None, feature: str) -> int:
    if summary is None:
        return 0
    counter = summary.categories.get(feature)
    return int(counter.get(OTHER, 0)) if counter else 0


class Aggregator:
    """Global, windowed state of the models this stage-2 instance owns."""

    def __init__(
        self,
        models: dict[str, ModelSpec],
        windows: WindowSettings | None = None,
        settings: EvalSettings | None = None,
        baselines: dict[str, dict[str, float]] | None = None,
        ab: ABSettings | None = None,
    ) -> None:
        self.windows = windows or WindowSettings()
        self.settings = settings or EvalSettings(current_s=self.windows.current_s)
        self.baselines = baselines or {}
        self.ab = ab or ABSettings()
        self.models = {name: ModelState(spec) for name, spec in models.items()}
        self.source_watermarks: dict[str, float] = {}
        self.dropped = 0
        # Per model window (by id, the window held so the id is not reused): each fine bucket's
        # confusion counts and (errors, labelled), as of the bucket's last add. Concept drift reads
        # every bucket at every evaluation, and only the few buckets merged since have changed.
        self._bucket_errors: dict[int, tuple[Windowed[BucketSummary], dict[float, _BucketErrors]]] = {}

    def _new_window(self, rolling_reference: bool) -> Windowed[BucketSummary]:
        # Aggregates are uncapped (exact under subtraction); they are capped when evaluated.
        return Windowed(
            lambda: BucketSummary(category_cap=None),
            self.windows.bucket_s,
            self.windows.current_s,
            self.windows.reference_s if rolling_reference else 0.0,
            self.windows.reference_bucket_s,
        )

    def _window(self, state: ModelState, variant: str) -> Windowed[BucketSummary]:
        w = state.windows.get(variant)
        if w is None:
            w = state.windows[variant] = self._new_window(state.spec.reference is None)
        return w

    def _add_counted(
        self, state: ModelState, w: Windowed[BucketSummary], start: float, delta: BucketSummary, counted: bool
    ) -> bool:
        """Add ``delta`` to ``w`` and count the categorical events newly folded into __other__.

        ``counted``: the delta's own __other__ counts were counted before (a window being folded).
        """
        cached = self._bucket_errors.get(id(w))
        if cached is not None:
            cached[1].pop(floor_to(start, w.bucket_s), None)  # the bucket changes in place
        features = state.spec.categorical
        if not features:
            return w.add(start, delta)
        bucket = w.fine(start)
        before = {f: _other(bucket, f) for f in features}
        added = w.add(start, delta)
        after = w.fine(start)
        for f in features:
            if after is not None:  # merged into the fine bucket: the cap may have folded more
                n = _other(after, f) - before[f] - (_other(delta, f) if counted else 0)
            else:  # a late delta went to a coarse reference bucket, or was dropped
                n = 0 if counted or not added else _other(delta, f)
            if n:
                state.category_overflow[f] = state.category_overflow.get(f, 0) + n
        return added

    def _fold_variant(self, state: ModelState, variant: str) -> None:
        """Fold a displaced variant's window and totals into __other__."""
        w = state.windows.pop(variant, None)
        if w is not None:
            self._bucket_errors.pop(id(w), None)
            _move_window(
                w,
                self._window(state, OTHER),
                lambda other, start, bucket: self._add_counted(state, other, start, bucket, counted=True),
            )
        total = state.totals.pop(variant, None)
        if total is not None:
            other_total = state.totals.setdefault(OTHER, BucketSummary())
            other_total += total

    def _segment_window(self, state: ModelState, key: tuple[str, str]) -> Windowed[BucketSummary]:
        w = state.segments.get(key)
        if w is None:
            # Always a rolling reference of its own: a pinned profile is the whole population's.
            w = state.segments[key] = self._new_window(True)
        return w

    def _apply_segment(
        self, state: ModelState, key: tuple[str, str], start: float, delta: BucketSummary
    ) -> None:
        seg_field, value = key
        cap = state.segment_caps.get(seg_field)
        if cap is None:
            spec = next((s for s in state.spec.segments if s.field == seg_field), None)
            if spec is None:  # a field no longer configured (older partials): ignored
                return
            cap = state.segment_caps[seg_field] = BottomK(spec.max_values, spec.values or NOTHING)
        kept, displaced = cap.offer(value)
        if displaced is not None:
            old = state.segments.pop((seg_field, displaced), None)
            if old is not None:
                _move_window(old, self._segment_window(state, (seg_field, OTHER)), Windowed.add)
            n = state.segment_predictions.pop((seg_field, displaced), 0)
            other_key = (seg_field, OTHER)
            state.segment_predictions[other_key] = state.segment_predictions.get(other_key, 0) + n
        if not kept:
            value = OTHER
        # A late segment delta is dropped with its model delta, counted once (by that one).
        self._segment_window(state, (seg_field, value)).add(start, delta)
        k = (seg_field, value)
        state.segment_predictions[k] = state.segment_predictions.get(k, 0) + delta.n_predictions

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
        spec = state.spec
        if state.variant_cap is None:
            state.variant_cap = BottomK(spec.max_variants, spec.protected_variants)
        protected = spec.protected_categories
        for (variant, start), summary in partial.buckets.items():
            summary.category_cap = spec.max_categories
            summary.protected = protected
            state.first_bucket = min(state.first_bucket, start)
            kept, displaced = state.variant_cap.offer(variant)
            if displaced is not None:
                self._fold_variant(state, displaced)
            if not kept:
                variant = OTHER
            if not self._add_counted(state, self._window(state, variant), start, summary, counted=False):
                self.dropped += 1
            total = state.totals.setdefault(variant, BucketSummary())
            for name in (OUTCOMES_ADDED, LATENCY, N_PREDICTIONS, multiclass.CONFUSION_ADDED):
                if name in summary.counts:
                    total._add(name, summary.counts[name])
        for (seg_field, value, start), summary in partial.segments.items():
            summary.category_cap = spec.max_categories
            summary.protected = protected
            self._apply_segment(state, (seg_field, value), start, summary)

    def advance(self, now: float | None = None) -> None:
        target = self.now if now is None else now
        if target is None:
            return
        for state in self.models.values():
            for w in state.windows.values():
                w.advance(target)
            for w in state.segments.values():
                w.advance(target)

    def changes_between(self, last: float, now: float) -> bool:
        """False only if :meth:`evaluate` at ``now`` must give the samples it gave at ``last``.

        With no partial merged since the evaluation at ``last``, the samples change only
        when a window moves a bucket, or through what depends on the evaluation time itself
        (the event time the current window covers, while it fills up). Conservative (True
        when unsure) and monotonic in ``now``: replay skips the evaluations between data
        that this proves idle. Keep it in step with every use of the time in :meth:`evaluate`.
        """
        current_s = self.settings.current_s
        span_used = self.settings.business_enabled  # the covered span only scales ROI's cost
        for state in self.models.values():
            if span_used and state.windows and last - state.first_bucket < current_s:  # still growing
                return True
            for w in state.windows.values():
                if w.would_change(now):
                    return True
            for w in state.segments.values():
                if w.would_change(now):
                    return True
        return False

    def evaluate(self, now: float | None = None, *, reads: Collection[str] | None = None) -> Snapshot:
        """Metrics of every owned model, per variant and over all variants.

        ``reads``: the only sample names the caller looks at (e.g. the alert rules' metrics);
        a family none of whose samples it names may be left out (the estimated performance,
        a pure function of the two windows that nothing else reads), and so may a feature-drift
        test (``EvalSettings.reads``: KS and Wasserstein, chi-square). Default: everything.
        """
        self.advance(now)
        settings = self.settings
        if reads is not None:  # feature-drift tests none of whose samples are read are left out
            settings = dataclasses.replace(settings, reads=frozenset(reads))
            if settings.estimation_enabled and ESTIMATION_NAMES.isdisjoint(reads):
                settings = dataclasses.replace(settings, estimation_enabled=False)
        at = now if now is not None else (self.now or 0.0)
        snap = Snapshot(event_time=at)
        for name, state in self.models.items():
            if not state.windows:
                continue
            spec = state.spec
            # Feature drift computed once per (current, reference) pair in this evaluation.
            memo: dict[Any, Any] = {}
            windows = sorted(state.windows.items())
            cap = spec.max_categories  # window aggregates are exact sums: capped for reading
            keep = spec.protected_categories
            views = {}
            # ROI's operating cost: for the event time the current window covers (less than its
            # length while it fills up, so ROI does not grow with the volume merged so far), and
            # apportioned to each variant by its share of the window's predictions.
            span = self._covered_span(state, at)
            n_all = sum(w.current.n_predictions for _, w in windows)
            for variant, w in windows:
                cur = views[variant] = w.current.capped(cap, keep)
                ref = spec.reference if spec.reference is not None else w.reference.capped(cap, keep)
                share = cur.n_predictions / n_all if n_all else 0.0
                snap.samples.extend(
                    evaluate_model(
                        spec,
                        variant,
                        cur,
                        ref,
                        settings,
                        self.baselines.get(name),
                        memo=memo,
                        window_seconds=span,
                        operating_share=share,
                    )
                )
            if len(windows) == 1:
                # "all" of a single variant IS that variant: the same summaries, not merged copies
                # (equal values, so equal metrics), and the memo skips recomputing feature drift.
                w = windows[0][1]
                cur_all = views[windows[0][0]]
                ref_all = spec.reference if spec.reference is not None else w.reference.capped(cap, keep)
                rows = self._errors_of(w)
                errors = ([r[3] for r in rows], [r[4] for r in rows])
            else:
                cur_all, ref_all = BucketSummary(category_cap=None), BucketSummary(category_cap=None)
                per_bucket: dict[float, np.ndarray] = {}  # confusion counts per bucket, over variants
                for _variant, w in windows:
                    cur_all += w.current
                    if spec.reference is None:
                        ref_all += w.reference
                    for start, _b, confusion, _e, _n in self._errors_of(w):
                        conf = per_bucket.get(start)
                        per_bucket[start] = confusion if conf is None else conf + confusion
                cur_all = cur_all.capped(cap, keep)
                ref_all = spec.reference if spec.reference is not None else ref_all.capped(cap, keep)
                errors = bucket_errors(per_bucket[k] for k in sorted(per_bucket))
            snap.samples.extend(
                evaluate_model(
                    spec,
                    ALL_VARIANTS,
                    cur_all,
                    ref_all,
                    settings,
                    self.baselines.get(name),
                    memo=memo,
                    window_seconds=span,
                    bucket_errors=errors,
                )
            )
            self._counters(snap, name, state)
            self._segment_samples(snap, state)
            # A/B tests over everything merged since this state began (monotonic totals). They
            # compare binary outcomes: a regression or multiclass model has none, so no (all-NaN) series.
            if spec.task not in ("regression", "multiclass"):
                totals = {v: t.vector(OUTCOMES_ADDED, 4) for v, t in state.totals.items()}
                snap.samples.extend(ab_samples(name, totals, self.ab, self.settings.costs))
        return snap

    def _errors_of(self, w: Windowed[BucketSummary]) -> list[_BucketErrors]:
        """(start, bucket, confusion, errors, labelled) of every fine bucket of ``w``, oldest first.

        A bucket's entry is reused while it is the same object and nothing was added to it
        since (:meth:`_add_counted` drops the entry of every bucket it adds to). Errors and
        labelled are :func:`bucket_errors` of the bucket alone: that function works row by row.
        """
        held = self._bucket_errors.get(id(w))
        if held is None or held[0] is not w:
            held = self._bucket_errors[id(w)] = (w, {})
        cache = held[1]
        rows = []
        for start, b in w.buckets():
            row = cache.get(start)
            if row is None or row[1] is not b:
                confusion = b.confusion.copy()  # the bucket's own array changes in place
                (e,), (n,) = bucket_errors([confusion])
                row = cache[start] = (start, b, confusion, e, n)
            rows.append(row)
        if len(cache) > len(rows):  # buckets that left the current window
            held[1].clear()
            held[1].update((r[0], r) for r in rows)
        return rows

    def _covered_span(self, state: ModelState, at: float) -> float:
        """Event time the current window covers at ``at``: since the oldest merged bucket, at most
        the window length (the length itself once the model has been monitored that long)."""
        current_s = self.settings.current_s
        if not math.isfinite(state.first_bucket):
            return current_s
        return float(min(current_s, max(at - state.first_bucket, 0.0)))

    def _segment_samples(self, snap: Snapshot, state: ModelState) -> None:
        """Segment gauges and the cardinality-overflow counters of one model."""
        spec, model = state.spec, state.spec.name
        cap, keep = spec.max_categories, spec.protected_categories
        for (seg_field, value), w in sorted(state.segments.items()):
            snap.samples.extend(
                segment_samples(
                    spec,
                    seg_field,
                    value,
                    w.current.capped(cap, keep),
                    w.reference.capped(cap, keep),
                    self.settings,
                )
            )

        def overflow(label: str, n: int) -> None:
            snap.samples.append(
                Sample("streamon_cardinality_overflow_total", (("model", model), ("label", label)), float(n))
            )

        other = state.totals.get(OTHER)
        overflow("variant", other.n_predictions if other is not None else 0)
        for seg in spec.segments:
            overflow(f"segment:{seg.field}", state.segment_predictions.get((seg.field, OTHER), 0))
        for feature in spec.categorical:
            overflow(f"category:{feature}", state.category_overflow.get(feature, 0))

    def _counters(self, snap: Snapshot, model: str, state: ModelState) -> None:
        everything = BucketSummary()
        # Outcomes are binary: a regression or multiclass model's labels have none (zeros would
        # read "unlabelled"); a multiclass model counts its confusion cells instead.
        outcomes = state.spec.task not in ("regression", "multiclass")
        classes = tuple(getattr(state.spec, "classes", ()) or ()) if state.spec.task == "multiclass" else ()
        for variant, total in sorted(state.totals.items()):
            everything += total
            self._counter_samples(snap, model, variant, total, outcomes)
            self._confusion_samples(snap, model, variant, total, classes)
        self._counter_samples(snap, model, ALL_VARIANTS, everything, outcomes)
        self._confusion_samples(snap, model, ALL_VARIANTS, everything, classes)

    @staticmethod
    def _confusion_samples(
        snap: Snapshot, model: str, variant: str, total: BucketSummary, classes: tuple[str, ...]
    ) -> None:
        """``ml_model_confusion_total{actual,predicted}``: every labelled prediction counted
        up (a corrected label is never retracted from a counter)."""
        if not classes:
            return
        k = len(classes)
        added = total.vector(multiclass.CONFUSION_ADDED, k * k).tolist()
        for i, actual in enumerate(classes):
            for j, predicted in enumerate(classes):
                snap.samples.append(
                    Sample(
                        "ml_model_confusion_total",
                        (
                            ("model", model),
                            ("variant", variant),
                            ("actual", actual),
                            ("predicted", predicted),
                        ),
                        float(added[i * k + j]),
                    )
                )

    @staticmethod
    def _counter_samples(
        snap: Snapshot, model: str, variant: str, total: BucketSummary, outcomes: bool = True
    ) -> None:
        added = total.vector(OUTCOMES_ADDED, 4)
        for i, outcome in enumerate(OUTCOMES if outcomes else ()):
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
