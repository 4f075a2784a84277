"""A REAL ``streamon worker`` serving /metrics over TLS with basic auth, scraped by a REAL Prometheus.

Certificates (a CA, a server certificate for 127.0.0.1, a client certificate and one from
a CA nobody trusts) are made at test time with ``cryptography``. The worker reads an
exporter-toolkit web config through ``monitoring.prometheus.web_config_file``; Debian's
``prometheus`` binary scrapes it with ``scheme: https``, ``tls_config.ca_file`` and
``basic_auth.password_file``, as deploy/prometheus/scrape-tls.example.yml shows.

Asserted: Prometheus reports the target up and stores a streamon metric; a request
without credentials and one with a wrong password get 401 (with the Basic challenge), a
plain-HTTP request gets no metrics, ``streamon doctor`` says the endpoint requires basic
auth; and with ``RequireAndVerifyClientCert`` a client without a certificate (or with one
from another CA) is refused while the health endpoints stay open to probes when
``health_without_auth`` is set.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import yaml

from tests.integration.harness import STREAMON, WorkerProc, produce, settings_dict, traffic, write_config
from tests.integration.test_live_prometheus import Prometheus
from tests.unit.test_web_config import make_pki

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_WEB = ROOT / "deploy" / "web-config.example.yml"
EXAMPLE_SCRAPE = ROOT / "deploy" / "prometheus" / "scrape-tls.example.yml"
USER, PASSWORD = "prometheus", "correct horse battery staple"


def start_worker(
    tmp: Path, bootstrap: str, web: dict[str, Any], **prometheus: Any
) -> tuple[WorkerProc, Path]:
    web_path = tmp / "web-config.yml"
    web_path.write_text(yaml.safe_dump(web))
    d = settings_dict(bootstrap, partitions=1)
    d["monitoring"]["prometheus"].update({"web_config_file": str(web_path), **prometheus})
    config, _ = write_config(tmp, d)
    return WorkerProc(config, tmp / "state", "tls-1").start(), config


def wait_ready(worker: WorkerProc, **kw: Any) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert worker.alive(), f"worker died:\n{worker.tail()}"
        try:
            if requests.get(https(worker, "/readyz"), timeout=2, **kw).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"worker not ready over TLS:\n{worker.tail()}")


def https(worker: WorkerProc, path: str = "/metrics") -> str:
    return f"https://127.0.0.1:{worker.port}{path}"


def test_prometheus_scrapes_a_tls_basic_auth_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    ca = str(pki["ca.crt"])
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    # The shipped example, with this test's certificates and password.
    web = yaml.safe_load(EXAMPLE_WEB.read_text())
    web["tls_server_config"].update(cert_file=str(pki["server.crt"]), key_file=str(pki["server.key"]))
    web["basic_auth_users"] = {USER: hashed}
    worker, config = start_worker(tmp_path, kafka_bootstrap, web)
    prometheus = Prometheus(tmp_path, worker.port)
    try:
        wait_ready(worker, verify=ca, auth=(USER, PASSWORD))
        preds, _ = traffic(300, label_delay_s=60.0)
        d = yaml.safe_load(config.read_text())
        produce(kafka_bootstrap, d["kafka"]["topics"]["predictions"], preds)

        # The worker's own answers.
        for auth in (None, (USER, "wrong"), ("nobody", PASSWORD)):
            r = requests.get(https(worker), verify=ca, auth=auth, timeout=5)
            assert r.status_code == 401, (auth, r.status_code)
            assert r.headers["WWW-Authenticate"] == 'Basic realm="streamon"'
            assert "streamon_" not in r.text
        assert requests.get(https(worker, "/healthz"), verify=ca, timeout=5).status_code == 401
        r = requests.get(https(worker), verify=ca, auth=(USER, PASSWORD), timeout=5)
        assert r.status_code == 200 and "streamon_late_deltas_dropped_total" in r.text
        # Plain HTTP to the TLS port: the handshake fails, the connection closes, no metrics.
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{worker.port}/metrics", auth=(USER, PASSWORD), timeout=5)
        with socket.create_connection(("127.0.0.1", worker.port), timeout=5) as raw:
            raw.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b"".join(iter(lambda: raw.recv(4096), b""))
        assert b"streamon_" not in received

        # Real Prometheus, https + CA + basic auth from a password file.
        password_file = tmp_path / "scrape-password"
        password_file.write_text(PASSWORD)
        cfg = yaml.safe_load(prometheus.config.read_text())
        cfg["rule_files"] = []
        (job,) = yaml.safe_load(EXAMPLE_SCRAPE.read_text())["scrape_configs"]  # the shipped example
        job["tls_config"]["ca_file"] = ca
        job["basic_auth"]["password_file"] = str(password_file)
        job["static_configs"] = cfg["scrape_configs"][0]["static_configs"]
        assert job["job_name"] == "streamon" and job["basic_auth"]["username"] == USER
        # Room for a handshake and a bcrypt check on a busy machine (the global timeout is 1s).
        job.update(scrape_interval="2s", scrape_timeout="2s")
        cfg["scrape_configs"] = [job]
        prometheus.config.write_text(yaml.safe_dump(cfg))
        prometheus.start()
        deadline = time.monotonic() + 60
        while not prometheus.has_data('up{job="streamon"} == 1'):
            if time.monotonic() > deadline:
                targets = requests.get(f"{prometheus.url}/api/v1/targets", timeout=5).json()["data"]
                errors = [t.get("lastError") for t in targets["activeTargets"]]
                raise AssertionError(f"Prometheus does not scrape the TLS worker: {errors}")
            time.sleep(0.5)
        deadline = time.monotonic() + 60
        query = 'sum(streamon_events_processed_total{job="streamon"}) > 0'
        while not prometheus.has_data(query):
            assert time.monotonic() < deadline, f"no {query} in Prometheus:\n{worker.tail()}"
            time.sleep(0.5)

        # streamon doctor names the reason in one line (the CA through requests' own variable).
        env = {**os.environ, "REQUESTS_CA_BUNDLE": ca}
        doctor = subprocess.run(
            [STREAMON, "doctor", "--config", str(config), "--worker-url", f"https://127.0.0.1:{worker.port}",
             "--skip", "prometheus", "--skip", "alertmanager", "--skip", "grafana", "--timeout", "5"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        line = next(x for x in doctor.stdout.splitlines() if x.split(None, 1)[1].startswith("worker "))
        assert line.startswith("FAIL") and "requires basic auth (HTTP 401)" in line, doctor.stdout
        authed = f"https://{USER}:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{worker.port}"
        doctor = subprocess.run(
            [STREAMON, "doctor", "--config", str(config), "--worker-url", authed,
             "--skip", "prometheus", "--skip", "alertmanager", "--skip", "grafana", "--timeout", "5"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        line = next(x for x in doctor.stdout.splitlines() if x.split(None, 1)[1].startswith("worker "))
        assert line.startswith("OK"), doctor.stdout
        assert "battery" not in doctor.stdout  # the password in the URL is not echoed
    finally:
        prometheus.stop()
        if worker.alive():
            worker.terminate()


def test_client_certificate_required(kafka_bootstrap: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    ca = str(pki["ca.crt"])
    client = (str(pki["client.crt"]), str(pki["client.key"]))
    web = {
        "tls_server_config": {
            "cert_file": str(pki["server.crt"]),
            "key_file": str(pki["server.key"]),
            "client_auth_type": "RequireAndVerifyClientCert",
            "client_ca_file": ca,
        },
        "basic_auth_users": {USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()},
    }
    worker, _ = start_worker(tmp_path, kafka_bootstrap, web, health_without_auth=True)
    try:
        # Probes: no password needed for health, but still TLS with a client certificate.
        wait_ready(worker, verify=ca, cert=client)
        for cert in (None, (str(pki["rogue.crt"]), str(pki["rogue.key"]))):
            with pytest.raises(requests.exceptions.RequestException):
                requests.get(https(worker), verify=ca, cert=cert, auth=(USER, PASSWORD), timeout=5)
        assert requests.get(https(worker), verify=ca, cert=client, timeout=5).status_code == 401
        r = requests.get(https(worker), verify=ca, cert=client, auth=(USER, PASSWORD), timeout=5)
        assert r.status_code == 200 and "streamon_" in r.text
        # Refused clients cost only their own connections: the worker still answers.
        assert requests.get(https(worker, "/healthz"), verify=ca, cert=client, timeout=5).status_code == 200
    finally:
        if worker.alive():
            worker.terminate()
