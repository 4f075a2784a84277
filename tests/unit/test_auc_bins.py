"""The fine score histograms of the threshold-free metrics (``AUC_EDGES``) against scikit-learn.

AUC-ROC and AUC-PR come from the ``auc_pos`` / ``auc_neg`` count vectors that
``BucketSummary.add_labels`` fills on a fixed grid; these tests hold them to
``roc_auc_score`` / ``average_precision_score`` on the raw scores, through the
production path (add_labels on parts, merge, ``performance_metrics``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from streamon.core.stages.evaluate import performance_metrics
from streamon.core.state.summary import (
    AUC_BINS,
    AUC_EDGES,
    AUC_NEGATIVE_SCORES,
    AUC_POSITIVE_SCORES,
    NEGATIVE_SCORES,
    POSITIVE_SCORES,
    BucketSummary,
    auc_bin,
    merge_all,
    score_bin,
)
from streamon.core.statistics.classification import (
    _spread_precision_sums,
    auc_pr,
    auc_roc,
    precision_at_fpr,
    top_k_lift,
)

SCORE_BINS = 200
TOP_K = 0.01
# Largest |error| allowed against sklearn on the raw scores (the aim of the grid);
# benchmarks/bench_auc_bins.py measures the margin (docs/benchmarks.md).
TOLERANCE = 1e-4
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _expit(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


def fraud_stream(kind: str, n: int, seed: int) -> tuple[FloatArray, IntArray]:
    """Labelled scores with 5% positives: AUC ~0.86 (logit / beta mixtures) or scores near 0."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(np.int64)
    if kind == "logit":
        s = _expit(np.where(y == 1, rng.normal(-0.9, 1.5, n), rng.normal(-3.0, 1.2, n)))
    elif kind == "beta":
        s = np.where(y == 1, rng.beta(2.0, 3.0, n), rng.beta(1.0, 6.0, n))
    else:  # "near-0"
        s = np.where(y == 1, rng.beta(1.0, 12.0, n), rng.beta(0.5, 20.0, n))
    return s, y


def summarise(scores: FloatArray, label: IntArray, parts: int = 1) -> BucketSummary:
    """The merge of ``parts`` summaries of consecutive slices, as stage 1 workers would make them."""
    out = []
    for idx in np.array_split(np.arange(len(scores)), parts):
        s = BucketSummary()
        predicted = (scores[idx] >= 0.5).astype(np.int64)
        s.add_predictions(scores[idx], predicted, SCORE_BINS)
        s.add_labels(label[idx], predicted, scores[idx], SCORE_BINS)
        out.append(s)
    return merge_all(out)


def metrics(summary: BucketSummary) -> dict[str, float]:
    return performance_metrics(summary, SCORE_BINS, TOP_K)


# ---------------------------------------------------------------------- the grid


def test_grid_is_fixed_ascending_and_inside_the_unit_interval() -> None:
    assert AUC_BINS == len(AUC_EDGES) + 1 == 1640
    assert bool(np.all(np.diff(AUC_EDGES) > 0))
    assert 0.0 < AUC_EDGES[0] < 2e-7 and 1.0 - 2e-7 < AUC_EDGES[-1] < 1.0
    # both component grids are in it: every 0.001 in score, every 0.05 in log-odds
    assert set(np.round(np.arange(1, 1000) * 0.001, 12)) <= set(np.round(AUC_EDGES, 12))
    logits = np.log(AUC_EDGES / (1.0 - AUC_EDGES))
    on_step = np.abs(logits / 0.05 - np.round(logits / 0.05)) < 1e-6
    assert int(on_step.sum()) >= 641


def test_bin_index_is_searchsorted_right_and_covers_0_and_1() -> None:
    rng = np.random.default_rng(0)
    s = np.concatenate(
        [rng.random(10_000), rng.beta(0.5, 50, 1000), AUC_EDGES, [0.0, 1.0, 5e-324, 1 - 2**-53]]
    )
    got = auc_bin(s)
    want = np.array([int(np.sum(v >= AUC_EDGES)) for v in s])  # a score on an edge goes up
    assert got.tolist() == want.tolist()
    assert got.min() >= 0 and got.max() <= AUC_BINS - 1
    assert auc_bin(np.array([0.0, 1.0])).tolist() == [0, AUC_BINS - 1]


# ---------------------------------------------------------------------- oracle vs sklearn


@pytest.mark.parametrize(
    ("kind", "n", "seed"),
    [
        *((kind, n, seed) for kind, n in (("logit", 10_000), ("logit", 100_000)) for seed in (0, 1, 2)),
        *((kind, 100_000, seed) for kind in ("beta", "near-0") for seed in (0, 1, 2)),
        ("logit", 1_000_000, 0),
    ],
)
def test_aucs_within_tolerance_of_sklearn_on_raw_scores(kind: str, n: int, seed: int) -> None:
    s, y = fraud_stream(kind, n, seed)
    m = metrics(summarise(s, y, parts=3))
    assert abs(m["auc_roc"] - roc_auc_score(y, s)) <= TOLERANCE
    assert abs(m["auc_pr"] - average_precision_score(y, s)) <= TOLERANCE


def test_old_200_bins_miss_the_tolerance_on_the_same_stream() -> None:
    """The tolerance means something: the 200 equal-width bins with the step rule fail it."""
    s, y = fraud_stream("logit", 100_000, 0)
    pos = np.bincount(score_bin(s[y == 1], SCORE_BINS), minlength=SCORE_BINS)
    neg = np.bincount(score_bin(s[y == 0], SCORE_BINS), minlength=SCORE_BINS)
    assert abs(auc_pr(pos, neg) - average_precision_score(y, s)) > 10 * TOLERANCE


def test_scores_of_exactly_0_and_1() -> None:
    s, y = fraud_stream("logit", 50_000, 3)
    s = np.where(s < 0.01, 0.0, np.where(s > 0.8, 1.0, s))  # real ties at both ends
    assert (s == 0).sum() > 100 and (s == 1).sum() > 100
    summary = summarise(s, y)
    pos, neg = summary.counts[AUC_POSITIVE_SCORES], summary.counts[AUC_NEGATIVE_SCORES]
    assert pos[0] + neg[0] == (s == 0).sum() and pos[-1] + neg[-1] == (s == 1).sum()
    m = metrics(summary)
    assert abs(m["auc_roc"] - roc_auc_score(y, s)) <= TOLERANCE
    assert abs(m["auc_pr"] - average_precision_score(y, s)) <= TOLERANCE


def test_only_0_and_1_is_exact() -> None:
    """Scores of only 0 and 1 are two tie groups in the end bins, as sklearn ties them."""
    rng = np.random.default_rng(4)
    y = (rng.random(5000) < 0.1).astype(np.int64)
    s = np.where(rng.random(5000) < np.where(y == 1, 0.7, 0.05), 1.0, 0.0)
    m = metrics(summarise(s, y))
    assert m["auc_roc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["auc_pr"] == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_auc_roc_is_exact_on_the_binned_scores() -> None:
    """Ties in a bin count half: sklearn's AUC of the bin indices, to rounding."""
    s, y = fraud_stream("beta", 20_000, 5)
    m = metrics(summarise(s, y))
    assert m["auc_roc"] == pytest.approx(roc_auc_score(y, auc_bin(s)), abs=1e-12)


# ---------------------------------------------------------------------- the spread rule of AP


def _brute_force_expected_precisions(a: int, b: int, tp0: int, n0: int) -> float:
    """Mean over every distinct order of a bin's items of its positives' precision sum."""
    total, orders = 0.0, 0
    for order in set(itertools.permutations([1] * a + [0] * b)):
        tp, acc = tp0, 0.0
        for m, y in enumerate(order, 1):
            tp += y
            acc += y * tp / (n0 + m)
        total, orders = total + acc, orders + 1
    return total / orders


@pytest.mark.parametrize(
    ("a", "b", "tp0", "n0"),
    [
        (1, 0, 0, 0),
        (1, 1, 0, 0),
        (2, 3, 0, 0),
        (3, 2, 1, 4),
        (1, 5, 2, 2),
        (4, 4, 7, 30),
        (0, 3, 1, 1),
        (5, 1, 0, 9),
    ],
)
def test_spread_rule_is_the_exact_expectation_over_orders(a: int, b: int, tp0: int, n0: int) -> None:
    got = _spread_precision_sums(*(np.array([float(v)]) for v in (a, b, tp0, n0)))[0]
    assert got == pytest.approx(_brute_force_expected_precisions(a, b, tp0, n0), abs=1e-12)


def test_spread_rule_equals_the_mean_ap_over_shuffled_orders() -> None:
    """End to end on a small histogram: the mean of sklearn's AP over every order of the
    inner bins' items (the outer bins are tie groups), against ``auc_pr(ties="spread")``."""
    pos, neg = np.array([1, 1, 0, 2, 1]), np.array([2, 1, 2, 1, 0])  # bins low to high
    inner = {i: [1] * int(pos[i]) + [0] * int(neg[i]) for i in (3, 2, 1)}  # top first
    aps = []
    for orders in itertools.product(*(sorted(set(itertools.permutations(v))) for v in inner.values())):
        y, score = [1], [10.0]  # the top bin: one positive
        for i, order in zip(inner, orders, strict=True):  # distinct scores inside bin i, in this order
            y += order
            score += [i + 0.9 - 0.01 * j for j in range(len(order))]
        y += [1, 0, 0]  # the bottom bin: a tie group of one positive and two negatives
        score += [0.0, 0.0, 0.0]
        aps.append(average_precision_score(y, score))
    assert auc_pr(pos, neg, ties="spread") == pytest.approx(float(np.mean(aps)), abs=1e-12)
    assert auc_pr(pos, neg, ties="spread") != pytest.approx(auc_pr(pos, neg), abs=1e-3)


def test_spread_rule_rejects_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="ties"):
        auc_pr([1, 2], [2, 1], ties="mid")


# ---------------------------------------------------------------------- mergeability


def test_merge_of_three_parts_equals_the_whole() -> None:
    s, y = fraud_stream("logit", 30_000, 7)
    whole, parts = summarise(s, y, parts=1), summarise(s, y, parts=3)
    assert whole == parts
    assert np.array_equal(whole.counts[AUC_POSITIVE_SCORES], parts.counts[AUC_POSITIVE_SCORES])
    assert int(whole.counts[AUC_POSITIVE_SCORES].sum() + whole.counts[AUC_NEGATIVE_SCORES].sum()) == len(s)
    m1, m3 = metrics(whole), metrics(parts)
    for key in ("auc_roc", "auc_pr", "precision_at_1", "precision_at_5", "lift", "detection_rate"):
        assert m1[key] == m3[key], key  # identical, not merely close
    assert BucketSummary.from_bytes(parts.to_bytes()) == whole


def test_retraction_undoes_a_label() -> None:
    """A corrected label: retract (sign=-1) the wrong one, add the right one, as stage 1 does."""
    s, y = fraud_stream("logit", 20_000, 8)
    wrong = y.copy()
    flipped = np.random.default_rng(8).choice(len(y), 500, replace=False)
    wrong[flipped] = 1 - wrong[flipped]
    predicted = (s >= 0.5).astype(np.int64)
    summary = BucketSummary()
    summary.add_predictions(s, predicted, SCORE_BINS)
    summary.add_labels(wrong, predicted, s, SCORE_BINS)
    summary.add_labels(wrong[flipped], predicted[flipped], s[flipped], SCORE_BINS, sign=-1)
    summary.add_labels(y[flipped], predicted[flipped], s[flipped], SCORE_BINS)
    right = summarise(s, y)
    # (not ==: the monotonic outcomes_added counter counts the re-added label again)
    for name in (AUC_POSITIVE_SCORES, AUC_NEGATIVE_SCORES, POSITIVE_SCORES, NEGATIVE_SCORES):
        assert np.array_equal(summary.counts[name], right.counts[name]), name
    assert np.array_equal(summary.confusion, right.confusion)
    assert metrics(summary) == metrics(right)
    assert abs(metrics(summary)["auc_roc"] - roc_auc_score(y, s)) <= TOLERANCE


# ---------------------------------------------------------------------- fallback and other metrics


def test_without_fine_histograms_the_score_bins_are_used_as_before() -> None:
    """Labels counted before the fine histograms existed (an older reference profile), alone
    or mixed into a window: the ``score_bins`` histograms and the step rule, never a part."""
    s, y = fraud_stream("logit", 20_000, 9)
    old = summarise(s, y)
    del old.counts[AUC_POSITIVE_SCORES], old.counts[AUC_NEGATIVE_SCORES]
    pos, neg = old.counts[POSITIVE_SCORES], old.counts[NEGATIVE_SCORES]
    m = metrics(old)
    assert m["auc_roc"] == auc_roc(pos, neg) and m["auc_pr"] == auc_pr(pos, neg)
    mixed = old + summarise(s[:1000], y[:1000])  # fine histograms of 1,000 of 21,000 labels
    both_pos, both_neg = mixed.counts[POSITIVE_SCORES], mixed.counts[NEGATIVE_SCORES]
    assert metrics(mixed)["auc_pr"] == auc_pr(both_pos, both_neg)
    fine = metrics(summarise(s, y))
    assert fine["auc_pr"] != m["auc_pr"]


def _raw_histograms(s: FloatArray, y: IntArray) -> tuple[IntArray, IntArray]:
    """One bin per distinct score: the histograms of the raw scores, no binning at all."""
    _, idx = np.unique(s, return_inverse=True)
    k = int(idx.max()) + 1
    return np.bincount(idx[y == 1], minlength=k), np.bincount(idx[y == 0], minlength=k)


def test_precision_at_fpr_and_lift_read_the_fine_histograms() -> None:
    """Closer to the raw-score values than the 200 bins; within a stated tolerance of them."""
    s, y = fraud_stream("logit", 200_000, 10)
    fine = metrics(summarise(s, y))
    raw_pos, raw_neg = _raw_histograms(s, y)
    old = summarise(s, y)
    del old.counts[AUC_POSITIVE_SCORES], old.counts[AUC_NEGATIVE_SCORES]
    coarse = metrics(old)
    raw = {
        "precision_at_1": precision_at_fpr(raw_pos, raw_neg, 0.01),
        "precision_at_5": precision_at_fpr(raw_pos, raw_neg, 0.05),
        "detection_rate": top_k_lift(raw_pos, raw_neg, TOP_K)[1],
    }
    for key, want in raw.items():
        assert not math.isnan(want)
        assert abs(fine[key] - want) <= 2e-3, key
        assert abs(fine[key] - want) <= abs(coarse[key] - want), key
