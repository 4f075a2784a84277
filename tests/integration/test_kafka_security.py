"""streamon against a real SASL_SSL listener: SCRAM over TLS end to end, refused credentials in
one line, and no secret in any output.

The broker is ``deploy/kafka/broker.py start --sasl-ssl`` (its own CA, user ``streamon`` for
SCRAM-SHA-256/512 and PLAIN); its PLAINTEXT listener serves the harness' bookkeeping reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from confluent_kafka import Producer

import broker as broker_script
from tests.integration import harness as h

pytestmark = pytest.mark.integration
FAIL_WITHIN_S = 30  # a hang would hit the subprocess timeout; the failure itself takes ~1-3 s


BROKER_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "broker.py"


def _broker_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BROKER_SCRIPT), *args], capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def secure() -> Iterator[broker_script.BrokerInfo]:
    """A broker with a SASL_SSL listener (started through the script's CLI), for this module only."""
    state_dir = Path(tempfile.mkdtemp(prefix="streamon-test-kafka-sasl-"))
    started = _broker_cli("start", "--sasl-ssl", "--state-dir", str(state_dir))
    info = broker_script.read_state(state_dir)
    try:
        assert started.returncode == 0 and info is not None, started.stderr
        # What start prints (and status repeats) is what a client needs; the password stays in its file.
        lines = [info.bootstrap, *info.security_lines()]
        assert started.stdout.splitlines() == lines
        assert lines[1] == f"sasl_ssl 127.0.0.1:{info.sasl_ssl_port}"
        assert _broker_cli("status", "--state-dir", str(state_dir)).stdout.splitlines() == lines
        assert info.password_file is not None and info.ca_file is not None
        assert Path(info.password_file).read_text().strip() not in started.stdout + started.stderr
        assert Path(info.password_file).stat().st_mode & 0o077 == 0
        yield info
    finally:
        broker_script.stop(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def _password(info: broker_script.BrokerInfo) -> str:
    assert info.password_file is not None
    return Path(info.password_file).read_text().strip()


def _client(info: broker_script.BrokerInfo, **secret: str) -> dict[str, Any]:
    """kafka.client for the SASL_SSL listener; ``secret`` is sasl.password_file=... or _env=..."""
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": info.sasl_user,
        "ssl.ca.location": info.ca_file,
        **secret,
    }


def _config(tmp: Path, info: broker_script.BrokerInfo, client: dict[str, Any], partitions: int = 2) -> Path:
    assert info.sasl_ssl_bootstrap is not None
    d = h.settings_dict(info.sasl_ssl_bootstrap, partitions=partitions)
    d["kafka"]["client"] = client
    path, _ = h.write_config(tmp, d)
    return path


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [h.STREAMON, *args],
        capture_output=True,
        text=True,
        timeout=FAIL_WITHIN_S,
        env={**os.environ, **(env or {})},
        cwd=tempfile.gettempdir(),
    )


def _produce_secure(info: broker_script.BrokerInfo, topic: str, events: list[dict[str, Any]]) -> None:
    assert info.sasl_ssl_bootstrap is not None
    p = Producer(
        {
            "bootstrap.servers": info.sasl_ssl_bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-256",  # the other SCRAM mechanism than the worker's
            "sasl.username": info.sasl_user,
            "sasl.password": _password(info),
            "ssl.ca.location": info.ca_file,
            "linger.ms": 20,
        }
    )
    for e in events:
        p.produce(topic, key=str(e["prediction_id"]).encode(), value=orjson.dumps(e))
    assert p.flush(60) == 0


def test_worker_over_sasl_ssl_scram_matches_replay(secure, tmp_path):
    password = _password(secure)
    config = _config(tmp_path, secure, _client(secure, **{"sasl.password_file": secure.password_file}))
    from streamon.config import load_config

    settings = load_config(config)
    # The harness reads offsets and /metrics through the PLAINTEXT listener of the same broker.
    plain = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": secure.bootstrap})}
    )
    preds, labels = h.traffic(4_000)
    t = settings.kafka.topics
    worker = h.WorkerProc(config, tmp_path / "s1", "w1").start()
    try:
        h.wait_ready([worker], settle=1.0)
        _produce_secure(secure, t.predictions, preds)
        _produce_secure(secure, t.labels, labels)
        live = h.wait_metrics([worker], plain, timeout=75)
    finally:
        if worker.alive():
            worker.terminate()
    expected = h.replay_samples(settings, tmp_path, preds, labels)
    assert len(live) > 100
    assert h.diff(live, expected) == []
    log = worker.log.read_text() if worker.log else ""
    assert log and password not in log


@pytest.mark.parametrize("command", ["worker", "simulate", "doctor", "ab-report"])
def test_wrong_password_stops_within_seconds_in_one_line(secure, tmp_path, command):
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    config = str(_config(tmp_path, secure, _client(secure, **{"sasl.password_file": str(wrong)})))
    args = {
        "worker": ["worker", "--config", config, "--state-dir", str(tmp_path / "s"), "--metrics-port", "0"],
        "simulate": ["simulate", "--config", config, "--count", "10"],
        "doctor": ["doctor", "--config", config, "--skip", "prometheus", "--skip", "alertmanager",
                   "--skip", "grafana"],
        "ab-report": ["ab", "report", "--experiment", "exp-1", "--config", config,
                      "--bootstrap-servers", str(secure.sasl_ssl_bootstrap)],
    }[command]  # fmt: skip
    res = _run(*args)
    expected = (
        f"Kafka authentication failed for SASL/SCRAM-SHA-512 user 'streamon' at {secure.sasl_ssl_bootstrap}"
    )
    if command == "doctor":
        assert res.returncode == 1, res.stdout + res.stderr
        failing = [line for line in res.stdout.splitlines() if line.startswith("FAIL kafka:")]
        assert len(failing) == 1 and expected in failing[0], res.stdout
        assert "fix: check kafka.client sasl.username / sasl.password_file" in failing[0]
    else:
        assert res.returncode == 3, res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith(f"error: {expected}")
        assert lines[0].endswith("check kafka.client sasl.username / sasl.password_file")
    assert "not-the-password" not in res.stdout + res.stderr


def test_untrusted_broker_certificate_is_one_tls_line(secure, tmp_path):
    client = _client(secure, **{"sasl.password_file": secure.password_file})
    del client["ssl.ca.location"]  # the system CAs do not know the broker's development CA
    res = _run("simulate", "--config", str(_config(tmp_path, secure, client)), "--count", "10")
    assert res.returncode == 3
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: TLS handshake with Kafka at {secure.sasl_ssl_bootstrap} failed")
    assert "certificate verify failed" in lines[0] and "ssl.ca.location" in lines[0]


@pytest.mark.parametrize("via", ["file", "env"])
def test_no_secret_in_check_config_doctor_or_worker_output(secure, tmp_path, via):
    password = _password(secure)
    env: dict[str, str] = {}
    if via == "file":
        secret = {"sasl.password_file": str(secure.password_file)}
    else:
        secret, env = (
            {"sasl.password_env": "STREAMON_TEST_KAFKA_PASSWORD"},
            {"STREAMON_TEST_KAFKA_PASSWORD": password},
        )
    config = str(_config(tmp_path, secure, _client(secure, **secret)))

    checked = _run("check-config", config, env=env)
    assert checked.returncode == 0, checked.stderr
    ref_key, ref_value = next(iter(secret.items()))
    assert f"{ref_key}={ref_value}" in checked.stdout  # the reference is shown ...
    doctor = _run("doctor", "--config", config, "--skip", "prometheus", "--skip", "alertmanager",
                  "--skip", "grafana", env=env)  # fmt: skip
    assert "OK   kafka:" in doctor.stdout, doctor.stdout  # ... it resolves and authenticates ...
    assert f"{ref_key}={ref_value}" in doctor.stdout.splitlines()[0]

    texts = [checked.stdout, checked.stderr, doctor.stdout, doctor.stderr]
    if via == "env":  # (the file variant's worker log is checked by the end-to-end test)
        texts.append(_debug_worker_output(tmp_path, config, env))
    for text in texts:
        assert password not in text  # ... but the secret itself never is


def _debug_worker_output(tmp_path: Path, config: str, env: dict[str, str]) -> str:
    """stderr of a worker at DEBUG (librdkafka's log lines included) that starts, then is stopped."""
    log = tmp_path / "debug-worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [h.STREAMON, "worker", "--config", config, "--state-dir", str(tmp_path / "s"),
             "--metrics-port", "0", "--log-level", "DEBUG"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "metrics on" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(60)
    text = log.read_text(errors="replace")
    assert "metrics on" in text, text[-2000:]  # it connected and got going
    return text


def test_alert_router_over_sasl_ssl_scram_reaches_a_real_alertmanager(secure, tmp_path):
    """The alert router (faust/aiokafka, not librdkafka) reads the alerts topic over SASL_SSL with
    SCRAM-SHA-512 and delivers to a real Alertmanager; its output never holds the password."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from streamon.config import load_config
    from streamon.kafka_client import kafka_client_config
    from tests.integration.test_router import Alertmanager, Router, alert_event, wait_for

    password = _password(secure)
    config = _config(tmp_path, secure, _client(secure, **{"sasl.password_file": secure.password_file}))
    settings = load_config(config)
    alerts = settings.kafka.topics.alerts
    # Topic and event go over the SASL_SSL listener too, with the client config streamon resolves.
    admin = AdminClient(kafka_client_config(settings))
    admin.create_topics([NewTopic(alerts, num_partitions=2, replication_factor=1)])[alerts].result(timeout=30)
    event = alert_event("DataDriftDetected", "firing", feature="transaction_amount")
    producer = Producer(kafka_client_config(settings))
    producer.produce(alerts, key=event["fingerprint"].encode(), value=orjson.dumps(event))
    assert producer.flush(30) == 0

    # Alertmanager's notifications go to a port nothing listens on: only its API is read here.
    am = Alertmanager(tmp_path, f"http://127.0.0.1:{h.free_port()}/unused")
    am.start()
    router = Router(tmp_path, config, ["--alertmanager-url", am.url, "--store", "memory"])
    router.start()

    def listed() -> list[dict[str, Any]]:
        assert router.alive(), router.text()[-4000:]
        try:
            return [a for a in am.alerts() if a["labels"].get("alertname") == "DataDriftDetected"]
        except requests.RequestException:
            return []

    try:
        wait_for(lambda: bool(listed()), 60, "the alert in Alertmanager", lambda: router.text()[-4000:])
        (got,) = listed()
        assert got["labels"] == {
            "alertname": "DataDriftDetected", "severity": "warning", "category": "data_quality",
            "model": "fraud-detector", "variant": "all", "window": "current", "feature": "transaction_amount",
        }  # fmt: skip
        assert got["annotations"]["fingerprint"] == event["fingerprint"]
        assert got["status"]["state"] == "active"
    finally:
        if router.alive():
            assert router.stop() == 0, router.text()[-4000:]
        am.kill()
    text = router.text()
    assert "forwarded DataDriftDetected firing" in text, text[-4000:]
    assert password not in text
