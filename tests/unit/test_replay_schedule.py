"""Replay's evaluations before the last compute only what the alert rules read.

An evaluation before the end of the stream matters only through the alert events it
makes; the estimated-performance family is left out of it when no rule reads one of its
samples, and so are the feature-drift tests whose samples no rule reads; with no rule at
all those evaluations are not made. These tests replay drifting streams whose alerts have
for-durations spanning many evaluations and check the events against complete
evaluations and against ``step_by_step``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamon.config import load_config
from streamon.core.stages.evaluate import DRIFT_DETECTED, FEATURE_DRIFT_NAMES, SCORE_FEATURE, Snapshot
from streamon.core.stages.stage2 import ESTIMATION_NAMES, Aggregator
from streamon.engine import build_engine
from streamon.exporter import render
from streamon.replay import replay_files
from streamon.traffic import TrafficSpec, generate
from tests.unit.test_replay import CONFIG as REPLAY_CONFIG

HOUR = 3600.0

# test_replay.py's config (short windows, 5-minute evaluations) with rules of its own.
CONFIG = (
    REPLAY_CONFIG
    + """\
alerts:
  rules:
    - {alert: LowAccuracy, metric: ml_model_accuracy, op: "<", threshold: 0.9, for: 40m,
       severity: warning, category: model_performance}
    - {alert: Drift, metric: ml_data_drift_psi_score, op: ">", threshold: 0.1, for: 1h,
       severity: warning, category: data_quality}
    - {alert: FewLabels, metric: streamon_label_coverage_ratio, op: "<", threshold: 0.99, for: 25m,
       severity: warning, category: data_quality}
EXTRA
"""
)
# A rule on an estimated metric: the family is then computed at every evaluation.
ESTIMATED_RULE = """\
    - {alert: LowEstimate, metric: ml_model_estimated_accuracy, op: "<", threshold: 0.9, for: 30m,
       severity: warning, category: model_performance}"""
# A rule on a KS sample: KS (and Wasserstein, computed with it) are then kept.
KS_RULE = """\
    - {alert: KsDrift, metric: ml_data_drift_ks_p_value, op: "<", threshold: 0.01, for: 30m,
       severity: warning, category: data_quality}"""


def _inputs(tmp: Path, extra: str = "") -> tuple[Any, Path, Path]:
    preds, labels = generate(
        TrafficSpec(n=3000, rate=3000 / (8 * HOUR), drift_at=3 * HOUR, drift=("sudden", "degrade"), seed=5)
    )
    p, lab = tmp / "p.jsonl", tmp / "l.jsonl"
    p.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in preds))
    lab.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in labels))
    config = tmp / "config.yaml"
    config.write_text(CONFIG.replace("EXTRA", extra))
    return build_engine(load_config(config)), p, lab


def _samples(snap: Snapshot) -> list[tuple[Any, ...]]:
    return [(s.name, s.labels, "nan" if math.isnan(s.value) else s.value) for s in snap.samples]


def _record(monkeypatch: pytest.MonkeyPatch, full: bool) -> list[list[tuple[Any, ...]]]:
    """Record every snapshot replay evaluates; ``full``: ignore what the caller reads."""
    seen: list[list[tuple[Any, ...]]] = []
    evaluate = Aggregator.evaluate

    def recording(self: Aggregator, now: float | None = None, *, reads: Any = None) -> Snapshot:
        snap = evaluate(self, now, reads=None if full else reads)
        seen.append(_samples(snap))
        return snap

    monkeypatch.setattr(Aggregator, "evaluate", recording)
    return seen


def _read(sample: tuple[Any, ...], names: set[str]) -> bool:
    """Whether an evaluation before the last makes ``sample``, given the rules' metric ``names``:
    the feature-drift samples of a method only if a rule names one of them (or the flag)."""
    name, labels = sample[0], dict(sample[1])
    if name in ESTIMATION_NAMES:
        return not ESTIMATION_NAMES.isdisjoint(names)
    if labels.get("feature") == SCORE_FEATURE:  # score drift: not a feature-drift method's
        return True
    dropped = {m for m, ms in FEATURE_DRIFT_NAMES.items() if names.isdisjoint(ms)}
    if DRIFT_DETECTED in names:
        dropped = set()
    if name == DRIFT_DETECTED:
        return labels["method"] not in dropped
    return not any(name in FEATURE_DRIFT_NAMES[m] for m in dropped)


@pytest.mark.parametrize("extra", ["", ESTIMATED_RULE, KS_RULE])
def test_alerts_only_evaluations_give_the_events_of_complete_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str
) -> None:
    engine, preds, labels = _inputs(tmp_path, extra)
    with monkeypatch.context() as m:
        complete = _record(m, full=True)
        reference = replay_files(engine, preds, labels)
    with monkeypatch.context() as m:
        reduced = _record(m, full=False)
        result = replay_files(engine, preds, labels)
    # Pending for 25 min to 1 h, through several evaluations, then firing (and resolving).
    fired = {e["alertname"] for e in reference.alerts if e["status"] == "firing"}
    assert {"LowAccuracy", "Drift", "FewLabels"} <= fired, fired
    assert result.alerts == reference.alerts
    assert render(result.snapshot) == render(reference.snapshot)
    assert len(reduced) == len(complete) == result.evaluations > 10
    # The last snapshot is complete; each one before it lacks only samples no rule reads.
    assert reduced[-1] == complete[-1]
    names = {r.metric for r in engine.rules}
    left_out = 0
    for part, whole in zip(reduced[:-1], complete[:-1], strict=True):
        assert part == [s for s in whole if _read(s, names)]
        assert [s for s in part if s[0] in names] == [s for s in whole if s[0] in names]
        left_out += len(whole) - len(part)
    assert left_out > 0
    if extra == KS_RULE:  # KS is read, so kept, in every evaluation
        assert all(any(s[0] == "ml_data_drift_ks_statistic" for s in part) for part in reduced)
    else:
        assert not any(s[0] == "ml_data_drift_ks_statistic" for part in reduced[:-1] for s in part)


def test_alerts_only_evaluations_match_step_by_step(tmp_path: Path) -> None:
    engine, preds, labels = _inputs(tmp_path)
    step = replay_files(engine, preds, labels, step_by_step=True)
    skip = replay_files(engine, preds, labels)
    assert skip.alerts == step.alerts and skip.alerts
    assert render(skip.snapshot) == render(step.snapshot)


@pytest.mark.parametrize("gap", [False, True])
def test_without_rules_only_the_last_evaluation_is_made(tmp_path: Path, gap: bool) -> None:
    """Nothing reads an evaluation before the last when there is no rule (and no history):
    the windows move at the same boundaries, so the result has the same bits. ``gap``: two
    hours without events, over which the windows move buckets with no data in between."""
    engine, preds, labels = _inputs(tmp_path)
    if gap:
        for path in (preds, labels):
            rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
            t0 = min(r["ts"] for r in rows)
            kept = [r for r in rows if not 3 * HOUR <= r["ts"] - t0 < 5 * HOUR]
            assert 0 < len(kept) < len(rows)
            path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in kept))
    engine.rules = []
    step = replay_files(engine, preds, labels, step_by_step=True)
    skip = replay_files(engine, preds, labels)
    assert _samples(skip.snapshot) == _samples(step.snapshot)  # values compared exactly
    assert render(skip.snapshot) == render(step.snapshot)
    assert skip.alerts == step.alerts == []
    assert skip.evaluations == 1 < step.evaluations
