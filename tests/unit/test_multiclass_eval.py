"""Evaluation of a multiclass model (evaluate_model on summaries of design.md §6).

Summaries are built with ``multiclass.add_predictions`` / ``add_labelled`` from seeded
random streams, split into parts and merged. Oracles: scikit-learn's
``precision_recall_fscore_support(labels=..., zero_division=nan)``, ``accuracy_score``,
``log_loss(labels=...)`` and ``top_k_accuracy_score`` within 1e-12 relative (on continuous
scores, which have no ties: scikit-learn breaks top-k ties to the later class, streamon to
the earlier one); ``roc_auc_score`` one-vs-rest exactly on grid probabilities (multiples of
0.05 land one value per histogram bin, so the binned AUC is the exact one); numpy for the
predicted-class PSI and the value matrix. Counters are exact.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.metrics import (
    accuracy_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)

from streamon.core.catalogue import METRICS
from streamon.core.profile import ModelSpec
from streamon.core.stages.evaluate import EvalSettings, Sample, Snapshot, evaluate_model
from streamon.core.stages.stage2 import Aggregator
from streamon.core.state.summary import BucketSummary
from streamon.core.statistics import multiclass
from streamon.core.statistics.drift import DEFAULT_FLOOR
from streamon.exporter import render

REL = 1e-12
CLASSES = ("cat", "dog", "bird", "fish")
K = len(CLASSES)
KS = (2, 3)
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def _spec(**extra: object) -> ModelSpec:
    spec = ModelSpec(name="animals", task="multiclass", classes=CLASSES, top_k=KS)
    for key, value in extra.items():  # fields the spec may not declare (value_matrix, class_mix)
        object.__setattr__(spec, key, value)
    return spec


def _stream(seed: int, n: int, grid: bool = False, skew: float = 1.0) -> tuple[Floats, Ints, Ints]:
    """(scores, predicted = argmax, actual) of ``n`` rows; actual drawn from the scores
    sharpened by ``skew`` (so the model is informative). ``grid``: scores are multiples of 0.05."""
    rng = np.random.default_rng(seed)
    alpha = np.array([2.0, 1.5, 1.0, 0.5])
    if grid:
        scores = np.array([rng.multinomial(20, rng.dirichlet(alpha)) for _ in range(n)]) / 20.0
    else:
        scores = rng.dirichlet(alpha, size=n)
    sharp = scores**skew + 1e-3
    sharp /= sharp.sum(axis=1, keepdims=True)
    actual = np.array([rng.choice(K, p=row) for row in sharp], dtype=np.int64)
    return scores, multiclass.predicted_from_scores(scores), actual


def _summary(
    scores: Floats, predicted: Ints, actual: Ints, labelled: int | None = None, parts: int = 3
) -> BucketSummary:
    """Every row predicted; the first ``labelled`` rows (all by default) also labelled; counted
    in ``parts`` slices and merged."""
    n = len(actual) if labelled is None else labelled
    merged = BucketSummary()
    for idx in np.array_split(np.arange(len(actual)), parts):
        part = BucketSummary()
        multiclass.add_predictions(part, scores[idx], predicted[idx], K)
        lab = idx[idx < n]
        if lab.size:
            multiclass.add_labelled(part, scores[lab], predicted[lab], actual[lab], K, KS)
        merged += part
    return merged


def _by_key(samples: list[Sample]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for s in samples:
        key = (s.name, frozenset((k, v) for k, v in s.labels if k not in ("model", "variant")))
        assert key not in out, key  # one series per label set
        out[key] = s.value
    return out


def _get(got: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return got[(name, frozenset({"window": "current", **labels}.items()))]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-15) or (math.isnan(a) and math.isnan(b))


def test_performance_equals_scikit_learn() -> None:
    scores, pred, act = _stream(1, 3000)
    ref = _summary(*_stream(2, 2000))
    got = _by_key(evaluate_model(_spec(), "all", _summary(scores, pred, act), ref, EvalSettings()))
    labels = list(range(K))
    assert _close(_get(got, "ml_model_accuracy"), accuracy_score(act, pred))
    p, r, f, _ = precision_recall_fscore_support(act, pred, labels=labels, zero_division=np.nan)
    for c, name in enumerate(CLASSES):
        assert _close(_get(got, "ml_model_precision", **{"class": name}), p[c])
        assert _close(_get(got, "ml_model_recall", **{"class": name}), r[c])
        assert _close(_get(got, "ml_model_f1_score", **{"class": name}), f[c])
    for average in ("macro", "weighted", "micro"):
        want = precision_recall_fscore_support(
            act, pred, labels=labels, average=average, zero_division=np.nan
        )
        for metric, w in zip(("precision", "recall", "f1_score"), want[:3], strict=False):
            assert _close(_get(got, f"ml_model_{metric}", average=average), float(w)), (metric, average)
    assert _close(_get(got, "ml_model_log_loss"), log_loss(act, scores, labels=labels))
    for k in KS:
        want_k = top_k_accuracy_score(act, scores, k=k, labels=labels)
        assert _close(_get(got, "ml_model_top_k_accuracy", k=str(k)), want_k)
    # The reference window is evaluated the same way.
    _, rp, ra = _stream(2, 2000)
    assert _close(got[("ml_model_accuracy", frozenset({("window", "reference")}))], accuracy_score(ra, rp))
    # No binary series: threshold-only metrics, calibration, score drift, positive rate.
    names = {n for n, _ in got}
    for binary in (
        "ml_model_specificity",
        "ml_model_auc_pr",
        "ml_model_brier_score",
        "ml_model_expected_calibration_error",
        "ml_fraud_lift",
        "streamon_positive_rate",
        "ml_data_drift_psi_score",
        "ml_business_roi",
        "ml_fraud_expected_value",
        "streamon_concept_drift_detected",
        "ml_model_estimated_auc_roc",
        "ml_fraud_estimated_expected_value",
    ):
        assert binary not in names, binary


def test_one_vs_rest_auc_is_exact_on_grid_probabilities() -> None:
    scores, pred, act = _stream(3, 2500, grid=True)
    got = _by_key(
        evaluate_model(_spec(), "all", _summary(scores, pred, act), BucketSummary(), EvalSettings())
    )
    for c, name in enumerate(CLASSES):
        want = roc_auc_score(act == c, scores[:, c])
        assert _get(got, "ml_model_auc_roc", **{"class": name}) == pytest.approx(want, rel=1e-14)
    macro = roc_auc_score(act, scores, multi_class="ovr", average="macro", labels=list(range(K)))
    assert _get(got, "ml_model_auc_roc", average="macro") == pytest.approx(macro, rel=1e-14)


def test_auc_within_the_binning_on_continuous_scores() -> None:
    scores, pred, act = _stream(4, 3000)
    got = _by_key(
        evaluate_model(_spec(), "all", _summary(scores, pred, act), BucketSummary(), EvalSettings())
    )
    for c, name in enumerate(CLASSES):
        # 200 equal-width bins: ties within a bin move the AUC by well under 1e-2.
        assert (
            abs(_get(got, "ml_model_auc_roc", **{"class": name}) - roc_auc_score(act == c, scores[:, c]))
            < 5e-3
        )


def test_undefined_class_metrics_are_nan_and_skipped_by_the_averages() -> None:
    # "fish" is never actual nor predicted; "bird" is actual but never predicted.
    rng = np.random.default_rng(5)
    n = 400
    act = rng.choice(3, size=n, p=[0.5, 0.3, 0.2]).astype(np.int64)
    pred = np.where(act == 2, 0, act)
    pred[rng.random(n) < 0.2] = 1
    scores = np.full((n, K), 0.1)
    scores[np.arange(n), pred] = 0.7
    got = _by_key(
        evaluate_model(_spec(), "all", _summary(scores, pred, act), BucketSummary(), EvalSettings())
    )
    assert math.isnan(_get(got, "ml_model_precision", **{"class": "bird"}))
    assert _get(got, "ml_model_recall", **{"class": "bird"}) == 0.0
    for metric in ("precision", "recall", "f1_score"):
        assert math.isnan(_get(got, f"ml_model_{metric}", **{"class": "fish"}))
    assert math.isnan(_get(got, "ml_model_auc_roc", **{"class": "fish"}))  # no positives
    labels = list(range(K))
    for average in ("macro", "weighted"):
        want = precision_recall_fscore_support(
            act, pred, labels=labels, average=average, zero_division=np.nan
        )
        assert _close(_get(got, "ml_model_precision", average=average), float(want[0]))
        assert _close(_get(got, "ml_model_f1_score", average=average), float(want[2]))


def test_too_few_labels_read_nan_and_coverage_counts() -> None:
    scores, pred, act = _stream(6, 500)
    cur = _summary(scores, pred, act, labelled=40)
    got = _by_key(evaluate_model(_spec(), "all", cur, BucketSummary(), EvalSettings(min_labelled=50)))
    perf = [
        v for (name, labels), v in got.items() if name.startswith("ml_model_") and "estimated" not in name
    ]
    assert perf and all(math.isnan(v) for v in perf)
    assert _get(got, "streamon_predictions_in_window") == 500
    assert _get(got, "streamon_labelled_in_window") == 40
    assert _get(got, "streamon_label_coverage_ratio") == 40 / 500
    # The estimate before labels needs a labelled reference (its calibration maps), not
    # min_labelled labels in the current window: without one it is NaN, with one it is defined.
    for bound in ("estimate", "lower", "upper"):
        assert math.isnan(_get(got, "ml_model_estimated_accuracy", bound=bound))
    ref = _summary(*_stream(9, 800))
    with_ref = _by_key(evaluate_model(_spec(), "all", cur, ref, EvalSettings(min_labelled=50)))
    for bound in ("estimate", "lower", "upper"):
        assert 0 < _get(with_ref, "ml_model_estimated_accuracy", bound=bound) < 1


def _psi(ref: Ints, cur: Ints) -> float:
    r = np.maximum(ref / ref.sum(), DEFAULT_FLOOR)
    c = np.maximum(cur / cur.sum(), DEFAULT_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def test_predicted_class_drift_over_all_predictions() -> None:
    scores, pred, act = _stream(7, 1200)
    rscores, rpred, ract = _stream(8, 900, skew=3.0)
    rpred = np.where(rpred == 3, 2, rpred)  # the reference never predicts "fish"
    cur = _summary(scores, pred, act, labelled=100)  # drift counts the unlabelled too
    ref = _summary(rscores, rpred, ract, labelled=0)
    got = _by_key(evaluate_model(_spec(), "all", cur, ref, EvalSettings()))
    want = _psi(np.bincount(rpred, minlength=K + 1), np.bincount(pred, minlength=K + 1))
    assert _close(_get(got, "ml_prediction_drift_psi_score"), want)
    # A pinned profile's class mix replaces the reference window (an undeclared class is unseen).
    mix = {"cat": 300, "dog": 300, "bird": 200, "zebra": 100}
    pinned = _by_key(evaluate_model(_spec(class_mix=mix), "all", cur, ref, EvalSettings()))
    want = _psi(np.array([300, 300, 200, 0, 100]), np.bincount(pred, minlength=K + 1))
    assert _close(_get(pinned, "ml_prediction_drift_psi_score"), want)
    few = _by_key(evaluate_model(_spec(), "all", cur, ref, EvalSettings(min_drift_samples=901)))
    assert math.isnan(_get(few, "ml_prediction_drift_psi_score"))


def test_business_value_from_the_value_matrix() -> None:
    scores, pred, act = _stream(9, 800)
    values = np.array(
        [[5.0, -1.0, -1.0, -2.0], [-1.0, 4.0, -3.0, 0.0], [0.5, -1.0, 8.0, -1.0], [0.0, 0.0, -4.0, 2.5]]
    )
    cur = _summary(scores, pred, act)
    plain = _by_key(evaluate_model(_spec(), "all", cur, BucketSummary(), EvalSettings()))
    assert ("ml_business_value_per_prediction", frozenset({("window", "current")})) not in plain
    got = _by_key(
        evaluate_model(_spec(value_matrix=values.tolist()), "all", cur, BucketSummary(), EvalSettings())
    )
    assert _close(_get(got, "ml_business_value_per_prediction"), float(values[act, pred].mean()))
    # The config's form, {actual: {predicted: value}} with cells left out as 0, reads the same.
    cells = {
        a: {p: v for p, v in zip(CLASSES, row, strict=True) if v}
        for a, row in zip(CLASSES, values, strict=True)
    }
    nested = _by_key(evaluate_model(_spec(value_matrix=cells), "all", cur, BucketSummary(), EvalSettings()))
    assert nested[("ml_business_value_per_prediction", frozenset({("window", "current")}))] == _get(
        got, "ml_business_value_per_prediction"
    )
    assert _get(got, "ml_business_processing_volume") == 800


def test_degradation_direction() -> None:
    good = _stream(10, 2000, skew=4.0)
    bad = _stream(11, 2000, skew=0.5)
    ref, cur = _summary(*good), _summary(*bad)
    got = _by_key(evaluate_model(_spec(), "all", cur, ref, EvalSettings()))

    def drop(metric: str) -> float:
        return _get(got, "streamon_model_degradation_ratio", metric=metric)

    metrics = {
        value
        for (name, labels), _ in got.items()
        if name == "streamon_model_degradation_ratio"
        for key, value in labels
        if key == "metric"
    }
    assert metrics == {"accuracy", "f1_score", "log_loss"}
    rep = {n: v for (n, ls), v in got.items() if ("window", "reference") in ls}
    now = {n: v for (n, ls), v in got.items() if ls == frozenset({("window", "current")})}
    for metric in ("accuracy", "log_loss"):
        assert drop(metric) > 0.05, metric  # worse in both directions of "better"
    assert _close(
        drop("accuracy"), (rep["ml_model_accuracy"] - now["ml_model_accuracy"]) / rep["ml_model_accuracy"]
    )
    assert _close(
        drop("log_loss"), (now["ml_model_log_loss"] - rep["ml_model_log_loss"]) / rep["ml_model_log_loss"]
    )
    # A configured baseline replaces the reference window.
    base = {"accuracy": 1.0, "f1_score": 1.0, "log_loss": 0.1}
    vs_base = _by_key(evaluate_model(_spec(), "all", cur, ref, EvalSettings(), baseline=base))
    want = (now["ml_model_log_loss"] - 0.1) / 0.1
    assert _close(_get(vs_base, "streamon_model_degradation_ratio", metric="log_loss"), want)


def test_every_sample_is_in_the_catalogue_with_its_labels() -> None:
    scores, pred, act = _stream(12, 600)
    spec = _spec(value_matrix=np.eye(K).tolist())
    samples = evaluate_model(
        spec, "all", _summary(scores, pred, act), _summary(*_stream(13, 600)), EvalSettings()
    )
    for s in samples:
        info = METRICS[s.name]
        keys = tuple(k for k, _ in s.labels)
        assert set(keys) <= set(info.labels), s
        assert set(info.labels) - set(keys) <= set(info.optional), s
    per_class = [s for s in samples if s.name == "ml_model_f1_score"]
    assert len(per_class) == 2 * (K + 3)  # per class and per average, in both windows


def test_confusion_counter_counts_every_labelled_prediction() -> None:
    scores, pred, act = _stream(14, 700)
    a = _summary(scores[:400], pred[:400], act[:400])
    b = _summary(scores[400:], pred[400:], act[400:])
    # A corrected label retracts from the window's confusion, never from the counter.
    multiclass.add_labelled(b, scores[400:401], pred[400:401], act[400:401], K, KS, sign=-1)
    snap = Snapshot(event_time=0.0)
    for variant, total in (("a", a), ("b", b)):
        Aggregator._confusion_samples(snap, "animals", variant, total, CLASSES)
    want = np.zeros((K, K), dtype=np.int64)
    np.add.at(want, (act[:400], pred[:400]), 1)
    for s in snap.series("ml_model_confusion_total"):
        labels = dict(s.labels)
        if labels["variant"] == "a":
            assert s.value == want[CLASSES.index(labels["actual"]), CLASSES.index(labels["predicted"])]
        assert tuple(labels) == METRICS[s.name].labels
    assert (
        sum(s.value for s in snap.series("ml_model_confusion_total") if dict(s.labels)["variant"] == "b")
        == 300
    )
    assert len(snap.series("ml_model_confusion_total")) == 2 * K * K
    text = render(snap).decode()
    cell = 'actual="cat",model="animals",predicted="cat",variant="a"'
    line = f"ml_model_confusion_total{{{cell}}} {float(want[0, 0])}"
    assert line in text.splitlines()
    assert "# TYPE ml_model_confusion_total counter" in text.splitlines()


def test_exporter_keeps_each_samples_own_label_set() -> None:
    binary = Sample(
        "ml_model_precision", (("model", "fraud"), ("variant", "all"), ("window", "current")), 0.5
    )
    per_class = Sample(
        "ml_model_precision",
        (("model", "animals"), ("variant", "all"), ("window", "current"), ("class", "cat")),
        0.25,
    )
    average = Sample(
        "ml_model_precision",
        (("model", "animals"), ("variant", "all"), ("window", "current"), ("average", "macro")),
        0.75,
    )
    text = render(Snapshot(event_time=0.0, samples=[binary, per_class, average])).decode()
    lines = [line for line in text.splitlines() if line.startswith("ml_model_precision")]
    assert lines == [
        'ml_model_precision{model="fraud",variant="all",window="current"} 0.5',
        'ml_model_precision{class="cat",model="animals",variant="all",window="current"} 0.25',
        'ml_model_precision{average="macro",model="animals",variant="all",window="current"} 0.75',
    ]
    assert (
        text.count("# HELP ml_model_precision ") == 1 and text.count("# TYPE ml_model_precision gauge") == 1
    )
    # A binary-only family renders exactly as the label-free family did.
    alone = render(Snapshot(event_time=0.0, samples=[binary])).decode()
    assert 'ml_model_precision{model="fraud",variant="all",window="current"} 0.5\n' in alone
    assert 'class=""' not in alone and 'average=""' not in alone


def test_spec_without_value_matrix_or_mix_fields() -> None:
    # A spec that declares neither field still evaluates (getattr defaults).
    spec = _spec()
    assert not hasattr(spec, "value_matrix") or spec.value_matrix is None  # type: ignore[attr-defined]
    scores, pred, act = _stream(15, 300)
    samples = evaluate_model(
        dataclasses.replace(spec), "all", _summary(scores, pred, act), BucketSummary(), EvalSettings()
    )
    assert any(s.name == "ml_model_accuracy" for s in samples)
