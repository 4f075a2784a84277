"""deploy/kafka/broker.py: start, readiness, idempotent start, stop, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import broker as broker_script

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "broker.py"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=180
    )


def test_start_is_ready_second_start_harmless_stop_cleans(tmp_path):
    state = tmp_path / "state"
    first = run("start", "--state-dir", str(state))
    assert first.returncode == 0, first.stderr
    bootstrap = first.stdout.strip()
    port = int(bootstrap.rsplit(":", 1)[1])
    # Readiness means the client port answers a metadata request, not just a TCP accept.
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15)
    assert len(md.brokers) == 1

    info = broker_script.read_state(state)
    assert info is not None and info.port == port
    data_dir = Path(info.data_dir)
    assert data_dir.exists()

    second = run("start", "--state-dir", str(state))
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == bootstrap  # same broker, nothing new started
    assert broker_script.read_state(state).pid == info.pid  # type: ignore[union-attr]

    assert run("status", "--state-dir", str(state)).stdout.strip() == bootstrap
    stopped = run("stop", "--state-dir", str(state))
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped"
    assert not broker_script.pid_alive(info.pid)
    assert not broker_script.port_open(port)
    assert not data_dir.exists()
    assert run("status", "--state-dir", str(state)).returncode == 3
    assert run("stop", "--state-dir", str(state)).stdout.strip() == "no broker was running"


def test_missing_java_is_one_clear_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)  # python only: no java, no mvn
    res = run("start", "--state-dir", str(tmp_path / "s"), env=env)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: Java 17 or newer was not found")
    assert "install" in lines[0]


def test_old_java_is_refused():
    assert broker_script._java_major('openjdk version "11.0.2" 2019-01-15') == 11
    assert broker_script._java_major('java version "1.8.0_372"') == 8
    assert broker_script._java_major('openjdk version "17.0.15" 2025-04-15') == 17
