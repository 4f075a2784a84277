"""Oracle tests of streamon.core.statistics.classification against scikit-learn and brute-force numpy."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from streamon.core.statistics.business import BusinessCosts, business_metrics
from streamon.core.statistics.classification import (
    DEFAULT_BINS,
    auc_pr,
    auc_roc,
    expected_value,
    precision_at_fpr,
    threshold_metrics,
    top_k_lift,
)

B = DEFAULT_BINS
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def bin_index(scores: FloatArray, bins: int = B) -> IntArray:
    """Bin i covers [i/B, (i+1)/B); the last bin includes 1.0."""
    return np.minimum((scores * bins).astype(np.int64), bins - 1)


def histograms(scores: FloatArray, labels: IntArray, bins: int = B) -> tuple[IntArray, IntArray]:
    idx = bin_index(scores, bins)
    return (
        np.bincount(idx[labels == 1], minlength=bins),
        np.bincount(idx[labels == 0], minlength=bins),
    )


def quantise(scores: FloatArray, bins: int = B) -> FloatArray:
    """Move every score to its bin centre: same bins, and ties exactly where the histograms have them."""
    return (bin_index(scores, bins) + 0.5) / bins


def fraud_like(seed: int, n: int = 20_000) -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng(seed)
    base_rate = [0.01, 0.05, 0.3][seed % 3]
    labels = (rng.random(n) < base_rate).astype(np.int64)
    scores = np.where(labels == 1, rng.beta(5, 2, n), rng.beta(2, 5, n))
    return scores, labels


SEEDS = range(12)


# --- threshold metrics ---------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_threshold_metrics_exactly_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 5000))
    y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
    pred = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    m = threshold_metrics(tp, fp, tn, fn)
    # Exact equality: same integer counts, same divisions.
    assert m["accuracy"] == accuracy_score(y, pred)
    assert m["precision"] == precision_score(y, pred)
    assert m["recall"] == recall_score(y, pred)
    assert m["f1"] == f1_score(y, pred)
    assert m["specificity"] == ((pred == 0) & (y == 0)).sum() / (y == 0).sum()


def test_threshold_metrics_are_nan_when_undefined() -> None:
    m = threshold_metrics(tp=0, fp=0, tn=0, fn=0)
    assert all(math.isnan(v) for v in m.values())
    m = threshold_metrics(tp=0, fp=0, tn=50, fn=0)  # no positives at all, nothing flagged
    assert math.isnan(m["precision"]) and math.isnan(m["recall"]) and math.isnan(m["f1"])
    assert m["accuracy"] == 1.0 and m["specificity"] == 1.0
    assert threshold_metrics(tp=0, fp=3, tn=5, fn=2)["f1"] == 0.0  # defined, and really 0


# --- AUC-ROC ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_auc_roc_exact_on_quantised_scores(seed: int) -> None:
    scores, labels = fraud_like(seed)
    q = quantise(scores)
    pos, neg = histograms(q, labels)
    # Ties within a bin count half in both: equal up to float rounding (1e-12).
    assert auc_roc(pos, neg) == pytest.approx(roc_auc_score(labels, q), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_auc_roc_bounded_on_raw_scores(seed: int) -> None:
    scores, labels = fraud_like(seed)
    pos, neg = histograms(scores, labels)
    err = abs(auc_roc(pos, neg) - roc_auc_score(labels, scores))
    # Only pairs sharing a bin can be misordered, each by half a pair: a data-dependent bound ...
    assert err <= 0.5 * float(pos @ neg) / (pos.sum() * neg.sum()) + 1e-12
    # ... and the documented bound for B=200 on this kind of data.
    assert err <= 0.005


def test_auc_roc_degenerate_cases() -> None:
    assert auc_roc([0, 0, 5], [5, 0, 0]) == 1.0
    assert auc_roc([5, 0, 0], [0, 0, 5]) == 0.0
    assert auc_roc([3, 0], [7, 0]) == 0.5  # everything tied
    assert math.isnan(auc_roc([0, 0], [1, 2]))
    assert math.isnan(auc_roc([1, 2], [0, 0]))
    with pytest.raises(ValueError):
        auc_roc([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        auc_roc([1, -1], [1, 2])


@given(
    st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=30).filter(
        lambda rows: sum(r[0] for r in rows) > 0 and sum(r[1] for r in rows) > 0
    )
)
def test_auc_roc_swapping_classes_gives_the_complement(rows: list[tuple[int, int]]) -> None:
    pos, neg = np.array(rows).T
    auc = auc_roc(pos, neg)
    assert 0.0 <= auc <= 1.0
    assert auc + auc_roc(neg, pos) == pytest.approx(1.0, abs=1e-12)  # float rounding only


# --- AUC-PR (average precision) --------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_auc_pr_exact_on_quantised_scores(seed: int) -> None:
    scores, labels = fraud_like(seed)
    q = quantise(scores)
    pos, neg = histograms(q, labels)
    assert auc_pr(pos, neg) == pytest.approx(average_precision_score(labels, q), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_auc_pr_bounded_on_raw_scores(seed: int) -> None:
    scores, labels = fraud_like(seed)
    pos, neg = histograms(scores, labels)
    # Within-bin order is lost; measured worst case on this data is ~0.006 for B=200, bound 0.02.
    assert abs(auc_pr(pos, neg) - average_precision_score(labels, scores)) <= 0.02


def test_auc_pr_nan_without_positives() -> None:
    assert math.isnan(auc_pr([0, 0, 0], [1, 2, 3]))
    assert auc_pr([0, 0, 4], [0, 0, 0]) == 1.0


# --- precision at FPR ------------------------------------------------------------------


def brute_precision_at_fpr(scores: FloatArray, labels: IntArray, fpr: float) -> float:
    """Every threshold at an observed score (plus 'flag nothing'), straight from the raw arrays."""
    n_neg = int((labels == 0).sum())
    best: tuple[int, int] | None = None  # (tp, fp) of the chosen point
    for t in [math.inf, *np.unique(scores)]:
        flagged = scores >= t
        tp = int((flagged & (labels == 1)).sum())
        fp = int((flagged & (labels == 0)).sum())
        if fp / n_neg > fpr:
            continue
        if best is None or tp > best[0] or (tp == best[0] and fp < best[1]):
            best = (tp, fp)
    assert best is not None
    return best[0] / (best[0] + best[1]) if best[0] + best[1] else math.nan


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.05, 0.2])
def test_precision_at_fpr_matches_brute_force(seed: int, fpr: float) -> None:
    scores, labels = fraud_like(seed, n=3000)
    q = quantise(scores)
    pos, neg = histograms(q, labels)
    got, want = precision_at_fpr(pos, neg, fpr), brute_precision_at_fpr(q, labels, fpr)
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-12)


def test_precision_at_fpr_edge_cases() -> None:
    # The top bin alone already exceeds a 1% FPR: nothing can be flagged, precision undefined.
    assert math.isnan(precision_at_fpr([0, 5], [90, 10], 0.01))
    assert math.isnan(precision_at_fpr([0, 0], [90, 10], 0.01))
    # A negatives-only bin adds no recall, so it is not taken even when the budget allows it.
    assert precision_at_fpr([0, 0, 5], [90, 5, 0], 0.10) == 1.0
    with pytest.raises(ValueError):
        precision_at_fpr([1], [1], 1.5)


# --- lift and detection rate in the top k% ---------------------------------------------


def brute_top_k(scores: FloatArray, labels: IntArray, k: float) -> tuple[float, float]:
    """Walk the score groups from the top; the group at the cut contributes its positive share."""
    wanted = k * scores.size
    taken = top_pos = 0.0
    for value in np.unique(scores)[::-1]:
        group = labels[scores == value]
        take = min(float(group.size), wanted - taken)
        top_pos += take * group.mean()
        taken += take
        if taken >= wanted:
            break
    detection = top_pos / labels.sum()
    return detection / k, detection  # lift = precision@k / base rate = detection / k


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [0.001, 0.01, 0.05, 0.5, 1.0])
def test_top_k_lift_matches_brute_force(seed: int, k: float) -> None:
    scores, labels = fraud_like(seed, n=5000)
    q = quantise(scores)
    pos, neg = histograms(q, labels)
    lift, rate = top_k_lift(pos, neg, k)
    want_lift, want_rate = brute_top_k(q, labels, k)
    assert lift == pytest.approx(want_lift, rel=1e-9)  # float rounding only
    assert rate == pytest.approx(want_rate, rel=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_top_k_lift_on_a_bin_boundary_is_a_plain_top_m(seed: int) -> None:
    scores, labels = fraud_like(seed, n=5000)
    q = quantise(scores)
    pos, neg = histograms(q, labels)
    # Cut exactly after the five highest score groups: no bin straddles it, no assumption needed.
    m = int((q >= np.unique(q)[-5]).sum())
    top = labels[np.argsort(-q, kind="stable")[:m]]
    lift, rate = top_k_lift(pos, neg, m / q.size)
    assert rate == pytest.approx(top.sum() / labels.sum(), rel=1e-9)
    assert lift == pytest.approx(top.mean() / labels.mean(), rel=1e-9)


def test_top_k_lift_edge_cases() -> None:
    assert top_k_lift([1, 1], [1, 1], 1.0) == (1.0, 1.0)  # everything flagged: lift 1, recall 1
    lift, rate = top_k_lift([0, 0], [3, 3], 0.5)
    assert math.isnan(lift) and math.isnan(rate)
    for bad in (0.0, -0.1, 1.1):
        with pytest.raises(ValueError):
            top_k_lift([1], [1], bad)


# --- expected value --------------------------------------------------------------------


def test_expected_value_is_net_benefit_per_labelled_prediction() -> None:
    costs = BusinessCosts(10, 500, 5, 500, 1, 3000)
    net = business_metrics(30, 70, 9880, 20, costs, window_seconds=3600)["net_benefit"]
    # 30*500 + 9880*1 - (70*10 + 20*500 + 100*5) = 24880 - 11200 = 13680, over 10000 predictions.
    assert net == 13_680.0
    assert expected_value(30, 70, 9880, 20, costs) == 1.368
    assert math.isnan(expected_value(0, 0, 0, 0, costs))
