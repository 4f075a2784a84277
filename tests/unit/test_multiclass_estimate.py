"""Estimated multiclass performance before labels (estimate.estimate_multiclass).

Hand-checked expected counts on a tiny window; an oracle on seeded streams whose
reference and current windows come from one generator (the actual class drawn from
the scores, or from sharpened scores for an overconfident model): with every current
label in, the estimate IS the realised value (scikit-learn's, within 1e-12 relative);
with labels hidden, the realised accuracy and macro precision fall inside the 90% band
in most runs (the coverage asserted loosely: it is a random quantity), and the
recall/F1 point estimates are unbiased within 4 standard errors. Merge and retraction
of the integer state are exact, so the estimates are bit-identical.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from streamon.core.catalogue import METRICS
from streamon.core.profile import ModelSpec
from streamon.core.stages.evaluate import EvalSettings, Snapshot, evaluate_model
from streamon.core.state.summary import BucketSummary, score_bin
from streamon.core.statistics import multiclass as mc
from streamon.core.statistics.estimate import (
    BANDED,
    MulticlassEstimate,
    class_maps,
    estimate_multiclass,
    multiclass_calibration_check,
    unlabelled_own_other,
)
from streamon.exporter import render

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
REL = 1e-12


def _stream(rng: np.random.Generator, n: int, k: int, sharpen: float = 1.0) -> tuple[Floats, Ints, Ints]:
    """(scores, argmax predicted, actual): actual drawn from the scores (calibrated model),
    or from the scores raised to ``sharpen`` < 1 and renormalised (an overconfident model)."""
    scores = rng.dirichlet(np.full(k, 0.7), size=n)
    truth = scores**sharpen
    truth /= truth.sum(axis=1, keepdims=True)
    actual = np.minimum((rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1), k - 1)
    return scores, mc.predicted_from_scores(scores), actual.astype(np.int64)


def _summary(
    scores: Floats, predicted: Ints, actual: Ints, k: int, labelled: int | None = None
) -> BucketSummary:
    """Every row predicted, the first ``labelled`` (default all) labelled."""
    n = len(actual) if labelled is None else labelled
    s = BucketSummary()
    mc.add_predictions(s, scores, predicted, k)
    if n:
        mc.add_labelled(s, scores[:n], predicted[:n], actual[:n], k)
    return s


def _estimate(current: BucketSummary, reference: BucketSummary, k: int, **kw: Any) -> MulticlassEstimate:
    return estimate_multiclass(mc.state_of(current, k), mc.state_of(reference, k), k, **kw)


def test_state_histograms_against_numpy() -> None:
    rng = np.random.default_rng(1)
    k = 4
    scores, predicted, actual = _stream(rng, 700, k)
    s = _summary(scores, predicted, actual, k, labelled=300)
    bins = score_bin(scores, mc.OVR_BINS)
    for c in range(k):
        every = np.bincount(bins[:, c], minlength=mc.OVR_BINS)
        own = np.bincount(bins[predicted == c, c], minlength=mc.OVR_BINS)
        own_lab = np.bincount(bins[:300][predicted[:300] == c, c], minlength=mc.OVR_BINS)
        row = slice(c * mc.OVR_BINS, (c + 1) * mc.OVR_BINS)
        assert s.counts[mc.SCORES_KEY][row].tolist() == every.tolist()
        assert s.counts[mc.OWN_KEY][row].tolist() == own.tolist()
        assert s.counts[mc.OWN_LABELLED][row].tolist() == own_lab.tolist()
    own_u, other_u = unlabelled_own_other(mc.state_of(s, k), k)
    assert own_u.sum() == 400 and (own_u + other_u).sum(axis=1).tolist() == [400.0] * k


def test_hand_checked_expected_counts_and_band() -> None:
    # Reference: 10 rows scored (0.8, 0.2), all predicted 0, 6 of class 0 -> class 0's own map
    # (predicted 0) has 6 of 10 in bin 160, class 1's other map (predicted not 1) 4 of 10 in
    # bin 40. Prior strength 10, bin midpoints 0.8025 and 0.2025:
    # own_0 = (8.025 + 6) / 20 = 0.70125, other_1 = (2.025 + 4) / 20 = 0.30125.
    k = 2
    ref = _summary(np.tile([0.8, 0.2], (10, 1)), np.zeros(10, np.int64), np.array([0] * 6 + [1] * 4), k)
    # Current: 5 rows (0.8, 0.2) predicted 0; the first labelled 0, the other 4 unlabelled.
    cur = _summary(np.tile([0.8, 0.2], (5, 1)), np.zeros(5, np.int64), np.zeros(5, np.int64), k, labelled=1)
    est = _estimate(cur, ref, k, prior_strength=10.0, confidence=0.9)
    tp0 = 1 + 4 * 0.70125  # labelled TP + expected correct among the 4 unlabelled
    assert est.expected_correct == pytest.approx(4 * 0.70125, rel=REL)
    acc = est.accuracy
    assert acc[0] == pytest.approx(tp0 / 5, rel=REL)
    per, macro = est.per_class, est.macro
    assert per["precision"][0][0] == pytest.approx(tp0 / 5, rel=REL)
    assert math.isnan(per["precision"][1][0])  # never predicted
    assert per["recall"][0][0] == 1.0  # no unlabelled row predicted another class
    # Class 1 is expected 4 * 0.30125 times among the unlabelled: recall and F1 0, not NaN.
    assert per["recall"][1][0] == 0.0 and per["f1"][1][0] == 0.0
    f1_0 = 2 * tp0 / (5 + tp0)
    assert per["f1"][0][0] == pytest.approx(f1_0, rel=REL)
    assert macro["f1"][0] == pytest.approx(f1_0 / 2, rel=REL)
    assert macro["precision"][0] == per["precision"][0][0]  # class 1 has none: skipped
    assert macro["recall"][0] == pytest.approx(0.5, rel=REL)
    assert math.isnan(macro["f1"][1]) and math.isnan(per["recall"][0][2])  # no band
    # Band of the unlabelled correct count X: Beta-binomial, n = 4, p ~ Beta(14.025, 5.975):
    # Var = n E[p(1-p)] + n^2 Var(p). Lower: X at its 5% normal quantile; upper clipped at n = 4.
    m = 0.70125
    var_p = m * (1 - m) / 21
    sd = math.sqrt(4 * (m * (1 - m) - var_p) + 16 * var_p)
    # 2000 fixed draws: the 5% quantile is within ~0.05 sd of the normal one; 0.01 here.
    assert acc[1] == pytest.approx((1 + 4 * m - 1.6449 * sd) / 5, abs=0.01)
    assert acc[2] == 1.0
    assert per["precision"][0][1:] == acc[1:]  # one predicted class: precision = accuracy


@pytest.mark.parametrize("k", [3, 5])
def test_all_labels_in_gives_exactly_the_realised_metrics(k: int) -> None:
    rng = np.random.default_rng(10 + k)
    ref = _summary(*_stream(rng, 3000, k), k)
    scores, predicted, actual = _stream(rng, 2000, k)
    est = _estimate(_summary(scores, predicted, actual, k), ref, k)
    report = mc.class_report(mc.confusion_counts(actual, predicted, k), k)
    assert est.accuracy == (report.accuracy,) * 3
    assert est.accuracy[0] == pytest.approx(accuracy_score(actual, predicted), rel=REL)
    p, r, f, _ = precision_recall_fscore_support(
        actual, predicted, labels=list(range(k)), zero_division=np.nan
    )
    for metric, want in (("precision", p), ("recall", r), ("f1", f)):
        for c in range(k):
            assert est.per_class[metric][c] == (getattr(report, metric)[c],) * 3
            assert est.per_class[metric][c][0] == pytest.approx(want[c], rel=REL)
        assert est.macro[metric] == (report.averages["macro"][metric],) * 3
    # Without any reference labels too: nothing is left to estimate.
    alone = _estimate(_summary(scores, predicted, actual, k), BucketSummary(), k, min_labelled=100)
    assert alone.accuracy == est.accuracy


def _coverage(
    runs: int, k: int, sharpen: float, label_share: float, n_ref: int, prior: float
) -> dict[str, float]:
    hits = {"accuracy": 0, "precision": 0}
    errors: dict[str, list[float]] = {"recall": [], "f1": []}
    for seed in range(runs):
        rng = np.random.default_rng(1000 + seed)
        ref = _summary(*_stream(rng, n_ref, k, sharpen), k)
        scores, predicted, actual = _stream(rng, 2000, k, sharpen)
        cur = _summary(scores, predicted, actual, k, labelled=int(label_share * 2000))
        est = _estimate(cur, ref, k, prior_strength=prior)
        report = mc.class_report(mc.confusion_counts(actual, predicted, k), k)
        a, pr = est.accuracy, est.macro["precision"]
        hits["accuracy"] += a[1] <= report.accuracy <= a[2]
        hits["precision"] += pr[1] <= report.averages["macro"]["precision"] <= pr[2]
        for metric in errors:
            errors[metric].append(est.macro[metric][0] - report.averages["macro"][metric])
    out = {name: hit / runs for name, hit in hits.items()}
    for metric, e in errors.items():
        # Mean error in standard errors: unbiased estimates stay within a few.
        out[metric] = abs(float(np.mean(e))) / (float(np.std(e)) / math.sqrt(runs))
    return out


@pytest.mark.parametrize(
    ("k", "sharpen", "label_share", "n_ref", "prior"),
    [(3, 1.0, 0.1, 4000, 10.0), (4, 0.6, 0.0, 50_000, 1.0)],
)
def test_the_truth_falls_inside_the_band_in_most_runs(
    k: int, sharpen: float, label_share: float, n_ref: int, prior: float
) -> None:
    # Calibrated scores with the default prior; an overconfident model (sharpen < 1) with a
    # weak prior: at strength 10 per bin of 200 the prior pulls bins with few labels towards
    # "calibrated" (measured: bias 0.012 in accuracy with a 50k reference, 0.006 with 200k).
    # Measured with 200 runs: coverage 0.89-0.93 of the 90% band. 40 runs here: >= 0.7 has
    # a chance below 1e-3 at a true 90%.
    got = _coverage(40, k, sharpen, label_share, n_ref, prior)
    assert got["accuracy"] >= 0.7 and got["precision"] >= 0.7, got
    assert got["recall"] < 4 and got["f1"] < 4, got


def test_the_map_corrects_an_overconfident_model() -> None:
    # Actual classes drawn from flattened scores: the mean confidence of the predicted class
    # (the estimate a calibrated model would allow) overstates the accuracy; the maps learn it
    # from a reference with enough labels per bin to outweigh the prior.
    k = 3
    rng = np.random.default_rng(40)
    ref = _summary(*_stream(rng, 100_000, k, sharpen=0.4), k)
    scores, predicted, actual = _stream(rng, 5000, k, sharpen=0.4)
    est = _estimate(_summary(scores, predicted, actual, k, labelled=0), ref, k)
    truth = float(np.mean(predicted == actual))
    confidence = float(np.mean(scores[np.arange(5000), predicted]))
    a = est.accuracy
    assert confidence - truth > 0.1  # the scores are far from calibrated
    assert abs(a[0] - truth) < 0.02 and a[1] <= truth <= a[2]


def test_two_halves_merged_give_the_estimate_of_the_whole_and_retraction_is_exact() -> None:
    k = 4
    rng = np.random.default_rng(50)
    ref = _summary(*_stream(rng, 3000, k), k)
    scores, predicted, actual = _stream(rng, 1500, k)
    whole = _summary(scores, predicted, actual, k, labelled=500)
    a = _summary(scores[:700], predicted[:700], actual[:700], k, labelled=500)
    b = _summary(scores[700:], predicted[700:], actual[700:], k, labelled=0)
    merged = BucketSummary()
    merged += b
    merged += a
    assert merged == whole
    assert repr(_estimate(merged, ref, k)) == repr(_estimate(whole, ref, k))
    # A label corrected: the wrong one is retracted (sign=-1) and the right one counted.
    fixed = _summary(scores, predicted, actual, k, labelled=500)
    wrong = (actual[:50] + 1) % k
    direct = _summary(scores, predicted, actual, k, labelled=450)
    mc.add_labelled(direct, scores[450:500], predicted[450:500], wrong[:50], k)
    mc.add_labelled(direct, scores[450:500], predicted[450:500], wrong[:50], k, sign=-1)
    mc.add_labelled(direct, scores[450:500], predicted[450:500], actual[450:500], k)
    # (confusion_added, the counter, keeps the wrong label: it only counts up.)
    for field in ("confusion", "ovr_pos", "ovr_neg", "scores", "own", "own_labelled", "own_correct"):
        assert np.array_equal(getattr(mc.state_of(direct, k), field), getattr(mc.state_of(fixed, k), field))
    assert repr(_estimate(direct, ref, k)) == repr(_estimate(fixed, ref, k))
    # Retracting a label altogether makes its prediction unlabelled again.
    mc.add_labelled(direct, scores[:500], predicted[:500], actual[:500], k, sign=-1)
    assert repr(_estimate(direct, ref, k)) == repr(
        _estimate(_summary(scores, predicted, actual, k, 0), ref, k)
    )


def test_nan_below_min_labelled_reference_predictions() -> None:
    k = 3
    rng = np.random.default_rng(60)
    scores, predicted, actual = _stream(rng, 1000, k)
    cur = _summary(scores, predicted, actual, k, labelled=100)
    few = _summary(*_stream(rng, 99, k), k)
    low = _estimate(cur, few, k, min_labelled=100)
    assert all(math.isnan(v) for v in low.accuracy)
    assert all(math.isnan(v) for t in low.per_class["f1"] for v in t)
    assert not math.isnan(_estimate(cur, few, k, min_labelled=99).accuracy[0])


def test_calibration_check_passes_calibrated_and_flags_drifted_scores() -> None:
    k = 3
    rng = np.random.default_rng(70)
    ref = mc.state_of(_summary(*_stream(rng, 20_000, k), k), k)
    maps = class_maps(ref, k, 10.0)
    p_values = []
    for seed in range(20):
        cur = _summary(*_stream(np.random.default_rng(700 + seed), 3000, k), k)
        p_values.append(multiclass_calibration_check(mc.state_of(cur, k), maps, 100).p_value)
    assert min(p_values) > 1e-3  # Bonferroni over classes: conservative
    drifted = _summary(*_stream(rng, 3000, k, sharpen=0.4), k)
    check = multiclass_calibration_check(mc.state_of(drifted, k), maps, 100)
    assert check.p_value < 1e-6 and check.calibration_error > 0.05
    assert math.isnan(multiclass_calibration_check(mc.state_of(drifted, k), maps, 10**6).p_value)


CLASSES = ("cat", "dog", "bird")


def test_evaluate_model_exports_the_multiclass_estimates() -> None:
    k = len(CLASSES)
    rng = np.random.default_rng(80)
    spec = ModelSpec(name="animals", task="multiclass", classes=CLASSES)
    ref = _summary(*_stream(rng, 3000, k), k)
    cur = _summary(*_stream(rng, 2000, k), k, labelled=300)
    samples = evaluate_model(spec, "all", cur, ref, EvalSettings())
    est = [s for s in samples if s.name.startswith("ml_model_estimated_")]
    keys = {
        (
            s.name,
            tuple(k for k, _ in s.labels if k not in ("model", "variant", "window")),
            dict(s.labels)["bound"],
        )
        for s in est
    }
    for metric in ("precision", "recall", "f1_score"):
        name = f"ml_model_estimated_{metric}"
        bounds = ("estimate", "lower", "upper") if metric in BANDED else ("estimate",)
        for bound in bounds:
            assert (name, ("class", "bound"), bound) in keys and (name, ("average", "bound"), bound) in keys
        assert len([s for s in est if s.name == name]) == (k + 1) * len(bounds)
    assert len([s for s in est if s.name == "ml_model_estimated_accuracy"]) == 3
    assert all(0 <= s.value <= 1 for s in est)
    for s in samples:  # catalogue labels, leaving out only optional ones
        info = METRICS[s.name]
        assert set(dict(s.labels)) <= set(info.labels)
        assert set(info.labels) - set(dict(s.labels)) <= set(info.optional)
    check = {s.name: s.value for s in samples if "estimation" in s.name}
    assert check["streamon_estimation_reliable"] == 1.0
    text = render(Snapshot(event_time=0.0, samples=samples)).decode()
    assert (
        'ml_model_estimated_f1_score{average="macro",bound="estimate",model="animals",variant="all",window="current"}'
        in text
    )
    assert (
        'ml_model_estimated_precision{bound="lower",class="dog",model="animals",variant="all",window="current"}'
        in text
    )
    off = evaluate_model(spec, "all", cur, ref, EvalSettings(estimation_enabled=False))
    assert not [s for s in off if "estimat" in s.name]


def test_a_reference_without_the_maps_state_reads_nan() -> None:
    # A reference profile written before the maps' histograms existed has the confusion
    # counts but no own_labelled / own_correct: its maps hold no labels, so NaN, not a guess.
    k = 3
    rng = np.random.default_rng(90)
    ref = _summary(*_stream(rng, 3000, k), k)
    old = ref.copy()
    for key in (mc.OWN_LABELLED, mc.OWN_CORRECT):
        del old.counts[key]
    cur = _summary(*_stream(rng, 1000, k), k, labelled=100)
    assert mc.state_of(old, k).n_labelled == 3000
    assert math.isnan(_estimate(cur, old, k, min_labelled=100).accuracy[0])
    assert not math.isnan(_estimate(cur, ref, k, min_labelled=100).accuracy[0])
    maps = class_maps(mc.state_of(old, k), k, 10.0)
    assert math.isnan(multiclass_calibration_check(mc.state_of(cur, k), maps, 100).p_value)
