"""The mergeable summary of one model (and A/B variant) over one event-time bucket.

Everything stage 1 learns from a partition is added to a :class:`BucketSummary`;
stage 2 merges the summaries of all partitions. All counts are integers (latency sums
in whole microseconds), so merging is exact and independent of order: the global
metrics are the same whether one worker or ten produced the parts.

A summary holds four kinds of mergeable state, all keyed by name:

- ``counts``: int64 vectors (prediction counts, score histograms, confusion counts,
  latency histogram, fixed-edge feature bins when a reference profile pins them);
- ``sketches``: :class:`~streamon.core.state.sketch.LogSketch` of each numeric feature's
  raw values (KS, Wasserstein, rolling-reference bins);
- ``categories``: per categorical feature, counts per observed value, capped by the
  bottom-K-by-stable-hash rule of :mod:`streamon.core.state.cardinality` (merge-invariant);
- ``sums``: vectors of exact sums of floats as Python ints (:mod:`streamon.core.state.exact`):
  the calibration statistics' score sums and Brier / log-loss sums.

:attr:`BucketSummary.category_cap` is the cap applied on every add and merge; window
aggregates that are maintained by subtraction hold ``None`` (uncapped, exact) and are
capped when read (:meth:`BucketSummary.capped`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

import numpy as np
import orjson

from streamon.core.state.cardinality import MISSING as MISSING  # re-exported: first defined here
from streamon.core.state.cardinality import NOTHING, fold_counter
from streamon.core.state.cardinality import OTHER as OTHER
from streamon.core.state.exact import add_into
from streamon.core.state.sketch import LogSketch
from streamon.core.statistics.calibration import batch_sums

FORMAT_VERSION = 1

# Prometheus-style latency buckets, in seconds (upper bounds; a +Inf bucket follows).
LATENCY_BUCKETS_S: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_LATENCY_EDGES_MS = np.array(LATENCY_BUCKETS_S) * 1000.0

# Values of one categorical feature kept per summary (the bottom-K by stable hash);
# the others fold into OTHER. limits.max_category_values overrides it per deployment.
MAX_CATEGORIES = 1000
_UNPROTECTED: Mapping[str, frozenset[str]] = MappingProxyType({})

# Names of the count vectors (feature vectors are "bins:<feature>" and "missing:<feature>").
N_PREDICTIONS = "predictions"  # [count, predicted_positive]
SCORES = "scores"  # histogram of all scores
LATENCY = "latency"  # histogram over LATENCY_BUCKETS_S + [sum in microseconds, count]
CONFUSION = "confusion"  # [tp, fp, tn, fn] of labelled predictions
POSITIVE_SCORES = "scores_pos"  # score histogram of predictions labelled 1
NEGATIVE_SCORES = "scores_neg"  # score histogram of predictions labelled 0
OUTCOMES_ADDED = "outcomes_added"  # [tp, fp, tn, fn] counted up only: feeds a monotonic counter
AUC_POSITIVE_SCORES = "auc_pos"  # fine score histogram (AUC_EDGES) of predictions labelled 1
AUC_NEGATIVE_SCORES = "auc_neg"  # fine score histogram (AUC_EDGES) of predictions labelled 0
CALIBRATION_LABELLED = "calibration_n"  # labelled predictions per calibration bin
CALIBRATION_POSITIVES = "calibration_pos"  # of them, labelled 1
# Names of the vectors of exact sums.
CALIBRATION_SCORES = "calibration_scores"  # sum of the labelled scores per calibration bin
LOSSES = "losses"  # [Brier sum, log-loss sum] over labelled predictions
BRIER, LOG_LOSS = 0, 1
DEFAULT_CALIBRATION_BINS = 10

TP, FP, TN, FN = 0, 1, 2, 3


def score_bin(scores: np.ndarray, n_bins: int) -> np.ndarray:
    """Index of the equal-width bin on [0, 1] of each score (1.0 falls in the last bin).

    >>> score_bin(np.array([0.0, 0.5, 0.999, 1.0]), 4).tolist()
    [0, 2, 3, 3]
    """
    return np.minimum((scores * n_bins).astype(np.int64), n_bins - 1)


# The fixed grid of the threshold-free metrics (AUCs, precision at FPR, lift): a step of
# 0.05 in log-odds over [-16, 16] (fine near 0 and 1, where fraud scores crowd) merged
# with a step of 0.001 in score (fine in the middle, where precision moves fastest). It
# never depends on configuration, so every worker's counts add up. docs/statistics.md
# gives the measured error against scikit-learn on the raw scores.
AUC_LOGIT_STEP, AUC_LOGIT_LIMIT, AUC_SCORE_STEP = 0.05, 16.0, 0.001
_LOGITS = np.linspace(-AUC_LOGIT_LIMIT, AUC_LOGIT_LIMIT, round(2 * AUC_LOGIT_LIMIT / AUC_LOGIT_STEP) + 1)
# math.exp, not numpy's vectorised exp, whose last bit may depend on the CPU's SIMD path.
AUC_EDGES = np.union1d(
    [1.0 / (1.0 + math.exp(-x)) for x in _LOGITS.tolist()],
    np.arange(1, round(1 / AUC_SCORE_STEP)) * AUC_SCORE_STEP,
)
AUC_EDGES.setflags(write=False)  # one grid for every worker: nobody may shift it
AUC_BINS = len(AUC_EDGES) + 1


def auc_bin(scores: np.ndarray) -> np.ndarray:
    """Index of each score's bin on the fixed grid ``AUC_EDGES`` (a score on an edge goes up).

    Every edge lies strictly inside (0, 1): 0.0 falls in the first bin, 1.0 in the last,
    each with the other scores beyond the grid (below ~1.1e-7, above 1 - 1.1e-7).

    >>> AUC_BINS
    1640
    >>> auc_bin(np.array([0.0, 1e-9, 0.5, 1.0])).tolist()
    [0, 0, 820, 1639]
    """
    return np.searchsorted(AUC_EDGES, scores, side="right")


# Up to this many edges, counting values per bin by one comparison per edge beats
# ``np.bincount(np.searchsorted(...))``, whose binary search per value costs ~20 ns.
_FEW_EDGES = 16


def bin_counts(values: np.ndarray, edges: np.ndarray, side: str = "right") -> np.ndarray:
    """``np.bincount(np.searchsorted(edges, values, side), minlength=len(edges) + 1)``, faster.

    ``edges`` must be ascending and ``values`` free of NaN (as everywhere here).

    >>> edges = np.array([1.0, 2.0, 3.0])
    >>> x = np.array([0.5, 1.0, 2.5, 3.0, 9.0, -np.inf, np.inf])
    >>> bin_counts(x, edges).tolist(), bin_counts(x, edges, side="left").tolist()
    ([2, 1, 1, 3], [3, 0, 2, 2])
    """
    n_edges = len(edges)
    if 0 < n_edges <= _FEW_EDGES and bool(np.all(edges[1:] > edges[:-1])):
        # at_or_above[j] = values that land right of edge j; edges ascending, so non-increasing.
        if side == "right":
            at_or_above = [np.count_nonzero(values >= e) for e in edges.tolist()]
        else:
            at_or_above = [np.count_nonzero(values > e) for e in edges.tolist()]
        cum = np.array([len(values), *at_or_above, 0], dtype=np.int64)
        return cum[:-1] - cum[1:]
    return np.bincount(np.searchsorted(edges, values, side=side), minlength=n_edges + 1)  # type: ignore[call-overload]


def outcome_index(label: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Confusion cell (TP, FP, TN, FN) of each labelled prediction.

    >>> outcome_index(np.array([1, 0, 0, 1]), np.array([1, 1, 0, 0])).tolist()
    [0, 1, 2, 3]
    """
    label = label.astype(bool)
    predicted = predicted.astype(bool)
    return np.where(predicted, np.where(label, TP, FP), np.where(label, FN, TN))


@dataclass
class BucketSummary:
    """Mergeable summary of predictions and labels of one model/variant in one bucket.

    >>> a = BucketSummary()
    >>> a.add_predictions(np.array([0.1, 0.9]), np.array([0, 1]), score_bins=10)
    >>> b = BucketSummary()
    >>> b.add_predictions(np.array([0.8]), np.array([1]), score_bins=10)
    >>> a += b
    >>> a.n_predictions, a.n_predicted_positive
    (3, 2)
    >>> BucketSummary.from_bytes(a.to_bytes()) == a
    True
    """

    counts: dict[str, np.ndarray] = field(default_factory=dict)
    sketches: dict[str, LogSketch] = field(default_factory=dict)
    categories: dict[str, Counter[str]] = field(default_factory=dict)
    sums: dict[str, list[int]] = field(default_factory=dict)  # exact sums, units of 2**-1074
    # Bottom-K cap on the values of each categorical feature; None = uncapped (exact sums).
    category_cap: int | None = field(default=MAX_CATEGORIES, compare=False)
    # Per feature, values the cap never folds (the reference profile's categories).
    protected: Mapping[str, frozenset[str]] = field(default_factory=lambda: _UNPROTECTED, compare=False)

    # ------------------------------------------------------------------ reading

    def vector(self, name: str, size: int) -> np.ndarray:
        """The count vector ``name`` (zeros of ``size`` when nothing was counted)."""
        v = self.counts.get(name)
        return v if v is not None else np.zeros(size, dtype=np.int64)

    @property
    def n_predictions(self) -> int:
        return int(self.counts[N_PREDICTIONS][0]) if N_PREDICTIONS in self.counts else 0

    @property
    def n_predicted_positive(self) -> int:
        return int(self.counts[N_PREDICTIONS][1]) if N_PREDICTIONS in self.counts else 0

    @property
    def confusion(self) -> np.ndarray:
        return self.vector(CONFUSION, 4)

    @property
    def n_labelled(self) -> int:
        return int(self.confusion.sum())

    @property
    def calibration_bins(self) -> int | None:
        """The number of calibration bins labels were counted in (None: no calibration state)."""
        v = self.counts.get(CALIBRATION_LABELLED)
        return None if v is None else len(v)

    def ranking_histograms(self, score_bins: int) -> tuple[np.ndarray, np.ndarray, str]:
        """The per-class histograms the threshold-free metrics read, and the AP tie rule.

        The fine ``AUC_EDGES`` histograms when they count every labelled prediction; else
        (labels counted before they existed, e.g. an older reference profile, alone or mixed
        into a window; or a segment summary, which keeps none) the ``score_bins`` histograms
        with the step rule.
        """
        pos = self.counts.get(AUC_POSITIVE_SCORES)
        neg = self.counts.get(AUC_NEGATIVE_SCORES)
        if (
            pos is not None
            and neg is not None
            and len(pos) == len(neg) == AUC_BINS
            and int(pos.sum()) + int(neg.sum()) == self.n_labelled
            and not ((pos < 0).any() or (neg < 0).any())  # a retraction of a label counted before
        ):
            return pos, neg, "spread"
        return self.vector(POSITIVE_SCORES, score_bins), self.vector(NEGATIVE_SCORES, score_bins), "bin"

    @property
    def is_empty(self) -> bool:
        return (
            all(not v.any() for v in self.counts.values())
            and all(s.is_empty for s in self.sketches.values())
            and all(not c for c in self.categories.values())
            and all(not any(v) for v in self.sums.values())
        )

    # ------------------------------------------------------------------ adding

    def _add(self, name: str, delta: np.ndarray) -> None:
        current = self.counts.get(name)
        if current is None:
            self.counts[name] = delta.astype(np.int64, copy=True)
        else:
            current += delta

    def _add_sums(self, name: str, delta: list[int], sign: int = 1) -> None:
        current = self.sums.get(name)
        if current is None:
            self.sums[name] = [sign * d for d in delta]
        elif len(current) != len(delta):
            raise ValueError(f"cannot add sums {name!r} of length {len(delta)} to length {len(current)}")
        else:
            add_into(current, delta, sign)

    def add_predictions(
        self,
        scores: np.ndarray,
        predicted: np.ndarray,
        score_bins: int | None,
        latency_ms: np.ndarray | None = None,
    ) -> None:
        """Count a batch of predictions: volume, predicted positives, score histogram, latency.

        ``score_bins=None``: no score histogram (a regression model's values are no scores).
        """
        self._add(N_PREDICTIONS, np.array([len(scores), int(np.count_nonzero(predicted))]))
        if score_bins is not None:
            self._add(SCORES, np.bincount(score_bin(scores, score_bins), minlength=score_bins))
        if latency_ms is not None:
            nan = np.isnan(latency_ms)
            lat = latency_ms[~nan] if nan.any() else latency_ms
            if len(lat):
                hist = bin_counts(lat, _LATENCY_EDGES_MS, side="left")
                # Integer microseconds keep the sum exactly mergeable.
                total_us = int(np.rint(lat * 1000.0).astype(np.int64).sum())
                self._add(LATENCY, np.concatenate([hist, [total_us, len(lat)]]))

    def add_numeric_feature(
        self,
        name: str,
        values: np.ndarray,
        edges: np.ndarray | None = None,
        relative_accuracy: float = 0.01,
    ) -> None:
        """Count a batch of one numeric feature (NaN = missing).

        ``edges`` are the inner bin edges pinned by a reference profile; the outer bins
        are open. Without them only the sketch is kept (rolling reference).
        """
        missing = np.isnan(values)
        n_missing = int(np.count_nonzero(missing))
        present = values[~missing] if n_missing else values
        self._add(f"missing:{name}", np.array([n_missing, len(values)]))
        sketch = self.sketches.get(name)
        if sketch is None:
            sketch = self.sketches[name] = LogSketch(relative_accuracy)
        sketch.add(present)
        if edges is not None:
            self._add(f"bins:{name}", bin_counts(present, edges, side="right"))

    def add_categorical_feature(self, name: str, values: Iterable[str | None]) -> None:
        """Count a batch of one categorical feature (None = missing).

        >>> s = BucketSummary()
        >>> s.add_categorical_feature("c", ["a", None, "b", "a"])
        >>> s.add_categorical_feature("c", iter([None, "__missing__"]))
        >>> dict(s.categories["c"])
        {'a': 2, '__missing__': 3, 'b': 1}
        >>> s = BucketSummary(category_cap=2)
        >>> s.add_categorical_feature("c", ["a", "b", "c", "c", None])
        >>> sorted(s.categories["c"].items())  # "b" hashes largest of the three: folded
        [('__missing__', 1), ('__other__', 1), ('a', 1), ('c', 2)]
        """
        counter = self.categories.get(name)
        if counter is None:
            counter = self.categories[name] = Counter()
        items = values if isinstance(values, list | tuple) else list(values)
        raw: Counter[str | None] = Counter(items)  # counted in C; None renamed below
        if None not in raw:
            batch = cast("Counter[str]", raw)
        elif MISSING in raw:  # both spellings of missing in one batch: count them as one
            batch = Counter(MISSING if v is None else v for v in items)
        else:
            batch = Counter({(MISSING if v is None else v): n for v, n in raw.items()})
        counter.update(batch)
        cap = self.category_cap
        if cap is not None and len(counter) > cap:  # hashes only past the cap: the hot path stays fast
            # A bad producer must not make memory or series explode, nor evict a reference category.
            fold_counter(counter, cap, self.protected.get(name, NOTHING))

    def add_labels(
        self,
        label: np.ndarray,
        predicted: np.ndarray,
        scores: np.ndarray,
        score_bins: int,
        sign: int = 1,
        calibration_bins: int | None = DEFAULT_CALIBRATION_BINS,
        fine: bool = True,
    ) -> None:
        """Count labelled predictions; ``sign=-1`` retracts them (a corrected label).

        ``calibration_bins`` None keeps no calibration state, ``fine`` False no fine AUC
        histograms (26 KB per bucket held by a window): a segment's summaries, whose
        threshold-free metrics read the ``score_bins`` histograms instead.
        """
        cells = np.bincount(outcome_index(label, predicted), minlength=4)
        self._add(CONFUSION, sign * cells)
        if sign > 0:
            self._add(OUTCOMES_ADDED, cells)
        bins = score_bin(scores, score_bins)
        pos = label.astype(bool)
        self._add(POSITIVE_SCORES, sign * np.bincount(bins[pos], minlength=score_bins))
        self._add(NEGATIVE_SCORES, sign * np.bincount(bins[~pos], minlength=score_bins))
        if fine:
            ranks = auc_bin(scores)
            self._add(AUC_POSITIVE_SCORES, sign * np.bincount(ranks[pos], minlength=AUC_BINS))
            self._add(AUC_NEGATIVE_SCORES, sign * np.bincount(ranks[~pos], minlength=AUC_BINS))
        if calibration_bins is not None:
            self._add_calibration(label, scores, calibration_bins, sign)

    def _add_calibration(self, label: np.ndarray, scores: np.ndarray, bins: int, sign: int) -> None:
        """Per calibration bin the labelled count, positives and exact score sum; the exact
        Brier and log-loss sums (a retraction subtracts the very same integers)."""
        cal = score_bin(scores, bins)
        self._add(CALIBRATION_LABELLED, sign * np.bincount(cal, minlength=bins))
        self._add(CALIBRATION_POSITIVES, sign * np.bincount(cal[label == 1], minlength=bins))
        score_sums, brier_sum, log_loss_sum = batch_sums(scores, label, cal, bins)
        self._add_sums(CALIBRATION_SCORES, score_sums, sign)
        losses = [0, 0]
        losses[BRIER], losses[LOG_LOSS] = brier_sum, log_loss_sum
        self._add_sums(LOSSES, losses, sign)

    # ------------------------------------------------------------------ merging

    def __iadd__(self, other: BucketSummary) -> BucketSummary:
        for name, vec in other.counts.items():
            self._add(name, vec)
        for name, sums in other.sums.items():
            self._add_sums(name, sums)
        for name, sk in other.sketches.items():
            mine = self.sketches.get(name)
            if mine is None:
                self.sketches[name] = sk.copy()
            else:
                mine += sk
        cap = self.category_cap
        for name, cats in other.categories.items():
            counter = self.categories.setdefault(name, Counter())
            counter.update(cats)
            if cap is not None and len(counter) > cap:
                # truncate(merge(parts)) == truncate(whole)
                fold_counter(counter, cap, self.protected.get(name, NOTHING))
        return self

    def __isub__(self, other: BucketSummary) -> BucketSummary:
        for name, vec in other.counts.items():
            self._add(name, -vec)
        for name, sums in other.sums.items():
            self._add_sums(name, sums, -1)
        for name, sk in other.sketches.items():
            if name not in self.sketches:
                if sk.is_empty:
                    continue
                raise ValueError(f"cannot subtract sketch {name!r} that was never added")
            self.sketches[name] -= sk
        for name, cats in other.categories.items():
            counter = self.categories.setdefault(name, Counter())
            counter.subtract(cats)
            for key in [k for k, v in counter.items() if v == 0]:
                del counter[key]
        return self

    def __add__(self, other: BucketSummary) -> BucketSummary:
        out = self.copy()
        out += other
        return out

    def __sub__(self, other: BucketSummary) -> BucketSummary:
        out = self.copy()
        out -= other
        return out

    def copy(self) -> BucketSummary:
        return BucketSummary(
            counts={k: v.copy() for k, v in self.counts.items()},
            sketches={k: s.copy() for k, s in self.sketches.items()},
            categories={k: Counter(c) for k, c in self.categories.items()},
            sums={k: list(v) for k, v in self.sums.items()},
            category_cap=self.category_cap,
            protected=self.protected,
        )

    def capped(self, cap: int | None, protected: Mapping[str, frozenset[str]] | None = None) -> BucketSummary:
        """This summary with every categorical feature cut to ``cap`` values (self if none is over),
        ``protected`` (default: this summary's) values kept.

        Counts, sketches and sums are shared, not copied: the result is for reading.

        >>> s = BucketSummary(category_cap=None)
        >>> s.add_categorical_feature("c", ["a", "b", "c"])
        >>> s.capped(5) is s, sum(s.capped(2).categories["c"].values())
        (True, 3)
        """
        if cap is None or all(len(c) <= cap for c in self.categories.values()):
            return self
        keep = self.protected if protected is None else protected
        cats = {}
        for name, c in self.categories.items():
            c = Counter(c)
            fold_counter(c, cap, keep.get(name, NOTHING))
            cats[name] = c
        return BucketSummary(
            counts=self.counts,
            sketches=self.sketches,
            categories=cats,
            sums=self.sums,
            category_cap=cap,
            protected=keep,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BucketSummary):
            return NotImplemented
        names = set(self.counts) | set(other.counts)
        for name in names:
            a, b = self.counts.get(name), other.counts.get(name)
            if a is None or b is None:
                if (a if a is not None else b).any():  # type: ignore[union-attr]
                    return False
            elif not np.array_equal(a, b):
                return False
        for name in set(self.sketches) | set(other.sketches):
            a_sk, b_sk = self.sketches.get(name), other.sketches.get(name)
            if a_sk is None or b_sk is None:
                if not (a_sk or b_sk).is_empty:  # type: ignore[union-attr]
                    return False
            elif a_sk != b_sk:
                return False
        for name in set(self.categories) | set(other.categories):
            a_c = +self.categories.get(name, Counter())
            b_c = +other.categories.get(name, Counter())
            if a_c != b_c:
                return False
        for name in set(self.sums) | set(other.sums):
            a_x, b_x = self.sums.get(name), other.sums.get(name)
            if a_x is None or b_x is None:
                if any(a_x or b_x or ()):  # absent equals all zeros, as for counts
                    return False
            elif a_x != b_x:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ wire format

    def to_bytes(self) -> bytes:
        """Compact, versioned encoding: sparse count vectors, sketches, category counts, exact sums."""
        counts = {}
        for name, vec in self.counts.items():
            nz = np.flatnonzero(vec)
            counts[name] = [len(vec), nz.tolist(), vec[nz].tolist()]
        doc = {
            "c": counts,
            "s": {name: sk.to_bytes().hex() for name, sk in self.sketches.items() if not sk.is_empty},
            "k": {name: dict(c) for name, c in self.categories.items() if c},
        }
        if self.sums:  # an optional key: summaries without sums encode (and decode) as before
            doc["x"] = {
                name: [len(v), [i for i, u in enumerate(v) if u], [_sum_text(u) for u in v if u]]
                for name, v in self.sums.items()
            }
        return bytes([FORMAT_VERSION]) + orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, data: bytes) -> BucketSummary:
        if not data or data[0] != FORMAT_VERSION:
            raise ValueError(f"unsupported summary format {data[:1]!r}; expected version {FORMAT_VERSION}")
        doc = orjson.loads(data[1:])
        out = cls()
        for name, (size, idx, vals) in doc["c"].items():
            vec = np.zeros(size, dtype=np.int64)
            vec[np.asarray(idx, dtype=np.int64)] = vals
            out.counts[name] = vec
        out.sketches = {name: LogSketch.from_bytes(bytes.fromhex(h)) for name, h in doc["s"].items()}
        out.categories = {name: Counter(c) for name, c in doc["k"].items()}
        for name, (size, idx, texts) in doc.get("x", {}).items():
            v = [0] * size
            for i, t in zip(idx, texts, strict=True):
                v[i] = _sum_from_text(t)
            out.sums[name] = v
        return out


def _sum_text(units: int) -> str:
    """A non-zero exact sum as hex digits of its odd part and ``p`` + its power of two: a sum of
    floats in units of 2**-1074 ends in hundreds of zero bits.

    >>> _sum_text(0x1a << 1000), _sum_text(-3), _sum_from_text(_sum_text(-(5 << 7))) == -(5 << 7)
    ('dp1001', '-3', True)
    """
    shift = (units & -units).bit_length() - 1
    odd = units >> shift
    return f"{odd:x}p{shift}" if shift else f"{odd:x}"


def _sum_from_text(text: str) -> int:
    odd, _, shift = text.partition("p")
    return int(odd, 16) << int(shift or 0)


def merge_all(parts: Iterable[BucketSummary]) -> BucketSummary:
    """Sum of summaries (a new object; the parts are not modified)."""
    out = BucketSummary()
    for part in parts:
        out += part
    return out


def category_counts(counter: Mapping[str, int], categories: list[str]) -> np.ndarray:
    """Counts over ``categories`` + [unseen] + [missing], the fixed bins of a categorical feature.

    >>> category_counts({"a": 3, "z": 2, MISSING: 1}, ["a", "b"]).tolist()
    [3, 0, 2, 1]
    """
    known = set(categories)
    out = np.zeros(len(categories) + 2, dtype=np.int64)
    for i, cat in enumerate(categories):
        out[i] = counter.get(cat, 0)
    out[-2] = sum(n for v, n in counter.items() if v not in known and v != MISSING)
    out[-1] = counter.get(MISSING, 0)
    return out
