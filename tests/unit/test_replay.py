"""``streamon replay`` / ``streamon reference build`` end to end, as a user runs them.

8 h of generated fraud traffic with a known injected drift (``sudden`` feature shift and
``degrade``d scores from hour 2) is written to JSONL with a few garbage lines; a YAML config with
short windows (current 6h, reference 1d, evaluations every 300 s) drives the replay. The replays
run as subprocesses of the installed ``streamon`` command; ``reference build`` and the error paths
call ``streamon.cli.main`` (what the console script runs) in-process.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

from streamon.cli import main
from streamon.traffic import TrafficSpec, generate

ROOT = Path(__file__).resolve().parents[2]
STREAMON = Path(sys.executable).parent / "streamon"
SCHEMA = json.loads((ROOT / "schemas" / "alert.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
HOUR = 3600.0
MODEL = "fraud-detector"

CONFIG = """\
monitoring:
  custom_metrics:
    model_performance: {enabled: true, collection_interval: 300}
    data_drift: {enabled: true, collection_interval: 300}
    business_metrics: {enabled: true, collection_interval: 300}
windows:
  current: 6h
  reference: 1d
models:
  - name: fraud-detector
    threshold: 0.5
    features:
      - {name: transaction_amount, type: numeric}
      - {name: merchant_category, type: categorical}
      - {name: transaction_hour, type: numeric}
      - {name: days_since_last_transaction, type: numeric}
"""

# (line number in the predictions file, content, "field: reason" reported after "file:line: ")
GARBAGE = [
    (3, b"this is not json", "invalid_json ("),
    (
        50,
        b'{"prediction_id": "g1", "model": "fraud-detector", "ts": 1767225700, "score": 7}',
        "score: score_out_of_range (",
    ),
    (
        51,
        b'{"prediction_id": "g2", "model": "nope", "ts": 1767225700, "score": 0.5}',
        "model: unknown_model (",
    ),
    (400, b'{"model": "fraud-detector", "ts": 1767225700, "score": 0.5}', "prediction_id: missing_field ("),
    (777, b"[1, 2, 3]", "not_an_object ("),
]
DRIFT_START = "2026-01-01T02:00:00Z"  # TrafficSpec start + drift_at
BLANK_LINE = 11  # a blank line is skipped silently (and still counts as a line)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    families: dict[str, Any]
    alerts: list[dict[str, Any]]
    predictions_file: Path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("replay")
    preds, labels = generate(
        TrafficSpec(n=4000, rate=4000 / (8 * HOUR), drift_at=2 * HOUR, drift=("sudden", "degrade"), seed=3)
    )
    lines = [orjson.dumps(p) for p in preds]
    # Inserted in ascending order, each lands on its 1-based line number of the final file.
    for line_no, content in sorted([(n, c) for n, c, _ in GARBAGE] + [(BLANK_LINE, b"")]):
        lines.insert(line_no - 1, content)
    (d / "predictions.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (d / "labels.jsonl").write_bytes(b"".join(orjson.dumps(lab) + b"\n" for lab in labels))
    ref_preds, ref_labels = generate(TrafficSpec(n=4000, rate=0.2, seed=99, start=1_767_225_600.0 - 86400.0))
    truth = {lab["prediction_id"]: lab["label"] for lab in ref_labels}
    (d / "reference.jsonl").write_bytes(
        b"".join(orjson.dumps({**p, "label": truth[p["prediction_id"]]}) + b"\n" for p in ref_preds)
    )
    (d / "config.yaml").write_text(CONFIG)
    return {
        k: d / f
        for k, f in {
            "dir": ".",
            "predictions": "predictions.jsonl",
            "labels": "labels.jsonl",
            "reference": "reference.jsonl",
            "config": "config.yaml",
        }.items()
    }


def start_replay(data: dict[str, Path], tag: str, *extra: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(STREAMON),
            "replay",
            "--config", str(data["config"]),
            "--predictions", str(data["predictions"]),
            "--labels", str(data["labels"]),
            "--metrics-out", str(data["dir"] / f"{tag}.prom"),
            "--alerts-out", str(data["dir"] / f"{tag}.alerts.jsonl"),
            *map(str, extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )  # fmt: skip


def finish_replay(data: dict[str, Path], tag: str, proc: subprocess.Popen[str]) -> Run:
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    text = (data["dir"] / f"{tag}.prom").read_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = {}
    for fam in families.values():
        for s in fam.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    raw = (data["dir"] / f"{tag}.alerts.jsonl").read_bytes()
    events = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    return Run(proc.returncode, stdout, stderr, values, families, events, data["predictions"])


def metric(run: Run, name: str, **labels: str) -> float:
    want = set(labels.items())
    hits = [v for (n, lab), v in run.metrics.items() if n == name and want <= set(lab)]
    assert len(hits) == 1, (name, labels, len(hits))
    return hits[0]


@pytest.fixture(scope="module")
def runs(data: dict[str, Path]) -> dict[str, Run]:
    """The two replays run as concurrent subprocesses (each pays a ~3 s interpreter start)."""
    rolling = start_replay(data, "rolling")
    profile = data["dir"] / "reference.profile.json"
    code, out, err = _run_main(
        "reference", "build", "--config", data["config"], "--input", data["reference"], "--out", profile
    )
    assert code == 0, err
    assert profile.exists() and f"{MODEL}: 4000 predictions" in out
    pinned = start_replay(data, "pinned", "--reference", profile)
    return {
        "rolling": finish_replay(data, "rolling", rolling),
        "pinned": finish_replay(data, "pinned", pinned),
    }


def _run_main(*args: str | Path) -> tuple[int, str, str]:
    """``streamon.cli.main`` (what the console script runs) in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def rolling(runs: dict[str, Any]) -> Run:
    return runs["rolling"]


@pytest.fixture(scope="module")
def pinned(runs: dict[str, Any]) -> Run:
    return runs["pinned"]


def test_metrics_file_parses_and_has_help(rolling: Run) -> None:
    assert rolling.families, "no metric families"
    for name in ("ml_model_accuracy", "ml_data_drift_psi_score", "ml_business_roi", "ml_predictions"):
        assert name in rolling.families
        assert rolling.families[name].documentation  # every metric has HELP text
    assert rolling.families["ml_predictions"].type == "counter"
    assert rolling.families["ml_prediction_latency_seconds"].type == "histogram"
    assert "replayed 4,000 predictions" in rolling.stdout


def test_rolling_reference_detects_drift_and_degradation(rolling: Run) -> None:
    psi = metric(
        rolling, "ml_data_drift_psi_score", variant="all", feature="transaction_amount", window="current"
    )
    assert psi > 0.2
    cur = metric(rolling, "ml_model_accuracy", variant="all", window="current")
    ref = metric(rolling, "ml_model_accuracy", variant="all", window="reference")
    assert cur < ref
    # An undrifted feature stays quiet (the drift alarm is specific).
    hour = metric(
        rolling, "ml_data_drift_psi_score", variant="all", feature="transaction_hour", window="current"
    )
    assert hour < 0.1


def _check_alerts(run: Run) -> None:
    for e in run.alerts:
        errors = [err.message for err in VALIDATOR.iter_errors(e)]
        assert not errors, (e, errors)
    firing = [e for e in run.alerts if e["status"] == "firing"]
    # A drift alert for the shifted feature fires once the drift started (hour 2).
    drift = [
        e
        for e in firing
        if e["alertname"] in ("SevereDataDrift", "DataDriftDetected")
        and e["labels"].get("feature") == "transaction_amount"
        and e["starts_at"] >= DRIFT_START
    ]
    assert drift, [(e["alertname"], e["labels"], e["starts_at"]) for e in firing]
    assert all(e["model"] == MODEL and e["labels"]["variant"] == "all" for e in drift)
    performance = [
        e
        for e in firing
        if e["category"] == "model_performance"
        and e["starts_at"] >= DRIFT_START
        and e["alertname"]
        in (
            "ModelAccuracyDegraded",
            "ModelAccuracyCritical",
            "ModelPerformanceDegraded",
            "ModelPerformanceDegradedHigh",
        )
    ]
    assert performance, [(e["alertname"], e["labels"]) for e in firing]
    # Every resolved event follows a firing event of the same fingerprint.
    seen: set[str] = set()
    for e in run.alerts:
        if e["status"] == "firing":
            seen.add(e["fingerprint"])
        else:
            assert e["fingerprint"] in seen


def test_rolling_alerts(rolling: Run) -> None:
    _check_alerts(rolling)
    # With a rolling reference nothing can fire before the drift (the reference starts empty).
    drift_names = ("SevereDataDrift", "DataDriftDetected")
    assert all(e["starts_at"] >= DRIFT_START for e in rolling.alerts if e["alertname"] in drift_names)


def test_bad_lines_reported_with_line_numbers_not_fatal(rolling: Run) -> None:
    assert rolling.code == 0
    path = str(rolling.predictions_file)
    for line_no, _, reason in GARBAGE:
        assert f"skipped {path}:{line_no}: {reason}" in rolling.stderr, rolling.stderr
    assert f"{path}:{BLANK_LINE}:" not in rolling.stderr  # the blank line is not an error
    assert f"{len(GARBAGE)} bad lines skipped" in rolling.stdout


def test_pinned_reference_still_detects_drift(pinned: Run) -> None:
    psi = metric(
        pinned, "ml_data_drift_psi_score", variant="all", feature="transaction_amount", window="current"
    )
    assert psi > 0.2
    # The reference window is now the profile: 4000 reference predictions.
    assert metric(pinned, "streamon_predictions_in_window", variant="all", window="reference") == 4000
    cur = metric(pinned, "ml_model_accuracy", variant="all", window="current")
    assert cur < metric(pinned, "ml_model_accuracy", variant="all", window="reference")
    _check_alerts(pinned)


def test_no_drift_alert_on_undrifted_traffic(data: dict[str, Path], tmp_path: Path) -> None:
    from streamon.config import load_config
    from streamon.engine import build_engine
    from streamon.replay import replay_files

    profile = tmp_path / "ref.profile.json"
    code, _, err = _run_main(
        "reference", "build", "--config", data["config"], "--input", data["reference"], "--out", profile
    )
    assert code == 0, err
    preds, labels = generate(TrafficSpec(n=1000, rate=1000 / (2 * HOUR), seed=3))  # no drift, 2 h
    (tmp_path / "p.jsonl").write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in preds))
    (tmp_path / "l.jsonl").write_bytes(b"".join(orjson.dumps(lab) + b"\n" for lab in labels))
    engine = build_engine(load_config(data["config"]), profile=profile)
    result = replay_files(engine, tmp_path / "p.jsonl", tmp_path / "l.jsonl")
    drift = [e for e in result.alerts if e["alertname"] in ("SevereDataDrift", "DataDriftDetected")]
    assert drift == [], [(e["alertname"], e["status"], e["labels"].get("feature"), e["value"]) for e in drift]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_missing_predictions_file_exits_2(data: dict[str, Path]) -> None:
    missing = data["dir"] / "nope.jsonl"
    code, _, err = _run_main("replay", "--config", data["config"], "--predictions", missing)
    assert code == 2
    assert str(missing) in _one_error_line(err)


def test_missing_reference_profile_exits_2(data: dict[str, Path]) -> None:
    code, _, err = _run_main(
        "replay",
        "--config", data["config"],
        "--predictions", data["predictions"],
        "--reference", data["dir"] / "no.profile.json",
    )  # fmt: skip
    assert code == 2
    assert "reference build" in _one_error_line(err)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "file not found"),
        ("models: [{name: m, threshold: 1.5, features: [{name: x, type: numeric}]}]\n", "models.0.threshold"),
        (
            "windows: {current: 6h, reference: 1d, bogus: 1}\n"
            "models: [{name: m, features: [{name: x, type: numeric}]}]\n",
            "windows.bogus",
        ),
    ],
    ids=["missing", "out-of-range", "unknown-key"],
)
def test_bad_config_exits_2(
    data: dict[str, Path], tmp_path: Path, content: str | None, fragment: str
) -> None:
    cfg = tmp_path / "bad.yaml"
    if content is not None:
        cfg.write_text(content)
    code, out, err = _run_main("replay", "--config", cfg, "--predictions", data["predictions"])
    assert code == 2 and out == ""
    assert fragment in _one_error_line(err)


def test_reference_build_missing_input_exits_2(data: dict[str, Path]) -> None:
    code, _, err = _run_main(
        "reference", "build", "--config", data["config"], "--input", data["dir"] / "nope.jsonl",
        "--out", data["dir"] / "x.json",
    )  # fmt: skip
    assert code == 2
    assert [line for line in err.splitlines() if line.startswith("error: ") and "nope.jsonl" in line]
    assert not (data["dir"] / "x.json").exists()
