"""Estimated performance of the predictions whose labels have not arrived yet.

Fraud labels arrive days to weeks after the prediction, so the label-based metrics of
the current window describe its few early labels. This module estimates what those
metrics will be once every label is in, from three mergeable inputs:

- the **calibration map**: per score bin, the labelled positives and labelled total of
  the REFERENCE window (a pinned profile's labels or the rolling reference window), with
  a Beta prior whose mean is the bin's score midpoint ("scores are calibrated until the
  labels say otherwise") and whose strength is a pseudo-count. The current window's own
  labels are deliberately NOT part of the map: they are the early labels, typically
  biased (fast chargebacks, analyst verdicts on flagged cases), and they are the data the
  calibration check below tests the map on, which it could not do if it had learnt them;
- the current window's **unlabelled score histogram**: ``scores - scores_pos -
  scores_neg``, split into predicted positives and negatives by filling the
  unlabelled predicted-positive count (``n_predicted_positive - TP - FP``) from the top
  score bin down. With the default rule (``predicted = score >= threshold``) this is the
  exact split of every bin, the threshold bin included; when events carry their own
  ``predicted`` it assumes the flagged ones are the highest-scored;
- the current window's **labelled counts**, which enter as they are.

Estimated confusion = realised counts of the labelled part + expected counts of the
unlabelled part (its positives in bin ``i`` have mean ``u_i * p_i``, ``p_i`` the map's
posterior mean); accuracy, precision, recall, F1, AUC-ROC (from the estimated per-class
histograms) and the expected value per prediction follow from it.

The band is a prediction interval for the metric once all labels are known. Per bin
the unlabelled positives are Beta-binomial (Bernoulli noise of the outcomes plus the
map's posterior uncertainty); the metrics depend on them through three sums: positives
among the unlabelled predicted positives, among the unlabelled predicted negatives and
the AUC's first-order (delta-method) term. Their exact means and covariance are
computed, a fixed-seed sample of a normal with those moments (:data:`DRAWS` draws) is
pushed through the metric formulas, and the band is its quantiles. Same integer counts
in, same numbers out: one worker and three export identical values.

Below ``min_labelled`` labelled reference predictions the map is a guess and the
estimates are NaN (unless nothing is unlabelled: then the estimate is the realised
value). :func:`calibration_check` tests the map against the current window's labelled
part, so a drifted calibration is reported rather than silently wrong.

A multiclass model (:func:`estimate_multiclass`) gets the same construction per class:
two maps per class ``c`` over the bins of ``P(c)`` (predicted ``c`` or not, from the
reference's labels, :class:`ClassMaps`), the current window's unlabelled predictions
from the histograms of :mod:`streamon.core.statistics.multiclass`, expected per-class
TP and FN, and bands for accuracy and precision; :func:`multiclass_calibration_check`
tests the maps.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from streamon.core.state.summary import (
    FN,
    FP,
    NEGATIVE_SCORES,
    POSITIVE_SCORES,
    SCORES,
    TN,
    TP,
    BucketSummary,
)
from streamon.core.statistics import classification, multiclass
from streamon.core.statistics.business import BusinessCosts, business_metrics

DRAWS = 2000  # normal draws behind each band: quantile error well below the band's width
SEED = 20_260_101  # fixed: the band depends on the counts only
CHECK_GROUPS = 10  # at most this many score groups in the calibration chi-square
MIN_GROUP_VARIANCE = 5.0  # ~ "expected count >= 5" per group for the chi-square approximation
ECE_GROUPS = 10  # equal-width score groups of the expected calibration error
METRICS = ("accuracy", "precision", "recall", "f1", "auc_roc", "expected_value")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CalibrationMap:
    """P(label = 1 | score bin) learnt from labelled traffic, with a Beta prior per bin.

    The data are two integer vectors, so maps merge by adding them. The prior of bin
    ``i`` is ``Beta(k * m_i, k * (1 - m_i))`` with ``m_i`` the bin's midpoint and ``k``
    the ``prior_strength`` pseudo-count.

    >>> cmap = CalibrationMap(np.array([0, 3]), np.array([10, 4]), prior_strength=10.0)
    >>> cmap.mean.round(4).tolist()  # (10*0.25 + 0) / 20, (10*0.75 + 3) / 14
    [0.125, 0.75]
    >>> (cmap + cmap).labelled.tolist()
    [20, 8]
    """

    positives: npt.NDArray[np.int64]
    labelled: npt.NDArray[np.int64]
    prior_strength: float = 10.0

    def __post_init__(self) -> None:
        if self.positives.shape != self.labelled.shape or self.positives.ndim != 1:
            raise ValueError("positives and labelled must be equal-length 1-D count vectors")
        if not (math.isfinite(self.prior_strength) and self.prior_strength > 0):
            raise ValueError(f"prior_strength must be a finite number > 0, got {self.prior_strength!r}")

    @classmethod
    def from_summary(cls, summary: BucketSummary, score_bins: int, prior_strength: float) -> CalibrationMap:
        """The map of a summary's labelled predictions (``scores_pos`` and ``scores_pos + scores_neg``)."""
        pos = summary.vector(POSITIVE_SCORES, score_bins)
        neg = summary.vector(NEGATIVE_SCORES, score_bins)
        return cls(pos.copy(), pos + neg, prior_strength)

    def __add__(self, other: CalibrationMap) -> CalibrationMap:
        if other.prior_strength != self.prior_strength:
            raise ValueError("cannot merge calibration maps with different prior strengths")
        return CalibrationMap(
            self.positives + other.positives, self.labelled + other.labelled, self.prior_strength
        )

    @property
    def n_labelled(self) -> int:
        return int(self.labelled.sum())

    @property
    def alpha(self) -> FloatArray:
        """Posterior Beta parameter a of each bin."""
        bins = self.labelled.size
        midpoints = (np.arange(bins) + 0.5) / bins
        return self.prior_strength * midpoints + self.positives

    @property
    def beta(self) -> FloatArray:
        """Posterior Beta parameter b of each bin."""
        return self.prior_strength + self.labelled - self.alpha

    @property
    def mean(self) -> FloatArray:
        """Posterior mean of P(label = 1) per bin."""
        return self.alpha / (self.prior_strength + self.labelled)


@dataclass(frozen=True)
class Estimate:
    """Estimated metrics of a window: ``values[name] = (estimate, lower, upper)``.

    ``expected`` holds the expected TP, FP, TN, FN of the unlabelled part and
    ``confusion`` the estimated confusion of the whole window (realised + expected).
    """

    values: dict[str, tuple[float, float, float]]
    expected: FloatArray
    confusion: FloatArray
    n_unlabelled: int


@dataclass(frozen=True)
class CalibrationCheck:
    """How well the map predicts the current window's labelled part.

    ``calibration_error``: expected calibration error over equal-width score groups;
    ``p_value``: chi-square test of observed vs predicted positives (NaN when untestable).
    """

    calibration_error: float
    p_value: float
    statistic: float
    dof: int


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    out = np.full(np.broadcast(num, den).shape, math.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def unlabelled_split(current: BucketSummary, score_bins: int) -> tuple[FloatArray, FloatArray]:
    """Unlabelled predictions per score bin, split into (predicted positive, predicted negative).

    The unlabelled predicted-positive count fills the bins from the top score down.

    >>> s = BucketSummary()
    >>> s.add_predictions(np.array([0.1, 0.4, 0.6, 0.9]), np.array([0, 0, 1, 1]), score_bins=2)
    >>> s.add_labels(np.array([1]), np.array([1]), np.array([0.9]), score_bins=2)
    >>> [v.tolist() for v in unlabelled_split(s, 2)]
    [[0.0, 1.0], [2.0, 0.0]]
    """
    scores = current.vector(SCORES, score_bins)
    labelled = current.vector(POSITIVE_SCORES, score_bins) + current.vector(NEGATIVE_SCORES, score_bins)
    u = np.maximum(scores - labelled, 0).astype(np.float64)
    c = current.confusion
    flagged = float(min(max(current.n_predicted_positive - int(c[TP]) - int(c[FP]), 0), u.sum()))
    above = np.cumsum(u[::-1])[::-1] - u  # unlabelled in higher bins
    pp = np.clip(flagged - above, 0.0, u)
    return pp, u - pp


def _unit_values(costs: BusinessCosts) -> FloatArray:
    """Net benefit of one TP, FP, TN and FN: the business formulas are linear in the counts."""
    out = np.zeros(4)
    for cell in (TP, FP, TN, FN):
        tp, fp, tn, fn = (int(cell == c) for c in (TP, FP, TN, FN))
        out[cell] = business_metrics(tp, fp, tn, fn, costs, window_seconds=0)["net_benefit"]
    return out


def _threshold_rows(conf: FloatArray) -> dict[str, FloatArray]:
    """classification.threshold_metrics over rows of [tp, fp, tn, fn]."""
    tp, fp, tn, fn = conf[:, TP], conf[:, FP], conf[:, TN], conf[:, FN]
    return {
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _auc_gradient(pos: FloatArray, neg: FloatArray, auc: float) -> FloatArray:
    """d AUC / d x_i where one unit of x_i moves a bin-i item from negatives to positives."""
    n_pos, n_neg = pos.sum(), neg.sum()
    neg_below = np.cumsum(neg) - neg
    pos_above = n_pos - np.cumsum(pos)
    d_wins = neg_below + 0.5 * neg - pos_above - 0.5 * pos
    pairs = n_pos * n_neg
    wins = auc * pairs
    return (d_wins * pairs - wins * (n_neg - n_pos)) / pairs**2


# The standard normal draws are constants: drawn once, the same in every process.
_NORMAL = np.random.default_rng(SEED).standard_normal((DRAWS, 3))
_NORMAL.flags.writeable = False


def _bands(draws: FloatArray, confidence: float) -> FloatArray:
    """Lower and upper quantile of each row of ``draws`` (NaN draws ignored; all NaN: NaN)."""
    levels = [(1 - confidence) / 2, (1 + confidence) / 2]
    if not np.isnan(draws).any():
        return np.quantile(draws, levels, axis=1).T
    out = np.full((draws.shape[0], 2), math.nan)
    for i, row in enumerate(draws):
        finite = row[~np.isnan(row)]
        if finite.size:
            out[i] = np.quantile(finite, levels)
    return out


def _realised(current: BucketSummary, score_bins: int, costs: BusinessCosts) -> dict[str, float]:
    c = current.confusion
    tp, fp, tn, fn = int(c[TP]), int(c[FP]), int(c[TN]), int(c[FN])
    out = {k: v for k, v in classification.threshold_metrics(tp, fp, tn, fn).items() if k in METRICS}
    pos, neg, _ = current.ranking_histograms(score_bins)  # as the realised AUC: equal when all labelled
    out["auc_roc"] = classification.auc_roc(pos, neg)
    out["expected_value"] = classification.expected_value(tp, fp, tn, fn, costs)
    return out


def estimate_performance(
    current: BucketSummary,
    cmap: CalibrationMap,
    score_bins: int,
    costs: BusinessCosts,
    confidence: float = 0.9,
    min_labelled: int = 0,
) -> Estimate:
    """Estimated accuracy, precision, recall, F1, AUC-ROC and expected value of ``current``.

    ``min_labelled``: fewest labelled predictions the map needs; below it every estimate
    of a window with unlabelled predictions is NaN.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    pp, pn = unlabelled_split(current, score_bins)
    u = pp + pn
    n_unlabelled = int(u.sum())
    realised = current.confusion.astype(np.float64)
    if n_unlabelled == 0:  # every label is in: the estimate is the realised value
        values = {k: (v, v, v) for k, v in _realised(current, score_bins, costs).items()}
        return Estimate(values, np.zeros(4), realised, 0)
    if cmap.n_labelled < max(min_labelled, 1):
        nan3 = (math.nan, math.nan, math.nan)
        return Estimate(
            dict.fromkeys(METRICS, nan3), np.full(4, math.nan), np.full(4, math.nan), n_unlabelled
        )

    m = cmap.mean
    strength = cmap.prior_strength + cmap.labelled
    var_p = m * (1 - m) / (strength + 1)  # posterior variance of p_i
    e_pq = m * (1 - m) - var_p  # E[p_i (1 - p_i)]
    flagged, unflagged = float(pp.sum()), float(pn.sum())
    expected = np.array([pp @ m, flagged - pp @ m, unflagged - pn @ m, pn @ m])
    confusion = realised + expected

    pos_l = current.vector(POSITIVE_SCORES, score_bins).astype(np.float64)
    neg_l = current.vector(NEGATIVE_SCORES, score_bins).astype(np.float64)
    x = u * m
    pos, neg = pos_l + x, neg_l + (u - x)
    auc = classification.auc_roc(pos, neg)
    grad = np.zeros(score_bins) if math.isnan(auc) else _auc_gradient(pos, neg, auc)

    # Linear functionals of the per-bin positives among flagged (X+) / unflagged (X-) unlabelled:
    # S1 = sum X+, S2 = sum X-, L = grad . (X+ + X-). Beta-binomial covariance, bins independent,
    # X+_i and X-_i sharing p_i.
    coef_pp = np.stack([np.ones(score_bins), np.zeros(score_bins), grad])
    coef_pn = np.stack([np.zeros(score_bins), np.ones(score_bins), grad])
    shared = coef_pp * pp + coef_pn * pn
    cov = (
        (coef_pp * (pp * e_pq)) @ coef_pp.T
        + (coef_pn * (pn * e_pq)) @ coef_pn.T
        + (shared * var_p) @ shared.T
    )
    w, q = np.linalg.eigh(cov)
    root = q * np.sqrt(np.clip(w, 0.0, None))
    z = _NORMAL @ root.T
    s1 = np.clip(expected[TP] + z[:, 0], 0.0, flagged)
    s2 = np.clip(expected[FN] + z[:, 1], 0.0, unflagged)

    rows = np.empty((DRAWS + 1, 4))
    rows[0] = confusion
    rows[1:, TP] = realised[TP] + s1
    rows[1:, FP] = realised[FP] + flagged - s1
    rows[1:, TN] = realised[TN] + unflagged - s2
    rows[1:, FN] = realised[FN] + s2
    metrics = _threshold_rows(rows)
    n_total = float(current.n_predictions)
    metrics["expected_value"] = _ratio(rows @ _unit_values(costs), np.full(DRAWS + 1, n_total))
    metrics["auc_roc"] = np.concatenate([[auc], np.clip(auc + z[:, 2], 0.0, 1.0)])

    table = np.stack([metrics[name] for name in METRICS])
    bands = _bands(table[:, 1:], confidence)
    values = {
        name: (float(table[i, 0]), float(bands[i, 0]), float(bands[i, 1])) for i, name in enumerate(METRICS)
    }
    return Estimate(values, expected, confusion, n_unlabelled)


def calibration_check(
    current: BucketSummary, cmap: CalibrationMap, score_bins: int, min_labelled: int = 0
) -> CalibrationCheck:
    """Test the map on the current window's labelled part (NaN below ``min_labelled`` of either).

    Observed positives per bin are compared with the map's Beta-binomial prediction
    (mean ``n_i p_i``, variance ``n_i p_i (1 - p_i) (a_i + b_i + n_i) / (a_i + b_i + 1)``, so
    the map's own uncertainty does not count as drift), pooled into consecutive score
    groups of equal variance (up to :data:`CHECK_GROUPS`, each of variance >= 5) and summed as
    a Hosmer-Lemeshow chi-square with one degree of freedom per group (the map was not
    fitted on these labels).
    """
    pos = current.vector(POSITIVE_SCORES, score_bins)
    n = pos + current.vector(NEGATIVE_SCORES, score_bins)
    return _check(pos, n, cmap, min_labelled)


def _check(
    positives: npt.NDArray[np.int64], labelled: npt.NDArray[np.int64], cmap: CalibrationMap, min_labelled: int
) -> CalibrationCheck:
    """:func:`calibration_check` of labelled counts per bin (``positives`` of ``labelled``)."""
    pos = positives.astype(np.float64)
    n = labelled.astype(np.float64)
    score_bins = n.size
    total = float(n.sum())
    if total == 0 or total < min_labelled or cmap.n_labelled < max(min_labelled, 1):
        return CalibrationCheck(math.nan, math.nan, math.nan, 0)
    m = cmap.mean
    expected = n * m
    strength = cmap.prior_strength + cmap.labelled
    var = n * m * (1 - m) * (strength + n) / (strength + 1)

    ece_group = np.arange(score_bins) * ECE_GROUPS // score_bins
    gap = np.bincount(ece_group, weights=pos - expected, minlength=ECE_GROUPS)
    ece = float(np.abs(gap).sum() / total)

    v_total = float(var.sum())
    groups = int(min(CHECK_GROUPS, max(1, v_total // MIN_GROUP_VARIANCE)))
    if v_total <= 0:
        return CalibrationCheck(ece, math.nan, math.nan, 0)
    centre = np.cumsum(var) - var / 2
    g = np.minimum((centre / (v_total / groups)).astype(np.int64), groups - 1)
    o_g = np.bincount(g, weights=pos, minlength=groups)
    e_g = np.bincount(g, weights=expected, minlength=groups)
    v_g = np.bincount(g, weights=var, minlength=groups)
    used = v_g > 0
    statistic = float((((o_g - e_g) ** 2)[used] / v_g[used]).sum())
    dof = int(used.sum())
    return CalibrationCheck(ece, float(special.chdtrc(dof, statistic)), statistic, dof)  # chi2 sf


# ---------------------------------------------------------------------- multiclass models

MULTICLASS_METRICS = ("precision", "recall", "f1")  # per class and macro; accuracy besides
BANDED = ("accuracy", "precision")  # the multiclass estimates with a lower/upper band


@dataclass(frozen=True)
class MulticlassEstimate:
    """Estimated metrics of a multiclass window, each ``(estimate, lower, upper)``.

    ``per_class[metric]`` has one triple per declared class, ``macro[metric]`` their mean
    over the classes where the metric is defined (as
    :func:`streamon.core.statistics.multiclass.class_report`); lower and upper are NaN
    for the metrics outside :data:`BANDED` (unless every label is in); ``expected_correct`` is
    the expected number of correct predictions among the ``n_unlabelled`` ones.
    """

    accuracy: tuple[float, float, float]
    per_class: dict[str, tuple[tuple[float, float, float], ...]]
    macro: dict[str, tuple[float, float, float]]
    expected_correct: float
    n_unlabelled: int


@dataclass(frozen=True)
class ClassMaps:
    """The two calibration maps of one class ``c``, over the bins of ``P(c)``.

    ``own``: P(actual = c | bin, predicted c), learnt from the labelled predictions of
    ``c`` (the maps behind accuracy and precision); ``other``: P(actual = c | bin,
    predicted another class). Splitting by the predicted class matters when the scores
    are not calibrated: whether ``c`` is the argmax says more about the actual class than
    ``P(c)`` alone.
    """

    own: CalibrationMap
    other: CalibrationMap


def class_maps(
    reference: multiclass.MulticlassState, n_classes: int, prior_strength: float
) -> list[ClassMaps]:
    """Per class, the :class:`ClassMaps` of the reference's labelled predictions, with the
    binary map's Beta prior (mean: the bin's midpoint).

    >>> from streamon.core.state.summary import BucketSummary
    >>> s = BucketSummary()
    >>> rows, pred, act = [[0.8, 0.2], [0.8, 0.2], [0.4, 0.6]], [0, 0, 1], [0, 1, 0]
    >>> multiclass.add_labelled(s, rows, pred, act, 2)
    >>> maps = class_maps(multiclass.state_of(s, 2), 2, prior_strength=10.0)
    >>> maps[0].own.positives[160], maps[0].own.labelled[160], maps[0].other.positives[80]
    (np.int64(1), np.int64(2), np.int64(1))
    """
    shape = (n_classes, -1)
    pos = reference.ovr_pos.reshape(shape)
    labelled = pos + reference.ovr_neg.reshape(shape)
    own_pos = reference.own_correct.reshape(shape)
    own_n = reference.own_labelled.reshape(shape)
    return [
        ClassMaps(
            CalibrationMap(own_pos[c].copy(), own_n[c].copy(), prior_strength),
            CalibrationMap(pos[c] - own_pos[c], labelled[c] - own_n[c], prior_strength),
        )
        for c in range(n_classes)
    ]


def unlabelled_own_other(
    current: multiclass.MulticlassState, n_classes: int
) -> tuple[FloatArray, FloatArray]:
    """Unlabelled predictions per class ``c`` and bin of ``P(c)``, split into (predicted ``c``,
    predicted another class), each ``(K, B)``.

    >>> from streamon.core.state.summary import BucketSummary
    >>> s = BucketSummary()
    >>> rows = [[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]]
    >>> multiclass.add_predictions(s, rows, [0, 1, 0], 2)
    >>> multiclass.add_labelled(s, rows[:1], [0], [0], 2)  # the first one is labelled
    >>> own, other = unlabelled_own_other(multiclass.state_of(s, 2), 2)
    >>> [own[c].nonzero()[0].tolist() for c in range(2)], [other[c].nonzero()[0].tolist() for c in range(2)]
    ([[120], [140]], [[60], [80]])
    """
    shape = (n_classes, -1)
    labelled = (current.ovr_pos + current.ovr_neg).reshape(shape)
    every = np.maximum(current.scores.reshape(shape) - labelled, 0)
    own = np.minimum(np.maximum(current.own.reshape(shape) - current.own_labelled.reshape(shape), 0), every)
    return own.astype(np.float64), (every - own).astype(np.float64)


@functools.cache
def _class_normals(n_classes: int) -> FloatArray:
    """Standard normal draws of the multiclass bands, ``(DRAWS, K)``: fixed per K, in every process."""
    z = np.random.default_rng([SEED, n_classes]).standard_normal((DRAWS, n_classes))
    z.flags.writeable = False
    return z


def _masked_mean(values: FloatArray) -> FloatArray:
    """Mean of each row over its defined (non-NaN) entries; NaN for a row with none."""
    defined = ~np.isnan(values)
    total = np.where(defined, values, 0.0).sum(axis=1)
    return _ratio(total, defined.sum(axis=1).astype(np.float64))


def _realised_multiclass(current: multiclass.MulticlassState, n_classes: int) -> MulticlassEstimate:
    report = multiclass.class_report(current.confusion, n_classes)

    def same(x: float) -> tuple[float, float, float]:
        return (x, x, x)

    per_class = {m: tuple(same(x) for x in getattr(report, m)) for m in MULTICLASS_METRICS}
    macro = {m: same(report.averages["macro"][m]) for m in MULTICLASS_METRICS}
    return MulticlassEstimate(same(report.accuracy), per_class, macro, 0.0, 0)


def estimate_multiclass(
    current: multiclass.MulticlassState,
    reference: multiclass.MulticlassState,
    n_classes: int,
    *,
    prior_strength: float = 10.0,
    confidence: float = 0.9,
    min_labelled: int = 0,
) -> MulticlassEstimate:
    """Estimated accuracy and per-class / macro precision, recall and F1 of ``current``.

    Per class ``c``, with the posterior means of the reference's maps of class ``c``
    (:func:`class_maps`) and the unlabelled predictions of :func:`unlabelled_own_other`:
    ``TP_c`` = labelled TP + ``X_c``, ``X_c`` the actual-``c`` ones among the unlabelled
    predicted ``c`` (mean ``sum_b own[c, b] m_own[b]``); ``FN_c`` = labelled FN + ``Y_c``,
    ``Y_c`` the actual-``c`` ones among the unlabelled predicted another class (mean
    ``sum_b other[c, b] m_other[b]``); ``FP_c`` = predicted ``c`` - ``TP_c``. Accuracy is
    ``sum_c TP_c`` over the predictions. The estimate plugs these expected counts into
    the formulas of :func:`~streamon.core.statistics.multiclass.class_report`.

    Bands (accuracy and precision only, see :data:`BANDED`): each ``X_c`` is a
    Beta-binomial sum as the binary ``S1`` (Bernoulli outcomes plus the map's posterior
    uncertainty), and the ``X_c`` of different classes count disjoint predictions under
    different maps, so they are independent; :data:`DRAWS` fixed-seed normal draws with
    those moments go through the formulas and the band is their quantiles. Recall and F1
    also need ``Y_c``, whose outcomes are coupled across classes (one prediction is
    actual in exactly one class) by its joint score vector, which the state does not
    keep: their lower and upper are NaN rather than a band that would be too narrow.

    ``min_labelled``: fewest labelled reference predictions the maps need; below it every
    estimate of a window with unlabelled predictions is NaN.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    own, other = unlabelled_own_other(current, n_classes)
    n_unlabelled = int(own.sum())
    if n_unlabelled == 0:  # every label is in: the estimate is the realised value
        return _realised_multiclass(current, n_classes)
    nan3 = (math.nan, math.nan, math.nan)
    # The maps' labelled predictions (a profile built before the maps existed has none).
    if int(reference.own_labelled.sum()) < max(min_labelled, 1):
        per_class = {m: (nan3,) * n_classes for m in MULTICLASS_METRICS}
        return MulticlassEstimate(
            nan3, per_class, dict.fromkeys(MULTICLASS_METRICS, nan3), math.nan, n_unlabelled
        )

    maps = class_maps(reference, n_classes, prior_strength)
    m = np.stack([cm.own.mean for cm in maps])  # (K, B)
    strength = prior_strength + np.stack([cm.own.labelled for cm in maps])
    var_p = m * (1 - m) / (strength + 1)  # posterior variance of p
    e_pq = m * (1 - m) - var_p  # E[p (1 - p)]
    x_mean = (own * m).sum(axis=1)
    y_mean = (other * np.stack([cm.other.mean for cm in maps])).sum(axis=1)
    x_var = (own * e_pq + own**2 * var_p).sum(axis=1)  # Beta-binomial, bins independent
    x = np.empty((DRAWS + 1, n_classes))
    x[0] = x_mean
    x[1:] = np.clip(x_mean + _class_normals(n_classes) * np.sqrt(x_var), 0.0, own.sum(axis=1))

    conf = current.confusion.reshape(n_classes, n_classes).astype(np.float64)  # rows actual
    tp = np.diag(conf) + x  # (DRAWS + 1, K); row 0 the estimate
    predicted = conf.sum(axis=0) + own.sum(axis=1)
    actual = conf.sum(axis=1) + x_mean + y_mean
    accuracy = tp.sum(axis=1) / (float(conf.sum()) + n_unlabelled)
    precision = _ratio(tp, np.broadcast_to(predicted, tp.shape))
    recall = _ratio(tp[0], actual)
    f1 = _ratio(2 * tp[0], predicted + actual)  # 2TP / (2TP + FP + FN)

    rows = np.vstack([accuracy, _masked_mean(precision), precision.T])
    bands = _bands(rows[:, 1:], confidence)
    banded = [(float(rows[i, 0]), float(bands[i, 0]), float(bands[i, 1])) for i in range(len(rows))]

    def point(v: float) -> tuple[float, float, float]:
        return (float(v), math.nan, math.nan)

    per_class = {
        "precision": tuple(banded[2:]),
        "recall": tuple(point(v) for v in recall),
        "f1": tuple(point(v) for v in f1),
    }
    macro = {
        "precision": banded[1],
        "recall": point(_masked_mean(recall[None, :])[0]),
        "f1": point(_masked_mean(f1[None, :])[0]),
    }
    return MulticlassEstimate(banded[0], per_class, macro, float(x_mean.sum()), n_unlabelled)


def multiclass_calibration_check(
    current: multiclass.MulticlassState, maps: list[ClassMaps], min_labelled: int = 0
) -> CalibrationCheck:
    """The class maps tested on the current window's labelled part, map by map.

    Each class's ``own`` and ``other`` map is tested as the binary map
    (:func:`calibration_check`) on the current labelled predictions it applies to.
    ``calibration_error``: the mean over classes of each class's expected calibration
    error, its labelled predictions grouped by score group and by whether the class was
    predicted (sum of the maps' absolute gaps over ``K`` times the labelled predictions);
    ``p_value``: the smallest map p-value times the number of maps tested, capped at 1
    (Bonferroni: valid however the maps' outcomes depend on each other); ``statistic`` and
    ``dof``: of that map. NaN as the binary check (``min_labelled`` applies to each map's
    reference and to the current window's labelled predictions).
    """
    k = len(maps)
    shape = (k, -1)
    pos = current.ovr_pos.reshape(shape)
    labelled = pos + current.ovr_neg.reshape(shape)
    own_pos = current.own_correct.reshape(shape)
    own_n = current.own_labelled.reshape(shape)
    n = current.n_labelled
    if n == 0 or n < min_labelled:
        return CalibrationCheck(math.nan, math.nan, math.nan, 0)
    checks = []
    for c, cm in enumerate(maps):
        checks.append(_check(own_pos[c], own_n[c], cm.own, 0))
        checks.append(_check(pos[c] - own_pos[c], labelled[c] - own_n[c], cm.other, 0))
    if sum(cm.own.n_labelled for cm in maps) < max(min_labelled, 1):  # the maps' labelled predictions
        return CalibrationCheck(math.nan, math.nan, math.nan, 0)
    # A map with no current labels tests nothing (NaN error); its gap counts as 0.
    gaps = sum(
        ch.calibration_error * int(n_map.sum())
        for ch, n_map in zip(
            checks, [v for c in range(k) for v in (own_n[c], labelled[c] - own_n[c])], strict=True
        )
        if not math.isnan(ch.calibration_error)
    )
    error = gaps / (k * n)
    tested = [ch for ch in checks if not math.isnan(ch.p_value)]
    if not tested:
        return CalibrationCheck(error, math.nan, math.nan, 0)
    worst = min(tested, key=lambda ch: ch.p_value)
    return CalibrationCheck(error, min(1.0, worst.p_value * len(tested)), worst.statistic, worst.dof)


# Exported name of each estimated metric (labels: model, variant, window, bound).
METRIC_NAMES = {
    "accuracy": "ml_model_estimated_accuracy",
    "precision": "ml_model_estimated_precision",
    "recall": "ml_model_estimated_recall",
    "f1": "ml_model_estimated_f1_score",
    "auc_roc": "ml_model_estimated_auc_roc",
    "expected_value": "ml_fraud_estimated_expected_value",
}
BOUNDS = ("estimate", "lower", "upper")


def estimation_gauges(
    current: BucketSummary,
    reference: BucketSummary,
    score_bins: int,
    costs: BusinessCosts,
    *,
    prior_strength: float,
    confidence: float,
    min_labelled: int,
    reliable_p_value: float,
) -> list[tuple[str, float, dict[str, str]]]:
    """``(metric name, value, extra labels)`` of the estimated metrics and the calibration check."""
    cmap = CalibrationMap.from_summary(reference, score_bins, prior_strength)
    est = estimate_performance(current, cmap, score_bins, costs, confidence, min_labelled)
    out: list[tuple[str, float, dict[str, str]]] = []
    for key, name in METRIC_NAMES.items():
        for bound, value in zip(BOUNDS, est.values[key], strict=True):
            out.append((name, value, {"bound": bound}))
    check = calibration_check(current, cmap, score_bins, min_labelled)
    reliable = math.nan if math.isnan(check.p_value) else float(check.p_value >= reliable_p_value)
    out.append(("ml_model_estimation_calibration_error", check.calibration_error, {}))
    out.append(("streamon_estimation_calibration_p_value", check.p_value, {}))
    out.append(("streamon_estimation_reliable", reliable, {}))
    return out


def multiclass_estimation_gauges(
    current: multiclass.MulticlassState,
    reference: multiclass.MulticlassState,
    classes: tuple[str, ...],
    *,
    prior_strength: float,
    confidence: float,
    min_labelled: int,
    reliable_p_value: float,
) -> list[tuple[str, float, dict[str, str]]]:
    """:func:`estimation_gauges` of a multiclass model: estimated accuracy, per-class
    (``class``) and macro (``average="macro"``) precision, recall and F1 (``bound`` =
    estimate, lower, upper for :data:`BANDED`, only estimate for recall and F1), and the
    class-wise calibration check."""
    k = len(classes)
    est = estimate_multiclass(
        current,
        reference,
        k,
        prior_strength=prior_strength,
        confidence=confidence,
        min_labelled=min_labelled,
    )
    out: list[tuple[str, float, dict[str, str]]] = []
    for bound, value in zip(BOUNDS, est.accuracy, strict=True):
        out.append((METRIC_NAMES["accuracy"], value, {"bound": bound}))
    for metric in MULTICLASS_METRICS:
        name = METRIC_NAMES[metric]
        bounds = BOUNDS if metric in BANDED else BOUNDS[:1]  # no band: only bound="estimate"
        for c, triple in zip(classes, est.per_class[metric], strict=True):
            for bound, value in zip(bounds, triple, strict=False):
                out.append((name, value, {"class": c, "bound": bound}))
        for bound, value in zip(bounds, est.macro[metric], strict=False):
            out.append((name, value, {"average": "macro", "bound": bound}))
    check = multiclass_calibration_check(current, class_maps(reference, k, prior_strength), min_labelled)
    reliable = math.nan if math.isnan(check.p_value) else float(check.p_value >= reliable_p_value)
    out.append(("ml_model_estimation_calibration_error", check.calibration_error, {}))
    out.append(("streamon_estimation_calibration_p_value", check.p_value, {}))
    out.append(("streamon_estimation_reliable", reliable, {}))
    return out
