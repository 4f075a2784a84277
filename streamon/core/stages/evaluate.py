"""From merged window summaries to metric samples: every statistic of design.md §3.

:func:`evaluate_model` takes the current and reference :class:`BucketSummary` of one
model/variant and returns :class:`Sample` values named as in
:mod:`streamon.core.catalogue`. Both the live exporter and ``streamon replay`` print
exactly these samples.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamon.core.profile import ModelSpec
from streamon.core.state.sketch import LogSketch
from streamon.core.state.summary import (
    BRIER,
    CALIBRATION_LABELLED,
    CALIBRATION_POSITIVES,
    CALIBRATION_SCORES,
    FN,
    FP,
    LATENCY,
    LOG_LOSS,
    LOSSES,
    SCORES,
    TN,
    TP,
    BucketSummary,
    category_counts,
)
from streamon.core.statistics import classification, drift, multiclass, regression
from streamon.core.statistics.business import BusinessCosts, business_metrics
from streamon.core.statistics.calibration import Calibration, calibration
from streamon.core.statistics.concept_drift import detect_concept_drift, detect_concept_drift_counts
from streamon.core.statistics.degradation import degradation
from streamon.core.statistics.estimate import estimation_gauges, multiclass_estimation_gauges
from streamon.core.statistics.integrity import integrity_gauges

# The metrics compared against a baseline for degradation (higher is better).
DEGRADATION_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "auc_roc", "auc_pr")
SCORE_FEATURE = "score"  # the score distribution is monitored for drift like a feature


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def _sample(name: str, labels: tuple[tuple[str, str], ...], value: float) -> Sample:
    """``Sample(name, labels, value)`` for the thousands an evaluation makes: a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``; filling the
    instance dict directly gives the same object in half the time."""
    sample = object.__new__(Sample)
    sample.__dict__.update(name=name, labels=labels, value=value)
    return sample


@dataclass(frozen=True)
class HistogramSample:
    name: str
    labels: tuple[tuple[str, str], ...]
    upper_bounds: tuple[float, ...]  # ends with +inf
    cumulative_counts: tuple[int, ...]
    sum: float
    count: int


@dataclass
class Snapshot:
    """Everything stage 2 knows at one evaluation, ready to export."""

    event_time: float
    samples: list[Sample] = field(default_factory=list)
    histograms: list[HistogramSample] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float:
        """The value of the one sample matching ``name`` and ``labels`` (KeyError if none)."""
        want = set(labels.items())
        for s in self.samples:
            if s.name == name and want <= set(s.labels):
                return s.value
        raise KeyError(f"{name}{labels}")

    def series(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]


@dataclass(frozen=True)
class EvalSettings:
    current_s: float = 86400.0
    drift_bins: int = 10
    top_k: float = 0.01
    costs: BusinessCosts = field(
        default_factory=lambda: BusinessCosts(50.0, 1000.0, 25.0, 1000.0, 200.0, 10000.0)
    )
    degradation_medium: float = 0.05
    degradation_high: float = 0.10
    concept_drift_method: str = "adwin"
    drift_features: tuple[str, ...] | None = None  # None = all of the model's features
    # Families switched off are not exported; below min_* samples their values are NaN.
    performance_enabled: bool = True
    drift_enabled: bool = True
    business_enabled: bool = True
    min_labelled: int = 50  # performance: labelled predictions in the window
    min_business_labelled: int = 50
    min_drift_samples: int = 100  # drift: predictions in the current and the reference window
    # Enabled drift methods and their thresholds (p-values for ks_test / chi_square;
    # wasserstein relative to the reference's standard deviation).
    drift_methods: dict[str, float] = field(
        default_factory=lambda: {
            "psi": 0.1,
            "ks_test": 0.05,
            "js_divergence": 0.1,
            "chi_square": 0.05,
            "wasserstein": 0.1,
        }
    )
    # Estimated performance of the unlabelled predictions (streamon.core.statistics.estimate).
    estimation_enabled: bool = True
    estimation_prior_strength: float = 10.0  # Beta prior pseudo-count per score bin
    estimation_confidence: float = 0.9  # level of the lower/upper band
    min_estimation_labelled: int = 100  # labelled predictions the map (and the calibration check) need
    estimation_reliable_p_value: float = 0.01  # calibration p-value below which reliable = 0
    # The only sample names the caller reads (e.g. the alert rules' metrics in replay's
    # evaluations before the last); None = all. Feature-drift tests none of whose samples
    # is read are left out (FEATURE_DRIFT_NAMES); every other sample is made as usual.
    reads: frozenset[str] | None = None


# The samples of each feature-drift method (evaluate_model); every method also sets DRIFT_DETECTED.
DRIFT_DETECTED = "streamon_feature_drift_detected"
FEATURE_DRIFT_NAMES = {
    "psi": ("ml_data_drift_psi_score",),
    "js_divergence": ("ml_data_drift_js_divergence",),
    "chi_square": ("ml_data_drift_chi2_p_value",),
    "ks_test": ("ml_data_drift_ks_statistic", "ml_data_drift_ks_p_value"),
    "wasserstein": ("ml_data_drift_wasserstein_distance",),
}


def feature_drift_methods(settings: EvalSettings) -> dict[str, float]:
    """The enabled feature-drift methods (name -> threshold) whose samples someone reads."""
    reads = settings.reads
    if reads is None or DRIFT_DETECTED in reads:
        return settings.drift_methods
    methods = settings.drift_methods.items()
    return {m: t for m, t in methods if not reads.isdisjoint(FEATURE_DRIFT_NAMES.get(m, (m,)))}


def _labels(**kv: str) -> tuple[tuple[str, str], ...]:
    return tuple(kv.items())


def performance_metrics(summary: BucketSummary, score_bins: int, top_k: float) -> dict[str, float]:
    """accuracy … f1, AUCs, precision at 1%/5% FPR, lift and detection rate of one window."""
    c = summary.confusion
    out = classification.threshold_metrics(int(c[TP]), int(c[FP]), int(c[TN]), int(c[FN]))
    pos, neg, ties = summary.ranking_histograms(score_bins)
    out["auc_roc"] = classification.auc_roc(pos, neg)
    out["auc_pr"] = classification.auc_pr(pos, neg, ties)
    out["precision_at_1"] = classification.precision_at_fpr(pos, neg, 0.01)
    out["precision_at_5"] = classification.precision_at_fpr(pos, neg, 0.05)
    out["lift"], out["detection_rate"] = classification.top_k_lift(pos, neg, top_k)
    return out


def calibration_metrics(summary: BucketSummary, calibration_bins: int) -> Calibration:
    """Brier score, log loss, ECE and reliability curve of one window's labelled predictions.

    All NaN unless the calibration state covers every labelled prediction in
    ``calibration_bins`` bins (labels counted before it existed, or in other bins, do not).
    """
    labelled = summary.counts.get(CALIBRATION_LABELLED)
    if labelled is None or len(labelled) != calibration_bins or int(labelled.sum()) != summary.n_labelled:
        return Calibration.undefined(calibration_bins)
    losses = summary.sums.get(LOSSES, [0, 0])
    return calibration(
        labelled.tolist(),
        summary.vector(CALIBRATION_POSITIVES, calibration_bins).tolist(),
        summary.sums.get(CALIBRATION_SCORES, [0] * calibration_bins),
        losses[BRIER],
        losses[LOG_LOSS],
    )


_PERF_NAMES = {
    "accuracy": "ml_model_accuracy",
    "precision": "ml_model_precision",
    "recall": "ml_model_recall",
    "specificity": "ml_model_specificity",
    "f1": "ml_model_f1_score",
    "auc_roc": "ml_model_auc_roc",
    "auc_pr": "ml_model_auc_pr",
    "precision_at_1": "ml_fraud_precision_at_1_percent",
    "precision_at_5": "ml_fraud_precision_at_5_percent",
    "lift": "ml_fraud_lift",
    "detection_rate": "ml_fraud_detection_rate",
}


def _sketch_bins(
    ref_sketch: LogSketch, ref: drift.SketchArrays, cur: drift.SketchArrays, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of ``ref`` and ``cur`` over ``bins`` quantile bins of ``ref``, for a rolling reference.

    Edges are the reference's quantiles to within the sketch's relative accuracy,
    snapped to bucket representatives, so both count vectors are exact for them. The
    edges and the reference's counts are kept with its sketch until it changes.
    """

    def of_reference(_: LogSketch) -> tuple[np.ndarray, np.ndarray]:
        # ascending: quantiles of sorted values
        edges = drift.sorted_unique(ref.quantile(_inner_quantiles(bins)))
        counts = ref.counts_between(edges)
        edges.flags.writeable = counts.flags.writeable = False
        return edges, counts

    edges, ref_counts = ref_sketch.derived(f"quantile_bins:{bins}", of_reference)
    return ref_counts, cur.counts_between(edges)


def _inner_quantiles(bins: int) -> npt.NDArray[np.float64]:
    return np.linspace(0.0, 1.0, bins + 1)[1:-1]


def features_drift(
    spec: ModelSpec,
    features: Sequence[tuple[str, str]],
    cur: BucketSummary,
    ref: BucketSummary,
    bins: int,
    methods: Collection[str] | None = None,
) -> list[dict[str, float]]:
    """:func:`feature_drift` of every ``(name, kind)`` in ``features``, in one pass.

    Per feature the sketches' buckets are read once and KS and Wasserstein share one grid and
    CDF pair; the count vectors of all features are checked once, and the p-values of all
    features come from one vectorised scipy call per test. Every value is the one the
    per-statistic functions of :mod:`streamon.core.statistics.drift` give.

    ``methods`` (default all): the drift methods whose values are wanted. Without
    ``chi_square`` there is no ``chi2_p``, without ``ks_test`` and ``wasserstein`` no ``ks``,
    ``ks_p``, ``wasserstein`` or ``ref_std``, without ``ks_test`` no ``ks_p``; PSI, JS and
    the missing ratio are always there (they share the bins).
    """
    want_chi = methods is None or "chi_square" in methods
    want_ks_p = methods is None or "ks_test" in methods
    want_ks = methods is None or "ks_test" in methods or "wasserstein" in methods
    outs: list[dict[str, float]] = []
    binned: list[tuple[np.ndarray, np.ndarray]] = []
    chi: list[tuple[int, np.ndarray, np.ndarray]] = []  # (feature index, ref counts, cur counts)
    ks: list[tuple[int, float, float]] = []  # (feature index, D, n*m/(n+m))
    for i, (name, kind) in enumerate(features):
        out: dict[str, float] = {}
        if kind == "categorical":
            cats = spec.categories.get(name)
            ref_counter: Mapping[str, int] = ref.categories.get(name, {})
            if cats is None:  # rolling reference: its own categories, most frequent first
                cats = [
                    k
                    for k, _ in sorted(ref_counter.items(), key=lambda kv: (-kv[1], kv[0]))
                    if not k.startswith("__")
                ]
            r = category_counts(ref_counter, cats)
            c = category_counts(cur.categories.get(name, {}), cats)
            if want_chi:
                out["chi2_p"] = math.nan
                if r.sum() and c.sum():
                    chi.append((i, r, c))
            total = c.sum()
            out["missing"] = c[-1] / total if total else math.nan
        else:
            ref_sketch = ref.sketches.get(name)
            cur_sk = drift.SketchArrays.of(cur.sketches.get(name), spec.relative_accuracy)
            ref_sk = drift.SketchArrays.of(ref_sketch, spec.relative_accuracy)
            if name in spec.edges:
                r = ref.vector(f"bins:{name}", len(spec.edges[name]) + 1)
                c = cur.vector(f"bins:{name}", len(spec.edges[name]) + 1)
            elif ref_sketch is not None and ref_sk.n:
                r, c = _sketch_bins(ref_sketch, ref_sk, cur_sk, bins)
            else:
                r = c = np.zeros(1, dtype=np.int64)
            miss_r = ref.vector(f"missing:{name}", 2)
            miss_c = cur.vector(f"missing:{name}", 2)
            # The missing bin is a bin like any other: a surge of missing values is drift.
            r = np.concatenate((r, miss_r[:1]))
            c = np.concatenate((c, miss_c[:1]))
            out["missing"] = miss_c[0] / miss_c[1] if miss_c[1] else math.nan
            if not want_ks:
                pass
            elif not ref_sk.n or not cur_sk.n:
                out["ks"] = out["ks_p"] = out["wasserstein"] = math.nan
            else:
                d, w, size = drift.ks_wasserstein(ref_sk, cur_sk)
                out["ks"], out["ks_p"], out["wasserstein"] = d, math.nan, w  # p-value: below
                if want_ks_p:
                    ks.append((i, d, size))
                assert ref_sketch is not None  # ref_sk.n > 0
                out["ref_std"] = drift.SketchArrays.std_of(ref_sketch)
        binned.append((r, c))
        outs.append(out)

    # Input checks once for the whole evaluation, then the unchecked statistics.
    drift.check_counts(*(v for pair in binned for v in pair))
    by_length: dict[int, list[int]] = {}  # PSI and JS of equally long count vectors: one 2-D pass
    for i, (r, c) in enumerate(binned):
        if r.shape != c.shape:  # e.g. bins counted with other edges than the profile's
            raise ValueError(f"count arrays must be 1-D of equal length, got shapes {r.shape} and {c.shape}")
        by_length.setdefault(r.size, []).append(i)
    for rows in by_length.values():
        r2 = np.array([binned[i][0] for i in rows], dtype=np.float64)
        c2 = np.array([binned[i][1] for i in rows], dtype=np.float64)
        psi_rows, js_rows = drift.psi_js_rows(r2, c2)
        for i, p, j in zip(rows, psi_rows.tolist(), js_rows.tolist(), strict=True):
            outs[i]["psi"], outs[i]["js"] = p, j
    if chi:
        statistics = np.array(
            [drift.chi_square_statistic_of(r.astype(np.float64), c.astype(np.float64)) for _, r, c in chi]
        )
        dof = np.array([r.size - 1 for _, r, _ in chi], dtype=np.int64)
        for (i, _, _), p in zip(chi, drift.chi2_p_values(statistics, dof).tolist(), strict=True):
            outs[i]["chi2_p"] = p
    if ks:
        p_values = drift.ks_p_values(np.array([d for _, d, _ in ks]), np.array([n for _, _, n in ks]))
        for (i, _, _), p in zip(ks, p_values.tolist(), strict=True):
            outs[i]["ks_p"] = p
    return outs


def feature_drift(
    spec: ModelSpec, name: str, kind: str, cur: BucketSummary, ref: BucketSummary, bins: int
) -> dict[str, float]:
    """PSI, JS and (categorical) chi-square or (numeric) KS / Wasserstein of one feature."""
    return features_drift(spec, [(name, kind)], cur, ref, bins)[0]


def drift_flag(method: str, d: dict[str, float], threshold: float) -> float:
    """1.0 when ``method`` says the feature drifted, 0.0 when not, NaN when undefined.

    >>> drift_flag("ks_test", {"ks_p": 0.01}, 0.05), drift_flag("psi", {"psi": 0.05}, 0.1)
    (1.0, 0.0)
    """
    if method == "ks_test":
        value, breached = d["ks_p"], d["ks_p"] < threshold
    elif method == "chi_square":
        value, breached = d["chi2_p"], d["chi2_p"] < threshold
    elif method == "wasserstein":
        value = d["wasserstein"] / d["ref_std"] if d.get("ref_std") else math.nan
        breached = value > threshold
    else:
        value = d["psi" if method == "psi" else "js"]
        breached = value > threshold
    return math.nan if math.isnan(value) else float(breached)


def score_drift(spec: ModelSpec, cur: BucketSummary, ref: BucketSummary) -> dict[str, float]:
    r = ref.vector(SCORES, spec.score_bins)
    c = cur.vector(SCORES, spec.score_bins)
    if r.sum() == 0 or c.sum() == 0:
        return {"psi": math.nan, "js": math.nan}
    # Score drift on deciles-equivalent coarse bins: 10 equal-width groups of score bins.
    group = max(1, spec.score_bins // 10)
    rg = np.add.reduceat(r, np.arange(0, spec.score_bins, group))
    cg = np.add.reduceat(c, np.arange(0, spec.score_bins, group))
    return {"psi": drift.psi(rg, cg), "js": drift.js_distance(rg, cg)}


def estimation(
    spec: ModelSpec, current: BucketSummary, reference: BucketSummary, settings: EvalSettings
) -> list[tuple[str, float, dict[str, str]]]:
    """The estimated-performance gauges of one window
    (:func:`~streamon.core.statistics.estimate.estimation_gauges`)."""
    return estimation_gauges(
        current,
        reference,
        spec.score_bins,
        settings.costs,
        prior_strength=settings.estimation_prior_strength,
        confidence=settings.estimation_confidence,
        min_labelled=settings.min_estimation_labelled,
        reliable_p_value=settings.estimation_reliable_p_value,
    )


class _Add(Protocol):
    """The sample adder of one :func:`evaluate_model` call (its model and variant labels)."""

    def __call__(self, name: str, value: float, window: str = "current", **extra: str) -> None: ...


def _binary_performance(
    add: _Add,
    spec: ModelSpec,
    current: BucketSummary,
    reference: BucketSummary,
    settings: EvalSettings,
    baseline: Mapping[str, float] | None,
    bucket_error_rates: Iterable[float],
    window_seconds: float | None,
    operating_share: float,
    bucket_errors: tuple[Sequence[int], Sequence[int]] | None,
) -> None:
    """Performance, calibration, coverage, business, estimation, degradation and concept drift
    of a binary model."""
    perf: dict[str, dict[str, float]] = {}
    for window, summary in (("current", current), ("reference", reference)):
        perf[window] = performance_metrics(summary, spec.score_bins, settings.top_k)
        if summary.n_labelled < settings.min_labelled:  # too few labels to mean anything
            perf[window] = dict.fromkeys(perf[window], math.nan)
        if settings.performance_enabled:
            for key, name in _PERF_NAMES.items():
                add(name, perf[window][key], window)
            bins = spec.calibration_bins
            enough = summary.n_labelled >= settings.min_labelled
            cal = calibration_metrics(summary, bins) if enough else Calibration.undefined(bins)
            add("ml_model_brier_score", cal.brier, window)
            add("ml_model_log_loss", cal.log_loss, window)
            add("ml_model_expected_calibration_error", cal.ece, window)
            for b, (rate, mean) in enumerate(zip(cal.observed_rate, cal.mean_score, strict=True)):
                add("ml_model_calibration_observed_rate", rate, window, bin=str(b))
                add("ml_model_calibration_mean_score", mean, window, bin=str(b))
        n, labelled = summary.n_predictions, summary.n_labelled
        add("streamon_predictions_in_window", n, window)
        add("streamon_labelled_in_window", labelled, window)
        add("streamon_label_coverage_ratio", labelled / n if n else math.nan, window)
        add("streamon_positive_rate", summary.n_predicted_positive / n if n else math.nan, window)

    # Business value of the current window.
    c = current.confusion
    span = settings.current_s if window_seconds is None else window_seconds
    tp, fp, tn, fn = int(c[TP]), int(c[FP]), int(c[TN]), int(c[FN])
    biz = business_metrics(tp, fp, tn, fn, settings.costs, span, operating_share)
    labelled = int(c.sum())
    enough = labelled >= settings.min_business_labelled and labelled > 0
    if settings.business_enabled:
        add("ml_business_roi", biz["roi"] if enough else math.nan)
        add("ml_business_cost_savings", biz["cost_savings"] if enough else math.nan)
        add("ml_business_processing_volume", current.n_predictions)
        add("ml_business_alert_volume", current.n_predicted_positive)
        add("ml_fraud_expected_value", biz["net_benefit"] / labelled if enough else math.nan)

    if settings.estimation_enabled:  # what the current window's metrics will be once labelled
        for name, value, extra in estimation(spec, current, reference, settings):
            add(name, value, **extra)

    # Degradation against the configured baseline, else the reference window.
    base = baseline or {k: perf["reference"][k] for k in DEGRADATION_METRICS}
    for metric, drop in degradation(
        {k: perf["current"][k] for k in DEGRADATION_METRICS},
        base,
        settings.degradation_medium,
        settings.degradation_high,
    ).items():
        add("streamon_model_degradation_ratio", drop.relative_drop, metric=metric)

    rates = [r for r in bucket_error_rates]
    cd = None
    method = settings.concept_drift_method
    if bucket_errors is not None and len(bucket_errors[0]):
        cd = detect_concept_drift_counts(*bucket_errors, method=method)  # type: ignore[arg-type]
    elif rates:
        cd = detect_concept_drift(rates, method=method)  # type: ignore[arg-type]
    if cd is not None:
        add(
            "streamon_concept_drift_detected",
            1.0 if cd.detected else 0.0,
            method=settings.concept_drift_method,
        )


# Regression gauges of one window, in the order they are exported.
_REGRESSION_NAMES = {
    "mae": "ml_model_mae",
    "rmse": "ml_model_rmse",
    "mape": "ml_model_mape",
    "r2": "ml_model_r2",
    "mean_error": "ml_model_mean_error",
}
# Output distributions monitored for drift like numeric features: pseudo-feature ->
# drift method -> [(exported metric, statistic of features_drift)].
_OUTPUT_DRIFT: dict[str, dict[str, list[tuple[str, str]]]] = {
    regression.PREDICTION: {
        "psi": [("ml_prediction_drift_psi_score", "psi")],
        "ks_test": [("ml_prediction_drift_ks_statistic", "ks"), ("ml_prediction_drift_ks_p_value", "ks_p")],
        "js_divergence": [("ml_prediction_drift_js_divergence", "js")],
        "wasserstein": [("ml_prediction_drift_wasserstein_distance", "wasserstein")],
    },
    regression.TARGET: {
        "psi": [("ml_target_drift_psi_score", "psi")],
        "ks_test": [("ml_target_drift_ks_statistic", "ks"), ("ml_target_drift_ks_p_value", "ks_p")],
        "js_divergence": [("ml_target_drift_js_divergence", "js")],
        "wasserstein": [("ml_target_drift_wasserstein_distance", "wasserstein")],
    },
}


def _regression_performance(
    add: _Add,
    current: BucketSummary,
    reference: BucketSummary,
    settings: EvalSettings,
    baseline: Mapping[str, float] | None,
) -> None:
    """MAE, RMSE, MAPE, R², bias, residual quantiles, coverage and degradation of a regression
    model. Its labelled count is the regression state's (a regression model has no confusion
    counts); business value, estimation and concept drift on binary errors do not apply."""
    perf: dict[str, dict[str, float]] = {}
    for window, summary in (("current", current), ("reference", reference)):
        state = regression.state_of(summary)
        values = regression.regression_metrics(state)
        quantiles = regression.residual_quantiles(state)
        if state.n < settings.min_labelled:  # too few labels to mean anything
            values = dict.fromkeys(values, math.nan)
            quantiles = dict.fromkeys(quantiles, math.nan)
        perf[window] = values
        if settings.performance_enabled:
            for key, name in _REGRESSION_NAMES.items():
                add(name, values[key], window)
            for q, value in quantiles.items():
                add("ml_model_residual_quantile", value, window, quantile=q)
        n = summary.n_predictions
        add("streamon_predictions_in_window", n, window)
        add("streamon_labelled_in_window", state.n, window)
        add("streamon_label_coverage_ratio", state.n / n if n else math.nan, window)
        add("streamon_mape_excluded_in_window", state.zero_labels, window)

    # Degradation against the configured baseline, else the reference window.
    base = baseline or perf["reference"]
    for metric, drop in regression.regression_degradation(
        perf["current"], base, settings.degradation_medium, settings.degradation_high
    ).items():
        add("streamon_model_degradation_ratio", drop.relative_drop, metric=metric)


def _output_drift(
    add: _Add,
    spec: ModelSpec,
    current: BucketSummary,
    reference: BucketSummary,
    settings: EvalSettings,
    memo: dict[Any, Any] | None,
) -> None:
    """Drift of a regression model's prediction and target distributions, with the statistics
    of a numeric feature (:func:`features_drift` on the pseudo-features
    :data:`~streamon.core.statistics.regression.PREDICTION` and ``TARGET``): bins at the
    reference's deciles, from its sketch (or edges a profile pins under the pseudo-feature's
    name, as for a pinned feature).

    NaN below ``min_drift_samples`` values in either window: predictions for the prediction
    distribution, labels for the target's."""
    key = ("output_drift", id(current), id(reference), settings.drift_bins)
    pseudo = [(name, "numeric") for name in _OUTPUT_DRIFT]
    if memo is not None and key in memo:
        results, windows = memo[key]
    else:
        windows = (regression.readable(current), regression.readable(reference))  # corrections out
        results = features_drift(spec, pseudo, windows[0], windows[1], settings.drift_bins)
        if memo is not None:  # keeps the summaries alive, so their ids stay theirs
            memo[key] = results, windows
            memo[(id(current), id(reference))] = (current, reference)
    methods = settings.drift_methods
    for (name, stats), d in zip(_OUTPUT_DRIFT.items(), results, strict=True):
        counts = [s.count if (s := w.sketches.get(name)) is not None else 0 for w in windows]
        few = min(counts) < settings.min_drift_samples
        for method, series in stats.items():
            if method not in methods:
                continue  # switched off in data_drift.methods
            for metric, statistic in series:
                add(metric, math.nan if few else d[statistic])


# Multiclass degradation: metric label -> lower is better.
MULTICLASS_DEGRADATION = {"accuracy": False, "f1_score": False, "log_loss": True}

# Per-class metric of a ClassReport -> exported gauge.
_MULTICLASS_CLASS_METRICS = {
    "precision": "ml_model_precision",
    "recall": "ml_model_recall",
    "f1": "ml_model_f1_score",
}


def _multiclass_classes(spec: ModelSpec) -> tuple[str, ...]:
    return tuple(getattr(spec, "classes", ()) or ())


def _multiclass_top_k(spec: ModelSpec) -> tuple[int, ...]:
    return tuple(getattr(spec, "top_k", None) or multiclass.DEFAULT_TOP_K)


def _multiclass_performance(
    add: _Add,
    spec: ModelSpec,
    current: BucketSummary,
    reference: BucketSummary,
    settings: EvalSettings,
    baseline: Mapping[str, float] | None,
) -> None:
    """Accuracy, per-class and averaged precision/recall/F1, log loss, top-k accuracy,
    one-vs-rest AUC, coverage, estimated performance, business value and degradation of a
    multiclass model (:mod:`streamon.core.statistics.multiclass`). Every value is NaN below
    ``min_labelled`` labelled predictions in its window; threshold metrics, calibration,
    score drift and concept drift on binary errors do not apply."""
    classes = _multiclass_classes(spec)
    k = len(classes)
    ks = _multiclass_top_k(spec)
    perf: dict[str, dict[str, float]] = {}
    for window, summary in (("current", current), ("reference", reference)):
        state = multiclass.state_of(summary, k, ks)
        labelled = state.n_labelled
        enough = labelled >= settings.min_labelled  # too few labels to mean anything
        report = multiclass.class_report(state.confusion, k)
        loss = multiclass.log_loss(state.log_loss_units, labelled)
        top = multiclass.top_k_accuracy(state.top_k, labelled)
        auc, auc_macro = multiclass.ovr_auc(state.ovr_pos, state.ovr_neg, k)

        def val(x: float, enough: bool = enough) -> float:
            return x if enough else math.nan

        perf[window] = {
            "accuracy": val(report.accuracy),
            "f1_score": val(report.averages["macro"]["f1"]),
            "log_loss": val(loss),
        }
        if settings.performance_enabled:
            add("ml_model_accuracy", val(report.accuracy), window)
            for metric, name in _MULTICLASS_CLASS_METRICS.items():
                per_class = getattr(report, metric)
                for c, value in zip(classes, per_class, strict=True):
                    add(name, val(value), window, **{"class": c})
                for average in multiclass.AVERAGES:
                    add(name, val(report.averages[average][metric]), window, average=average)
            add("ml_model_log_loss", val(loss), window)
            for kk, value in zip(ks, top, strict=True):
                add("ml_model_top_k_accuracy", val(value), window, k=str(kk))
            for c, value in zip(classes, auc, strict=True):
                add("ml_model_auc_roc", val(value), window, **{"class": c})
            add("ml_model_auc_roc", val(auc_macro), window, average="macro")
        n = summary.n_predictions
        add("streamon_predictions_in_window", n, window)
        add("streamon_labelled_in_window", labelled, window)
        add("streamon_label_coverage_ratio", labelled / n if n else math.nan, window)

    state = multiclass.state_of(current, k, ks)
    if settings.business_enabled:
        add("ml_business_processing_volume", current.n_predictions)
        matrix: Any = spec.value_matrix  # [actual][predicted], declared order
        if isinstance(matrix, Mapping):  # {actual: {predicted: value}}, 0 where left out
            matrix = [[matrix.get(a, {}).get(p, 0.0) for p in classes] for a in classes]
        if matrix is not None:
            labelled = state.n_labelled
            enough = labelled >= settings.min_business_labelled and labelled > 0
            _, per_prediction = multiclass.business_value(state.confusion, matrix)
            add("ml_business_value_per_prediction", per_prediction if enough else math.nan)

    if settings.estimation_enabled:  # what the current window's metrics will be once labelled
        for name, value, extra in multiclass_estimation_gauges(
            state,
            multiclass.state_of(reference, k, ks),
            classes,
            prior_strength=settings.estimation_prior_strength,
            confidence=settings.estimation_confidence,
            min_labelled=settings.min_estimation_labelled,
            reliable_p_value=settings.estimation_reliable_p_value,
        ):
            add(name, value, **extra)

    # Degradation against the configured baseline, else the reference window.
    base = baseline or perf["reference"]
    lower = [m for m, low in MULTICLASS_DEGRADATION.items() if low]
    for metric, drop in degradation(
        perf["current"],
        base,
        settings.degradation_medium,
        settings.degradation_high,
        lower_is_better=lower,
    ).items():
        add("streamon_model_degradation_ratio", drop.relative_drop, metric=metric)


def _predicted_class_drift(
    add: _Add, spec: ModelSpec, current: BucketSummary, reference: BucketSummary, settings: EvalSettings
) -> None:
    """PSI of the predicted-class mix (one bin per declared class, plus unseen) of every
    current-window prediction against the reference window's, or a pinned profile's mix
    when it holds one (``spec.class_mix``: class name -> count). NaN below
    ``min_drift_samples`` predictions on either side."""
    classes = _multiclass_classes(spec)
    k = len(classes)
    cur = current.vector(multiclass.PREDICTED_KEY, k + 1)
    mix = getattr(spec, "class_mix", None)
    ref = multiclass.class_mix(mix, classes) if mix else reference.vector(multiclass.PREDICTED_KEY, k + 1)
    few = min(int(cur.sum()), int(ref.sum())) < settings.min_drift_samples
    if "psi" in settings.drift_methods:
        add("ml_prediction_drift_psi_score", math.nan if few else multiclass.predicted_class_psi(ref, cur))


def evaluate_model(
    spec: ModelSpec,
    variant: str,
    current: BucketSummary,
    reference: BucketSummary,
    settings: EvalSettings,
    baseline: dict[str, float] | None = None,
    bucket_error_rates: Iterable[float] = (),
    *,
    memo: dict[Any, Any] | None = None,
    window_seconds: float | None = None,
    operating_share: float = 1.0,
    bucket_errors: tuple[Sequence[int], Sequence[int]] | None = None,
) -> list[Sample]:
    """All gauges of one model/variant: performance, drift, business, coverage, degradation.

    The model's task picks the performance family once: a binary model's (threshold
    metrics, calibration, business value, estimation, concept drift), a regression
    model's (:func:`_regression_performance`) or a multiclass model's
    (:func:`_multiclass_performance`); all have feature drift and integrity, then score
    drift (binary), prediction and target drift (regression, :func:`_output_drift`) or
    predicted-class drift (multiclass, :func:`_predicted_class_drift`).

    ``memo`` (optional, owned by the caller for ONE evaluation, while ``current`` and
    ``reference`` stay unmodified) shares feature-drift results between calls on the same
    summary objects, e.g. a model's only variant and "all".

    ``window_seconds`` is the event time the current window covers, for the operating cost
    of ROI (default the full ``settings.current_s``); ``operating_share`` the part of that
    cost this variant bears (its share of the model's predictions; 1 for "all").

    Concept drift runs on ``bucket_errors`` = (errors, labelled predictions) per bucket of
    the current window, oldest first (:func:`detect_concept_drift_counts`), else on the
    plain ``bucket_error_rates``.
    """
    samples: list[Sample] = []
    model = spec.name

    def add(name: str, value: float, window: str = "current", **extra: str) -> None:
        samples.append(
            _sample(  # = _labels(model=..., variant=..., window=..., **extra), without the call
                name,
                (("model", model), ("variant", variant), ("window", window), *extra.items()),
                float(value),
            )
        )

    regression_model = spec.task == "regression"  # the one choice of family, used twice below
    multiclass_model = spec.task == "multiclass"
    if regression_model:
        _regression_performance(add, current, reference, settings, baseline)
    elif multiclass_model:
        _multiclass_performance(add, spec, current, reference, settings, baseline)
    else:
        _binary_performance(
            add,
            spec,
            current,
            reference,
            settings,
            baseline,
            bucket_error_rates,
            window_seconds,
            operating_share,
            bucket_errors,
        )

    # Data drift per feature, current vs reference.
    if not settings.drift_enabled:
        return samples
    few = min(current.n_predictions, reference.n_predictions) < settings.min_drift_samples
    wanted = settings.drift_features
    monitored = [f for f in spec.features if wanted is None or f.name in wanted]
    methods = feature_drift_methods(settings)
    tests = tuple(methods)  # what features_drift computes is part of the memo key
    keys = [(f.name, f.kind, id(current), id(reference), settings.drift_bins, tests) for f in monitored]
    known = {k: memo[k] for k in keys if k in memo} if memo is not None else {}
    todo = [(f.name, f.kind) for f, k in zip(monitored, keys, strict=True) if k not in known]
    if todo:  # all features not in the memo, in one pass (one vectorised p-value call per test)
        fresh = features_drift(spec, todo, current, reference, settings.drift_bins, methods)
        todo_keys = [k for k in keys if k not in known]
        known.update(zip(todo_keys, fresh, strict=True))
        if memo is not None:  # keeps the summaries alive, so their ids stay theirs
            memo.update(zip(todo_keys, fresh, strict=True))
            memo[(id(current), id(reference))] = (current, reference)
    append = samples.append
    for f, memo_key in zip(monitored, keys, strict=True):
        d = known[memo_key]  # read only (shared through the memo): replaced, never modified
        if few:  # a handful of events says nothing about a distribution
            d = {k: (v if k == "missing" else math.nan) for k, v in d.items()}
        stats = {  # method -> (exported metric, value)
            "psi": ("ml_data_drift_psi_score", d["psi"]),
            "js_divergence": ("ml_data_drift_js_divergence", d["js"]),
        }
        if f.kind == "categorical":
            # .get: a test left out of features_drift (not in ``methods``) has no value
            stats["chi_square"] = ("ml_data_drift_chi2_p_value", d.get("chi2_p", math.nan))
        else:
            stats["ks_test"] = ("ml_data_drift_ks_statistic", d.get("ks", math.nan))
            stats["wasserstein"] = ("ml_data_drift_wasserstein_distance", d.get("wasserstein", math.nan))
        # The labels add(..., feature=f.name) gives, built once per feature.
        labels = (("model", model), ("variant", variant), ("window", "current"), ("feature", f.name))
        append(_sample("streamon_feature_missing_ratio", labels, float(d["missing"])))
        for method, (name, value) in stats.items():
            if method not in methods:
                continue  # switched off in data_drift.methods
            append(_sample(name, labels, float(value)))
            if method == "ks_test":
                append(_sample("ml_data_drift_ks_p_value", labels, float(d["ks_p"])))
            flag = drift_flag(method, d, methods[method])
            append(_sample("streamon_feature_drift_detected", (*labels, ("method", method)), flag))
    # Data integrity per feature (out of range, unseen categories, wrong types, schema change).
    # A pure function of the two summaries, so shared through the memo like the drift above
    # (a model's only variant and "all" read the same summary objects).
    integrity_key = ("integrity", tuple(f.name for f in monitored), id(current), id(reference), few)
    gauges = memo.get(integrity_key) if memo is not None else None
    if gauges is None:
        gauges = integrity_gauges(spec, monitored, current, reference, few)
        if memo is not None:  # read only from here on; the summaries are kept alive above
            memo[integrity_key] = gauges
            memo[(id(current), id(reference))] = (current, reference)
    for name, value, extra in gauges:
        add(name, value, **extra)
    if regression_model:
        _output_drift(add, spec, current, reference, settings, memo)
    elif multiclass_model:
        _predicted_class_drift(add, spec, current, reference, settings)
    else:
        sd = score_drift(spec, current, reference) if not few else {"psi": math.nan, "js": math.nan}
        add("ml_data_drift_psi_score", sd["psi"], feature=SCORE_FEATURE)
        add("ml_data_drift_js_divergence", sd["js"], feature=SCORE_FEATURE)
    return samples


def bucket_error_rates(confusions: Iterable[np.ndarray]) -> list[float]:
    """Error rate of each bucket's confusion counts, in time order (NaN where nothing is labelled).

    >>> bucket_error_rates([np.array([5, 1, 3, 1]), np.zeros(4, dtype=np.int64)])
    [0.2, nan]
    """
    rows = list(confusions)
    try:
        m = np.array(rows, dtype=np.int64) if rows else np.zeros((0, 4), dtype=np.int64)
    except (ValueError, TypeError):  # not a stack of 4-vectors: the plain loop below
        m = np.zeros((0, 0), dtype=np.int64)
    if m.ndim == 2 and m.shape[1] == 4 and (not m.size or int(np.abs(m).max()) < 2**50):
        # Counts far below 2**53: float division gives the same correctly rounded
        # quotient as Python's int / int.
        n = m.sum(axis=1)
        has = n != 0
        rates = np.full(len(n), math.nan)
        rates[has] = (m[has, FP] + m[has, FN]) / n[has]
        out: list[float] = rates.tolist()
        return out
    out = []
    for c in rows:
        n = int(c.sum())
        out.append((int(c[FP]) + int(c[FN])) / n if n else math.nan)
    return out


def bucket_errors(confusions: Iterable[np.ndarray]) -> tuple[list[int], list[int]]:
    """(FP + FN, labelled) of each bucket's confusion counts, in time order.

    >>> bucket_errors([np.array([5, 1, 3, 1]), np.zeros(4, dtype=np.int64)])
    ([2, 0], [10, 0])
    """
    rows = list(confusions)
    try:  # one stack of 4-vectors: column sums in numpy (exact int64, as the loop below)
        m = np.array(rows, dtype=np.int64) if rows else np.zeros((0, 4), dtype=np.int64)
    except (ValueError, TypeError):
        m = np.zeros((0, 0), dtype=np.int64)
    if m.ndim == 2 and m.shape[1] == 4:
        return (m[:, FP] + m[:, FN]).tolist(), m.sum(axis=1).tolist()
    errors: list[int] = []
    labelled: list[int] = []
    for c in rows:
        errors.append(int(c[FP]) + int(c[FN]))
        labelled.append(int(c.sum()))
    return errors, labelled


def latency_histogram(
    model: str, variant: str, cumulative: BucketSummary, bounds: tuple[float, ...]
) -> HistogramSample | None:
    """``ml_prediction_latency_seconds`` from the cumulative latency counts."""
    vec = cumulative.counts.get(LATENCY)
    if vec is None:
        return None
    hist, total_us, count = vec[:-2], int(vec[-2]), int(vec[-1])
    return HistogramSample(
        "ml_prediction_latency_seconds",
        _labels(model=model, variant=variant),
        (*bounds, math.inf),
        tuple(int(x) for x in np.cumsum(hist)),
        total_us / 1e6,
        count,
    )
