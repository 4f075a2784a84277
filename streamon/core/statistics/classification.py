"""Model performance from mergeable summaries (design.md §3 "Performance").

Inputs are confusion counts at the configured threshold and, for the
threshold-free metrics, per-class score histograms: ``pos[i]`` / ``neg[i]`` count the
labelled positives / negatives whose score falls in bin ``i`` of an ascending grid of
bins on [0, 1], lowest first: the fixed fine grid of the service
(:data:`streamon.core.state.summary.AUC_EDGES`) or ``B`` equal-width bins (bin ``i``
covers ``[i/B, (i+1)/B)``, the last bin includes 1.0). Only the order of the bins
matters, not their edges.

A score's position inside its bin is unknown, so scores in the same bin are ties and
the operating points are the thresholds at bin boundaries: "flag the top ``j`` bins".
An undefined metric (a zero denominator, e.g. precision with nothing flagged, AUC
without negatives) is ``float('nan')``, never 0: a NaN never fires an alert, while a
made-up 0 would be a misleading value that could.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import special

from streamon.core.statistics.business import BusinessCosts, business_metrics

DEFAULT_BINS = 200
FloatArray = npt.NDArray[np.float64]


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def threshold_metrics(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """Accuracy, precision, recall, specificity and F1 from confusion counts.

    F1 is ``2TP / (2TP + FP + FN)``, equal to the harmonic mean of precision and recall
    and still defined when one of them is not.

    >>> m = threshold_metrics(tp=8, fp=2, tn=85, fn=5)
    >>> m["accuracy"], m["precision"], round(m["recall"], 4), m["f1"] == 16 / 23
    (0.93, 0.8, 0.6154, True)
    >>> threshold_metrics(0, 0, 10, 0)["precision"]
    nan
    """
    return {
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _histograms(
    pos: npt.ArrayLike, neg: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Validate the two histograms and return them as float arrays, top bin first."""
    p = np.asarray(pos, dtype=np.float64)
    n = np.asarray(neg, dtype=np.float64)
    if p.ndim != 1 or p.shape != n.shape or p.size == 0:
        raise ValueError(f"pos and neg must be equal-length non-empty 1-D arrays, got {p.shape}, {n.shape}")
    if (p < 0).any() or (n < 0).any():
        raise ValueError("histogram counts must be >= 0")
    # Descending order: operating point j flags the first j entries.
    return p[::-1], n[::-1]


def auc_roc(pos: npt.ArrayLike, neg: npt.ArrayLike) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative).

    Mann-Whitney with ties: a positive and a negative in the same bin count half.
    NaN without positives or without negatives.

    >>> auc_roc([0, 1, 3], [2, 1, 0])  # (1*2 + 0.5*1 + 3*3) / (4*3)
    0.9583333333333334
    >>> auc_roc([0, 5], [0, 0])
    nan
    """
    p, n = _histograms(pos, neg)
    n_pos, n_neg = p.sum(), n.sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # Top-first order: negatives strictly below bin i are all those after it.
    neg_below = n_neg - np.cumsum(n)
    wins = float(p @ neg_below) + 0.5 * float(p @ n)
    return wins / float(n_pos * n_neg)


def auc_pr(pos: npt.ArrayLike, neg: npt.ArrayLike, ties: str = "bin") -> float:
    """Area under the precision-recall curve as average precision.

    ``ties="bin"``: ``sum_j (R_j - R_{j-1}) * P_j`` over thresholds at bin boundaries,
    descending: scikit-learn's ``average_precision_score`` applied to the binned scores
    (each bin one group of tied scores, no interpolation between points).

    ``ties="spread"``: each inner bin contributes the expected precisions of its positives
    under a uniformly random order of the bin's items (the AP analogue of "ties count
    half", see :func:`_spread_precision_sums`); the first and last bins stay tie groups,
    since they hold the scores outside the grid, typically exactly 0 and 1, which
    scikit-learn ties too. With a fine grid this tracks ``average_precision_score`` on the
    raw scores, where the step rule's bias is first order in the bin width.

    NaN without positives.

    >>> auc_pr([0, 1, 3], [2, 1, 0])  # 3/4 * 3/3 + 1/4 * 4/5
    0.95
    >>> auc_pr([0, 1, 0], [0, 1, 0], ties="spread")  # precision 1 or 1/2, as likely
    0.75
    >>> auc_pr([0, 1, 0], [0, 1, 0])  # the step rule: the tie group's precision
    0.5
    """
    if ties not in ("bin", "spread"):
        raise ValueError(f"ties must be 'bin' or 'spread', got {ties!r}")
    p, n = _histograms(pos, neg)
    n_pos = p.sum()
    if n_pos == 0:
        return math.nan
    tp, fp = np.cumsum(p), np.cumsum(n)
    flagged = tp + fp
    # Where a bin has no positives the recall step is 0, so its precision does not matter.
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    sums = p * precision  # per bin: its positives' precisions summed, step rule
    if ties == "spread" and p.size > 2:
        inner = slice(1, p.size - 1)
        sums[inner] = _spread_precision_sums(p[inner], n[inner], (tp - p)[inner], (flagged - p - n)[inner])
    return float(sums.sum()) / float(n_pos)


def _spread_precision_sums(a: FloatArray, b: FloatArray, tp0: FloatArray, n0: FloatArray) -> FloatArray:
    """Per bin with ``a`` positives and ``b`` negatives, below ``n0`` flagged items of which
    ``tp0`` are positive: the expected sum of its positives' precisions when the bin's
    ``c = a + b`` items come in a uniformly random order.

    The item at position ``m`` of the bin is positive with probability ``a / c``, and then
    the other ``m - 1`` before it hold ``(m - 1)(a - 1)/(c - 1)`` positives on average, so
    by linearity the expectation is exactly
    ``sum_m (a / c) * (tp0 + 1 + (m - 1)(a - 1)/(c - 1)) / (n0 + m)``, in closed form
    ``beta * c + (alpha - beta * n0) * (digamma(n0 + c + 1) - digamma(n0 + 1))`` with
    ``beta = a (a - 1) / (c (c - 1))`` and ``alpha = a (tp0 + 1) / c - beta``.

    >>> one = lambda *v: [np.array([x]) for x in v]
    >>> _spread_precision_sums(*one(2.0, 0.0, 0.0, 0.0)).tolist()  # two positives on top
    [2.0]
    >>> _spread_precision_sums(*one(1.0, 1.0, 0.0, 0.0)).tolist()  # precision 1 or 1/2
    [0.75]
    """
    c = a + b
    safe_c = np.maximum(c, 1.0)
    beta = np.where(c > 1, a * (a - 1.0) / (safe_c * np.maximum(c - 1.0, 1.0)), 0.0)
    alpha = a * (tp0 + 1.0) / safe_c - beta
    harmonic = special.digamma(n0 + c + 1.0) - special.digamma(n0 + 1.0)  # sum of 1/(n0 + m)
    return np.where(a > 0, beta * c + (alpha - beta * n0) * harmonic, 0.0)


def precision_at_fpr(pos: npt.ArrayLike, neg: npt.ArrayLike, fpr: float = 0.01) -> float:
    """Precision at the operating point with the largest recall whose FPR is <= ``fpr``.

    Operating points are the thresholds at bin boundaries; among points with the same
    recall the one with the fewest false positives is taken. There is no interpolation
    inside a bin: that would need an assumption about how scores spread within it,
    whereas a boundary point is a threshold that really exists and never exceeds the
    FPR budget. NaN when there are no positives or negatives, or when even the top
    non-empty bin goes over the budget (nothing flagged: precision is undefined).

    >>> pos, neg = [0, 0, 2, 8], [90, 8, 1, 1]
    >>> precision_at_fpr(pos, neg, 0.01)  # top bin only: FPR 1/100, precision 8/9
    0.8888888888888888
    >>> precision_at_fpr(pos, neg, 0.02)  # top two bins: FPR 2/100, precision 10/12
    0.8333333333333334
    """
    if not 0 <= fpr <= 1:
        raise ValueError(f"fpr must be in [0, 1], got {fpr!r}")
    p, n = _histograms(pos, neg)
    n_pos, n_neg = p.sum(), n.sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # Point j flags the top j bins (j = 0 flags nothing); both counts grow with j.
    tp = np.concatenate(([0.0], np.cumsum(p)))
    fp = np.concatenate(([0.0], np.cumsum(n)))
    within = np.flatnonzero(fp / n_neg <= fpr)  # a prefix, since fp is non-decreasing
    best_tp = tp[within[-1]]
    j = int(np.argmax(tp >= best_tp))  # first point reaching that recall: fewest FPs
    return _ratio(float(tp[j]), float(tp[j] + fp[j]))


def top_k_lift(pos: npt.ArrayLike, neg: npt.ArrayLike, k: float = 0.01) -> tuple[float, float]:
    """``(lift, detection_rate)`` among the top ``k`` fraction of scores.

    ``detection_rate`` = share of all positives that are in the top ``k`` (recall there);
    ``lift`` = precision in the top ``k`` / base rate (= ``detection_rate / k``). The bin
    that straddles the cut contributes the needed fraction of its items with its own
    positive share (a uniform mix, the expected value under random tie-breaking). NaN
    for both without positives.

    >>> lift, rate = top_k_lift([0, 2, 8], [80, 9, 1], k=0.1)  # top 10 of 100 items
    >>> round(lift, 6), round(rate, 6)  # 8 + 1 * 2/11 positives of 10 in the top
    (8.181818, 0.818182)
    """
    if not 0 < k <= 1:
        raise ValueError(f"k must be in (0, 1], got {k!r}")
    p, n = _histograms(pos, neg)
    total = p + n
    n_items, n_pos = float(total.sum()), float(p.sum())
    if n_pos == 0:
        return math.nan, math.nan
    wanted = k * n_items
    cum_total, cum_pos = np.cumsum(total), np.cumsum(p)
    # The straddling bin is the first whose cumulative count reaches the cut.
    j = min(int(np.searchsorted(cum_total, wanted, side="left")), total.size - 1)
    before = cum_total[j] - total[j]
    fraction = (wanted - before) / total[j]
    top_pos = float(cum_pos[j] - p[j] + fraction * p[j])
    detection_rate = top_pos / n_pos
    lift = (top_pos / wanted) / (n_pos / n_items)
    return lift, detection_rate


def expected_value(tp: int, fp: int, tn: int, fn: int, costs: BusinessCosts) -> float:
    """Net benefit per labelled prediction (``ml_fraud_expected_value``).

    ``business_metrics(...)["net_benefit"] / (TP + FP + TN + FN)``: what one more
    scored transaction is worth on average, before the operating cost. NaN without
    labelled predictions.

    >>> costs = BusinessCosts(10, 500, 5, 500, 1, 3000)
    >>> expected_value(tp=8, fp=20, tn=970, fn=2, costs=costs)  # 3630 / 1000
    3.63
    """
    net = business_metrics(tp, fp, tn, fn, costs, window_seconds=0)["net_benefit"]
    return _ratio(net, tp + fp + tn + fn)
