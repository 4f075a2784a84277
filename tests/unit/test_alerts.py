"""AlertEngine: for-durations, hysteresis, inhibition, vanished series, fingerprints, the alert contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from streamon.core.alerts import AlertEngine, Rule, fingerprint, rfc3339
from streamon.core.stages.evaluate import Sample, Snapshot

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "alert.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
T0 = 1_767_225_600.0

ACC = Rule(
    "ModelAccuracyDegraded",
    "ml_model_accuracy",
    "<",
    0.85,
    for_s=600,
    severity="warning",
    category="model_performance",
    resolve_threshold=0.87,
    summary="Model accuracy degraded",
    description="Model accuracy is {{ value }}, below 85% threshold ({{ model }})",
)
DRIFT_WARN = Rule(
    "DataDriftDetected",
    "ml_data_drift_psi_score",
    ">",
    0.1,
    for_s=0,
    severity="warning",
    category="data_quality",
    description="PSI of feature {{ feature }} is {{ value }}",
)
DRIFT_CRIT = Rule(
    "SevereDataDrift",
    "ml_data_drift_psi_score",
    ">",
    0.2,
    for_s=0,
    severity="critical",
    category="data_quality",
    resolve_threshold=0.15,
)

ALL_EVENTS: list[dict[str, Any]] = []  # every event any test produced, validated at the end


def labels(**kv: str) -> tuple[tuple[str, str], ...]:
    return (("model", "m"), ("variant", "all"), ("window", "current"), *kv.items())


def acc_snap(t: float, value: float, **extra: str) -> Snapshot:
    return Snapshot(T0 + t, [Sample("ml_model_accuracy", labels(**extra), value)])


def psi_snap(t: float, values: dict[str, float]) -> Snapshot:
    return Snapshot(
        T0 + t, [Sample("ml_data_drift_psi_score", labels(feature=f), v) for f, v in values.items()]
    )


def run(engine: AlertEngine, snaps: list[Snapshot]) -> list[tuple[float, dict[str, Any]]]:
    out = []
    for s in snaps:
        for e in engine.evaluate(s):
            ALL_EVENTS.append(e)
            out.append((s.event_time - T0, e))
    return out


def test_fires_only_after_for_elapsed() -> None:
    eng = AlertEngine([ACC])
    # Healthy, then breached from t=120 on, evaluated every 60 s.
    snaps = [acc_snap(t, 0.9 if t < 120 else 0.8) for t in range(0, 1500, 60)]
    events = run(eng, snaps)
    assert [(t, e["status"]) for t, e in events] == [(720, "firing")]  # 120 + for 600, not one tick before
    e = events[0][1]
    assert e["alertname"] == "ModelAccuracyDegraded" and e["value"] == 0.8 and e["threshold"] == 0.85
    assert e["ends_at"] is None and e["starts_at"] == rfc3339(T0 + 720)
    assert e["description"] == "Model accuracy is 0.8, below 85% threshold (m)"


def test_pending_resets_when_condition_clears_before_for() -> None:
    eng = AlertEngine([ACC])
    # Breached for 540 s, one healthy evaluation, breached again: the clock restarts.
    values = {t: 0.8 for t in range(0, 2000, 60)}
    values[540] = 0.9
    events = run(eng, [acc_snap(t, v) for t, v in sorted(values.items())])
    assert [(t, e["status"]) for t, e in events] == [(600 + 600, "firing")]


def test_hysteresis_keeps_firing_between_threshold_and_resolve_threshold() -> None:
    eng = AlertEngine([ACC])
    timeline = [(0, 0.80), (600, 0.80), (660, 0.86), (720, 0.8699), (780, 0.851), (840, 0.87), (900, 0.9)]
    events = run(eng, [acc_snap(t, v) for t, v in timeline])
    assert [(t, e["status"]) for t, e in events] == [(600, "firing"), (840, "resolved")]
    resolved = events[1][1]
    assert resolved["value"] == 0.87 and resolved["ends_at"] == rfc3339(T0 + 840)
    assert resolved["starts_at"] == events[0][1]["starts_at"]
    assert resolved["fingerprint"] == events[0][1]["fingerprint"]


def test_hysteresis_for_greater_than_rules() -> None:
    eng = AlertEngine([DRIFT_CRIT])
    timeline = [(0, 0.3), (60, 0.19), (120, 0.16), (180, 0.21), (240, 0.15), (300, 0.14)]
    events = run(eng, [psi_snap(t, {"x": v}) for t, v in timeline])
    assert [(t, e["status"]) for t, e in events] == [(0, "firing"), (240, "resolved")]  # <= 0.15 resolves


def test_no_flapping_on_a_value_oscillating_around_the_threshold() -> None:
    # Pending alert: the oscillation keeps resetting the for-clock, so it never fires.
    eng = AlertEngine([ACC])
    osc = [acc_snap(t, 0.849 if (t // 60) % 2 else 0.851) for t in range(0, 3 * 3600, 60)]
    assert run(eng, osc) == []
    # Firing alert (for 0): one firing event, then the oscillation stays below resolve_threshold.
    eng = AlertEngine([Rule("A", "ml_model_accuracy", "<", 0.85, for_s=0, resolve_threshold=0.87)])
    events = run(eng, osc)
    assert [(t, e["status"]) for t, e in events] == [(60, "firing")]
    # Without hysteresis the same signal flaps (the contrast that makes the test meaningful).
    eng = AlertEngine([Rule("B", "ml_model_accuracy", "<", 0.85, for_s=0)])
    assert len(run(eng, osc)) > 100


def test_critical_inhibits_its_warning_twin_on_the_same_series() -> None:
    eng = AlertEngine([DRIFT_WARN, DRIFT_CRIT])
    ev = run(eng, [psi_snap(0, {"amount": 0.35, "hour": 0.15})])
    fired = {(e["alertname"], e["labels"]["feature"]) for _, e in ev}
    # amount: critical only (the warning twin is inhibited); hour: only warning-level drift.
    assert fired == {("SevereDataDrift", "amount"), ("DataDriftDetected", "hour")}
    assert all(e["status"] == "firing" for _, e in ev)
    # Still severe: no new events, the warning stays inhibited.
    assert run(eng, [psi_snap(60, {"amount": 0.4, "hour": 0.15})]) == []
    # amount drops to a warning level: the critical resolves and the warning fires, in one pass.
    ev = run(eng, [psi_snap(120, {"amount": 0.12, "hour": 0.15})])
    assert sorted((e["alertname"], e["status"], e["labels"]["feature"]) for _, e in ev) == [
        ("DataDriftDetected", "firing", "amount"),
        ("SevereDataDrift", "resolved", "amount"),
    ]


def test_inhibition_holds_regardless_of_rule_order() -> None:
    for rules in ([DRIFT_WARN, DRIFT_CRIT], [DRIFT_CRIT, DRIFT_WARN]):
        eng = AlertEngine(rules)
        ev = run(eng, [psi_snap(0, {"amount": 0.5})])
        assert [e["alertname"] for _, e in ev] == ["SevereDataDrift"]


def test_vanished_series_resolves() -> None:
    eng = AlertEngine([DRIFT_CRIT])
    fired = run(eng, [psi_snap(0, {"a": 0.5, "b": 0.5})])
    assert len(fired) == 2
    gone = run(eng, [psi_snap(60, {"a": 0.5})])  # series b disappeared
    assert len(gone) == 1
    e = gone[0][1]
    assert e["status"] == "resolved" and e["labels"]["feature"] == "b"
    assert e["value"] is None and e["ends_at"] == rfc3339(T0 + 60)
    assert e["fingerprint"] == next(f for _, f in fired if f["labels"]["feature"] == "b")["fingerprint"]
    # The whole model vanishing resolves the rest; a pending (not firing) series just disappears.
    assert [e["labels"]["feature"] for _, e in run(eng, [Snapshot(T0 + 120, [])])] == ["a"]
    eng = AlertEngine([ACC])
    run(eng, [acc_snap(0, 0.5)])
    assert run(eng, [Snapshot(T0 + 60, [])]) == []


def test_only_the_current_window_and_matching_series_are_alerted() -> None:
    rule = Rule("R", "ml_model_accuracy", "<", 0.85, match=(("variant", "all"),))
    eng = AlertEngine([rule])
    snap = Snapshot(
        T0,
        [
            Sample("ml_model_accuracy", (("model", "m"), ("variant", "all"), ("window", "reference")), 0.1),
            Sample("ml_model_accuracy", (("model", "m"), ("variant", "A"), ("window", "current")), 0.1),
            Sample("ml_model_accuracy", (("model", "m"), ("variant", "all"), ("window", "current")), 0.9),
        ],
    )
    assert run(eng, [snap]) == []


def test_fingerprints_stable_and_distinct_per_series() -> None:
    a = run(AlertEngine([DRIFT_CRIT]), [psi_snap(0, {"x": 0.5, "y": 0.5}), psi_snap(60, {})])
    b = run(AlertEngine([DRIFT_CRIT]), [psi_snap(999, {"y": 0.9, "x": 0.3}), psi_snap(1200, {})])
    fp_a = {(e["labels"]["feature"], e["status"]): e["fingerprint"] for _, e in a}
    fp_b = {(e["labels"]["feature"], e["status"]): e["fingerprint"] for _, e in b}
    assert fp_a == fp_b  # stable across engines, times, values and sample order
    assert fp_a[("x", "firing")] == fp_a[("x", "resolved")]
    assert fp_a[("x", "firing")] != fp_a[("y", "firing")]
    assert all(len(f) == 16 and int(f, 16) >= 0 for f in fp_a.values())
    # Label order does not matter; name and every label value do.
    base = {"model": "m", "feature": "x"}
    assert fingerprint("A", base) == fingerprint("A", dict(reversed(list(base.items()))))
    others = [
        fingerprint("B", base),
        fingerprint("A", {**base, "feature": "y"}),
        fingerprint("A", {**base, "variant": "all"}),
        fingerprint("A", {"model": "m", "feature": "x\x00"}),
    ]
    assert len({fingerprint("A", base), *others}) == 5
    # The same series under the warning and the critical rule are different alerts.
    w = run(AlertEngine([DRIFT_WARN]), [psi_snap(0, {"x": 0.5})])[0][1]
    c = run(AlertEngine([DRIFT_CRIT]), [psi_snap(0, {"x": 0.5})])[0][1]
    assert w["fingerprint"] != c["fingerprint"]


def test_restore_does_not_fire_twice() -> None:
    first = AlertEngine([DRIFT_CRIT])
    fired = run(first, [psi_snap(0, {"x": 0.5})])
    second = AlertEngine([DRIFT_CRIT])  # a worker taking over after a rebalance
    assert second.restore([e for _, e in fired]) == 1
    assert run(second, [psi_snap(60, {"x": 0.6})]) == []
    resolved = run(second, [psi_snap(120, {"x": 0.01})])
    assert [e["status"] for _, e in resolved] == ["resolved"]
    assert resolved[0][1]["fingerprint"] == fired[0][1]["fingerprint"]


def test_events_validate_against_the_alert_schema() -> None:
    """Firing, resolved (hysteresis), resolved (vanished), inhibited pairs: every event is valid."""
    eng = AlertEngine([ACC, DRIFT_WARN, DRIFT_CRIT])
    events = run(
        eng,
        [
            Snapshot(T0, [*acc_snap(0, 0.5).samples, *psi_snap(0, {"a": 0.5, "b": 0.12}).samples]),
            Snapshot(T0 + 600, [*acc_snap(600, 0.5).samples, *psi_snap(600, {"a": 0.5, "b": 0.12}).samples]),
            Snapshot(T0 + 660, [*acc_snap(660, 0.95).samples, *psi_snap(660, {"a": 0.11}).samples]),
        ],
    )
    kinds = {(e["alertname"], e["status"]) for _, e in events}
    assert kinds == {
        ("ModelAccuracyDegraded", "firing"),
        ("ModelAccuracyDegraded", "resolved"),
        ("SevereDataDrift", "firing"),
        ("SevereDataDrift", "resolved"),
        ("DataDriftDetected", "firing"),
        ("DataDriftDetected", "resolved"),  # b vanished
    }
    # Everything any test in this module produced, too (when run together).
    for e in [e for _, e in events] + ALL_EVENTS:
        errors = [err.message for err in VALIDATOR.iter_errors(e)]
        assert not errors, (e, errors)
        assert orjson.loads(orjson.dumps(e))["fingerprint"] == e["fingerprint"]  # what goes on the wire
    # The validator is not vacuous: broken events are rejected.
    good = events[0][1]
    for broken in (
        {**good, "status": "pending"},
        {**good, "severity": "info"},
        {**good, "starts_at": "yesterday"},
        {k: v for k, v in good.items() if k != "fingerprint"},
        {**good, "status": "resolved", "ends_at": None},
        {**good, "labels": {"model": 1}},
    ):
        assert list(VALIDATOR.iter_errors(broken)), broken


@pytest.mark.parametrize("ts", [0.0, 1_767_225_600.0, 1_767_225_600.9])
def test_rfc3339(ts: float) -> None:
    text = rfc3339(ts)
    assert VALIDATOR.is_valid({**_minimal_event(), "starts_at": text})
    assert text.endswith("Z") and len(text) == 20


def _minimal_event() -> dict[str, Any]:
    return {
        "fingerprint": "f",
        "status": "firing",
        "alertname": "A",
        "severity": "warning",
        "category": "data_quality",
        "labels": {},
        "value": 1.0,
        "threshold": 0.5,
        "starts_at": "2026-01-01T00:00:00Z",
        "ends_at": None,
        "summary": "",
        "description": "",
    }
