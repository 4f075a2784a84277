"""``streamon doctor`` with nothing reachable: every check fails fast, with a fix, no secret shown.

The checks against real services (broker, Prometheus, a worker) run in
tests/integration/test_live_prometheus.py; here every address is a closed local port.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from streamon.cli import cli
from streamon.config import Settings, default_settings
from streamon.doctor import Check, DoctorOptions, run_checks

CHECKS = (
    "kafka",
    "topics",
    "co-partitioning",
    "message size",
    "partials retention",
    "prometheus",
    "prometheus targets",
    "alertmanager",
    "grafana",
)
KAFKA_SECRET = "hunter2-kafka-secret"
KAFKA_SECRET_ENV = "STREAMON_TEST_DOCTOR_KAFKA_PASSWORD"
GRAFANA_SECRET = "grafana-admin-pw"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_dict() -> dict:
    d = default_settings().model_dump(by_alias=True, mode="json")
    d["kafka"]["bootstrap_servers"] = f"127.0.0.1:{closed_port()}"
    d["kafka"]["client"] = {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "streamon",
        "sasl.password_env": KAFKA_SECRET_ENV,  # resolved when doctor builds its client
    }
    d["monitoring"]["dashboards"]["grafana_url"] = f"http://admin:{GRAFANA_SECRET}@127.0.0.1:{closed_port()}"
    return d


@pytest.fixture(autouse=True)
def kafka_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KAFKA_SECRET_ENV, KAFKA_SECRET)


def test_everything_unreachable_fails_every_check_with_a_fix(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(config_dict()))
    worker = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    result = CliRunner().invoke(
        cli,
        ["doctor", "--config", str(config), "--timeout", "1",
         "--prometheus-url", f"http://127.0.0.1:{closed_port()}",
         "--alertmanager-url", f"http://127.0.0.1:{closed_port()}", "--worker-url", worker],
    )  # fmt: skip
    took = time.monotonic() - started
    assert result.exit_code == 1, result.output
    header, *lines = result.stdout.splitlines()
    assert header.startswith("streamon doctor: kafka 127.0.0.1:")
    assert f"sasl.password_env={KAFKA_SECRET_ENV}" in header and "sasl.username=streamon" in header
    names = [line[5:].split(": ", 1)[0] for line in lines]
    assert names == [*CHECKS, f"worker {worker}"], lines
    for line in lines:
        assert line.startswith("FAIL "), line
        detail, fix = line.split("; fix: ", 1)
        assert len(detail) > 10 and len(fix) > 10, line
    assert "cannot reach 127.0.0.1:" in lines[0] and "kafka.bootstrap_servers" in lines[0]
    assert "not checked: Kafka is unreachable" in lines[1]
    assert "--prometheus-url" in lines[5] and "--alertmanager-url" in lines[7]
    assert "grafana_url" in lines[8]
    for secret in (KAFKA_SECRET, GRAFANA_SECRET):
        assert secret not in result.output
    assert took < 15, f"doctor took {took:.1f}s with everything unreachable"


def test_skip_and_defaults() -> None:
    """--skip prints SKIP (not a failure); Grafana's URL defaults to the config's."""
    settings = Settings.from_dict(config_dict())
    out: list[str] = []
    ok = run_checks(
        settings,
        DoctorOptions(skip=frozenset({"prometheus", "alertmanager"}), timeout=1),
        out.append,
    )
    assert not ok  # Kafka and Grafana still fail
    assert "SKIP prometheus: --skip prometheus" in out
    assert "SKIP alertmanager: --skip alertmanager" in out
    grafana = next(line for line in out if line[5:].startswith("grafana: "))
    assert grafana.startswith("FAIL grafana: http://127.0.0.1:") and GRAFANA_SECRET not in grafana
    assert Check("x", "SKIP", "y").ok and not Check("x", "FAIL", "y").ok
