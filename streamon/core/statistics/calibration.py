"""Calibration of a binary model: Brier score, log loss, expected calibration error, reliability curve.

The per-prediction terms (:func:`brier_terms`, :func:`log_loss_terms`) are float64 values
computed the same way on every worker; their sums, and the sums of the scores per
calibration bin, are kept exactly (:mod:`streamon.core.state.exact`), so the statistics
below are the same however the labelled predictions were split between workers.

The statistics are pure functions of that state: per calibration bin ``b`` (equal-width
bins on [0, 1], ``b = floor(B * score)``, 1.0 in the last bin) the labelled predictions
``n[b]``, the positives among them ``pos[b]`` and the exact sum of their scores ``s[b]``
(units of ``2**-1074``); and the exact sums of the Brier and log-loss terms. A batch's sums
(:func:`batch_sums`) are :func:`streamon.core.state.exact.totals_by_bin`.

An undefined value (nothing labelled, an empty bin) is ``float('nan')``, as everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamon.core.state.exact import ULP_SHIFT, totals_by_bin

# scikit-learn's log_loss clips probabilities to [eps, 1 - eps], eps of the input's dtype.
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)


def brier_terms(scores: npt.NDArray[np.float64], label: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """``(score - label) ** 2`` of each labelled prediction (exactly rounded IEEE operations).

    >>> brier_terms(np.array([0.25, 0.5]), np.array([0, 1])).tolist()
    [0.0625, 0.25]
    """
    d = scores - label
    out: npt.NDArray[np.float64] = d * d
    return out


def log_loss_terms(scores: npt.NDArray[np.float64], label: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """``-ln(p)`` of each labelled prediction, ``p`` the score of its true class clipped as
    scikit-learn's ``log_loss`` does (``p = score`` if labelled 1, else ``1 - score``).

    ``math.log`` (the C library's) rather than ``np.log``: numpy picks a SIMD implementation
    by CPU (with AVX-512 its last bit differs from the C library's for ~0.35% of values),
    and every worker must compute the same term for the same prediction, so that a
    corrected label retracts exactly the term that was added.

    >>> log_loss_terms(np.array([0.9, 0.9, 1.0]), np.array([1, 0, 1])).round(6).tolist()
    [0.105361, 2.302585, 0.0]
    """
    return clipped_log_losses(np.where(label == 1, scores, 1.0 - scores))


def clipped_log_losses(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``-ln(clip(p, eps, 1 - eps))`` of each probability given to the true class: the
    log-loss term of binary and multiclass models alike (``math.log``: see :func:`log_loss_terms`).

    >>> clipped_log_losses(np.array([1.0, 0.5])).round(6).tolist()
    [0.0, 0.693147]
    """
    p = np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    logs = np.fromiter(map(math.log, p.tolist()), dtype=np.float64, count=len(p))
    return -logs


_VECTOR_MIN = 128  # below this many values one per-value pass (exact.units) is faster


def batch_sums(
    scores: npt.NDArray[np.float64], label: npt.NDArray[np.int64], bins: npt.NDArray[np.int64], n_bins: int
) -> tuple[list[int], int, int]:
    """The exact sums a batch of labelled predictions adds: the scores per calibration bin
    (``bins[i]`` is the bin of prediction ``i``), the Brier terms, the log-loss terms.

    >>> from streamon.core.state.exact import to_float
    >>> per_bin, brier, log_loss = batch_sums(np.array([0.25, 0.75]), np.array([0, 1]), np.array([0, 1]), 2)
    >>> [to_float(u) for u in per_bin], to_float(brier)
    ([0.25, 0.75], 0.125)
    """
    n = len(scores)
    brier, log_loss = brier_terms(scores, label), log_loss_terms(scores, label)
    if n < _VECTOR_MIN:  # one per-value pass: its fixed cost dominates small batches
        values = np.concatenate((scores, brier, log_loss))
        where = np.concatenate((bins, np.full(n, n_bins), np.full(n, n_bins + 1)))
        sums = totals_by_bin(values, where, n_bins + 2)
        return sums[:n_bins], sums[n_bins], sums[n_bins + 1]
    # Apart: the exponents of each kind of value are few, so are the groups of each sum.
    one_bin = np.zeros(n, dtype=np.int64)
    (brier_sum,) = totals_by_bin(brier, one_bin, 1)
    (log_loss_sum,) = totals_by_bin(log_loss, one_bin, 1)
    return totals_by_bin(scores, bins, n_bins), brier_sum, log_loss_sum


def exact_mean(units_total: int, n: int) -> float:
    """``units_total * 2**-1074 / n`` rounded once to the nearest float (NaN when ``n`` is 0).

    >>> from streamon.core.state.exact import total
    >>> exact_mean(total([0.1, 0.2, 0.3]), 3), exact_mean(0, 0)
    (0.2, nan)
    """
    if n <= 0:
        return math.nan
    return units_total / (n << ULP_SHIFT)  # int / int: correctly rounded


def expected_calibration_error(
    labelled: Sequence[int], positives: Sequence[int], score_sums: Sequence[int]
) -> float:
    """ECE = ``sum_b n[b]/N * |pos[b]/n[b] - mean score[b]|`` = ``sum_b |pos[b] - s[b]| / N``.

    The second form is a ratio of integers (``s[b]`` in units of ``2**-1074``), so the
    value is the exact ECE rounded once.

    >>> from streamon.core.state.exact import total
    >>> # bin 0: scores 0.1, 0.3, one positive; bin 1: score 0.8, negative
    >>> expected_calibration_error([2, 1], [1, 0], [total([0.1, 0.3]), total([0.8])])  # (0.6 + 0.8) / 3
    0.4666666666666667
    """
    n = sum(int(v) for v in labelled)
    if n <= 0:
        return math.nan
    gap = sum(abs((int(p) << ULP_SHIFT) - s) for p, s in zip(positives, score_sums, strict=True))
    return gap / (n << ULP_SHIFT)


def reliability_curve(
    labelled: Sequence[int], positives: Sequence[int], score_sums: Sequence[int]
) -> tuple[list[float], list[float]]:
    """(observed positive rate, mean score) of each calibration bin; NaN for an empty bin.

    >>> from streamon.core.state.exact import total
    >>> reliability_curve([2, 0], [1, 0], [total([0.1, 0.3]), 0])
    ([0.5, nan], [0.2, nan])
    """
    observed = [int(p) / int(n) if n else math.nan for n, p in zip(labelled, positives, strict=True)]
    mean = [exact_mean(s, int(n)) for n, s in zip(labelled, score_sums, strict=True)]
    return observed, mean


@dataclass(frozen=True)
class Calibration:
    """The calibration statistics of one window."""

    brier: float
    log_loss: float
    ece: float
    observed_rate: list[float]  # per calibration bin
    mean_score: list[float]  # per calibration bin

    @classmethod
    def undefined(cls, bins: int) -> Calibration:
        """Every value NaN (too few labels), with ``bins`` reliability points."""
        return cls(math.nan, math.nan, math.nan, [math.nan] * bins, [math.nan] * bins)


def calibration(
    labelled: Sequence[int],
    positives: Sequence[int],
    score_sums: Sequence[int],
    brier_sum: int,
    log_loss_sum: int,
) -> Calibration:
    """All calibration statistics from the per-bin counts and the exact sums.

    >>> from streamon.core.state.exact import total
    >>> scores, labels = np.array([0.1, 0.3, 0.8]), np.array([1, 0, 0])
    >>> c = calibration([2, 1], [1, 0], [total([0.1, 0.3]), total([0.8])],
    ...                 total(brier_terms(scores, labels)), total(log_loss_terms(scores, labels)))
    >>> round(c.brier, 6), round(c.log_loss, 6), c.observed_rate, c.mean_score
    (0.513333, 1.422899, [0.5, 0.0], [0.2, 0.8])
    """
    n = sum(int(v) for v in labelled)
    observed, mean = reliability_curve(labelled, positives, score_sums)
    return Calibration(
        brier=exact_mean(brier_sum, n),
        log_loss=exact_mean(log_loss_sum, n),
        ece=expected_calibration_error(labelled, positives, score_sums),
        observed_rate=observed,
        mean_score=mean,
    )
