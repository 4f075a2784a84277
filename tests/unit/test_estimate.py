"""Estimated performance before labels arrive (streamon.core.statistics.estimate).

Simulations: scores ~ Beta(1, 4) (a skewed score distribution, mean 0.2), threshold 0.5,
200 score bins, labels ~ Bernoulli(P(label = 1 | score)), labels arrive for a random
15% of the current window (missing at random given the score). Every simulated window
is seeded, so the measured numbers below are reproducible.

Tolerances:
* band coverage over 200 windows (each with its own fully labelled reference): measured
  coverage >= nominal 0.9 - 0.064 (three binomial standard errors, sqrt(0.9*0.1/200));
* calibration check at alpha = 0.05 on calibrated data: flag rate <= 0.05 + 0.046 (three
  standard errors over 200 windows); on drifted data (P = score**2, or half the score) it
  flags >= 90% of 50 windows;
* everything labelled: exactly the realised metrics; merged splits: exactly the whole;
* AUC of the estimated histograms vs sklearn's ``roc_auc_score`` with probabilistic
  labels as sample weights on the binned scores: 1e-9 (float rounding only).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from streamon.config import Settings
from streamon.core.catalogue import METRICS
from streamon.core.profile import ModelSpec
from streamon.core.stages.evaluate import EvalSettings, evaluate_model, performance_metrics
from streamon.core.state.summary import FN, FP, TN, TP, BucketSummary, merge_all, score_bin
from streamon.core.statistics import classification
from streamon.core.statistics.business import BusinessCosts
from streamon.core.statistics.estimate import (
    METRIC_NAMES,
    CalibrationMap,
    calibration_check,
    estimate_performance,
    estimation_gauges,
    unlabelled_split,
)
from streamon.engine import build_engine
from streamon.errors import ConfigError

BINS = 200
THRESHOLD = 0.5
N = 20_000
LABELLED = 0.15
CONFIDENCE = 0.9
COSTS = BusinessCosts(50.0, 1000.0, 25.0, 1000.0, 200.0, 10000.0)
WINDOWS = 200
Truth = Callable[[np.ndarray], np.ndarray]  # P(label = 1 | score)


def _calibrated(s: np.ndarray) -> np.ndarray:
    return s


def simulate(seed: int, n: int = N, truth: Truth = _calibrated) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, labels, predicted) of one simulated window."""
    rng = np.random.default_rng(seed)
    scores = rng.beta(1.0, 4.0, n)
    labels = (rng.random(n) < truth(scores)).astype(np.int64)
    return scores, labels, (scores >= THRESHOLD).astype(np.int64)


def summarise(
    scores: np.ndarray, labels: np.ndarray, predicted: np.ndarray, labelled: np.ndarray
) -> BucketSummary:
    s = BucketSummary()
    s.add_predictions(scores, predicted, BINS)
    s.add_labels(labels[labelled], predicted[labelled], scores[labelled], BINS)
    return s


def partly_labelled(seed: int, truth: Truth = _calibrated) -> tuple[BucketSummary, BucketSummary]:
    """(current window with 15% of its labels, the same window with all of them)."""
    scores, labels, predicted = simulate(seed, truth=truth)
    some = np.random.default_rng(seed + 1).random(N) < LABELLED
    return summarise(scores, labels, predicted, some), summarise(scores, labels, predicted, np.ones(N, bool))


def reference(seed: int) -> BucketSummary:
    scores, labels, predicted = simulate(seed)
    return summarise(scores, labels, predicted, np.ones(N, bool))


def realised(full: BucketSummary) -> dict[str, float]:
    m = performance_metrics(full, BINS, 0.01)
    c = full.confusion
    ev = classification.expected_value(int(c[TP]), int(c[FP]), int(c[TN]), int(c[FN]), COSTS)
    keys = ("accuracy", "precision", "recall", "f1", "auc_roc")
    return {**{k: m[k] for k in keys}, "expected_value": ev}


def test_band_covers_the_realised_metrics_at_the_stated_level() -> None:
    hits = dict.fromkeys(METRIC_NAMES, 0)
    for i in range(WINDOWS):
        cmap = CalibrationMap.from_summary(reference(10_000 + 7 * i), BINS, 10.0)
        current, full = partly_labelled(20_000 + 7 * i)
        est = estimate_performance(current, cmap, BINS, COSTS, CONFIDENCE, min_labelled=100)
        truth = realised(full)
        for key in METRIC_NAMES:
            value, lower, upper = est.values[key]
            assert lower <= value <= upper, (key, est.values[key])
            hits[key] += lower <= truth[key] <= upper
    coverage = {k: v / WINDOWS for k, v in hits.items()}
    print(f"measured coverage of the {CONFIDENCE} band over {WINDOWS} windows: {coverage}")
    tolerance = 3 * math.sqrt(CONFIDENCE * (1 - CONFIDENCE) / WINDOWS)
    assert min(coverage.values()) >= CONFIDENCE - tolerance, coverage


def test_estimate_is_closer_to_the_truth_than_the_early_labels_when_labels_are_biased() -> None:
    # Label delay biased by score: flagged predictions get their labels first (analyst review).
    scores, labels, predicted = simulate(5)
    rng = np.random.default_rng(6)
    early = rng.random(N) < np.where(predicted == 1, 0.6, 0.05)
    current = summarise(scores, labels, predicted, early)
    full = summarise(scores, labels, predicted, np.ones(N, bool))
    cmap = CalibrationMap.from_summary(reference(7), BINS, 10.0)
    est = estimate_performance(current, cmap, BINS, COSTS, CONFIDENCE)
    truth, early_metrics = realised(full), realised(current)
    for key in ("accuracy", "recall"):  # precision: flagged labels are missing at random here
        assert abs(est.values[key][0] - truth[key]) < abs(early_metrics[key] - truth[key]) / 3, key
    for key in ("accuracy", "precision", "recall"):
        assert est.values[key][1] <= truth[key] <= est.values[key][2], key


def test_calibration_check_false_alarm_rate_on_calibrated_scores() -> None:
    p_values = []
    for i in range(WINDOWS):
        cmap = CalibrationMap.from_summary(reference(30_000 + 7 * i), BINS, 10.0)
        current, _ = partly_labelled(40_000 + 7 * i)
        p_values.append(calibration_check(current, cmap, BINS, min_labelled=100).p_value)
    rate = float(np.mean(np.array(p_values) < 0.05))
    print(f"calibrated: share of windows with p < 0.05: {rate}")
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / WINDOWS)
    assert not np.isnan(p_values).any()


@pytest.mark.parametrize("truth", [lambda s: s**2, lambda s: s / 2], ids=["squared", "halved"])
def test_calibration_check_flags_a_drifted_calibration(truth: Truth) -> None:
    flagged = 0
    for i in range(50):
        ref = reference(50_000 + 7 * i)
        current, _ = partly_labelled(60_000 + 7 * i, truth=truth)
        gauges = {
            name: value
            for name, value, extra in estimation_gauges(
                current,
                ref,
                BINS,
                COSTS,
                prior_strength=10.0,
                confidence=CONFIDENCE,
                min_labelled=100,
                reliable_p_value=0.01,
            )
            if not extra
        }
        flagged += gauges["streamon_estimation_reliable"] == 0.0
        assert gauges["ml_model_estimation_calibration_error"] > 0.02
    print(f"drifted calibration flagged in {flagged}/50 windows")
    assert flagged >= 45


def test_everything_labelled_gives_exactly_the_realised_metrics() -> None:
    _, full = partly_labelled(1)
    est = estimate_performance(full, CalibrationMap.from_summary(BucketSummary(), BINS, 10.0), BINS, COSTS)
    truth = realised(full)
    assert est.n_unlabelled == 0 and est.expected.tolist() == [0.0] * 4
    for key in METRIC_NAMES:
        assert est.values[key] == (truth[key],) * 3, key


def test_expected_counts_sum_to_the_unlabelled_predictions() -> None:
    current, _ = partly_labelled(2)
    cmap = CalibrationMap.from_summary(reference(3), BINS, 10.0)
    est = estimate_performance(current, cmap, BINS, COSTS)
    unlabelled = current.n_predictions - current.n_labelled
    assert est.n_unlabelled == unlabelled
    assert est.expected.sum() == pytest.approx(unlabelled, rel=1e-12)
    # flagged unlabelled predictions = TP + FP of the unlabelled part
    flagged = current.n_predicted_positive - int(current.confusion[TP] + current.confusion[FP])
    assert est.expected[TP] + est.expected[FP] == pytest.approx(flagged, rel=1e-12)
    assert np.allclose(est.confusion, current.confusion + est.expected, rtol=1e-12)
    assert est.confusion.sum() == pytest.approx(current.n_predictions, rel=1e-12)


@pytest.mark.parametrize("threshold", [0.5, 0.5037, 0.9])
def test_unlabelled_split_is_exact_for_the_threshold_rule(threshold: float) -> None:
    scores, labels, _ = simulate(4, n=5000)
    predicted = (scores >= threshold).astype(np.int64)
    some = np.random.default_rng(5).random(5000) < 0.3
    pp, pn = unlabelled_split(summarise(scores, labels, predicted, some), BINS)
    bins = score_bin(scores[~some], BINS)
    flagged = predicted[~some] == 1
    assert pp.tolist() == np.bincount(bins[flagged], minlength=BINS).astype(float).tolist()
    assert pn.tolist() == np.bincount(bins[~flagged], minlength=BINS).astype(float).tolist()


def test_auc_of_the_estimated_histograms_matches_sklearn_with_probabilistic_labels() -> None:
    scores, labels, predicted = simulate(8, n=3000)
    some = np.random.default_rng(9).random(3000) < 0.2
    current = summarise(scores, labels, predicted, some)
    cmap = CalibrationMap.from_summary(reference(10), BINS, 10.0)
    est = estimate_performance(current, cmap, BINS, COSTS)
    # Oracle sample: binned scores; a labelled prediction once with weight 1, an unlabelled one
    # as a positive with weight p(bin) and as a negative with weight 1 - p(bin).
    b = score_bin(scores, BINS)
    p = cmap.mean[b[~some]]
    x = np.concatenate([b[some], b[~some], b[~some]])
    y = np.concatenate([labels[some], np.ones((~some).sum()), np.zeros((~some).sum())])
    w = np.concatenate([np.ones(some.sum()), p, 1 - p])
    assert est.values["auc_roc"][0] == pytest.approx(roc_auc_score(y, x, sample_weight=w), abs=1e-9)


def test_calibration_map_prior_and_merge() -> None:
    empty = CalibrationMap.from_summary(BucketSummary(), 4, prior_strength=10.0)
    assert empty.mean.tolist() == [0.125, 0.375, 0.625, 0.875]  # scores taken as calibrated
    a = CalibrationMap(np.array([0, 0, 1, 30]), np.array([100, 0, 2, 40]), 10.0)
    assert (a + empty).mean.tolist() == a.mean.tolist()
    assert a.mean[0] == pytest.approx(1.25 / 110)  # 100 negatives outweigh the prior
    with pytest.raises(ValueError, match="prior_strength"):
        CalibrationMap(np.zeros(2, np.int64), np.zeros(2, np.int64), 0.0)


def _gauges(current: BucketSummary, ref: BucketSummary) -> list[tuple[str, float, dict[str, str]]]:
    return estimation_gauges(
        current,
        ref,
        BINS,
        COSTS,
        prior_strength=10.0,
        confidence=CONFIDENCE,
        min_labelled=100,
        reliable_p_value=0.01,
    )


def test_merged_splits_give_exactly_the_estimate_of_the_whole() -> None:
    scores, labels, predicted = simulate(11)
    some = np.random.default_rng(12).random(N) < LABELLED
    whole = summarise(scores, labels, predicted, some)
    parts = [
        summarise(scores[i::3], labels[i::3], predicted[i::3], some[i::3])  # three "partitions"
        for i in range(3)
    ]
    ref = reference(13)
    ref_parts = merge_all([ref.copy(), BucketSummary()])
    merged = _gauges(merge_all(parts), ref_parts)
    direct = _gauges(whole, ref)
    assert [(n, e) for n, _, e in merged] == [(n, e) for n, _, e in direct]
    assert np.array_equal([v for _, v, _ in merged], [v for _, v, _ in direct], equal_nan=True)
    assert not math.isnan(merged[0][1])


def test_evaluate_model_exports_the_estimates_with_fixed_labels_and_nan_below_min_samples() -> None:
    spec = ModelSpec(name="m", threshold=THRESHOLD, score_bins=BINS)
    current, _ = partly_labelled(14)
    ref = reference(15)
    samples = evaluate_model(spec, "all", current, ref, EvalSettings())
    estimated = [s for s in samples if s.name in METRIC_NAMES.values()]
    assert len(estimated) == 6 * 3
    for s in estimated:
        got = dict(s.labels)
        # A binary model's estimates carry none of the multiclass-only labels (class, average).
        info = METRICS[s.name]
        assert tuple(got) == tuple(k for k in info.labels if k not in info.optional)
        assert tuple(got) == ("model", "variant", "window", "bound")
        assert got["window"] == "current" and got["bound"] in ("estimate", "lower", "upper")
        assert not math.isnan(s.value)
    check = {s.name: s for s in samples if "estimation" in s.name}
    assert set(check) == {
        "ml_model_estimation_calibration_error",
        "streamon_estimation_calibration_p_value",
        "streamon_estimation_reliable",
    }
    assert check["streamon_estimation_reliable"].value == 1.0

    # A reference with fewer labelled predictions than min_samples: every estimate is NaN.
    scores, labels, predicted = simulate(16, n=500)
    few = summarise(scores, labels, predicted, np.arange(500) < 99)
    low = evaluate_model(spec, "all", current, few, EvalSettings(min_estimation_labelled=100))
    values = [s.value for s in low if s.name in METRIC_NAMES.values() or "estimation" in s.name]
    assert len(values) == 6 * 3 + 3 and all(math.isnan(v) for v in values)
    ok = evaluate_model(spec, "all", current, few, EvalSettings(min_estimation_labelled=99))
    assert not math.isnan(next(s.value for s in ok if s.name == "ml_model_estimated_accuracy"))

    off = evaluate_model(spec, "all", current, ref, EvalSettings(estimation_enabled=False))
    assert not [s for s in off if s.name in METRIC_NAMES.values() or "estimation" in s.name]


def test_config_keys_reach_the_evaluation() -> None:
    base = {"models": [{"name": "m", "features": [{"name": "x", "type": "numeric"}]}]}
    cm = {
        "estimated_performance": {
            "prior_strength": 3.0,
            "confidence": 0.95,
            "min_samples": 7,
            "calibration_p_value": 0.001,
            "collection_interval": "1m",
        }
    }
    engine = build_engine(Settings.from_dict({**base, "monitoring": {"custom_metrics": cm}}))
    e = engine.evaluation
    assert (e.estimation_prior_strength, e.estimation_confidence) == (3.0, 0.95)
    assert (e.min_estimation_labelled, e.estimation_reliable_p_value, e.estimation_enabled) == (
        7,
        0.001,
        True,
    )
    off = {"estimated_performance": {"enabled": False}}
    assert not build_engine(
        Settings.from_dict({**base, "monitoring": {"custom_metrics": off}})
    ).evaluation.estimation_enabled
    bad = {"estimated_performance": {"confidence": 1.5}}
    with pytest.raises(ConfigError, match=r"monitoring\.custom_metrics\.estimated_performance\.confidence"):
        Settings.from_dict({**base, "monitoring": {"custom_metrics": bad}})
