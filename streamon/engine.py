"""Assembles the pure engine from validated settings: one place, used by replay and workers.

Everything that turns a :class:`~streamon.config.Settings` into core objects (model
specs pinned by reference profiles, window and evaluation settings, alert rules, the
event decoder) lives here, so ``streamon replay`` and ``streamon worker`` cannot
drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamon.config import Settings
from streamon.core.alerts import Rule
from streamon.core.events import Decoder, FieldMap
from streamon.core.profile import FeatureSpec, ModelSpec, SegmentSpec, profile_from_bytes
from streamon.core.stages.evaluate import EvalSettings
from streamon.core.stages.join import KeyValueStore, MemoryStore
from streamon.core.stages.stage1 import PartitionProcessor
from streamon.core.stages.stage2 import Aggregator, WindowSettings
from streamon.core.statistics.abmetrics import ABSettings
from streamon.core.statistics.business import BusinessCosts
from streamon.errors import InputError


@dataclass
class Engine:
    settings: Settings
    models: dict[str, ModelSpec]
    windows: WindowSettings
    evaluation: EvalSettings
    rules: list[Rule]
    fields: FieldMap
    eval_interval_s: float

    def decoder(self, check_time: bool = True) -> Decoder:
        w = self.settings.windows
        return Decoder(
            {name: m.threshold for name, m in self.models.items()},
            self.fields,
            max_bytes=self.settings.kafka.max_message_bytes,
            max_future_s=w.max_future_skew if check_time else float("inf"),
            max_age_s=w.max_event_age if check_time else float("inf"),
            max_features=self.settings.limits.max_features,
            max_string_length=self.settings.limits.max_string_length,
            max_feature_value_length=self.settings.limits.max_feature_value_length,
            regression=[name for name, m in self.models.items() if m.task == "regression"],
            multiclass={name: m.classes for name, m in self.models.items() if m.task == "multiclass"},
        )

    def partition_processor(
        self, store: KeyValueStore | None = None, source: str = "replay:0"
    ) -> PartitionProcessor:
        w = self.settings.windows
        return PartitionProcessor(
            self.models,
            store if store is not None else MemoryStore(),
            bucket_s=w.bucket,
            label_horizon_s=w.label_horizon,
            orphan_grace_s=w.orphan_grace,
            decoder=self.decoder(),
            source=source,
        )

    def aggregator(self, models: list[str] | None = None) -> Aggregator:
        owned = {k: v for k, v in self.models.items() if models is None or k in models}
        # The config names F1 as the metric does (f1_score); the evaluation's key is "f1".
        baselines = {
            m.name: {("f1" if k == "f1_score" else k): v for k, v in m.baseline.items()}
            for m in self.settings.models
            if m.baseline
        }
        ab = self.settings.ab_testing
        ab_settings = ABSettings(ab.control, ab.alpha, ab.sequential_tau)
        return Aggregator(owned, self.windows, self.evaluation, baselines, ab_settings)


def load_profile(path: Path) -> dict[str, ModelSpec]:
    try:
        return profile_from_bytes(path.read_bytes())
    except FileNotFoundError:
        raise InputError(
            f"reference profile {path} not found: build it with `streamon reference build`"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"reference profile {path} is unreadable ({exc}): rebuild it") from None


def build_engine(settings: Settings, profile: Path | None = None) -> Engine:
    """The engine for ``settings``; ``profile`` overrides every model's reference_profile."""
    models: dict[str, ModelSpec] = {}
    for m in settings.models:
        spec = ModelSpec(
            name=m.name,
            task=m.task,
            classes=m.classes,
            top_k=m.top_k,
            value_matrix=tuple(tuple(row) for row in m.value_cells() or []) or None,
            threshold=m.threshold,
            score_bins=m.score_bins,
            calibration_bins=m.calibration_bins,
            features=[FeatureSpec(f.name, f.type) for f in m.features],
        )
        source = profile or m.reference_profile
        if source is not None:
            pinned = load_profile(Path(source)).get(m.name)
            if pinned is None:
                raise InputError(
                    f"reference profile {source} has no model {m.name!r}: rebuild it for this config"
                )
            if pinned.score_bins != spec.score_bins or [f.name for f in pinned.features] != [
                f.name for f in spec.features
            ]:
                raise InputError(
                    f"reference profile {source} was built for other features or score bins "
                    f"of {m.name!r}: rebuild it"
                )
            counted_in = pinned.reference.calibration_bins if pinned.reference is not None else None
            if counted_in not in (None, spec.calibration_bins):
                raise InputError(
                    f"reference profile {source} counted the labels of {m.name!r} in {counted_in} "
                    f"calibration bins, the config asks for {spec.calibration_bins}: rebuild it"
                )
            pinned.threshold = spec.threshold
            pinned.task = spec.task
            if spec.task == "multiclass" and pinned.classes != spec.classes:
                raise InputError(
                    f"reference profile {source} was built for other classes of {m.name!r}: rebuild it"
                )
            pinned.classes, pinned.top_k = spec.classes, spec.top_k
            pinned.calibration_bins = spec.calibration_bins
            spec = pinned
        # Cardinality caps on values from data (the profile does not carry them).
        spec.segments = [
            SegmentSpec(s.field, frozenset(s.values) if s.values is not None else None, s.max_values)
            for s in m.segments
        ]
        spec.variants = frozenset(m.variants) if m.variants is not None else None
        spec.max_variants = settings.limits.max_variants_per_model
        spec.max_categories = settings.limits.max_category_values
        models[m.name] = spec
    w = settings.windows
    windows = WindowSettings(bucket_s=w.bucket, current_s=w.current, reference_s=w.reference)
    costs = settings.business_metrics.costs
    revenue = settings.business_metrics.revenue
    cm_families = settings.monitoring.custom_metrics
    drift_names = tuple(settings.data_drift.features) if settings.data_drift.features is not None else None
    evaluation = EvalSettings(
        current_s=w.current,
        drift_bins=settings.data_drift.bins,
        costs=BusinessCosts(
            costs.false_positive_cost,
            costs.false_negative_cost,
            costs.investigation_cost,
            revenue.fraud_prevention_value,
            revenue.customer_retention_value,
            costs.system_operating_cost,
        ),
        degradation_medium=settings.degradation.medium,
        degradation_high=settings.degradation.high,
        drift_features=drift_names,
        performance_enabled=settings.performance_enabled,
        drift_enabled=settings.drift_enabled,
        business_enabled=settings.business_enabled,
        min_labelled=cm_families.model_performance.min_samples,
        min_business_labelled=cm_families.business_metrics.min_samples,
        min_drift_samples=cm_families.data_drift.min_samples,
        drift_methods={m.name: m.threshold for m in settings.data_drift.methods if m.enabled},
        estimation_enabled=settings.estimation_enabled,
        estimation_prior_strength=cm_families.estimated_performance.prior_strength,
        estimation_confidence=cm_families.estimated_performance.confidence,
        min_estimation_labelled=cm_families.estimated_performance.min_samples,
        estimation_reliable_p_value=cm_families.estimated_performance.calibration_p_value,
    )
    rules = [
        Rule(
            alert=r.alert,
            metric=r.metric,
            op=r.op,
            threshold=r.threshold,
            for_s=r.for_,
            severity=r.severity,
            category=r.category,
            resolve_threshold=r.resolve_threshold,
            summary=r.summary,
            description=r.description,
            match=(("variant", "all"),)
            if r.metric.startswith(("ml_", "streamon_model", "streamon_label"))
            else (),
        )
        for r in settings.alerts.rules
        if settings.monitoring.alerts.enabled
    ]
    fields = FieldMap(
        prediction=settings.fields.prediction.model_dump(),
        label=settings.fields.label.model_dump(),
    )
    cm = settings.monitoring.custom_metrics
    intervals = [
        f.collection_interval
        for f in (cm.model_performance, cm.data_drift, cm.business_metrics, cm.estimated_performance)
        if f.enabled
    ]
    return Engine(
        settings, models, windows, evaluation, rules, fields, min(intervals) if intervals else 300.0
    )
