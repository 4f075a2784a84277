"""The demo's traffic through the engine with the demo's config: ROI per arm and concept drift.

The stream is what ``streamon demo`` produces (two A/B arms, labels after ~5 s, sudden +
categorical + degrade drift), in event time, through stage 1 (one partition, and three
split by prediction id) and stage 2, evaluated every 5 s as the demo's worker does.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pytest

from streamon.config import load_config
from streamon.core.stages.evaluate import Snapshot, bucket_error_rates
from streamon.core.statistics.business import SECONDS_PER_MONTH
from streamon.core.statistics.concept_drift import detect_concept_drift, error_stream
from streamon.engine import Engine, build_engine
from streamon.simulate import SimulationSpec, TrafficSource

ROOT = Path(__file__).resolve().parents[2]
MODEL = "fraud-detector"
START = 1_800_000_000.0
DRIFT_AFTER = 60.0
EVERY = 5.0
END = 210.0  # event seconds: a short demo run


@dataclass
class Run:
    engine: Engine
    times: list[float]  # evaluation times, seconds since START
    snapshots: list[Snapshot]
    aggregator: object


def _events(**models: tuple[str, ...]) -> list[tuple[float, int, bytes, str]]:
    spec = SimulationSpec(
        **models,  # type: ignore[arg-type]
        rate=100.0,
        variants=("A", "B"),
        experiment="demo",
        label_delay_s=5.0,
        label_fraction=0.8,
        drift=("sudden", "categorical", "degrade"),
        drift_after_s=DRIFT_AFTER,
        seed=7,
    )
    src = TrafficSource(spec, START, id_prefix="d")
    preds, labels = src.between(START, START + END)
    out = [(p["ts"], 0, orjson.dumps(p), p["prediction_id"]) for p in preds]
    out += [
        (lab["ts"], 1, orjson.dumps(lab), lab["prediction_id"]) for lab in labels if lab["ts"] < START + END
    ]
    out.sort(key=lambda e: (e[0], e[1]))
    return out


def _run(engine: Engine, events: list[tuple[float, int, bytes, str]], partitions: int) -> Run:
    procs = [engine.partition_processor(source=f"predictions:{i}") for i in range(partitions)]
    agg = engine.aggregator()
    times, snaps = [], []
    i = 0
    t = EVERY
    while t <= END:
        batches: list[tuple[list[bytes], list[bytes]]] = [([], []) for _ in procs]
        while i < len(events) and events[i][0] < START + t:
            _, kind, raw, pid = events[i]
            batches[zlib.crc32(pid.encode()) % partitions][kind].append(raw)
            i += 1
        # Three partitions: their partials arrive in the reverse order.
        for proc, (preds, labels) in reversed(list(zip(procs, batches, strict=True))):
            assert proc.process(preds, labels) == []
            for partial in proc.take_partials():
                agg.apply(partial)
        times.append(t)
        snaps.append(agg.evaluate(START + t))
        t += EVERY
    return Run(engine, times, snaps, agg)


@pytest.fixture(scope="module")
def runs() -> tuple[Run, Run]:
    engine = build_engine(load_config(ROOT / "configs" / "demo_config.yaml"))
    events = _events()
    return _run(engine, events, 1), _run(engine, events, 3)


def _v(snap: Snapshot, name: str, variant: str = "all", **labels: str) -> float:
    return snap.value(name, model=MODEL, variant=variant, **labels)


# --------------------------------------------------------------------------- ROI


def test_arms_share_the_operating_cost_so_their_costs_add_up_to_the_models(runs: tuple[Run, Run]) -> None:
    one, _ = runs
    costs = one.engine.evaluation.costs
    checked = 0
    for t, snap in zip(one.times, one.snapshots, strict=True):
        roi = {v: _v(snap, "ml_business_roi", v, window="current") for v in ("all", "A", "B")}
        if any(math.isnan(r) for r in roi.values()):
            continue
        net = {v: _v(snap, "ml_business_cost_savings", v, window="current") for v in roi}
        n = {v: _v(snap, "streamon_predictions_in_window", v, window="current") for v in roi}
        operating = {v: net[v] / (roi[v] + 1) for v in roi}  # ROI = (net - op) / op
        # The window covers the event time since the first bucket (0 s): t seconds, while it fills.
        assert operating["all"] == pytest.approx(costs.system_operating_cost_monthly * t / SECONDS_PER_MONTH)
        for arm in ("A", "B"):
            assert operating[arm] == pytest.approx(operating["all"] * n[arm] / n["all"], rel=1e-9)
        assert operating["A"] + operating["B"] == pytest.approx(operating["all"], rel=1e-9)
        # Each arm paying the whole cost made the model's ROI = ROI_A + ROI_B + 1; now it is the
        # prediction-weighted mean of the arms' ROIs.
        assert roi["all"] != pytest.approx(roi["A"] + roi["B"] + 1, rel=1e-3)
        weighted = sum(n[a] / n["all"] * (roi[a] + 1) for a in ("A", "B")) - 1
        assert roi["all"] == pytest.approx(weighted, rel=1e-9)
        checked += 1
    assert checked >= 20


def test_roi_falls_with_precision_instead_of_growing_with_the_window(runs: tuple[Run, Run]) -> None:
    one, _ = runs

    def at(t: float, name: str) -> float:
        return _v(one.snapshots[one.times.index(t)], name, window="current")

    before, after = 55.0, END
    assert at(after, "ml_model_precision") < 0.5 * at(before, "ml_model_precision")
    # The window holds ~2.7x the labelled predictions at the end, which alone made ROI grow when
    # its operating cost was that of the full 5-minute window from the first second on.
    assert at(after, "streamon_labelled_in_window") > 2.5 * at(before, "streamon_labelled_in_window")
    assert at(after, "ml_business_roi") < at(before, "ml_business_roi")
    # With the demo's business values a degraded model loses money: ROIBelowThreshold can fire.
    assert at(after, "ml_business_roi") < 1.0 < at(before, "ml_business_roi")


# --------------------------------------------------------------------------- concept drift


def test_concept_drift_fires_after_the_demo_drift_and_not_before(runs: tuple[Run, Run]) -> None:
    one, three = runs
    flags = [_v(s, "streamon_concept_drift_detected", method="adwin") for s in one.snapshots]
    # Exactly the same on three partitions whose partials arrive in another order.
    assert flags == [_v(s, "streamon_concept_drift_detected", method="adwin") for s in three.snapshots]
    before = [f for t, f in zip(one.times, flags, strict=True) if t <= DRIFT_AFTER]
    assert before and not any(before)
    fired = [t for t, f in zip(one.times, flags, strict=True) if f == 1.0]
    assert fired and fired[0] <= DRIFT_AFTER + 45.0, flags
    # Fed one error rate per bucket (at most 30 in the demo's window), ADWIN never fires: it
    # tests every 32 values and its bound needs far more values than 15 buckets a side.
    window = one.aggregator.models[MODEL].windows  # type: ignore[attr-defined]
    per_bucket: dict[float, np.ndarray] = {}
    for w in window.values():
        for start, b in w.buckets():
            per_bucket[start] = per_bucket.get(start, 0) + b.confusion
    rates = bucket_error_rates(per_bucket[k] for k in sorted(per_bucket))
    assert len(rates) <= 30 and not detect_concept_drift(rates).detected
    assert not detect_concept_drift(rates, clock=1).detected


def test_error_stream_keeps_every_buckets_rate() -> None:
    rng = np.random.default_rng(3)
    labelled = rng.integers(0, 400, 50)
    errors = (labelled * rng.random(50)).astype(np.int64)
    values, bucket = error_stream(errors.tolist(), labelled.tolist())
    assert values.size == labelled.sum()
    for k in range(50):
        assert values[bucket == k].sum() == errors[k]
    # Thinned above the cap: every bucket keeps (about) its rate, in proportion.
    values, bucket = error_stream(errors.tolist(), labelled.tolist(), max_values=1000)
    assert values.size <= 1000 + 50
    for k in np.flatnonzero(labelled >= 100):
        kept = values[bucket == k]
        assert abs(kept.mean() - errors[k] / labelled[k]) <= 0.5 / kept.size + 1e-12


# --------------------------------------------------------------------------- regression


REGRESSION = "credit-limit"


def test_the_demos_regression_model_shows_its_degradation() -> None:
    """The demo's traffic for both models of the demo config: the credit-limit model's error and
    bias grow with the "degrade" drift (+15% predictions), it has no binary series, the fraud
    model beside it keeps its own, and 1 and 3 partitions agree."""
    engine = build_engine(load_config(ROOT / "configs" / "demo_config.yaml"))
    events = _events(models=(MODEL, REGRESSION), regression=(REGRESSION,))
    one, three = _run(engine, events, 1), _run(engine, events, 3)

    def at(run: Run, t: float, name: str, model: str = REGRESSION, **labels: str) -> float:
        snap = run.snapshots[run.times.index(t)]
        return snap.value(name, model=model, variant="all", window="current", **labels)

    before, after = 55.0, END
    for name in ("ml_model_mae", "ml_model_rmse", "ml_model_r2", "ml_model_mean_error"):
        for t in (before, after):
            assert at(one, t, name) == at(three, t, name), (name, t)
    assert at(one, after, "ml_model_mae") > 2 * at(one, before, "ml_model_mae")
    assert abs(at(one, before, "ml_model_mean_error")) < 0.1 * at(one, before, "ml_model_mae")
    assert at(one, after, "ml_model_mean_error") > 0.5 * at(one, after, "ml_model_mae")  # biased up
    assert at(one, after, "ml_model_r2") < at(one, before, "ml_model_r2")
    q = {x: at(one, after, "ml_model_residual_quantile", quantile=x) for x in ("0.5", "0.9", "0.99")}
    assert q["0.5"] < q["0.9"] < q["0.99"]
    assert at(one, after, "streamon_labelled_in_window") > 0
    # No binary series for it.
    names = {s.name for s in one.snapshots[-1].samples if dict(s.labels).get("model") == REGRESSION}
    assert not names & {
        "ml_model_accuracy",
        "ml_business_roi",
        "streamon_ab_difference",
        "ml_predictions_total",
    }
    # The fraud model beside it keeps its binary series.
    for name in ("ml_model_accuracy", "ml_model_auc_roc", "ml_business_roi"):
        assert not math.isnan(at(one, after, name, MODEL)), name


MULTICLASS = "tx-router"


def test_the_demos_multiclass_model_shows_its_degradation() -> None:
    """The demo's traffic for the fraud and the multiclass model of the demo config: the
    router's accuracy, macro F1 and top-2 accuracy fall and its log loss rises with the
    "degrade" drift (blurred scores), its confusion counter counts every labelled prediction,
    it has no binary series, and 1 and 3 partitions agree exactly."""
    settings = load_config(ROOT / "configs" / "demo_config.yaml")
    classes = next(tuple(m.classes) for m in settings.models if m.name == MULTICLASS)
    engine = build_engine(settings)
    events = _events(models=(MODEL, MULTICLASS), multiclass=(MULTICLASS,), classes=((MULTICLASS, classes),))
    one, three = _run(engine, events, 1), _run(engine, events, 3)

    def at(run: Run, t: float, name: str, **labels: str) -> float:
        snap = run.snapshots[run.times.index(t)]
        return snap.value(name, model=MULTICLASS, variant="all", window="current", **labels)

    before, after = 55.0, END
    series = [
        ("ml_model_accuracy", {}),
        ("ml_model_f1_score", {"average": "macro"}),
        ("ml_model_log_loss", {}),
        ("ml_model_top_k_accuracy", {"k": "2"}),
        ("ml_model_auc_roc", {"average": "macro"}),
    ]
    for name, labels in series:
        for t in (before, after):
            assert at(one, t, name, **labels) == at(three, t, name, **labels), (name, t)
    assert at(one, after, "ml_model_accuracy") < at(one, before, "ml_model_accuracy") - 0.05
    assert at(one, after, "ml_model_f1_score", average="macro") < at(
        one, before, "ml_model_f1_score", average="macro"
    )
    assert at(one, after, "ml_model_log_loss") > at(one, before, "ml_model_log_loss")
    for c in classes:
        assert 0.0 <= at(one, after, "ml_model_recall", **{"class": c}) <= 1.0
    last = one.snapshots[-1]
    confusion = [
        s
        for s in last.series("ml_model_confusion_total")
        if (dict(s.labels)["model"], dict(s.labels)["variant"]) == (MULTICLASS, "all")
    ]
    assert len(confusion) == len(classes) ** 2
    # The run is shorter than the current window and has no corrections: all labels are in it.
    assert sum(s.value for s in confusion) == at(one, after, "streamon_labelled_in_window") > 0
    names = {s.name for s in last.samples if dict(s.labels).get("model") == MULTICLASS}
    assert not names & {
        "ml_business_roi",
        "streamon_ab_difference",
        "ml_predictions_total",
        "ml_model_specificity",
    }
    for name in ("ml_model_accuracy", "ml_model_auc_roc", "ml_business_roi"):
        assert not math.isnan(last.value(name, model=MODEL, variant="all", window="current")), name
