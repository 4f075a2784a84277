"""``streamon simulate``: valid events, documented drift, delayed and noisy labels, clean failures."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator
from sklearn.metrics import roc_auc_score

from streamon.errors import InputError
from streamon.simulate import (
    SimulationSpec,
    Simulator,
    Topics,
    TrafficSource,
    parse_drift,
    rename_fields,
)
from streamon.traffic import CATEGORIES

ROOT = Path(__file__).resolve().parents[2]
STREAMON = str(Path(sys.executable).parent / "streamon")
START = 1_800_000_000.0


def _schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text()))


def _events(spec: SimulationSpec, seconds: float, step: float = 1.0) -> tuple[list[dict], list[dict]]:
    src = TrafficSource(spec, START, id_prefix="t")
    preds: list[dict] = []
    labels: list[dict] = []
    t = START
    while t < START + seconds:
        p, lab = src.between(t, t + step)
        preds += p
        labels += lab
        t += step
    return preds, labels


def _window(preds: list[dict], t0: float, t1: float) -> list[dict]:
    return [p for p in preds if START + t0 <= p["ts"] < START + t1]


# --------------------------------------------------------------------------- events


@pytest.mark.parametrize("drift", [(), ("sudden",), ("categorical", "missing"), ("calibration", "degrade")])
def test_events_validate_against_the_schemas(drift: tuple[str, ...]) -> None:
    spec = SimulationSpec(rate=200, variants=("A", "B"), drift=drift, drift_after_s=5, label_noise=0.1)
    preds, labels = _events(spec, 10)
    pv, lv = _schema("prediction"), _schema("label")
    assert len(preds) == 2000 and labels
    for p in preds:
        assert not list(pv.iter_errors(p)), p
    for lab in labels:
        assert not list(lv.iter_errors(lab)), lab
    ids = [p["prediction_id"] for p in preds]
    assert len(set(ids)) == len(ids)
    assert {lab["prediction_id"] for lab in labels} <= set(ids)
    assert {p["variant"] for p in preds} == {"A", "B"}


def test_rate_is_exact_and_times_stay_in_the_interval() -> None:
    src = TrafficSource(SimulationSpec(rate=7.5), START)
    total = 0
    for i in range(40):  # 0.25 s steps: fractions carry over
        preds, _ = src.between(START + i * 0.25, START + (i + 1) * 0.25)
        assert all(START + i * 0.25 <= p["ts"] < START + (i + 1) * 0.25 + 1e-3 for p in preds)
        total += len(preds)
    assert total == 75


def test_two_variants_are_routed_deterministically_by_entity() -> None:
    from streamon.core.statistics.ab import assign_variant

    preds, _ = _events(SimulationSpec(rate=100, variants=("ctl", "new"), experiment="e"), 5)
    for p in preds:
        assert p["variant"] == ("ctl" if assign_variant(p["entity_id"], "e") == "A" else "new")
        assert p["experiment"] == "e"


# --------------------------------------------------------------------------- drift


def test_sudden_drift_shifts_amount_and_days_after_the_switch() -> None:
    preds, _ = _events(SimulationSpec(rate=200, drift=("sudden",), drift_after_s=10), 20)
    before, after = _window(preds, 0, 10), _window(preds, 10, 20)
    amount = lambda ps: np.median([p["features"]["transaction_amount"] for p in ps])  # noqa: E731
    days = lambda ps: np.mean([p["features"]["days_since_last_transaction"] for p in ps])  # noqa: E731
    assert amount(after) > 2.5 * amount(before)
    assert 2.4 < days(after) / days(before) < 3.6


def test_categorical_drift_moves_merchant_category() -> None:
    preds, _ = _events(SimulationSpec(rate=300, drift=("categorical",), drift_after_s=10), 20)

    def shifted(ps: list[dict]) -> float:
        return float(np.mean([p["features"]["merchant_category"] in CATEGORIES[1:4] for p in ps]))

    assert shifted(_window(preds, 0, 10)) == pytest.approx(0.25, abs=0.04)  # 0.12 + 0.08 + 0.05
    assert shifted(_window(preds, 10, 20)) == pytest.approx(0.70, abs=0.04)  # 0.30 + 0.20 + 0.20


def test_missing_drift_nulls_transaction_amount() -> None:
    preds, _ = _events(SimulationSpec(rate=300, drift=("missing",), drift_after_s=10), 20)

    def missing(ps: list[dict]) -> float:
        return float(np.mean([p["features"]["transaction_amount"] is None for p in ps]))

    assert missing(_window(preds, 0, 10)) == 0.0
    assert missing(_window(preds, 10, 20)) == pytest.approx(0.4, abs=0.04)


def test_calibration_and_degrade_change_the_scores() -> None:
    base, labels = _events(SimulationSpec(rate=300, seed=3), 20)
    calib, _ = _events(SimulationSpec(rate=300, seed=3, drift=("calibration",), drift_after_s=0), 20)
    degr, _ = _events(SimulationSpec(rate=300, seed=3, drift=("degrade",), drift_after_s=0), 20)
    truth = {lab["prediction_id"]: lab["label"] for lab in labels}
    y = [truth[p["prediction_id"]] for p in base]
    for b, c in zip(base, calib, strict=True):
        assert c["score"] == pytest.approx(min(b["score"] * 1.6, 1.0), abs=2e-6)
    assert roc_auc_score(y, [p["score"] for p in base]) > 0.95
    assert roc_auc_score(y, [p["score"] for p in degr]) < 0.85


def test_gradual_drift_ramps_the_drifted_share() -> None:
    kw: dict[str, Any] = {"rate": 400, "seed": 5}
    base, _ = _events(SimulationSpec(**kw), 40)
    grad, _ = _events(SimulationSpec(**kw, drift=("gradual",), drift_after_s=10, drift_ramp_s=20), 40)
    changed = np.array(
        [
            b["features"]["transaction_amount"] != g["features"]["transaction_amount"]
            for b, g in zip(base, grad, strict=True)
        ]
    )
    ts = np.array([p["ts"] - START for p in base])
    share = [changed[(ts >= a) & (ts < a + 5)].mean() for a in (0, 5, 10, 15, 20, 25, 30, 35)]
    # 0 before the start, then the mean of a linear ramp over each 5 s slice, then 1.
    expected = [0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1]
    assert share == pytest.approx(expected, abs=0.06)
    assert SimulationSpec(drift=("gradual",), drift_after_s=10, drift_ramp_s=20).drifted_share(20) == 0.5


def test_drift_can_be_limited_to_one_arm() -> None:
    spec = SimulationSpec(
        rate=300, variants=("A", "B"), drift=("missing",), drift_after_s=0, drift_variants=("B",)
    )
    preds, _ = _events(spec, 10)
    miss = {v: np.mean([p["features"]["transaction_amount"] is None for p in preds if p["variant"] == v])
            for v in ("A", "B")}  # fmt: skip
    assert miss["A"] == 0.0 and miss["B"] == pytest.approx(0.4, abs=0.05)


def test_invalid_specs_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown drift kind"):
        parse_drift(("sudden,bogus",))
    with pytest.raises(InputError, match="rate must be > 0"):
        SimulationSpec(rate=0)
    with pytest.raises(InputError, match="label noise"):
        SimulationSpec(label_noise=1.5)


# --------------------------------------------------------------------------- labels


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += max(s, 0.01)


class ListSink:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, str, bytes, dict[str, Any]]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((self.clock(), topic, key, orjson.loads(value)))

    def poll(self) -> None:
        pass

    def flush(self, timeout: float) -> int:
        return 0


def _simulate(spec: SimulationSpec, **run: Any) -> tuple[Simulator, ListSink]:
    clock = FakeClock(START)
    sink = ListSink(clock)
    sim = Simulator(spec, sink, Topics("p", "l"), clock=clock, sleep=clock.sleep, id_prefix="x")
    sim.run(**run)
    return sim, sink


def test_labels_are_sent_only_once_their_delay_has_elapsed() -> None:
    sim, sink = _simulate(SimulationSpec(rate=100, label_delay_s=3.0), duration=60, wait_for_labels=True)
    sent_pred = {v["prediction_id"]: (at, v) for at, topic, _k, v in sink.sent if topic == "p"}
    labels = [(at, k, v) for at, topic, k, v in sink.sent if topic == "l"]
    assert len(sent_pred) == 6000 and len(labels) == 6000 and sim.stats.pending_labels == 0
    delays = []
    for at, key, lab in labels:
        pred_at, pred = sent_pred[lab["prediction_id"]]
        assert key == lab["prediction_id"].encode()
        assert at >= lab["ts"] >= pred["ts"] and at >= pred_at
        delays.append(lab["ts"] - pred["ts"])
    assert np.mean(delays) == pytest.approx(3.0, rel=0.1)
    # Event time is the clock: every prediction is sent within a tick of its event time.
    assert all(-0.001 <= at - v["ts"] <= 0.2 for at, v in sent_pred.values())  # ts: ms


def test_pending_labels_are_counted_when_not_waited_for() -> None:
    sim, _ = _simulate(SimulationSpec(rate=50, label_delay_s=30.0), count=500)
    assert sim.stats.predictions == 500
    assert sim.stats.labels + sim.stats.pending_labels == 500 and sim.stats.pending_labels > 300


def test_label_noise_flips_the_configured_share() -> None:
    _, clean = _events(SimulationSpec(rate=500, seed=9), 40)
    _, noisy = _events(SimulationSpec(rate=500, seed=9, label_noise=0.2), 40)
    truth = {lab["prediction_id"]: lab["label"] for lab in clean}
    flipped = np.mean([truth[lab["prediction_id"]] != lab["label"] for lab in noisy])
    assert len(noisy) == len(clean) == 20_000
    assert flipped == pytest.approx(0.2, abs=0.015)


def test_label_fraction_limits_the_labels() -> None:
    preds, labels = _events(SimulationSpec(rate=500, label_fraction=0.3), 20)
    assert len(labels) / len(preds) == pytest.approx(0.3, abs=0.02)


def test_configured_field_names_are_used() -> None:
    assert rename_fields({"ts": 1, "score": 0.2}, {"ts": "event_time", "score": "p"}) == {
        "event_time": 1,
        "p": 0.2,
    }


# --------------------------------------------------------------------------- the command


def test_unreachable_broker_is_one_line_and_exit_3() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [STREAMON, "simulate", "--config", str(ROOT / "configs" / "monitoring_config.yaml"),
         "--bootstrap-servers", "127.0.0.1:1", "--duration", "5"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: cannot reach Kafka at 127.0.0.1:1")
    assert elapsed < 15


@pytest.fixture
def mock_cluster() -> Iterator[str]:
    """librdkafka's mock cluster in this process (a fast stand-in, not a real broker)."""
    from confluent_kafka.admin import AdminClient

    log = logging.getLogger("test.mock")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    mock = AdminClient({"test.mock.num.brokers": "1", "logger": log})
    md = mock.list_topics(timeout=10)
    yield ",".join(f"{b.host}:{b.port}" for b in md.brokers.values())
    del mock


def _config(tmp_path: Path, bootstrap: str) -> tuple[Path, str, str]:
    import yaml

    sfx = uuid.uuid4().hex[:6]
    d = yaml.safe_load((ROOT / "configs" / "monitoring_config.yaml").read_text())
    d["kafka"]["bootstrap_servers"] = bootstrap
    d["kafka"]["topics"]["predictions"] = f"p-{sfx}"
    d["kafka"]["topics"]["labels"] = f"l-{sfx}"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(d))
    return path, f"p-{sfx}", f"l-{sfx}"


def _precreate(bootstrap: str, *topics: str) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap})
    for t in topics:  # the mock cannot CreateTopics; a metadata request auto-creates
        p.list_topics(t, timeout=10)


def _read(bootstrap: str, topic: str, n: int, timeout: float = 20) -> list[Any]:
    from confluent_kafka import Consumer

    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += [m for m in c.consume(1000, timeout=0.5) if m.error() is None]
    c.close()
    return out


def test_simulate_produces_keyed_events_to_the_config_topics(mock_cluster: str, tmp_path: Path) -> None:
    config, preds_topic, labels_topic = _config(tmp_path, mock_cluster)
    _precreate(mock_cluster, preds_topic, labels_topic)
    proc = subprocess.run(
        [STREAMON, "simulate", "--config", str(config), "--rate", "100", "--count", "300",
         "--label-delay", "0.5", "--wait-for-labels", "--variants", "A,B"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "sent 300 predictions and 300 labels" in proc.stdout
    preds = _read(mock_cluster, preds_topic, 300)
    labels = _read(mock_cluster, labels_topic, 300)
    assert len(preds) == 300 and len(labels) == 300
    for m in preds + labels:
        assert m.key() == orjson.loads(m.value())["prediction_id"].encode()


def test_ctrl_c_stops_cleanly(mock_cluster: str, tmp_path: Path) -> None:
    config, preds_topic, labels_topic = _config(tmp_path, mock_cluster)
    _precreate(mock_cluster, preds_topic, labels_topic)
    proc = subprocess.Popen(
        [STREAMON, "simulate", "--config", str(config), "--rate", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith("simulate: 50 predictions/s"), first
    assert proc.stderr.readline().startswith("simulate: ")  # the first status line, after ~5 s
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.startswith("stopped: sent ") and "Traceback" not in err


# --------------------------------------------------------------------------- --out: files


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from streamon.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


CONFIG = str(ROOT / "configs" / "monitoring_config.yaml")
FILE_ARGS = (
    "--rate",
    "50",
    "--count",
    "3000",
    "--variants",
    "A,B",
    "--drift",
    "sudden",
    "--drift-after",
    "30",
)


def test_out_writes_files_that_replay_reference_build_and_ab_report_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    start = "2026-01-01T00:00:00Z"
    code, stdout, err = _cli(capsys, "simulate", "--config", CONFIG, "--out", str(out), *FILE_ARGS,
                             "--seed", "5", "--start", start)  # fmt: skip
    assert code == 0, err
    preds, labels = _jsonl(out / "predictions.jsonl"), _jsonl(out / "labels.jsonl")
    reference = _jsonl(out / "reference.jsonl")
    assert len(preds) == 3000 and len(reference) == 3000 and 0 < len(labels) <= 3000
    assert f"wrote 3,000 predictions ({start} to 2026-01-01T00:01:00Z)" in stdout
    pv, lv = _schema("prediction"), _schema("label")
    assert all(not list(pv.iter_errors(p)) for p in preds)
    assert all(not list(lv.iter_errors(lab)) for lab in labels)
    t0 = 1_767_225_600.0
    assert [p["ts"] for p in preds] == sorted(p["ts"] for p in preds) and t0 <= preds[0]["ts"] < t0 + 1
    assert [lab["ts"] for lab in labels] == sorted(lab["ts"] for lab in labels)  # in arrival order
    assert {lab["prediction_id"] for lab in labels} <= {p["prediction_id"] for p in preds}
    # Sudden drift 30 s of event time after the start, as in the Kafka mode.
    amount = lambda ps: np.median([p["features"]["transaction_amount"] for p in ps])  # noqa: E731
    assert amount([p for p in preds if p["ts"] >= t0 + 30]) > 2.5 * amount(
        [p for p in preds if p["ts"] < t0 + 30]
    )
    # The reference: before the stream, undrifted, every event labelled.
    assert all(r["ts"] < t0 and r["label"] in (0, 1) for r in reference)
    assert 0.5 < amount(reference) / amount([p for p in preds if p["ts"] < t0 + 30]) < 2.0
    # Deterministic: the same seed and start give the same bytes; another seed other events.
    again = tmp_path / "again"
    other = tmp_path / "other"
    assert _cli(capsys, "simulate", "--config", CONFIG, "--out", str(again), *FILE_ARGS, "--seed", "5",
                "--start", start)[0] == 0  # fmt: skip
    assert _cli(capsys, "simulate", "--config", CONFIG, "--out", str(other), *FILE_ARGS, "--seed", "6",
                "--start", start)[0] == 0  # fmt: skip
    for name in ("predictions.jsonl", "labels.jsonl", "reference.jsonl"):
        assert (out / name).read_bytes() == (again / name).read_bytes()
        assert (out / name).read_bytes() != (other / name).read_bytes()
    # What the README's commands do with them.
    profile = tmp_path / "ref.json"
    code, stdout, err = _cli(capsys, "reference", "build", "--config", CONFIG, "--input",
                             str(out / "reference.jsonl"), "--out", str(profile))  # fmt: skip
    assert code == 0 and "fraud-detector: 3000 predictions" in stdout, err
    code, stdout, err = _cli(capsys, "replay", "--config", CONFIG, "--predictions",
                             str(out / "predictions.jsonl"), "--labels", str(out / "labels.jsonl"),
                             "--reference", str(profile))  # fmt: skip
    assert code == 0, err
    assert f"replayed 3,000 predictions and {len(labels):,} labels" in stdout and "0 bad lines" in stdout
    code, stdout, err = _cli(capsys, "ab", "report", "--experiment", "exp-1", "--config", CONFIG,
                             "--predictions", str(out / "predictions.jsonl"), "--labels",
                             str(out / "labels.jsonl"), "--json")  # fmt: skip
    assert code == 0, err
    assert [a["n"] for a in orjson.loads(stdout)["arms"]] == [
        sum(p["variant"] == v for p in preds) for v in ("A", "B")
    ]


def test_out_default_start_puts_every_event_in_the_past_and_duration_counts_event_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = time.time()
    code, _, err = _cli(capsys, "simulate", "--config", CONFIG, "--out", str(tmp_path), "--rate", "20",
                        "--duration", "30", "--label-delay", "10", "--reference-count", "100")  # fmt: skip
    assert code == 0, err
    preds, labels = _jsonl(tmp_path / "predictions.jsonl"), _jsonl(tmp_path / "labels.jsonl")
    assert len(preds) == 600 and len(_jsonl(tmp_path / "reference.jsonl")) == 100
    newest = max(e["ts"] for e in preds + labels)
    assert newest <= before  # a worker takes them: nothing from the future
    assert before - newest < 3600  # nor too old for windows.max_event_age
    assert preds[-1]["ts"] - preds[0]["ts"] == pytest.approx(30, abs=0.5)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--bootstrap-servers", "127.0.0.1:1"], "give --out or --bootstrap-servers, not both"),
        (["--start", "yesterday"], "--start 'yesterday': give epoch seconds or an RFC 3339 time"),
        (["--count", "0"], "--count must be > 0"),
        (["--count", "5", "--duration", "5"], "give --duration or --count, not both"),
    ],
)
def test_out_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    code, out, err = _cli(capsys, "simulate", "--config", CONFIG, "--out", str(tmp_path / "d"), *args)
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err
    code, _, err = _cli(capsys, "simulate", "--config", CONFIG, "--start", "0", "--duration", "1")
    assert code == 2 and "--start and --reference-count need --out" in err


def test_out_ramps_gradual_drift_in_event_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "simulate", "--config", CONFIG, "--out", str(tmp_path), "--rate", "100",
                        "--count", "6000", "--drift", "gradual", "--drift-after", "20", "--drift-ramp", "40",
                        "--start", "1800000000", "--reference-count", "0")  # fmt: skip
    assert code == 0, err
    preds = _jsonl(tmp_path / "predictions.jsonl")
    # Drifted events: amount x2.5 + 40, so above 40; undrifted amounts are lognormal (median ~33).
    share = [
        np.mean([p["features"]["transaction_amount"] > 40 for p in preds if lo <= p["ts"] - 1.8e9 < lo + 20])
        for lo in (0, 20, 40)
    ]
    # P(amount > 40) is ~0.43 undrifted and 1 drifted; the drifted share ramps 0 -> 0.5 -> 1.
    assert share[0] < 0.5 < share[1] < 0.75 < share[2]
    assert (tmp_path / "reference.jsonl").read_bytes() == b""
