"""Segment metrics: performance and drift per value of a configured segment field.

A segment is the set of a model's predictions (all variants) whose feature ``field``
holds one value (stringified; absent = ``__missing__``; values outside the allowlist
or the bottom-K cap = ``__other__``). Stage 1 summarises each segment in its own
:class:`~streamon.core.state.summary.BucketSummary` deltas, stage 2 keeps a window per
segment value and evaluates it here with the same functions as the model itself
(:func:`~streamon.core.stages.evaluate.performance_metrics`,
:func:`~streamon.core.stages.evaluate.feature_drift`), so a segment's numbers mean exactly
what the model's do.

Segment metrics are separate families (``streamon_segment_*``) rather than an extra
label on ``ml_*``: an alert expression on ``ml_model_recall`` must not start matching
segment series. A segment's drift reference is the segment's own rolling reference
window, even when the model's reference is a pinned profile: the pinned profile
describes the whole population, and comparing one segment with it would report the
segment's normal difference from everyone else as drift.
"""

from __future__ import annotations

import math

from streamon.core.profile import ModelSpec
from streamon.core.stages.evaluate import (
    SCORE_FEATURE,
    EvalSettings,
    Sample,
    feature_drift,
    performance_metrics,
    score_drift,
)
from streamon.core.state.summary import BucketSummary
from streamon.core.statistics import multiclass, regression

# performance_metrics key -> exported family
SEGMENT_PERFORMANCE = {
    "accuracy": "streamon_segment_accuracy",
    "precision": "streamon_segment_precision",
    "recall": "streamon_segment_recall",
    "f1": "streamon_segment_f1_score",
    "auc_roc": "streamon_segment_auc_roc",
}
SEGMENT_LABELS = ("model", "window", "segment_field", "segment")


def segment_samples(
    spec: ModelSpec,
    field: str,
    value: str,
    current: BucketSummary,
    reference: BucketSummary,
    settings: EvalSettings,
) -> list[Sample]:
    """Every ``streamon_segment_*`` gauge of one segment's current window.

    Performance is NaN below ``min_labelled`` labelled predictions, drift below
    ``min_drift_samples`` predictions in the current or the reference window, as for
    the model's own metrics.

    >>> import numpy as np
    >>> cur = BucketSummary()
    >>> cur.add_predictions(np.array([0.9, 0.2]), np.array([1, 0]), score_bins=10)
    >>> spec = ModelSpec("m", score_bins=10)
    >>> s = segment_samples(spec, "country", "DE", cur, BucketSummary(), EvalSettings())
    >>> {x.name: x.value for x in s}["streamon_segment_predictions_in_window"]
    2.0
    """
    labels = (("model", spec.name), ("window", "current"), ("segment_field", field), ("segment", value))
    out: list[Sample] = []
    # A regression or multiclass model has no binary outcomes or score: no threshold metrics,
    # positive rate or score drift; its labelled count is its own state's.
    binary = spec.task not in ("regression", "multiclass")
    if binary:
        labelled = current.n_labelled
    elif spec.task == "multiclass":
        k = len(spec.classes)
        confusion = current.vector(multiclass.CONFUSION_KEY, k * k)
        labelled = int(confusion.sum())
    else:
        labelled = regression.state_of(current).n
    enough = labelled >= settings.min_labelled
    if settings.performance_enabled and binary:
        perf = performance_metrics(current, spec.score_bins, settings.top_k)
        for key, name in SEGMENT_PERFORMANCE.items():
            out.append(Sample(name, labels, perf[key] if enough else math.nan))
    elif settings.performance_enabled and spec.task == "multiclass":
        # From the segment's K x K confusion alone (segment state keeps no score histograms):
        # accuracy and the macro averages, as the model's own average="macro" series.
        report = multiclass.class_report(confusion, k)
        macro: dict[str, float] = {"accuracy": report.accuracy, **report.averages["macro"]}
        for key, number in macro.items():
            out.append(Sample(SEGMENT_PERFORMANCE[key], labels, number if enough else math.nan))
    n = current.n_predictions
    out.append(Sample("streamon_segment_predictions_in_window", labels, float(n)))
    out.append(Sample("streamon_segment_labelled_in_window", labels, float(labelled)))
    if binary:
        positive_rate = current.n_predicted_positive / n if n else math.nan
        out.append(Sample("streamon_segment_positive_rate", labels, positive_rate))
    if not settings.drift_enabled:
        return out
    few = min(n, reference.n_predictions) < settings.min_drift_samples
    wanted = settings.drift_features
    for f in spec.features:
        if wanted is not None and f.name not in wanted:
            continue
        psi = math.nan
        if not few:
            psi = feature_drift(spec, f.name, f.kind, current, reference, settings.drift_bins)["psi"]
        out.append(Sample("streamon_segment_drift_psi_score", (*labels, ("feature", f.name)), psi))
    if binary:
        score_psi = math.nan if few else score_drift(spec, current, reference)["psi"]
        out.append(
            Sample("streamon_segment_drift_psi_score", (*labels, ("feature", SCORE_FEATURE)), score_psi)
        )
    return out
