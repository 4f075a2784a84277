"""``streamon replay`` on awkward input: odd timestamps, sparse streams, bad lines, thin references.

Small in-process streams (tens to hundreds of events) with short windows, so every test runs
in well under a few seconds; the evaluation-schedule test compares the skipping replay with
the step-by-step one on a stream with gaps and alerts with for-durations.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamon import replay as replay_mod
from streamon.cli import main
from streamon.config import load_config
from streamon.core.events import Decoder
from streamon.core.profile import FeatureSpec, ModelSpec
from streamon.core.stages.evaluate import Snapshot
from streamon.core.stages.join import MemoryStore
from streamon.core.stages.stage1 import PartitionProcessor
from streamon.engine import build_engine
from streamon.exporter import render
from streamon.replay import replay_files

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: in the past of the wall clock
MODEL = "fraud-v2"

CONFIG = """\
monitoring:
  custom_metrics:
    model_performance: {enabled: true, collection_interval: 300, min_samples: 1}
    data_drift: {enabled: true, collection_interval: 300, min_samples: 5}
    business_metrics: {enabled: true, collection_interval: 300, min_samples: 1}
    estimated_performance: {enabled: false}
windows:
  bucket: 1m
  current: 1h
  reference: 2h
  max_event_age: MAX_AGE
models:
  - name: fraud-v2
    threshold: 0.5
    features:
      - {name: amount, type: numeric}
alerts:
  rules:
    - {alert: Busy, metric: streamon_predictions_in_window, op: ">", threshold: 3, for: 10m,
       severity: warning, category: data_quality}
    - {alert: VeryBusy, metric: streamon_predictions_in_window, op: ">", threshold: 8, for: 20m,
       severity: critical, category: data_quality}
    - {alert: Quiet, metric: streamon_predictions_in_window, op: "<", threshold: 2, for: 45m,
       severity: warning, category: data_quality, resolve_threshold: 3}
"""


def _config(tmp: Path, max_age: str = "35d") -> Path:
    path = tmp / "config.yaml"
    path.write_text(CONFIG.replace("MAX_AGE", max_age))
    return path


def _pred(i: int, ts: Any, amount: Any = 10.0, model: str = MODEL) -> dict[str, Any]:
    return {
        "prediction_id": f"p{i}",
        "model": model,
        "ts": ts,
        "score": 0.2 + 0.6 * (i % 2),
        "features": {"amount": amount},
    }


def _write(path: Path, docs: list[Any]) -> Path:
    path.write_bytes(b"".join((d if isinstance(d, bytes) else orjson.dumps(d)) + b"\n" for d in docs))
    return path


def _run_main(*args: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------- timestamps


def test_millisecond_timestamps_are_rejected_with_their_own_reason_in_the_worker_path() -> None:
    spec = ModelSpec(MODEL, threshold=0.5, features=[FeatureSpec("amount", "numeric")])
    pp = PartitionProcessor({MODEL: spec}, MemoryStore(), decoder=Decoder({MODEL: 0.5}))
    ms = orjson.dumps(_pred(1, int(T0 * 1000)))
    rejected = pp.process([ms], [b'{"prediction_id": "p1", "label": 1, "ts": 1767225600123}'], now=T0)
    assert [(r.reason, r.field) for r in rejected] == [("ts_in_milliseconds", "ts")] * 2
    assert "epoch seconds" in rejected[0].detail and "RFC 3339" in rejected[0].detail


def test_odd_timestamps_never_crash_replay(tmp_path: Path) -> None:
    good = [_pred(i, T0 + 60 * i) for i in range(20)]
    odd = [
        _pred(100, int(T0 * 1000)),  # milliseconds (the traceback in rfc3339 before)
        _pred(101, T0 * 1000 + 0.5),  # milliseconds as a float
        _pred(102, 0),  # the epoch: far older than max_event_age before the rest
        _pred(103, -5),  # negative: the schema refuses it
        _pred(104, 1e300),  # huge
        _pred(105, "5200-01-01T00:00:00Z"),  # RFC 3339 beyond what seconds can mean here
        _pred(106, T0 * 1_000_000),  # microseconds
    ]
    preds = _write(tmp_path / "p.jsonl", good[:10] + odd + good[10:])
    labels = _write(tmp_path / "l.jsonl", [{"prediction_id": "p3", "label": 1, "ts": int(T0 * 1000) + 1}])
    config = _config(tmp_path)
    code, out, err = _run_main("replay", "--config", config, "--predictions", preds, "--labels", labels)
    assert code == 0, err
    assert "Traceback" not in err + out
    assert "replayed 20 predictions" in out
    result = replay_files(build_engine(load_config(config)), preds, labels)
    assert {(Path(b.file).name, b.line): (b.field, b.reason) for b in result.bad_lines} == {
        ("p.jsonl", 11): ("ts", "ts_in_milliseconds"),
        ("p.jsonl", 12): ("ts", "ts_in_milliseconds"),
        ("p.jsonl", 13): ("ts", "ts_too_old"),
        ("p.jsonl", 14): ("ts", "schema_violation"),  # negative: refused by the schema
        ("p.jsonl", 15): ("ts", "ts_in_milliseconds"),
        ("p.jsonl", 16): ("ts", "bad_timestamp"),
        ("p.jsonl", 17): ("ts", "ts_in_milliseconds"),
        ("l.jsonl", 1): ("ts", "ts_in_milliseconds"),
    }


def test_event_age_is_measured_against_the_newest_event_and_skew_against_the_wall_clock(
    tmp_path: Path,
) -> None:
    engine = build_engine(load_config(_config(tmp_path, max_age="2d")))
    preds = _write(
        tmp_path / "p.jsonl",
        [_pred(0, T0 - 3 * DAY), _pred(1, T0 - DAY), _pred(2, T0), _pred(3, T0 + 10 * DAY)],
    )
    # A wall clock 5 days after T0: the last event is in its future, the first too old for
    # the newest admitted event (T0), the second within max_event_age of it.
    result = replay_files(engine, preds, None, now=T0 + 5 * DAY)
    assert [(b.line, b.reason) for b in result.bad_lines] == [(1, "ts_too_old"), (4, "ts_in_future")]
    assert result.predictions == 2
    # A historical file is not rejected for its age against the wall clock.
    old = _write(tmp_path / "old.jsonl", [_pred(1, T0 - DAY), _pred(2, T0)])
    result = replay_files(engine, old, None, now=T0 + 400 * DAY)
    assert result.predictions == 2 and result.bad_lines == []


# ---------------------------------------------------------------------- evaluation schedule


def _gapped_stream(tmp: Path) -> tuple[Path, Path]:
    """Bursts of different sizes with gaps from minutes to days, labels a few minutes late."""
    preds, labels = [], []
    i = 0
    # (start offset s, events, spacing s): busy, quiet, very busy, a 3-day gap, a lone event...
    for start, count, spacing in [
        (0, 6, 50), (2400, 1, 0), (4000, 12, 30), (DAY, 1, 0), (DAY + 7200, 5, 240),
        (1.5 * DAY, 10, 20), (2 * DAY + 123, 2, 900),
    ]:  # fmt: skip
        for j in range(count):
            ts = T0 + start + j * spacing
            preds.append(_pred(i, ts, amount=float(i % 7)))
            if i % 3:
                labels.append({"prediction_id": f"p{i}", "label": i % 2, "ts": ts + 200 + 37 * (i % 5)})
            i += 1
    labels.sort(key=lambda lab: lab["ts"])
    return _write(tmp / "p.jsonl", preds), _write(tmp / "l.jsonl", labels)


def _samples(snap: Snapshot) -> list[tuple[Any, ...]]:
    return [(s.name, s.labels, "nan" if math.isnan(s.value) else s.value) for s in snap.samples]


def test_skipping_idle_boundaries_gives_the_step_by_step_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = build_engine(load_config(_config(tmp_path)))
    preds, labels = _gapped_stream(tmp_path)
    seen: dict[bool, list[tuple[float, list[tuple[Any, ...]]]]] = {True: [], False: []}
    evaluate = replay_mod.Replay.evaluate

    def recording(self: replay_mod.Replay, at: float) -> Snapshot:
        snap = evaluate(self, at)
        seen[self.step_by_step].append((at, _samples(snap)))
        return snap

    monkeypatch.setattr(replay_mod.Replay, "evaluate", recording)
    step = replay_files(engine, preds, labels, step_by_step=True)
    skip = replay_files(engine, preds, labels)
    # The same alert events, at the same event times, and the same final metrics.
    assert skip.alerts == step.alerts
    assert render(skip.snapshot) == render(step.snapshot)
    statuses = {(e["alertname"], e["status"]) for e in step.alerts}
    assert {("Busy", "firing"), ("Busy", "resolved"), ("VeryBusy", "firing"), ("Quiet", "firing")} <= statuses
    # Every skipped evaluation would have given the samples of the last one evaluated.
    evaluated = seen[False]
    assert len(evaluated) < len(seen[True]) / 5, (len(evaluated), len(seen[True]))
    times = [at for at, _ in evaluated]
    assert set(times) <= {at for at, _ in seen[True]}
    latest = 0
    for at, samples in seen[True]:
        while latest + 1 < len(evaluated) and evaluated[latest + 1][0] <= at:
            latest += 1
        assert evaluated[latest][0] <= at
        assert samples == evaluated[latest][1], at


def test_sparse_stream_evaluations_bounded_by_events_not_span(tmp_path: Path) -> None:
    # 50 predictions over 400 days: 115,200 boundaries of 5 minutes; one stray ts 0 line.
    engine = build_engine(load_config(_config(tmp_path, max_age="500d")))
    step = 400 * DAY / 49
    docs: list[Any] = [_pred(i, T0 - 400 * DAY + i * step) for i in range(50)]
    docs.insert(20, _pred(99, 0))
    preds = _write(tmp_path / "p.jsonl", docs)
    labels = _write(
        tmp_path / "l.jsonl",
        [{"prediction_id": f"p{i}", "label": 1, "ts": T0 - 400 * DAY + i * step + 90} for i in range(50)],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one event per window side: no scipy warning either
        result = replay_files(engine, preds, labels)
    assert [(b.line, b.reason) for b in result.bad_lines] == [(21, "ts_too_old")]
    assert result.predictions == 50 and result.labels == 50
    filling = engine.settings.windows.current / engine.eval_interval_s  # every boundary while it fills
    # Per event: its own boundary, its bucket leaving the current window, then the reference.
    assert (
        result.evaluations <= 3 * (result.predictions + result.labels) + 2 * len(result.alerts) + filling + 2
    )
    assert result.evaluations < 400 * DAY / engine.eval_interval_s / 100


# ---------------------------------------------------------------------- bad-line messages


def test_bad_lines_name_file_line_field_and_reason_and_repeats_are_summarised(tmp_path: Path) -> None:
    docs: list[Any] = [_pred(i, T0 + i) for i in range(5)]
    docs += [_pred(10 + i, T0 + 10 + i, amount="abc") for i in range(10)]  # lines 6-15
    docs += [_pred(30, T0 + 30, model="fraud-v3"), _pred(31, T0 + 31, model="zzz")]  # 16, 17
    docs.append(_pred(3, T0 + 40))  # line 18: a duplicate prediction_id, found in context
    preds = _write(tmp_path / "predictions.jsonl", docs)
    empty = tmp_path / "labels.jsonl"
    empty.write_bytes(b"\n")
    code, out, err = _run_main(
        "replay", "--config", _config(tmp_path), "--predictions", preds, "--labels", empty
    )
    assert code == 0, err
    lines = err.splitlines()
    assert f'skipped {preds}:6: features.amount: wrong_type (expected a number or null, got "abc")' in lines
    assert f"skipped {preds}:8: features.amount: wrong_type" in err
    assert f"{preds}:9:" not in err  # the 4th of the same problem is counted, not shown
    assert "  ... and 7 more like this" in lines
    assert (
        f"skipped {preds}:16: model: unknown_model "
        "(model 'fraud-v3' is not configured (did you mean 'fraud-v2'?))" in lines
    )
    assert f"skipped {preds}:17: model: unknown_model (model 'zzz' is not configured)" in lines
    assert f"skipped {preds}:18: prediction_id: duplicate_prediction" in err
    assert f"warning: {empty} is empty: no labels to replay" in lines
    assert "rejected during processing" not in err
    assert "13 bad lines skipped" in out


def test_reference_build_reports_its_bad_lines(tmp_path: Path) -> None:
    events = _write(tmp_path / "ref.jsonl", [_pred(0, T0), _pred(1, T0 + 1, amount=[1]), b"{oops"])
    code, out, err = _run_main(
        "reference",
        "build",
        "--config",
        _config(tmp_path),
        "--input",
        events,
        "--out",
        tmp_path / "ref.profile.json",
    )
    assert code == 0, err
    assert f"skipped {events}:2: features.amount: wrong_type" in err
    assert f"skipped {events}:3: invalid_json" in err
    assert "2 bad lines skipped" in out


# ---------------------------------------------------------------------- why no drift


def test_replay_says_why_there_is_no_drift_with_the_shipped_config(tmp_path: Path) -> None:
    from streamon.traffic import TrafficSpec, generate

    preds, labels = generate(TrafficSpec(n=300, rate=300 / (3 * 3600), seed=5))  # 3 hours
    p = _write(tmp_path / "p.jsonl", preds)
    lab = _write(tmp_path / "l.jsonl", labels)
    code, out, err = _run_main(
        "replay", "--config", ROOT / "configs" / "monitoring_config.yaml", "--predictions", p, "--labels", lab
    )
    assert code == 0, err
    assert (
        "model fraud-detector: no drift: the rolling reference window (7d before the current 24h) "
        "has no data yet; use a pinned reference profile (--reference / reference build) or a longer stream"
    ) in out.splitlines()


def test_no_drift_note_names_the_thin_side(tmp_path: Path) -> None:
    engine = build_engine(load_config(_config(tmp_path)))
    # 3 predictions in the reference (2h before the current hour), 10 in the current hour.
    docs = [_pred(i, T0 + 60 * i) for i in range(3)] + [_pred(10 + i, T0 + 7200 + 60 * i) for i in range(10)]
    result = replay_files(engine, _write(tmp_path / "p.jsonl", docs), None)
    assert result.notes == [
        f"model {MODEL}: no drift: the rolling reference window holds 3 predictions, fewer than "
        "monitoring.custom_metrics.data_drift.min_samples (5); "
        "use a pinned reference profile or a longer stream"
    ]
    full = [_pred(i, T0 + 60 * i) for i in range(10)] + [_pred(10 + i, T0 + 7200 + 60 * i) for i in range(10)]
    assert replay_files(engine, _write(tmp_path / "q.jsonl", full), None).notes == []


# ---------------------------------------------------------------------- progress


def test_replay_reports_progress_through_the_progress_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamon.progress import progress

    monkeypatch.setattr(replay_mod, "TICK_LINES", 4)
    out = io.StringIO()

    def plain(description: str, **kw: Any) -> Any:
        return progress(description, stream=out, min_seconds=0, **kw)

    engine = build_engine(load_config(_config(tmp_path)))
    preds = _write(tmp_path / "p.jsonl", [_pred(i, T0 + 30 * i) for i in range(10)])
    replay_files(engine, preds, None, progress=plain)
    assert [line.split(" in ")[0] for line in out.getvalue().splitlines()] == [
        "reading: done, 10 lines",
        "replaying: done, 10 events",
    ]
