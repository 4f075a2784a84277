"""Multiclass performance, drift and value from mergeable integer state (design.md §6).

A multiclass model declares its classes ``c_0 ... c_{K-1}``; every count here is over
those declared classes by their 0-based index, in declared order. The mergeable inputs
are integer vectors and exact sums (:mod:`streamon.core.state.exact`), counted per batch
by the ``*_counts`` / ``*_units`` helpers below and added element-wise across batches,
buckets and workers (a corrected label is subtracted the same way), so 1 and 3 workers
read identical values:

- confusion: ``K*K`` counts of labelled predictions, row = actual, column = predicted
  (flat index ``actual * K + predicted``);
- top-k hits: per configured ``k``, the labelled predictions whose actual class ranks
  among the ``k`` highest scores;
- log loss: the exact sum of ``-ln(clip(p_actual, eps, 1 - eps))`` over labelled
  predictions;
- one-vs-rest histograms: per class ``c``, the equal-width histogram (``B`` bins, as the
  binary score histograms) of ``P(c)`` over labelled predictions whose actual class is
  ``c`` (``pos``) and is not ``c`` (``neg``), flat ``K*B``;
- predicted-class mix: ``K + 1`` counts, one per declared class plus unseen;
- for the estimate before labels (:func:`streamon.core.statistics.estimate.estimate_multiclass`):
  per class ``c``, the histogram of ``P(c)`` over ALL predictions (``scores``) and over
  those whose predicted class is ``c`` (``own``); ``own`` over the labelled ones
  (``own_labelled``) and over the labelled ones that are right (``own_correct``), flat
  ``K*B`` as the one-vs-rest histograms. ``scores - (pos + neg)`` and ``own -
  own_labelled`` are the unlabelled predictions.

An undefined metric (a zero denominator) is ``float('nan')``, never 0, as in
:mod:`streamon.core.statistics.classification`. The event checks at the end are pure and
never raise on bad input: they return a :class:`ScoreProblem` that says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streamon.core.state.exact import ULP_SHIFT, total, units
from streamon.core.state.summary import score_bin
from streamon.core.statistics.calibration import LOG_LOSS_EPS, clipped_log_losses
from streamon.core.statistics.classification import auc_roc
from streamon.core.statistics.drift import DEFAULT_FLOOR, psi

__all__ = [
    "AVERAGES",
    "DEFAULT_TOP_K",
    "LOG_LOSS_EPS",
    "SCORES_NOT_NORMALISED",
    "SCORE_OUT_OF_RANGE",
    "SUM_TOLERANCE",
    "UNKNOWN_CLASS",
    "WRONG_TYPE",
    "ClassReport",
    "ScoreProblem",
    "accuracy",
    "business_value",
    "check_class",
    "check_scores",
    "class_index",
    "class_mix",
    "class_report",
    "confusion_counts",
    "log_loss",
    "log_loss_units",
    "ovr_auc",
    "ovr_histograms",
    "own_histograms",
    "predicted_class_psi",
    "predicted_counts",
    "predicted_from_scores",
    "top_k_accuracy",
    "top_k_counts",
]

DEFAULT_TOP_K: tuple[int, ...] = (2,)
AVERAGES = ("macro", "weighted", "micro")
SUM_TOLERANCE = 1e-6  # design.md §6: scores sum to 1 within this

# Rejection reasons of the event checks.
UNKNOWN_CLASS = "unknown_class"
WRONG_TYPE = "wrong_type"
SCORE_OUT_OF_RANGE = "score_out_of_range"
SCORES_NOT_NORMALISED = "scores_not_normalised"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _exact_mean(units_total: int, n: int) -> float:
    """``units_total * 2**-1074 / n`` rounded once (int / int true division is correctly rounded)."""
    return units_total / (n << ULP_SHIFT) if n else math.nan


# ---------------------------------------------------------------------- counting a batch


def class_index(classes: Sequence[str]) -> dict[str, int]:
    """Class name -> index in declared order; at least two distinct names.

    >>> class_index(["cat", "dog", "bird"])
    {'cat': 0, 'dog': 1, 'bird': 2}
    """
    index = {name: i for i, name in enumerate(classes)}
    if len(index) != len(classes) or len(index) < 2:
        raise ValueError(f"classes must be at least two distinct names, got {list(classes)!r}")
    return index


def _labels(actual: npt.ArrayLike, n_classes: int) -> IntArray:
    a = np.asarray(actual, dtype=np.int64)
    if a.ndim != 1 or (a.size and (a.min() < 0 or a.max() >= n_classes)):
        raise ValueError(f"class indices must be a 1-D array of values in [0, {n_classes})")
    return a


def _scores(scores: npt.ArrayLike, n_rows: int) -> FloatArray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != n_rows or s.shape[1] < 2:
        raise ValueError(f"scores must be an (n, K >= 2) matrix with n = {n_rows}, got shape {s.shape}")
    return s


def predicted_from_scores(scores: npt.ArrayLike) -> IntArray:
    """The default ``predicted``: argmax of each row, ties to the first declared class.

    >>> predicted_from_scores([[0.2, 0.5, 0.3], [0.4, 0.2, 0.4]]).tolist()
    [1, 0]
    """
    s = np.asarray(scores, dtype=np.float64)
    return np.argmax(s, axis=1).astype(np.int64)  # np.argmax returns the first maximum


def confusion_counts(actual: npt.ArrayLike, predicted: npt.ArrayLike, n_classes: int) -> IntArray:
    """The flat ``K*K`` confusion counts of a batch: cell ``actual * K + predicted``.

    >>> confusion_counts([0, 0, 1, 2], [0, 1, 1, 1], 3).reshape(3, 3).tolist()
    [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    """
    a = _labels(actual, n_classes)
    p = _labels(predicted, n_classes)
    if a.shape != p.shape:
        raise ValueError(f"actual and predicted differ in length: {a.size} and {p.size}")
    return np.bincount(a * n_classes + p, minlength=n_classes * n_classes).astype(np.int64)


def _true_rank(scores: FloatArray, actual: IntArray) -> IntArray:
    """0-based rank of the actual class by descending score, ties to the earlier class."""
    n, k = scores.shape
    own = scores[np.arange(n), actual][:, None]
    earlier = np.arange(k)[None, :] < actual[:, None]
    ahead = (scores > own) | ((scores == own) & earlier)
    return ahead.sum(axis=1).astype(np.int64)


def top_k_counts(scores: npt.ArrayLike, actual: npt.ArrayLike, ks: Sequence[int] = DEFAULT_TOP_K) -> IntArray:
    """Per ``k`` in ``ks``, how many rows have their actual class among the ``k`` highest scores.

    Classes are ranked by descending score, equal scores in declared order (the rule of
    the default ``predicted``, so ``k = 1`` is the accuracy of argmax predictions).

    >>> top_k_counts([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6], [0.4, 0.2, 0.4]], [1, 0, 2], ks=(1, 2))
    array([0, 2])
    """
    a = np.asarray(actual, dtype=np.int64)
    s = _scores(scores, a.size)
    a = _labels(a, s.shape[1])
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {tuple(ks)!r}")
    rank = _true_rank(s, a)
    return np.array([np.count_nonzero(rank < k) for k in ks], dtype=np.int64)


def log_loss_units(scores: npt.ArrayLike, actual: npt.ArrayLike) -> int:
    """Exact sum (units of ``2**-1074``) of ``-ln(clip(p_actual, eps, 1 - eps))`` over the rows.

    ``eps`` is :data:`LOG_LOSS_EPS`, scikit-learn's clipping, so the mean is its ``log_loss``.

    >>> from streamon.core.state.exact import to_float
    >>> to_float(log_loss_units([[0.5, 0.5], [0.0, 1.0]], [0, 0])) == -math.log(0.5) - math.log(LOG_LOSS_EPS)
    True
    """
    a = np.asarray(actual, dtype=np.int64)
    s = _scores(scores, a.size)
    a = _labels(a, s.shape[1])
    return total(clipped_log_losses(s[np.arange(a.size), a]))


def ovr_histograms(scores: npt.ArrayLike, actual: npt.ArrayLike, n_bins: int) -> tuple[IntArray, IntArray]:
    """One-vs-rest score histograms of a batch: ``(pos, neg)``, each flat ``K * n_bins``.

    Row ``c`` (``[c * B:(c + 1) * B]``) bins ``P(c)`` with the binary score bins
    (:func:`streamon.core.state.summary.score_bin`): ``pos`` over rows whose actual class
    is ``c``, ``neg`` over the others.

    >>> pos, neg = ovr_histograms([[0.9, 0.1], [0.3, 0.7]], [0, 1], n_bins=2)
    >>> pos.reshape(2, 2).tolist(), neg.reshape(2, 2).tolist()
    ([[0, 1], [0, 1]], [[1, 0], [1, 0]])
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    a = np.asarray(actual, dtype=np.int64)
    s = _scores(scores, a.size)
    k = s.shape[1]
    a = _labels(a, k)
    cell = np.arange(k, dtype=np.int64)[None, :] * n_bins + score_bin(s, n_bins)
    is_own = a[:, None] == np.arange(k)[None, :]
    size = k * n_bins
    pos = np.bincount(cell[is_own], minlength=size).astype(np.int64)
    neg = np.bincount(cell[~is_own], minlength=size).astype(np.int64)
    return pos, neg


def predicted_counts(predicted: npt.ArrayLike, n_classes: int) -> IntArray:
    """``K + 1`` counts of a batch's predicted classes (the last, unseen, stays 0 here).

    >>> predicted_counts([0, 2, 2], 3).tolist()
    [1, 0, 2, 0]
    """
    p = _labels(predicted, n_classes)
    return np.bincount(p, minlength=n_classes + 1).astype(np.int64)


def class_mix(counts_by_class: Mapping[str, int], classes: Sequence[str]) -> IntArray:
    """Counts by class name as the ``K + 1`` bins: declared classes in order, then unseen.

    A reference profile built before the classes changed can hold a class no longer
    declared: it counts as unseen.

    >>> class_mix({"b": 3, "a": 1, "old": 2}, ["a", "b", "c"]).tolist()
    [1, 3, 0, 2]
    """
    out = np.zeros(len(classes) + 1, dtype=np.int64)
    index = {name: i for i, name in enumerate(classes)}
    for name, count in counts_by_class.items():
        out[index.get(name, len(classes))] += count
    return out


def own_histograms(scores: npt.ArrayLike, predicted: npt.ArrayLike, n_bins: int) -> tuple[IntArray, IntArray]:
    """``(own, every)`` histograms of a batch, each flat ``K * n_bins`` like :func:`ovr_histograms`.

    Row ``c`` of ``every`` bins ``P(c)`` of every row; row ``c`` of ``own`` bins ``P(c)`` of
    the rows whose predicted class is ``c`` (so ``every - own`` is ``P(c)`` of the rows
    predicted another class).

    >>> own, every = own_histograms([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], [0, 1, 1], n_bins=2)
    >>> own.reshape(2, 2).tolist(), every.reshape(2, 2).tolist()
    ([[0, 1], [1, 1]], [[1, 2], [2, 1]])
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    p = np.asarray(predicted, dtype=np.int64)
    s = _scores(scores, p.size)
    k = s.shape[1]
    p = _labels(p, k)
    bins = score_bin(s, n_bins)
    size = k * n_bins
    every = np.bincount((np.arange(k, dtype=np.int64)[None, :] * n_bins + bins).ravel(), minlength=size)
    own = np.bincount(p * n_bins + bins[np.arange(p.size), p], minlength=size)
    return own.astype(np.int64), every.astype(np.int64)


# ---------------------------------------------------------------------- statistics of state


def _confusion(confusion: npt.ArrayLike, n_classes: int) -> IntArray:
    c = np.asarray(confusion, dtype=np.int64)
    if c.size != n_classes * n_classes or (c < 0).any():
        raise ValueError(f"confusion must hold {n_classes}*{n_classes} counts >= 0, got {c.size}")
    return c.reshape(n_classes, n_classes)


def accuracy(confusion: npt.ArrayLike, n_classes: int) -> float:
    """Share of labelled predictions whose predicted class is the actual one (NaN without any).

    >>> accuracy([5, 1, 2, 4], 2)
    0.75
    """
    c = _confusion(confusion, n_classes)
    return _ratio(int(np.trace(c)), int(c.sum()))


@dataclass(frozen=True)
class ClassReport:
    """Per-class precision, recall, F1 and support, and their averages (:func:`class_report`).

    ``averages[average][metric]``, ``average`` in :data:`AVERAGES`, ``metric`` in
    ``precision``, ``recall``, ``f1``.
    """

    accuracy: float
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    support: tuple[int, ...]
    averages: Mapping[str, Mapping[str, float]]


def _macro(values: FloatArray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else math.nan


def _weighted(values: FloatArray, support: IntArray) -> float:
    defined = ~np.isnan(values)
    weight = int(support[defined].sum())
    if not weight:
        return math.nan
    # Integer weights and one float division, as np.average does.
    return float((values[defined] * support[defined]).sum() / weight)


def class_report(confusion: npt.ArrayLike, n_classes: int) -> ClassReport:
    """Accuracy, per-class precision/recall/F1/support and their macro/weighted/micro averages.

    Per class ``c``: precision ``TP/(TP+FP)``, recall ``TP/(TP+FN)``, F1
    ``2TP/(2TP+FP+FN)``, each NaN where its denominator is 0 (a class never predicted
    has no precision; one never actual no recall; F1 is NaN only when the class is
    neither). Averages skip the NaN classes: ``macro`` is the mean over classes where
    the metric is defined, ``weighted`` the mean weighted by actual-class support over
    the same classes (NaN if they have no support), ``micro`` = accuracy. This is
    scikit-learn's ``precision_recall_fscore_support(labels=classes, zero_division=nan)``
    (its default ``zero_division`` would read the undefined values as 0).

    >>> r = class_report([3, 1, 0,  0, 2, 0,  1, 0, 0], 3)  # rows actual, columns predicted
    >>> r.precision, r.recall, r.support
    ((0.75, 0.6666666666666666, nan), (0.75, 1.0, 0.0), (4, 2, 1))
    >>> r.averages["macro"]["recall"], r.averages["micro"]["f1"] == r.accuracy == 5 / 7
    (0.5833333333333334, True)
    """
    c = _confusion(confusion, n_classes)
    tp = np.diag(c).astype(np.float64)
    actual = c.sum(axis=1)
    predicted = c.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, math.nan)
        recall = np.where(actual > 0, tp / actual, math.nan)
        f1_den = actual + predicted  # = 2TP + FP + FN
        f1 = np.where(f1_den > 0, 2 * tp / f1_den, math.nan)
    acc = _ratio(float(tp.sum()), int(actual.sum()))
    metrics = {"precision": precision, "recall": recall, "f1": f1}
    averages = {
        "macro": {name: _macro(v) for name, v in metrics.items()},
        "weighted": {name: _weighted(v, actual) for name, v in metrics.items()},
        # Every labelled prediction is in one declared class, so micro P = R = F1 = accuracy.
        "micro": dict.fromkeys(metrics, acc),
    }
    return ClassReport(
        accuracy=acc,
        precision=tuple(float(x) for x in precision),
        recall=tuple(float(x) for x in recall),
        f1=tuple(float(x) for x in f1),
        support=tuple(int(x) for x in actual),
        averages=averages,
    )


def top_k_accuracy(hits: npt.ArrayLike, n_labelled: int) -> tuple[float, ...]:
    """Each top-k hit count (:func:`top_k_counts`) over the labelled predictions.

    >>> top_k_accuracy([6, 9], 10)
    (0.6, 0.9)
    """
    return tuple(_ratio(int(h), n_labelled) for h in np.asarray(hits, dtype=np.int64))


def log_loss(loss_units: int, n_labelled: int) -> float:
    """Mean log loss from :func:`log_loss_units` summed over the labelled predictions.

    >>> log_loss(log_loss_units([[0.5, 0.5], [0.25, 0.75]], [0, 1]), 2) == (math.log(2) - math.log(0.75)) / 2
    True
    """
    return _exact_mean(loss_units, n_labelled)


def ovr_auc(pos: npt.ArrayLike, neg: npt.ArrayLike, n_classes: int) -> tuple[tuple[float, ...], float]:
    """``(per-class AUC, macro AUC)``, one-vs-rest, from :func:`ovr_histograms`.

    Class ``c``'s AUC is :func:`streamon.core.statistics.classification.auc_roc` of its
    row (ties within a bin count half); NaN for a class without positives or without
    negatives. The macro AUC is the mean over the classes where it is defined (NaN if
    none is).

    >>> ovr_auc([0, 2, 0, 1], [1, 0, 1, 1], 2)  # class 1: (1 * 1 + 0.5 * 1) / 2
    ((1.0, 0.75), 0.875)
    """
    p = np.asarray(pos, dtype=np.int64)
    n = np.asarray(neg, dtype=np.int64)
    if p.shape != n.shape or p.size % n_classes or p.size == 0:
        raise ValueError(f"pos and neg must be equal flat K*B arrays with K = {n_classes}")
    p, n = p.reshape(n_classes, -1), n.reshape(n_classes, -1)
    per_class = tuple(auc_roc(p[c], n[c]) for c in range(n_classes))
    return per_class, _macro(np.array(per_class))


def predicted_class_psi(
    reference: npt.ArrayLike, current: npt.ArrayLike, floor: float = DEFAULT_FLOOR
) -> float:
    """PSI of the predicted-class mix (:func:`class_mix` / :func:`predicted_counts` bins).

    :func:`streamon.core.statistics.drift.psi` over the ``K + 1`` bins; NaN if a side is empty.

    >>> round(predicted_class_psi([50, 50, 0], [75, 25, 0]), 6)
    0.274653
    """
    return psi(reference, current, floor)


def business_value(confusion: npt.ArrayLike, values: npt.ArrayLike) -> tuple[float, float]:
    """``(total, per labelled prediction)`` of ``values[actual][predicted]`` (a ``K x K`` matrix).

    The products are exact (integer counts times exactly represented values) and summed
    exactly, then rounded once; per prediction is NaN without labelled predictions.

    >>> business_value([8, 2, 1, 9], [[10.0, -5.0], [-20.0, 3.0]])  # 80 - 10 - 20 + 27
    (77.0, 3.85)
    """
    v = np.asarray(values, dtype=np.float64)
    k = v.shape[0]
    if v.shape != (k, k):
        raise ValueError(f"values must be a square K x K matrix, got shape {v.shape}")
    c = _confusion(confusion, k).ravel().tolist()
    total_units = sum(n * u for n, u in zip(c, units(v), strict=True))
    n = sum(c)
    return total_units / (1 << ULP_SHIFT), _exact_mean(total_units, n)


# ---------------------------------------------------------------------- event checks


@dataclass(frozen=True, slots=True)
class ScoreProblem:
    """Why a multiclass field is rejected: ``reason`` (a short label), ``detail``, ``field``."""

    reason: str
    detail: str
    field: str = ""


def check_class(name: Any, index: Mapping[str, int], field: str = "label") -> int | ScoreProblem:
    """Index of a declared class name (``predicted`` or a label), or why it is rejected.

    >>> index = class_index(["cat", "dog"])
    >>> check_class("dog", index), check_class("cow", index).reason, check_class(1, index).reason
    (1, 'unknown_class', 'wrong_type')
    """
    if not isinstance(name, str):
        return ScoreProblem(
            WRONG_TYPE, f"{field} must be a class name (string), got {type(name).__name__}", field
        )
    i = index.get(name)
    if i is None:
        return ScoreProblem(UNKNOWN_CLASS, f"{field} {name!r} is not a declared class", field)
    return i


def check_scores(
    scores: Any, index: Mapping[str, int], field: str = "scores", tolerance: float = SUM_TOLERANCE
) -> list[float] | ScoreProblem:
    """The probabilities of a ``scores`` object in declared class order, or why it is rejected.

    Every key must be a declared class (else ``unknown_class``); every value a number
    (not a boolean; else ``wrong_type``), finite and in [0, 1] (else
    ``score_out_of_range``); together they must sum to 1 within ``tolerance`` (else
    ``scores_not_normalised``). A declared class absent from the object has probability 0.

    >>> index = class_index(["cat", "dog", "bird"])
    >>> check_scores({"dog": 0.75, "cat": 0.25}, index)
    [0.25, 0.75, 0.0]
    >>> check_scores({"cat": 0.5, "cow": 0.5}, index).reason
    'unknown_class'
    >>> check_scores({"cat": 0.5, "dog": 0.4}, index).reason
    'scores_not_normalised'
    """
    if not isinstance(scores, Mapping):
        return ScoreProblem(WRONG_TYPE, f"{field} must be an object of class name -> probability", field)
    probs = [0.0] * len(index)
    for name, value in scores.items():
        i = index.get(name) if isinstance(name, str) else None
        if i is None:
            return ScoreProblem(
                UNKNOWN_CLASS, f"{field} has {name!r}, not a declared class", f"{field}.{name}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            return ScoreProblem(WRONG_TYPE, f"{field}.{name} must be a number", f"{field}.{name}")
        # A huge int does not convert to float; it is out of range anyway.
        p = float(value) if isinstance(value, float) or 0 <= value <= 1 else math.inf
        if not 0.0 <= p <= 1.0:  # also rejects NaN
            return ScoreProblem(
                SCORE_OUT_OF_RANGE, f"{field}.{name} = {p!r} is not in [0, 1]", f"{field}.{name}"
            )
        probs[i] = p
    s = math.fsum(probs)
    if not abs(s - 1.0) <= tolerance:
        return ScoreProblem(
            SCORES_NOT_NORMALISED, f"{field} sum to {s!r}, not 1 (within {tolerance:g})", field
        )
    return probs


# ---------------------------------------------------------------------- in a BucketSummary
# A multiclass model's state lives in the generic containers of a BucketSummary (integer
# count vectors and exact sums), so it merges, subtracts and travels exactly like a binary
# model's. K = number of declared classes, in their declared order.
CONFUSION_KEY = "multiclass:confusion"  # counts: K*K labelled (rows actual), retractable
CONFUSION_ADDED = "multiclass:confusion_added"  # counts: K*K counted up only (ml_model_confusion_total)
TOP_K_KEY = "multiclass:top_k"  # counts: per configured k, labelled rows with the class in the top k
PREDICTED_KEY = "multiclass:predicted"  # counts: K+1 predicted classes of ALL predictions (drift)
OVR_POS = "multiclass:ovr_pos"  # counts: K*OVR_BINS, P(c) of rows labelled c, per class c
OVR_NEG = "multiclass:ovr_neg"  # counts: K*OVR_BINS, P(c) of rows labelled another class
LOSS_KEY = "multiclass:log_loss"  # sums: [sum of -ln p(actual)] over labelled rows
# The estimate before labels: what of P(c) the unlabelled predictions have (all - labelled).
SCORES_KEY = "multiclass:scores"  # counts: K*OVR_BINS, P(c) of ALL rows, per class c
OWN_KEY = "multiclass:own"  # counts: K*OVR_BINS, P(c) of ALL rows predicted c
OWN_LABELLED = "multiclass:own_labelled"  # counts: K*OVR_BINS, P(c) of labelled rows predicted c
OWN_CORRECT = "multiclass:own_correct"  # counts: K*OVR_BINS, of them the rows actually c
OVR_BINS = 200  # equal-width bins of each class's probability (one-vs-rest AUC, estimate)


def add_predictions(
    summary: Any, scores: npt.ArrayLike, predicted: npt.ArrayLike, n_classes: int, histograms: bool = True
) -> None:
    """Count a batch of a multiclass model's predictions (``scores``: rows of K probabilities
    in declared order; ``predicted``: class indices) into ``summary``. ``histograms`` False
    (a segment's summary) leaves out the K x 200 score histograms of the estimate.

    >>> from streamon.core.state.summary import BucketSummary
    >>> s = BucketSummary()
    >>> add_predictions(s, [[0.7, 0.3], [0.2, 0.8]], [0, 1], 2)
    >>> s.n_predictions, s.counts[PREDICTED_KEY].tolist()
    (2, [1, 1, 0])
    """
    p = np.asarray(predicted, dtype=np.int64)
    summary._add("predictions", np.array([p.size, 0], dtype=np.int64))
    summary._add(PREDICTED_KEY, predicted_counts(p, n_classes))
    if not histograms:
        return
    own, every = own_histograms(scores, p, OVR_BINS)
    summary._add(SCORES_KEY, every)
    summary._add(OWN_KEY, own)


def add_labelled(
    summary: Any,
    scores: npt.ArrayLike,
    predicted: npt.ArrayLike,
    actual: npt.ArrayLike,
    n_classes: int,
    ks: Sequence[int] = DEFAULT_TOP_K,
    sign: int = 1,
    histograms: bool = True,
) -> None:
    """Count labelled predictions of a multiclass model into ``summary`` (``sign=-1``
    retracts a corrected label: the very same integers are subtracted). ``histograms``
    False (a segment's summary: a window per segment value holding K x 200 bins four
    times over would cost more than the rest of the state) keeps the confusion, top-k
    hits and log loss alone.

    >>> from streamon.core.state.summary import BucketSummary
    >>> whole, a, b = BucketSummary(), BucketSummary(), BucketSummary()
    >>> rows, pred, act = [[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], [0, 1, 0], [0, 1, 1]
    >>> add_labelled(whole, rows, pred, act, 2)
    >>> add_labelled(a, rows[:1], pred[:1], act[:1], 2); add_labelled(b, rows[1:], pred[1:], act[1:], 2)
    >>> a += b; a == whole, whole.counts[CONFUSION_KEY].tolist()
    (True, [1, 0, 1, 1])
    """
    p = np.asarray(predicted, dtype=np.int64)
    a = np.asarray(actual, dtype=np.int64)
    cells = confusion_counts(a, p, n_classes)
    summary._add(CONFUSION_KEY, sign * cells)
    if sign > 0:
        summary._add(CONFUSION_ADDED, cells)
    summary._add(TOP_K_KEY, sign * top_k_counts(scores, a, ks))
    loss = [log_loss_units(scores, a)]
    if not histograms:
        summary._add_sums(LOSS_KEY, loss, sign)
        return
    pos, neg = ovr_histograms(scores, a, OVR_BINS)
    summary._add(OVR_POS, sign * pos)
    summary._add(OVR_NEG, sign * neg)
    summary._add_sums(LOSS_KEY, loss, sign)
    s = _scores(scores, p.size)
    own, _ = own_histograms(s, p, OVR_BINS)
    summary._add(OWN_LABELLED, sign * own)
    right = p == a
    summary._add(OWN_CORRECT, sign * own_histograms(s[right], p[right], OVR_BINS)[0])


@dataclass(frozen=True)
class MulticlassState:
    """What a summary holds of a multiclass model, read for the statistics."""

    confusion: IntArray  # K*K
    confusion_added: IntArray  # K*K
    top_k: IntArray  # per k
    predicted: IntArray  # K+1
    ovr_pos: IntArray  # K*OVR_BINS
    ovr_neg: IntArray  # K*OVR_BINS
    log_loss_units: int
    scores: IntArray  # K*OVR_BINS, all predictions
    own: IntArray  # K*OVR_BINS, all predictions, predicted class = the row's class
    own_labelled: IntArray  # K*OVR_BINS, the labelled ones of ``own``
    own_correct: IntArray  # K*OVR_BINS, the labelled ones of ``own`` actually of the row's class
    n_predictions: int

    @property
    def n_labelled(self) -> int:
        return int(self.confusion.sum())


def state_of(summary: Any, n_classes: int, ks: Sequence[int] = DEFAULT_TOP_K) -> MulticlassState:
    """The multiclass state a summary holds (zeros where it holds none)."""
    k2, kb = n_classes * n_classes, n_classes * OVR_BINS
    return MulticlassState(
        summary.vector(CONFUSION_KEY, k2),
        summary.vector(CONFUSION_ADDED, k2),
        summary.vector(TOP_K_KEY, len(ks)),
        summary.vector(PREDICTED_KEY, n_classes + 1),
        summary.vector(OVR_POS, kb),
        summary.vector(OVR_NEG, kb),
        summary.sums.get(LOSS_KEY, [0])[0],
        summary.vector(SCORES_KEY, kb),
        summary.vector(OWN_KEY, kb),
        summary.vector(OWN_LABELLED, kb),
        summary.vector(OWN_CORRECT, kb),
        summary.n_predictions,
    )
