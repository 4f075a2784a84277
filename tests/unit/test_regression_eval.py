"""Evaluation of a regression model (evaluate_model on summaries of design.md §6).

Summaries are built with ``regression.add_labelled`` from seeded random pairs, split into
parts and merged. Oracles: scikit-learn's ``mean_absolute_error``, ``mean_squared_error``
(RMSE = its root), ``mean_absolute_percentage_error`` (on labels without zeros) and
``r2_score`` within 1e-12 relative; ``np.quantile(method="lower")`` within the sketch's
relative accuracy for the residual quantiles; for prediction and target drift, the drift
series of a numeric feature fed the same values (the same binning, bit for bit) and scipy's
``ks_2samp`` within the sketch's accuracy.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy.stats import ks_2samp
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    r2_score,
)

from streamon.core.catalogue import METRICS
from streamon.core.profile import FeatureSpec, ModelSpec
from streamon.core.stages.evaluate import EvalSettings, Sample, evaluate_model
from streamon.core.state.sketch import LogSketch
from streamon.core.state.summary import N_PREDICTIONS, BucketSummary
from streamon.core.statistics import regression
from streamon.core.statistics.segments import segment_samples

REL = 1e-12
Floats = npt.NDArray[np.float64]
PERF = ("ml_model_mae", "ml_model_rmse", "ml_model_mape", "ml_model_r2", "ml_model_mean_error")
DRIFT = ("psi_score", "ks_statistic", "ks_p_value", "js_divergence", "wasserstein_distance")


def _spec(features: list[FeatureSpec] | None = None) -> ModelSpec:
    return ModelSpec(name="price", task="regression", features=features or [])


def _summary(p: Floats, y: Floats, parts: int = 3, feature: str | None = None) -> BucketSummary:
    """The merge of ``parts`` summaries of consecutive slices of the labelled pairs, each with
    its predictions counted as stage 1 does (volume and the prediction sketch); ``feature``
    also counts the predictions as a numeric feature of that name."""
    merged = BucketSummary()
    for ps, ys in zip(np.array_split(p, parts), np.array_split(y, parts), strict=True):
        part = BucketSummary()
        part.counts[N_PREDICTIONS] = np.array([ps.size, 0], dtype=np.int64)
        part.sketches.setdefault(regression.PREDICTION, LogSketch()).add(ps)
        if feature is not None:
            part.add_numeric_feature(feature, ps)
        regression.add_labelled(part, ps, ys)
        merged += part
    return merged


def _pairs(seed: int, n: int = 2000, shift: float = 0.0) -> tuple[Floats, Floats]:
    rng = np.random.default_rng(seed)
    y = rng.lognormal(3.0, 0.5, n) + shift  # positive: MAPE is defined on every row
    p = y + rng.normal(0.5, 2.0, n)
    return p, y


def _by_key(samples: list[Sample]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels)): s.value for s in samples}


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    want = set(({"model": "price", "variant": "all", "window": "current"} | labels).items())
    hits = [s.value for s in samples if s.name == name and set(s.labels) == want]
    assert len(hits) == 1, (name, labels, hits)
    return hits[0]


def _evaluate(cur: BucketSummary, ref: BucketSummary, **kw: object) -> list[Sample]:
    baseline = kw.pop("baseline", None)
    settings = EvalSettings(**kw)  # type: ignore[arg-type]
    return evaluate_model(_spec(), "all", cur, ref, settings, baseline)  # type: ignore[arg-type]


def test_performance_equals_scikit_learn() -> None:
    p, y = _pairs(1)
    rp, ry = _pairs(2)
    samples = _evaluate(_summary(p, y), _summary(rp, ry, parts=4))
    for window, (pp, yy) in (("current", (p, y)), ("reference", (rp, ry))):
        oracle = {
            "ml_model_mae": mean_absolute_error(yy, pp),
            "ml_model_rmse": math.sqrt(mean_squared_error(yy, pp)),
            "ml_model_mape": mean_absolute_percentage_error(yy, pp),
            "ml_model_r2": r2_score(yy, pp),
            "ml_model_mean_error": float(np.mean(pp - yy)),
        }
        for name, want in oracle.items():
            got = _value(samples, name, window=window)
            assert got == pytest.approx(want, rel=REL), (name, window)
        residuals = np.abs(pp - yy)
        for q in ("0.5", "0.9", "0.99"):
            got = _value(samples, "ml_model_residual_quantile", window=window, quantile=q)
            want = float(np.quantile(residuals, float(q), method="lower"))
            assert abs(got - want) <= 0.01 * want, (q, window)
        assert _value(samples, "streamon_labelled_in_window", window=window) == len(yy)
        assert _value(samples, "streamon_predictions_in_window", window=window) == len(pp)
        assert _value(samples, "streamon_label_coverage_ratio", window=window) == 1.0
        assert _value(samples, "streamon_mape_excluded_in_window", window=window) == 0


def test_merged_parts_equal_the_whole() -> None:
    p, y = _pairs(3)
    rp, ry = _pairs(4)
    ref = _summary(rp, ry)
    one = _by_key(_evaluate(_summary(p, y, parts=1), ref))
    many = _by_key(_evaluate(_summary(p, y, parts=7), ref))
    assert one.keys() == many.keys()
    for key, value in one.items():
        assert value == many[key] or (math.isnan(value) and math.isnan(many[key])), key


def test_mape_excludes_and_counts_zero_labels() -> None:
    p, y = _pairs(5, n=500)
    y[::10] = 0.0  # 50 zero labels
    samples = _evaluate(_summary(p, y), _summary(p, y))
    keep = y != 0
    want = mean_absolute_percentage_error(y[keep], p[keep])
    assert _value(samples, "ml_model_mape") == pytest.approx(want, rel=REL)
    assert _value(samples, "streamon_mape_excluded_in_window") == 50
    # The other statistics keep every row.
    assert _value(samples, "ml_model_mae") == pytest.approx(mean_absolute_error(y, p), rel=REL)


def test_nan_below_min_labelled_and_for_a_constant_label() -> None:
    p, y = _pairs(6, n=40)
    samples = _evaluate(_summary(p, y), _summary(p, y), min_labelled=50)
    for name in PERF:
        assert math.isnan(_value(samples, name)), name
    for q in ("0.5", "0.9", "0.99"):
        assert math.isnan(_value(samples, "ml_model_residual_quantile", quantile=q))
    assert _value(samples, "streamon_labelled_in_window") == 40  # counts stay exact
    assert math.isnan(_value(samples, "streamon_model_degradation_ratio", metric="mae"))
    # At the minimum the values are defined; R² stays NaN for a constant label (SS_tot = 0).
    const = np.full(50, 7.0)
    samples = _evaluate(_summary(const + 1.0, const), _summary(const, const), min_labelled=50)
    assert _value(samples, "ml_model_mae") == 1.0
    assert math.isnan(_value(samples, "ml_model_r2"))
    assert _value(samples, "ml_model_mape", window="reference") == 0.0


def test_degradation_direction() -> None:
    y = _pairs(7)[1]
    rng = np.random.default_rng(8)
    good = y + rng.normal(0.0, 1.0, y.size)
    bad = y + rng.normal(0.0, 3.0, y.size)  # three times the spread: worse on every metric
    samples = _evaluate(_summary(bad, y), _summary(good, y))
    ratio = {m: _value(samples, "streamon_model_degradation_ratio", metric=m) for m in ("mae", "rmse", "r2")}
    want_mae = (mean_absolute_error(y, bad) - mean_absolute_error(y, good)) / mean_absolute_error(y, good)
    assert ratio["mae"] == pytest.approx(want_mae, rel=1e-9)
    assert ratio["mae"] > 1.0 and ratio["rmse"] > 1.0 and ratio["r2"] > 0.0
    # Improving is a negative ratio; an explicit baseline replaces the reference window.
    better = _evaluate(_summary(good, y), _summary(bad, y))
    assert _value(better, "streamon_model_degradation_ratio", metric="mae") < 0.0
    base = {"mae": mean_absolute_error(y, bad) / 2, "r2": 0.99}
    pinned = _evaluate(_summary(bad, y), _summary(good, y), baseline=base)
    assert _value(pinned, "streamon_model_degradation_ratio", metric="mae") == pytest.approx(1.0, rel=1e-12)
    assert {dict(s.labels)["metric"] for s in pinned if s.name == "streamon_model_degradation_ratio"} == {
        "mae",
        "r2",
    }


def test_output_drift_is_feature_drift_of_the_same_values() -> None:
    p, y = _pairs(9)
    rp, ry = _pairs(10, shift=15.0)  # a reference of larger targets and predictions
    spec = _spec([FeatureSpec("pred_copy", "numeric")])
    cur, ref = _summary(p, y, feature="pred_copy"), _summary(rp, ry, parts=2, feature="pred_copy")
    samples = evaluate_model(spec, "all", cur, ref, EvalSettings())
    feature = {
        "psi_score": "ml_data_drift_psi_score",
        "ks_statistic": "ml_data_drift_ks_statistic",
        "ks_p_value": "ml_data_drift_ks_p_value",
        "js_divergence": "ml_data_drift_js_divergence",
        "wasserstein_distance": "ml_data_drift_wasserstein_distance",
    }
    for suffix, name in feature.items():
        assert _value(samples, f"ml_prediction_drift_{suffix}") == _value(samples, name, feature="pred_copy")
    assert _value(samples, "ml_prediction_drift_psi_score") > 1.0
    assert _value(samples, "ml_target_drift_psi_score") > 1.0
    assert _value(samples, "ml_target_drift_ks_p_value") < 1e-10
    for prefix, (a, b) in (("prediction", (rp, p)), ("target", (ry, y))):
        ks = ks_2samp(a, b).statistic
        assert abs(_value(samples, f"ml_{prefix}_drift_ks_statistic") - ks) <= 0.02


def test_output_drift_near_zero_for_one_distribution() -> None:
    p, y = _pairs(11)
    same = _evaluate(_summary(p, y), _summary(p, y))
    for prefix in ("prediction", "target"):
        assert _value(same, f"ml_{prefix}_drift_psi_score") == 0.0
        assert _value(same, f"ml_{prefix}_drift_ks_statistic") == 0.0
        assert _value(same, f"ml_{prefix}_drift_wasserstein_distance") == 0.0
    rp, ry = _pairs(12)  # another sample of the same distribution
    other = _evaluate(_summary(p, y), _summary(rp, ry))
    for prefix in ("prediction", "target"):
        assert 0.0 < _value(other, f"ml_{prefix}_drift_psi_score") < 0.05
        assert _value(other, f"ml_{prefix}_drift_ks_p_value") > 0.01


def test_output_drift_nan_below_min_drift_samples_and_methods_respected() -> None:
    p, y = _pairs(13, n=300)
    cur = _summary(p, y)
    ref = _summary(p[:80], y[:80])  # 80 predictions and labels in the reference
    samples = _evaluate(cur, ref, min_drift_samples=100)
    for prefix in ("prediction", "target"):
        for suffix in DRIFT:
            assert math.isnan(_value(samples, f"ml_{prefix}_drift_{suffix}"))
    # Labels are counted on their own: enough predictions but too few labels = target drift NaN.
    partly = _summary(p[:150], y[:150])
    partly.counts.pop(regression.COUNTS_KEY)
    partly.sums.pop(regression.SUMS_KEY)
    partly.sketches.pop(regression.RESIDUALS)
    partly.sketches.pop(regression.TARGET)
    regression.add_labelled(partly, p[:60], y[:60])  # 150 predictions, 60 of them labelled
    samples = _evaluate(partly, cur, min_drift_samples=100)
    assert not math.isnan(_value(samples, "ml_prediction_drift_psi_score"))
    assert math.isnan(_value(samples, "ml_target_drift_psi_score"))
    only_psi = _evaluate(cur, cur, drift_methods={"psi": 0.1})
    names = {s.name for s in only_psi if "_drift_" in s.name and "data_drift" not in s.name}
    assert names == {"ml_prediction_drift_psi_score", "ml_target_drift_psi_score"}


def test_no_binary_series_and_every_series_catalogued() -> None:
    p, y = _pairs(14)
    samples = _evaluate(_summary(p, y), _summary(p, y))
    names = {s.name for s in samples}
    for binary in (
        "ml_model_accuracy",
        "ml_model_auc_roc",
        "ml_model_brier_score",
        "ml_model_calibration_observed_rate",
        "ml_business_roi",
        "ml_fraud_expected_value",
        "ml_model_estimated_accuracy",
        "streamon_positive_rate",
        "streamon_concept_drift_detected",
        "ml_data_drift_psi_score",  # the score pseudo-feature; this model has no feature
    ):
        assert binary not in names, binary
    assert {*PERF, "ml_model_residual_quantile", "streamon_mape_excluded_in_window"} <= names
    assert {f"ml_{k}_drift_{s}" for k in ("prediction", "target") for s in DRIFT} <= names
    for s in samples:
        assert s.name in METRICS, s.name
        assert tuple(k for k, _ in s.labels) == METRICS[s.name].labels, s.name
    quantiles = sorted(dict(s.labels)["quantile"] for s in samples if s.name == "ml_model_residual_quantile")
    assert quantiles == ["0.5", "0.5", "0.9", "0.9", "0.99", "0.99"]  # current and reference


def test_segment_samples_of_a_regression_model() -> None:
    p, y = _pairs(15, n=300)
    spec = _spec([FeatureSpec("pred_copy", "numeric")])
    cur = _summary(p, y, feature="pred_copy")
    out = {s.name: s for s in segment_samples(spec, "region", "north", cur, cur, EvalSettings())}
    assert set(out) == {
        "streamon_segment_predictions_in_window",
        "streamon_segment_labelled_in_window",
        "streamon_segment_drift_psi_score",  # the feature's; no score pseudo-feature
    }
    assert out["streamon_segment_labelled_in_window"].value == 300
    assert dict(out["streamon_segment_drift_psi_score"].labels)["feature"] == "pred_copy"
