"""deploy/kafka/broker.py: start, readiness, idempotent start, stop, crash + restart, clear errors."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
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


def test_sasl_ssl_listener_properties_keep_the_plaintext_path():
    plain = broker_script.server_properties(9092, 9093, Path("/d"))
    secured = broker_script.server_properties(
        9092,
        9093,
        Path("/d"),
        {"port": "9094", **broker_script.sasl_ssl_properties(Path("/d/ks.pem"), "kp", "streamon", "pw")},
    )
    props = dict(line.split("=", 1) for line in secured.splitlines())
    assert "SASL_SSL" not in plain  # without the option nothing changes
    assert (
        props["listeners"]
        == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,SASL_SSL://127.0.0.1:9094"
    )
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.security.protocol.map"].endswith(",SASL_SSL:SASL_SSL")
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"
    assert props["listener.name.sasl_ssl.ssl.keystore.type"] == "PEM"
    assert 'user_streamon="pw"' in props["listener.name.sasl_ssl.plain.sasl.jaas.config"]


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, hostname: str) -> None:
    """A TLS handshake in memory; raises ssl.SSLCertVerificationError when the client refuses."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    ends = [
        (client.wrap_bio(c_in, c_out, server_hostname=hostname), c_out, s_in),
        (server.wrap_bio(s_in, s_out, server_side=True), s_out, c_in),
    ]
    done = [False, False]
    for _ in range(20):
        for i, (end, out, peer_in) in enumerate(ends):
            if not done[i]:
                try:
                    end.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done):
            return
    raise AssertionError("handshake did not complete")


def test_generated_certificate_verifies_for_127_0_0_1_and_localhost(tmp_path):
    ca, keystore, key_password = broker_script.make_certificates(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ca.pem",
        "server.keystore.pem",
        "server.pem",
    ]  # no loose key
    assert "ENCRYPTED PRIVATE KEY" in keystore.read_text()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(keystore, password=key_password)
    for name in ("127.0.0.1", "localhost"):
        _handshake(ssl.create_default_context(cafile=str(ca)), server, name)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ssl.create_default_context(cafile=str(ca)), server, "example.com")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(ssl.create_default_context(), server, "127.0.0.1")  # the system CAs do not know it


def test_crash_and_restart_keep_committed_messages_cluster_and_port(tmp_path):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    state = tmp_path / "state"
    info = broker_script.start(state, properties=broker_script.FAST_RECOVERY)
    try:
        bootstrap = info.bootstrap
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("kept", 2, 1)])["kept"].result(timeout=30)
        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "kept-tx"})
        producer.init_transactions(30)
        producer.begin_transaction()
        for i in range(40):
            producer.produce("kept", key=str(i).encode(), value=f"m{i}".encode())
        producer.commit_transaction(30)

        crashed = run("crash", "--state-dir", str(state))
        assert crashed.returncode == 0 and crashed.stdout.strip() == "killed"
        assert not broker_script.pid_alive(info.pid)
        down = run("status", "--state-dir", str(state))
        assert down.returncode == 3 and "start --keep-data" in down.stderr
        assert Path(info.data_dir).exists()

        back = run("start", "--keep-data", "--state-dir", str(state))
        assert back.returncode == 0, back.stderr
        assert back.stdout.strip() == bootstrap  # clients reconnect to the address they had
        after = broker_script.read_state(state)
        assert after is not None and after.pid != info.pid
        assert (after.data_dir, after.cluster_id) == (info.data_dir, info.cluster_id)

        def committed_values() -> list[bytes]:
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{time.monotonic_ns()}",
                          "auto.offset.reset": "earliest", "isolation.level": "read_committed"})  # fmt: skip
            c.subscribe(["kept"])
            got: list[bytes] = []
            for _ in range(60):
                got += [m.value() for m in c.consume(100, timeout=0.5) if m.error() is None]
                if len(got) >= 40:
                    break
            c.close()
            return got

        assert sorted(committed_values()) == sorted(f"m{i}".encode() for i in range(40))
        # The transaction coordinator recovered too: the same id fences and commits again.
        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "kept-tx"})
        producer.init_transactions(30)

        # restart = graceful stop keeping the data, then start on it.
        again = run("restart", "--state-dir", str(state))
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == bootstrap
        assert broker_script.read_state(state).cluster_id == info.cluster_id  # type: ignore[union-attr]
        assert len(committed_values()) == 40
    finally:
        broker_script.stop(state)
    assert not Path(info.data_dir).exists()
