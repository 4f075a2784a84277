"""What a report shows, gathered from a replay: series over time, the last evaluation's
values, the windows' distributions and the alert events, per model and experiment.

Everything here is read from what the replay computed (its evaluations' samples, the
stage-2 windows at the end); nothing is computed a second way, so the report's numbers
are the replay's Prometheus snapshot (``tests/unit/test_report.py`` reads them back).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from streamon.core.alerts import Rule
from streamon.core.stages.evaluate import Sample, Snapshot
from streamon.core.stages.stage2 import Aggregator
from streamon.core.state.summary import FN, FP, TN, TP, BucketSummary, category_counts
from streamon.core.statistics import drift

ALL = "all"

# The series a report draws over time (current window, all variants unless noted).
PERFORMANCE = (
    "ml_model_accuracy",
    "ml_model_precision",
    "ml_model_recall",
    "ml_model_f1_score",
    "ml_model_auc_roc",
    "ml_model_auc_pr",
)
CALIBRATION = ("ml_model_brier_score", "ml_model_log_loss", "ml_model_expected_calibration_error")
ESTIMATED = {  # estimated metric -> the realised one it estimates
    "ml_model_estimated_accuracy": "ml_model_accuracy",
    "ml_model_estimated_precision": "ml_model_precision",
    "ml_model_estimated_recall": "ml_model_recall",
    "ml_model_estimated_f1_score": "ml_model_f1_score",
    "ml_model_estimated_auc_roc": "ml_model_auc_roc",
}
DRIFT = (
    "ml_data_drift_psi_score",
    "ml_data_drift_ks_statistic",
    "ml_data_drift_js_divergence",
    "ml_data_drift_wasserstein_distance",
)
INTEGRITY_PREFIXES = ("streamon_feature_missing_ratio", "ml_feature_")
BUSINESS = ("ml_business_roi", "ml_business_cost_savings", "ml_fraud_expected_value")
AB = (
    "streamon_ab_difference",
    "streamon_ab_confidence_sequence_lower",
    "streamon_ab_confidence_sequence_upper",
    "streamon_ab_sequential_p_value",
    "streamon_ab_fixed_p_value",
    "streamon_ab_significant",
)
SUMMARY = (*PERFORMANCE, *CALIBRATION, "streamon_predictions_in_window", "streamon_labelled_in_window")
OVER_TIME = frozenset((*PERFORMANCE, *CALIBRATION, *ESTIMATED, *DRIFT, *BUSINESS, *AB))


def history_names(catalogue: dict[str, Any]) -> frozenset[str]:
    """The sample names a replay keeps from every evaluation for a report."""
    integrity = {n for n in catalogue if n.startswith(INTEGRITY_PREFIXES)}
    return OVER_TIME | integrity


Points = list[tuple[float, float]]  # (event time, value)


@dataclass
class Distribution:
    """A feature's reference and current window over the same bins (shares of each window)."""

    bins: list[str]
    reference: list[float]
    current: list[float]


@dataclass
class ModelView:
    model: str
    # name -> labels (without model) -> points; labels as a sorted tuple of pairs
    series: dict[str, dict[tuple[tuple[str, str], ...], Points]] = field(default_factory=dict)
    last: list[Sample] = field(default_factory=list)  # this model's samples of the last evaluation
    thresholds: dict[str, list[tuple[str, str, float]]] = field(default_factory=dict)  # metric -> rules
    confusion: tuple[int, int, int, int] | None = None  # tp, fp, tn, fn of the current window
    distributions: dict[str, Distribution] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)

    def points(self, name: str, **labels: str) -> Points:
        """The series of ``name`` whose labels are ``labels`` ([] if none); when only series with
        more labels match (a multiclass model's per-class and averaged ones), the macro average."""
        want = set(labels.items())
        matching = {key: pts for key, pts in self.series.get(name, {}).items() if want <= set(key)}
        for key, pts in matching.items():
            if set(key) == want:
                return pts
        for key, pts in matching.items():
            if ("average", "macro") in key and len(key) == len(want) + 1:
                return pts
        return next(iter(matching.values()), [])

    def keyed(self, name: str, label: str, **labels: str) -> dict[str, Points]:
        """The series of ``name`` matching ``labels``, by the value of ``label``."""
        want = set(labels.items())
        out = {}
        for key, pts in self.series.get(name, {}).items():
            d = dict(key)
            if want <= set(key) and label in d:
                out[d[label]] = pts
        return dict(sorted(out.items()))

    def last_by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        """The last evaluation's samples of ``name`` matching ``labels``, by the value of ``label``."""
        want = set(labels.items())
        return {
            dict(s.labels)[label]: s.value
            for s in self.last
            if s.name == name and want <= set(s.labels) and label in dict(s.labels)
        }

    def has(self, name: str, **labels: str) -> bool:
        want = set(labels.items())
        return any(s.name == name and want <= set(s.labels) for s in self.last)

    def sample(self, name: str, **labels: str) -> Sample | None:
        """The last evaluation's sample of ``name`` with these labels (and ``model``); when only
        samples with more labels match (per class, averaged), the macro average."""
        want = set(labels.items())
        matching = [s for s in self.last if s.name == name and want <= set(s.labels)]
        for s in matching:
            if len(s.labels) == len(want) + 1:  # + model
                return s
        for s in matching:
            if ("average", "macro") in s.labels and len(s.labels) == len(want) + 2:
                return s
        return matching[0] if matching else None

    def value(self, name: str, **labels: str) -> float:
        s = self.sample(name, **labels)
        return s.value if s is not None else math.nan


@dataclass
class ReportData:
    title: str
    event_time: float
    models: list[ModelView]
    predictions: int | None = None  # None: not known (a worker's report)
    labels: int = 0
    bad_events: int = 0
    # `streamon ab report --json` of each experiment in the input (a report of files or topics)
    experiments: list[dict[str, Any]] = field(default_factory=list)


def _label_key(s: Sample) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in s.labels if k != "model"))


def _model_of(s: Sample) -> str | None:
    for k, v in s.labels:
        if k == "model":
            return v
    return None


@dataclass(frozen=True)
class WindowView:
    """What a report reads of a model's windows at the end: the current window's confusion
    counts and each feature's reference vs current distribution."""

    confusion: tuple[int, int, int, int]
    distributions: dict[str, Distribution]


def window_views(stage2: Aggregator, drift_bins: int = 10) -> dict[str, WindowView]:
    """Per model, :class:`WindowView` of its windows over all variants (read where the
    aggregator lives: the worker's main loop, or after a replay)."""
    out = {}
    for name, state in stage2.models.items():
        if not state.windows:
            continue
        cur, ref = BucketSummary(category_cap=None), BucketSummary(category_cap=None)
        for w in state.windows.values():
            cur += w.current
            if state.spec.reference is None:
                ref += w.reference
        reference = state.spec.reference if state.spec.reference is not None else ref
        c = cur.confusion
        out[name] = WindowView(
            (int(c[TP]), int(c[FP]), int(c[TN]), int(c[FN])),
            distributions(state.spec, cur, reference, drift_bins),
        )
    return out


def drawn(s: Sample) -> bool:
    """Whether a report draws ``s`` over time: the current window over all variants, and the
    experiment's series (per arm, no window). What a worker keeps of each evaluation."""
    labels = dict(s.labels)
    if s.name.startswith("streamon_ab_"):
        return True
    return labels.get("window") == "current" and labels.get("variant") == ALL


def collect(
    title: str,
    history: list[tuple[float, list[Sample]]],
    snapshot: Snapshot,
    windows: dict[str, WindowView] | None,
    rules: list[Rule],
    alerts: list[dict[str, Any]],
    *,
    predictions: int | None = None,
    labels: int = 0,
    bad_events: int = 0,
) -> ReportData:
    """The report of a run: its evaluations' history, last snapshot, windows and alerts."""
    views: dict[str, ModelView] = {}

    def view(model: str) -> ModelView:
        if model not in views:
            views[model] = ModelView(model)
        return views[model]

    for at, samples in history:
        for s in samples:
            model = _model_of(s)
            if model is None or math.isnan(s.value):
                continue
            per_name = view(model).series.setdefault(s.name, {})
            per_name.setdefault(_label_key(s), []).append((at, s.value))
    for s in snapshot.samples:
        model = _model_of(s)
        if model is not None:
            view(model).last.append(s)
    for v in views.values():
        v.variants = sorted({dict(s.labels).get("variant", ALL) for s in v.last} - {ALL})
        for rule in rules:
            if rule.match and dict(rule.match).get("model", v.model) != v.model:
                continue
            v.thresholds.setdefault(rule.metric, []).append((rule.alert, rule.op, rule.threshold))
        v.alerts = [a for a in alerts if a.get("model") == v.model]
        w = (windows or {}).get(v.model)
        if w is not None:
            v.confusion, v.distributions = w.confusion, w.distributions
    return ReportData(
        title,
        snapshot.event_time,
        sorted(views.values(), key=lambda v: v.model),
        predictions,
        labels,
        bad_events,
    )


def distributions(spec: Any, cur: BucketSummary, ref: BucketSummary, bins: int) -> dict[str, Distribution]:
    """Each feature's reference and current distribution over the bins its drift uses.

    Numeric: the profile's pinned edges, or the reference's quantiles (as the rolling
    reference's PSI bins them); categorical: the reference's categories, unseen, missing.
    """
    out: dict[str, Distribution] = {}
    for feature in spec.features:
        name, kind = feature.name, feature.kind
        if kind == "categorical":
            ref_counter: Mapping[str, int] = ref.categories.get(name, {})
            cats = spec.categories.get(name) or [
                k
                for k, _ in sorted(ref_counter.items(), key=lambda kv: (-kv[1], kv[0]))
                if not k.startswith("__")
            ]
            r = category_counts(ref_counter, cats)
            c = category_counts(cur.categories.get(name, {}), cats)
            labels = [*cats, "(unseen)", "(missing)"]
        else:
            edges = spec.edges.get(name)
            ref_sk = ref.sketches.get(name)
            cur_sk = cur.sketches.get(name)
            if edges is None:
                if ref_sk is None or ref_sk.is_empty:
                    continue
                arrays = drift.SketchArrays.of(ref_sk, spec.relative_accuracy)
                edges = drift.sorted_unique(arrays.quantile(np.linspace(0.0, 1.0, bins + 1)[1:-1]))
                r = arrays.counts_between(edges)
                c = drift.SketchArrays.of(cur_sk, spec.relative_accuracy).counts_between(edges)
            else:
                r = ref.vector(f"bins:{name}", len(edges) + 1)
                c = cur.vector(f"bins:{name}", len(edges) + 1)
            e = [f"{x:.4g}" for x in np.asarray(edges).tolist()]
            labels = [f"up to {e[0]}"] + [f"{a} – {b}" for a, b in pairwise(e)] + [f"above {e[-1]}"]
        out[name] = Distribution(labels, _shares(r), _shares(c))
    return out


def _shares(counts: Any) -> list[float]:
    a = np.asarray(counts, dtype=np.float64)
    total = a.sum()
    return (a / total).tolist() if total else [0.0] * len(a)


def alert_rows(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Firing-to-resolved spans of each alert instance: (name, series, start, end, evidence)."""
    open_: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for a in alerts:
        key = a["fingerprint"]
        if a["status"] == "firing" and key not in open_:
            row = {"alert": a["alertname"], "severity": a["severity"], "start": a["starts_at"], "end": None}
            row["labels"] = {
                k: v for k, v in a["labels"].items() if k not in ("alertname", "severity", "category")
            }
            row["evidence"] = a.get("evidence", {})
            row["description"] = a.get("description", "")
            open_[key] = row
            rows.append(row)
        elif a["status"] == "resolved" and key in open_:
            open_.pop(key)["end"] = a["ends_at"]
    return rows


def grouped(series: dict[str, Points]) -> dict[str, Points]:
    """Series by label value, empty ones left out."""
    return {k: v for k, v in series.items() if v}
