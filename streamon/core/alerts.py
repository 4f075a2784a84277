"""In-stream alert rules: for-durations, severities, hysteresis, resolve events.

Rules read the samples of a :class:`~streamon.core.stages.evaluate.Snapshot`, one alert
instance per matching series (its labels identify it). Like Prometheus, an instance
is *pending* while its condition holds for less than ``for``, then *firing*; unlike
a plain threshold it resolves only when the value crosses back past
``resolve_threshold`` (hysteresis), so a value hovering at the threshold does not
flap. A firing critical rule inhibits its warning twin (same metric and series).

Time is the snapshot's event time, so ``streamon replay`` and the workers fire the
same alerts for the same events.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streamon.core.events import parse_ts
from streamon.core.stages.evaluate import Sample, Snapshot

SEVERITY_RANK = {"warning": 1, "critical": 2}


@dataclass(frozen=True)
class Rule:
    alert: str
    metric: str
    op: str  # "<" | ">"
    threshold: float
    for_s: float = 0.0
    severity: str = "warning"
    category: str = "model_performance"
    resolve_threshold: float | None = None
    summary: str = ""
    description: str = ""
    match: tuple[tuple[str, str], ...] = ()  # label equality matchers

    def breached(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value < self.threshold if self.op == "<" else value > self.threshold

    def recovered(self, value: float) -> bool:
        """True once the value is back on the good side of the resolve threshold."""
        if math.isnan(value):
            return True
        bound = self.threshold if self.resolve_threshold is None else self.resolve_threshold
        return value >= bound if self.op == "<" else value <= bound


def rfc3339(ts: float) -> str:
    """
    >>> rfc3339(0)
    '1970-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprint(alertname: str, labels: dict[str, str]) -> str:
    """Stable hash of the alert name and its identifying labels.

    >>> fingerprint("A", {"model": "m"}) == fingerprint("A", {"model": "m"})
    True
    """
    text = alertname + "\x00" + "\x00".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _render(template: str, value: float, threshold: float, labels: dict[str, str]) -> str:
    out = template.replace("{{ value }}", f"{value:.4g}").replace("{{ threshold }}", f"{threshold:g}")
    for k, v in labels.items():
        out = out.replace("{{ " + k + " }}", v)
    return out


@dataclass
class _Instance:
    active_since: float
    firing: bool = False
    starts_at: float | None = None
    value: float = math.nan


@dataclass
class AlertEngine:
    """Evaluates rules against snapshots and yields alert events (dicts in the alert contract).

    >>> rule = Rule("LowAcc", "acc", "<", 0.85, for_s=60, resolve_threshold=0.87)
    >>> eng = AlertEngine([rule])
    >>> snap = lambda t, v: Snapshot(t, [Sample("acc", (("model", "m"),), v)])
    >>> [e["status"] for t, v in [(0, 0.8), (30, 0.8), (60, 0.8), (90, 0.86), (120, 0.9)]
    ...  for e in eng.evaluate(snap(t, v))]
    ['firing', 'resolved']
    """

    rules: list[Rule]
    window: str = "current"
    _state: dict[tuple[str, tuple[tuple[str, str], ...]], _Instance] = field(default_factory=dict)

    def restore(self, history: list[dict[str, Any]]) -> int:
        """Seed the firing state from published alert events (the alerts topic), oldest first.

        A worker that rebuilds after a rebalance must not fire again what already fires.
        Returns the number of firing alerts restored.
        """
        last: dict[str, dict[str, Any]] = {}
        for event in history:
            last[event["fingerprint"]] = event
        names = {r.alert for r in self.rules}
        for event in last.values():
            if event.get("status") != "firing" or event.get("alertname") not in names:
                continue
            labels = {
                k: v for k, v in event["labels"].items() if k not in ("severity", "category", "alertname")
            }
            started = parse_ts(event.get("starts_at")) or 0.0
            key = (event["alertname"], tuple(sorted(labels.items())))
            self._state[key] = _Instance(active_since=started, firing=True, starts_at=started)
        return sum(1 for inst in self._state.values() if inst.firing)

    def becomes_due(self, last: float, now: float) -> bool:
        """True if a pending instance's for-duration, unmet at ``last``, is met at ``now``.

        Between two snapshots with the same samples that is the only change an evaluation
        can make (pending -> firing). An instance already due at ``last`` and still pending
        is inhibited by its critical twin, which stays firing while the samples stay the
        same. Monotonic in ``now``; replay uses it to skip evaluations that change nothing.
        """
        for_s: dict[str, float] = {}
        for rule in self.rules:  # the shortest for-duration of a name: conservative
            for_s[rule.alert] = min(for_s.get(rule.alert, math.inf), rule.for_s)
        for (alert, _labels), inst in self._state.items():
            if inst.firing:
                continue
            wait = for_s.get(alert, 0.0)
            if not last - inst.active_since >= wait and now - inst.active_since >= wait:
                return True
        return False

    def _matching(self, rule: Rule, snapshot: Snapshot) -> list[Sample]:
        out = []
        for s in snapshot.samples:
            if s.name != rule.metric:
                continue
            labels = dict(s.labels)
            if "window" in labels and labels["window"] != self.window:
                continue
            if all(labels.get(k) == v for k, v in rule.match):
                out.append(s)
        return out

    def evaluate(self, snapshot: Snapshot, evidence: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Advance every rule to ``snapshot.event_time``; return the events to publish."""
        now = snapshot.event_time
        events: list[dict[str, Any]] = []
        firing_critical: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        # Critical rules first so they can inhibit their warning twins in the same pass.
        for rule in sorted(self.rules, key=lambda r: -SEVERITY_RANK.get(r.severity, 0)):
            seen = set()
            for sample in self._matching(rule, snapshot):
                key = (rule.alert, tuple(sorted(sample.labels)))
                seen.add(key)
                inst = self._state.get(key)
                twin = (rule.metric, sample.labels)
                if inst is None:
                    if rule.breached(sample.value):
                        inst = self._state[key] = _Instance(active_since=now)
                    else:
                        continue
                inst.value = sample.value
                if inst.firing:
                    if rule.recovered(sample.value):
                        events.append(self._event(rule, sample, inst, "resolved", now, evidence))
                        del self._state[key]
                    elif rule.severity == "critical":
                        firing_critical.add(twin)
                    continue
                if not rule.breached(sample.value):
                    del self._state[key]  # pending, but the condition no longer holds
                    continue
                inhibited = rule.severity != "critical" and twin in firing_critical
                if now - inst.active_since >= rule.for_s and not inhibited:
                    inst.firing = True
                    inst.starts_at = now
                    events.append(self._event(rule, sample, inst, "firing", now, evidence))
                    if rule.severity == "critical":
                        firing_critical.add(twin)
            # A series that vanished (e.g. the model stopped reporting) resolves its alert.
            for key in [k for k in self._state if k[0] == rule.alert and k not in seen]:
                inst = self._state.pop(key)
                if inst.firing:
                    gone = Sample(rule.metric, key[1], math.nan)
                    events.append(self._event(rule, gone, inst, "resolved", now, evidence))
        return events

    def _event(
        self,
        rule: Rule,
        sample: Sample,
        inst: _Instance,
        status: str,
        now: float,
        evidence: dict[str, Any] | None,
    ) -> dict[str, Any]:
        labels = {k: v for k, v in sample.labels}
        ident = {**labels, "severity": rule.severity, "category": rule.category}
        fp = fingerprint(rule.alert, ident)
        key = labels.get("feature")
        ev = (evidence or {}).get(f"{labels.get('model')}/{key}") if key else None
        return {
            "fingerprint": fp,
            "status": status,
            "alertname": rule.alert,
            "severity": rule.severity,
            "category": rule.category,
            "model": labels.get("model"),  # None for infrastructure alerts
            "labels": {**ident, "alertname": rule.alert},
            "value": None if math.isnan(sample.value) else sample.value,
            "threshold": rule.threshold,
            "starts_at": rfc3339(inst.starts_at if inst.starts_at is not None else now),
            "ends_at": rfc3339(now) if status == "resolved" else None,
            "summary": _render(rule.summary or rule.alert, sample.value, rule.threshold, labels),
            "description": _render(rule.description, sample.value, rule.threshold, labels),
            "window": labels.get("window", self.window),
            "evidence": ev or {"metric": rule.metric, "value": sample.value, "at": rfc3339(now)},
        }
