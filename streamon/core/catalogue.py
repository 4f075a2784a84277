"""Every metric streamon exports: name, type, labels and help text.

One table, read by the evaluation (what to compute), the exporters (HELP/TYPE lines),
the alert rules (which metrics exist) and the docs test (every metric documented).
Names of the ``ml_*`` and ``system_*`` families follow the monitoring guide the
project follows; ``streamon_*`` are streamon's own.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL = ("model", "variant", "window")
PER_CLASS = (*MODEL, "class", "average")  # multiclass: one of class | average; binary: neither
_PER_CLASS_OPTIONAL = ("class", "average")
ESTIMATED = (*MODEL, "bound")  # bound: estimate | lower | upper
# Multiclass: one of class | average (macro) before bound; binary: neither.
ESTIMATED_PER_CLASS = (*MODEL, "class", "average", "bound")
AB = ("model", "variant", "metric")  # variant = the treatment arm
SEGMENT = ("model", "window", "segment_field", "segment")  # no variant: segments span all variants


@dataclass(frozen=True)
class MetricInfo:
    name: str
    type: str  # gauge | counter | histogram
    labels: tuple[str, ...]
    help: str
    # Labels a sample may leave out (not exported as ""): e.g. a binary model's precision has
    # no ``class`` or ``average``, a multiclass model's has one of them. The HELP of a name
    # shared with binary models stays the binary one (their exposition is unchanged);
    # docs/metrics.md gives the multiclass meaning.
    optional: tuple[str, ...] = ()


_METRICS = [
    # --- model performance (stage 2, global) ---
    MetricInfo(
        "ml_model_accuracy",
        "gauge",
        MODEL,
        "Accuracy of labelled predictions at the decision threshold",
    ),
    MetricInfo(
        "ml_model_precision",
        "gauge",
        PER_CLASS,
        "Precision (positive predictive value) at the threshold",
        _PER_CLASS_OPTIONAL,
    ),
    MetricInfo(
        "ml_model_recall",
        "gauge",
        PER_CLASS,
        "Recall (true positive rate) at the threshold",
        _PER_CLASS_OPTIONAL,
    ),
    MetricInfo("ml_model_specificity", "gauge", MODEL, "Specificity (true negative rate) at the threshold"),
    MetricInfo(
        "ml_model_f1_score",
        "gauge",
        PER_CLASS,
        "F1 score at the threshold",
        _PER_CLASS_OPTIONAL,
    ),
    MetricInfo(
        "ml_model_auc_roc",
        "gauge",
        PER_CLASS,
        "Area under the ROC curve, from per-class score histograms",
        _PER_CLASS_OPTIONAL,
    ),
    MetricInfo(
        "ml_model_top_k_accuracy",
        "gauge",
        (*MODEL, "k"),
        "Share of labelled predictions whose actual class is among the k highest scores (multiclass)",
    ),
    MetricInfo(
        "ml_model_confusion_total",
        "counter",
        ("model", "variant", "actual", "predicted"),
        "Labelled predictions by actual and predicted class since start (multiclass)",
    ),
    MetricInfo(
        "ml_model_auc_pr", "gauge", MODEL, "Area under the precision-recall curve (average precision)"
    ),
    MetricInfo(
        "ml_model_brier_score",
        "gauge",
        MODEL,
        "Mean squared difference between score and label (Brier score), exact over labelled predictions",
    ),
    MetricInfo(
        "ml_model_log_loss",
        "gauge",
        MODEL,
        "Mean log loss (cross-entropy, natural log) of labelled predictions, exact over every prediction",
    ),
    MetricInfo(
        "ml_model_expected_calibration_error",
        "gauge",
        MODEL,
        "Expected calibration error over models[].calibration_bins equal-width score bins",
    ),
    MetricInfo(
        "ml_model_calibration_observed_rate",
        "gauge",
        (*MODEL, "bin"),
        "Reliability curve: share of labelled predictions labelled 1 in the calibration bin",
    ),
    MetricInfo(
        "ml_model_calibration_mean_score",
        "gauge",
        (*MODEL, "bin"),
        "Reliability curve: mean score of the labelled predictions in the calibration bin",
    ),
    # --- regression performance (stage 2, global; models with task: regression) ---
    MetricInfo(
        "ml_model_mae", "gauge", MODEL, "Mean absolute error of labelled predictions (regression), exact"
    ),
    MetricInfo(
        "ml_model_rmse", "gauge", MODEL, "Root mean squared error of labelled predictions (regression), exact"
    ),
    MetricInfo(
        "ml_model_mape",
        "gauge",
        MODEL,
        "Mean absolute percentage error as a fraction (regression), over the labels that are not 0",
    ),
    MetricInfo(
        "ml_model_r2",
        "gauge",
        MODEL,
        "Coefficient of determination R2 of labelled predictions (regression); NaN for a constant label",
    ),
    MetricInfo(
        "ml_model_mean_error",
        "gauge",
        MODEL,
        "Mean of prediction minus label (regression bias; positive = over-prediction)",
    ),
    MetricInfo(
        "ml_model_residual_quantile",
        "gauge",
        (*MODEL, "quantile"),
        "Quantile of the absolute error |prediction - label| (regression), from a 1% relative sketch",
    ),
    MetricInfo("ml_fraud_precision_at_1_percent", "gauge", MODEL, "Precision at a 1% false positive rate"),
    MetricInfo("ml_fraud_precision_at_5_percent", "gauge", MODEL, "Precision at a 5% false positive rate"),
    MetricInfo("ml_fraud_lift", "gauge", MODEL, "Lift in the top k% of scores over the base fraud rate"),
    MetricInfo(
        "ml_fraud_detection_rate", "gauge", MODEL, "Share of all fraud caught in the top k% of scores"
    ),
    MetricInfo("ml_fraud_expected_value", "gauge", MODEL, "Net business value per labelled prediction"),
    MetricInfo(
        "ml_predictions_total",
        "counter",
        ("model", "variant", "outcome"),
        "Labelled predictions by outcome (true_positive, true_negative, false_positive, false_negative)",
    ),
    MetricInfo(
        "ml_prediction_latency_seconds",
        "histogram",
        ("model", "variant"),
        "Serving latency reported in predictions",
    ),
    MetricInfo("streamon_predictions_in_window", "gauge", MODEL, "Predictions with event time in the window"),
    MetricInfo(
        "streamon_labelled_in_window", "gauge", MODEL, "Labelled predictions with event time in the window"
    ),
    MetricInfo(
        "streamon_mape_excluded_in_window",
        "gauge",
        MODEL,
        "Labelled predictions of the window with label 0, left out of ml_model_mape (regression)",
    ),
    MetricInfo("streamon_label_coverage_ratio", "gauge", MODEL, "Labelled / all predictions in the window"),
    MetricInfo("streamon_positive_rate", "gauge", MODEL, "Share of predictions above the decision threshold"),
    MetricInfo(
        "streamon_model_degradation_ratio",
        "gauge",
        ("model", "variant", "window", "metric"),
        "Relative drop of a metric against its baseline (config baseline or reference window)",
    ),
    MetricInfo(
        "streamon_concept_drift_detected",
        "gauge",
        ("model", "variant", "window", "method"),
        "1 when the detector found a change in the per-bucket error rate of the window",
    ),
    # --- estimated performance of unlabelled predictions (stage 2, global; window="current") ---
    MetricInfo(
        "ml_model_estimated_accuracy",
        "gauge",
        ESTIMATED,
        "Accuracy the window will have once all labels are in, estimated from the calibration map",
    ),
    MetricInfo(
        "ml_model_estimated_precision",
        "gauge",
        ESTIMATED_PER_CLASS,
        "Estimated precision at the threshold, all labels in",
        _PER_CLASS_OPTIONAL,
    ),
    MetricInfo(
        "ml_model_estimated_recall",
        "gauge",
        ESTIMATED_PER_CLASS,
        "Estimated recall at the threshold, all labels in",
        _PER_CLASS_OPTIONAL,
    ),
    MetricInfo(
        "ml_model_estimated_f1_score",
        "gauge",
        ESTIMATED_PER_CLASS,
        "Estimated F1 score at the threshold, all labels in",
        _PER_CLASS_OPTIONAL,
    ),
    MetricInfo(
        "ml_model_estimated_auc_roc",
        "gauge",
        ESTIMATED,
        "Estimated AUC-ROC from estimated per-class histograms",
    ),
    MetricInfo(
        "ml_fraud_estimated_expected_value",
        "gauge",
        ESTIMATED,
        "Estimated net business value per prediction of the window, all labels in",
    ),
    MetricInfo(
        "ml_model_estimation_calibration_error",
        "gauge",
        MODEL,
        "Expected calibration error of the estimation's calibration map on the window's labelled part",
    ),
    MetricInfo(
        "streamon_estimation_calibration_p_value",
        "gauge",
        MODEL,
        "P-value of the calibration map against the window's labels (low: the estimates are off)",
    ),
    MetricInfo(
        "streamon_estimation_reliable",
        "gauge",
        MODEL,
        "1 when the calibration check passes, 0 when it fails (estimated metrics are then unreliable)",
    ),
    # --- data drift (stage 2, global) ---
    MetricInfo(
        "ml_data_drift_psi_score",
        "gauge",
        ("model", "variant", "window", "feature"),
        "Population stability index, current vs reference",
    ),
    MetricInfo(
        "ml_data_drift_ks_statistic",
        "gauge",
        ("model", "variant", "window", "feature"),
        "Kolmogorov-Smirnov statistic (numeric features)",
    ),
    MetricInfo(
        "ml_data_drift_ks_p_value",
        "gauge",
        ("model", "variant", "window", "feature"),
        "Kolmogorov-Smirnov p-value (numeric features)",
    ),
    MetricInfo(
        "ml_data_drift_js_divergence",
        "gauge",
        ("model", "variant", "window", "feature"),
        "Jensen-Shannon distance, base 2, over the feature bins",
    ),
    MetricInfo(
        "ml_data_drift_chi2_p_value",
        "gauge",
        ("model", "variant", "window", "feature"),
        "Chi-square goodness-of-fit p-value (categorical features)",
    ),
    MetricInfo(
        "ml_data_drift_wasserstein_distance",
        "gauge",
        ("model", "variant", "window", "feature"),
        "Wasserstein-1 distance (numeric features), in feature units",
    ),
    # --- prediction and target drift (stage 2, global; regression models) ---
    MetricInfo(
        "ml_prediction_drift_psi_score",
        "gauge",
        MODEL,
        "Population stability index of the predicted values, current vs reference (regression)",
    ),
    MetricInfo(
        "ml_prediction_drift_ks_statistic",
        "gauge",
        MODEL,
        "Kolmogorov-Smirnov statistic of the predicted values, current vs reference (regression)",
    ),
    MetricInfo(
        "ml_prediction_drift_ks_p_value",
        "gauge",
        MODEL,
        "Kolmogorov-Smirnov p-value of the predicted values, current vs reference (regression)",
    ),
    MetricInfo(
        "ml_prediction_drift_js_divergence",
        "gauge",
        MODEL,
        "Jensen-Shannon distance, base 2, of the predicted values over the reference deciles (regression)",
    ),
    MetricInfo(
        "ml_prediction_drift_wasserstein_distance",
        "gauge",
        MODEL,
        "Wasserstein-1 distance of the predicted values, in their units (regression)",
    ),
    MetricInfo(
        "ml_target_drift_psi_score",
        "gauge",
        MODEL,
        "Population stability index of the labels (the target), current vs reference (regression)",
    ),
    MetricInfo(
        "ml_target_drift_ks_statistic",
        "gauge",
        MODEL,
        "Kolmogorov-Smirnov statistic of the labels (the target), current vs reference (regression)",
    ),
    MetricInfo(
        "ml_target_drift_ks_p_value",
        "gauge",
        MODEL,
        "Kolmogorov-Smirnov p-value of the labels (the target), current vs reference (regression)",
    ),
    MetricInfo(
        "ml_target_drift_js_divergence",
        "gauge",
        MODEL,
        "Jensen-Shannon distance, base 2, of the labels over the reference deciles (regression)",
    ),
    MetricInfo(
        "ml_target_drift_wasserstein_distance",
        "gauge",
        MODEL,
        "Wasserstein-1 distance of the labels (the target), in their units (regression)",
    ),
    MetricInfo(
        "streamon_feature_drift_detected",
        "gauge",
        ("model", "variant", "window", "feature", "method"),
        "1 when the method's statistic is past its data_drift.methods threshold, else 0",
    ),
    MetricInfo(
        "streamon_feature_missing_ratio",
        "gauge",
        ("model", "variant", "window", "feature"),
        "Share of predictions where the feature is missing",
    ),
    # --- data integrity (stage 2, global; window="current"; definitions in docs/statistics.md) ---
    MetricInfo(
        "streamon_feature_out_of_range_ratio",
        "gauge",
        ("model", "variant", "window", "feature"),
        "Share of present values of a numeric feature outside the reference's [min, max]",
    ),
    MetricInfo(
        "streamon_feature_unseen_category_ratio",
        "gauge",
        ("model", "variant", "window", "feature"),
        "Share of present values of a categorical feature that are not reference categories",
    ),
    MetricInfo(
        "streamon_feature_wrong_type_ratio",
        "gauge",
        ("model", "variant", "window", "feature"),
        "Share of the events reaching the type check rejected (wrong_type) for a non-number in the feature",
    ),
    MetricInfo(
        "streamon_feature_unexpected_key_ratio",
        "gauge",
        ("model", "variant", "window", "key"),
        "Share of predictions whose features carry this undeclared key (at most 20 keys, the rest __other__)",
    ),
    MetricInfo(
        "streamon_feature_absent",
        "gauge",
        ("model", "variant", "window", "feature"),
        "1 when no prediction of the window has the feature while the reference has it, else 0",
    ),
    # --- business (stage 2, global) ---
    MetricInfo(
        "ml_business_roi",
        "gauge",
        MODEL,
        "Return on investment over the window: (net - operating) / operating",
    ),
    MetricInfo(
        "ml_business_cost_savings",
        "gauge",
        MODEL,
        "Net benefit over the window: benefit - error and review costs",
    ),
    MetricInfo("ml_business_processing_volume", "gauge", MODEL, "Predictions processed in the window"),
    MetricInfo(
        "ml_business_value_per_prediction",
        "gauge",
        MODEL,
        "Mean value_matrix[actual][predicted] of the window's labelled predictions (multiclass)",
    ),
    MetricInfo(
        "ml_business_alert_volume", "gauge", MODEL, "Predictions flagged (above threshold) in the window"
    ),
    # --- segments (stage 2, global; per value of a configured segment field, window="current") ---
    MetricInfo("streamon_segment_accuracy", "gauge", SEGMENT, "Accuracy of the segment's labelled events"),
    MetricInfo("streamon_segment_precision", "gauge", SEGMENT, "Precision of the segment at the threshold"),
    MetricInfo("streamon_segment_recall", "gauge", SEGMENT, "Recall of the segment at the threshold"),
    MetricInfo("streamon_segment_f1_score", "gauge", SEGMENT, "F1 score of the segment at the threshold"),
    MetricInfo("streamon_segment_auc_roc", "gauge", SEGMENT, "Area under the ROC curve of the segment"),
    MetricInfo(
        "streamon_segment_predictions_in_window", "gauge", SEGMENT, "Predictions of the segment in the window"
    ),
    MetricInfo(
        "streamon_segment_labelled_in_window",
        "gauge",
        SEGMENT,
        "Labelled predictions of the segment in the window",
    ),
    MetricInfo(
        "streamon_segment_positive_rate", "gauge", SEGMENT, "Share of the segment above the threshold"
    ),
    MetricInfo(
        "streamon_segment_drift_psi_score",
        "gauge",
        (*SEGMENT, "feature"),
        "Population stability index of the segment, current vs the segment's own rolling reference",
    ),
    MetricInfo(
        "streamon_cardinality_overflow_total",
        "counter",
        ("model", "label"),
        "Events whose variant, segment value or category value was folded into __other__ by a cap "
        "(label: variant, segment:<field>, category:<feature>)",
    ),
    # --- A/B experiments (stage 2, global; per treatment arm against the control) ---
    MetricInfo(
        "streamon_ab_difference",
        "gauge",
        AB,
        "Treatment minus control of the metric, over all labelled predictions merged so far",
    ),
    MetricInfo(
        "streamon_ab_sequential_p_value",
        "gauge",
        AB,
        "Always-valid mSPRT p-value of no difference (min(1, 1/likelihood ratio) at this evaluation)",
    ),
    MetricInfo(
        "streamon_ab_confidence_sequence_lower",
        "gauge",
        AB,
        "Lower bound of the always-valid 1 - alpha confidence sequence of the difference",
    ),
    MetricInfo(
        "streamon_ab_confidence_sequence_upper",
        "gauge",
        AB,
        "Upper bound of the always-valid 1 - alpha confidence sequence of the difference",
    ),
    MetricInfo(
        "streamon_ab_significant",
        "gauge",
        AB,
        "1 when the sequential p-value is <= ab_testing.alpha and both arms have 30 labelled samples",
    ),
    MetricInfo(
        "streamon_ab_fixed_p_value",
        "gauge",
        AB,
        "Fixed-horizon p-value of the same data (invalid under continuous monitoring; for comparison)",
    ),
    # --- operations (per worker) ---
    MetricInfo("system_cpu_usage_percent", "gauge", (), "CPU usage of the host, percent"),
    MetricInfo("system_memory_usage_percent", "gauge", (), "Memory usage of the host, percent"),
    MetricInfo(
        "system_disk_usage_percent", "gauge", (), "Disk usage of the state directory's volume, percent"
    ),
    MetricInfo(
        "streamon_events_processed_total", "counter", ("topic",), "Valid events processed by this worker"
    ),
    MetricInfo(
        "streamon_events_invalid_total",
        "counter",
        ("topic", "reason"),
        "Invalid events sent to the dead-letter topic, by reason",
    ),
    MetricInfo(
        "streamon_labels_orphaned_total",
        "counter",
        (),
        "Labels whose prediction never arrived in the grace period",
    ),
    MetricInfo("streamon_label_corrections_total", "counter", (), "Labels that corrected an earlier label"),
    MetricInfo(
        "streamon_consumer_lag_messages",
        "gauge",
        ("topic", "partition"),
        "Messages of an input partition past the group's committed offset (high watermark - committed)",
    ),
    MetricInfo(
        "streamon_last_commit_timestamp_seconds",
        "gauge",
        ("stage",),
        "Unix time of this worker's last committed transaction of the stage (0: none yet)",
    ),
    MetricInfo(
        "streamon_worker_stalled_seconds",
        "gauge",
        ("stage",),
        "Seconds the stage has had work without committing a transaction (0 while it commits or is idle)",
    ),
    MetricInfo("streamon_batch_seconds", "histogram", ("stage",), "Processing time of one consumed batch"),
    MetricInfo(
        "streamon_end_to_end_delay_seconds",
        "gauge",
        (),
        "Wall time now minus the event time of the newest event in the last evaluation",
    ),
    MetricInfo(
        "streamon_join_store_pending", "gauge", ("kind",), "Predictions and labels waiting in the join store"
    ),
    MetricInfo("streamon_rebalances_total", "counter", (), "Partition assignments seen by this worker"),
    MetricInfo(
        "streamon_restore_seconds",
        "gauge",
        (),
        "Duration of the last join-store restore after a partition assignment",
    ),
    MetricInfo(
        "streamon_restored_messages_total",
        "counter",
        (),
        "Input messages replayed into join stores by restores",
    ),
    MetricInfo(
        "streamon_transaction_aborts_total", "counter", (), "Kafka transactions aborted by this worker"
    ),
    MetricInfo(
        "streamon_late_deltas_dropped_total", "counter", (), "Deltas older than the reference window, dropped"
    ),
]

METRICS: dict[str, MetricInfo] = {m.name: m for m in _METRICS}

OUTCOMES = ("true_positive", "false_positive", "true_negative", "false_negative")  # order of CONFUSION cells
