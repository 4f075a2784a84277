"""``streamon alert-router`` against the real broker and a REAL Alertmanager.

Alertmanager is Debian's ``prometheus-alertmanager`` binary (deploy/install-tools.sh), run on
a free port with a config whose only receiver is a webhook served by this test (a tiny
http.server that records each POST), group_wait/group_interval 1s, grouped by alertname and
category. The router runs as a subprocess (``streamon alert-router``), with a second, generic
``--webhook`` target served by the same recorder.

What it shows:
- the alert events reach Alertmanager (GET /api/v2/alerts lists them with the event's labels
  and annotations) and Alertmanager sends ONE grouped notification for the alerts of a group;
- duplicates (the same fingerprint and status again) are not forwarded twice, a resolve after
  firing is (the generic webhook counts POSTs per fingerprint and status);
- Alertmanager killed: alerts produced while it is down are retried (one log line per failed
  attempt) and all arrive once it is back on the same port; the still-firing alerts it forgot
  (it keeps alerts in memory only) are re-asserted by the router;
- a restarted router does not forward again what it already forwarded (the de-duplication
  table and the committed offsets survive the restart).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from streamon.core.alerts import fingerprint, rfc3339
from tests.integration.harness import STREAMON, free_port, produce, settings_dict, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


class Recorder:
    """A local HTTP server that records every POST (path, JSON body) and answers 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[Any]:
        with self.lock:
            return [body for p, body in self.posts if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager:
    """The real Alertmanager binary on a fixed port, restartable with the same storage."""

    def __init__(self, tmp: Path, hook_url: str) -> None:
        self.port = free_port()
        self.storage = tmp / "am-data"
        self.config = tmp / "alertmanager.yml"
        self.log = tmp / "alertmanager.log"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "route": {
                        "receiver": "hook",
                        "group_by": ["alertname", "category"],
                        "group_wait": "1s",
                        "group_interval": "1s",
                        "repeat_interval": "1h",
                    },
                    "receivers": [
                        {"name": "hook", "webhook_configs": [{"url": hook_url, "send_resolved": True}]}
                    ],
                }
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert ALERTMANAGER, "prometheus-alertmanager not installed: bash deploy/install-tools.sh"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [ALERTMANAGER, f"--config.file={self.config}", f"--storage.path={self.storage}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(lambda: self._ready(), 30, "Alertmanager ready")

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def alerts(self) -> list[dict[str, Any]]:
        r = requests.get(f"{self.url}/api/v2/alerts", timeout=5)
        r.raise_for_status()
        return list(r.json())


class Router:
    def __init__(self, tmp: Path, config: Path, args: list[str]) -> None:
        self.cmd = [STREAMON, "alert-router", "--config", str(config), "--data-dir", str(tmp / "router"),
                    *args]  # fmt: skip
        self.log = tmp / "router.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(60)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


# Checked on every poll: a process that died makes the wait fail at once, with its log.
GUARDS: list[Callable[[], None]] = []


def wait_for(cond: Callable[[], bool], timeout: float, what: str, on_fail: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for guard in GUARDS:
            guard()
        if cond():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{on_fail()}")


def alert_event(alertname: str, status: str, *, severity: str = "warning", category: str = "data_quality",
                model: str = "fraud-detector", **extra: str) -> dict[str, Any]:  # fmt: skip
    """An alert event as stage 2 publishes it (schemas/alert.schema.json)."""
    labels = {"model": model, "variant": "all", "window": "current", **extra}
    ident = {**labels, "severity": severity, "category": category}
    # A fresh alert (starts_at not in the past): Alertmanager waits group_wait before the first
    # notification of a group only for alerts that started less than group_wait ago.
    now = math.ceil(time.time())
    return {
        "fingerprint": fingerprint(alertname, ident),
        "status": status,
        "alertname": alertname,
        "severity": severity,
        "category": category,
        "model": model,
        "labels": {**ident, "alertname": alertname},
        "value": 0.31,
        "threshold": 0.1,
        "starts_at": rfc3339(now),
        "ends_at": rfc3339(now) if status == "resolved" else None,
        "summary": f"{alertname} on {model}",
        "description": f"{alertname} {extra}",
        "window": "current",
        "evidence": {"value": 0.31},
    }


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


def test_router_forwards_dedups_groups_and_survives_an_alertmanager_outage(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path, recorder: Recorder
) -> None:
    import jsonschema

    schema = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "alert.schema.json").read_text())
    d = settings_dict(kafka_bootstrap)
    # Two partitions: the de-duplication table must follow the topic's partitioning.
    d["kafka"]["topics"]["alerts"] = alerts = make_topic("alerts", partitions=2)
    config, _ = write_config(tmp_path, d)

    am = Alertmanager(tmp_path, f"http://127.0.0.1:{recorder.port}/alertmanager")
    am.start()
    router = Router(
        tmp_path,
        config,
        ["--alertmanager-url", am.url, "--webhook", f"http://127.0.0.1:{recorder.port}/generic",
         "--retry-initial", "0.2", "--retry-max", "1", "--attempt-timeout", "2", "--resend-interval", "3",
         "--label", "monitor=streamon"],
    )  # fmt: skip

    def generic() -> Counter[tuple[str, str]]:
        return Counter((b["fingerprint"], b["status"]) for b in recorder.bodies("/generic"))

    def am_alerts(name: str) -> dict[str, dict[str, Any]]:
        try:
            return {a["labels"].get("feature") or a["labels"]["model"]: a
                    for a in am.alerts() if a["labels"]["alertname"] == name}  # fmt: skip
        except requests.RequestException:
            return {}

    def diagnostics() -> str:
        return (f"router log:\n{router.text()[-4000:]}\nalertmanager log:\n{am.log.read_text()[-2000:]}\n"
                f"posts: {recorder.posts}")  # fmt: skip

    def router_alive() -> None:
        if router.proc is not None and router.proc.poll() is not None and router.proc.returncode != 0:
            raise AssertionError(f"the router exited with {router.proc.returncode}\n{diagnostics()}")

    GUARDS.append(router_alive)
    try:
        # ---- 0. the router is up once a first alert went through. Before it, an event whose
        # label name Alertmanager rejects (HTTP 400): logged with the event, not retried forever.
        router.start()
        poison = alert_event("ConsumerLagHigh", "firing", category="infrastructure", **{"bad-label": "x"})
        warmup = alert_event("HighCPUUsage", "firing", category="infrastructure", model="")
        produce(kafka_bootstrap, alerts, [poison, warmup], key="fingerprint")
        wait_for(lambda: generic()[(warmup["fingerprint"], "firing")] == 1, 60, "the router", diagnostics)
        # (two partitions: the poison may come after the warm-up)
        wait_for(lambda: "rejected ConsumerLagHigh" in router.text(), 20, "the rejection", diagnostics)
        rejected = [line for line in router.text().splitlines() if "rejected ConsumerLagHigh" in line]
        assert len(rejected) == 1 and "as invalid (HTTP 400" in rejected[0], router.text()
        assert '"bad-label":"x"' in rejected[0]  # the whole event is in the log line
        assert generic()[(poison["fingerprint"], "firing")] == 1  # the webhook took it

        # ---- 1. three firing drift alerts (one group), each sent twice
        features = ("transaction_amount", "merchant_category", "transaction_hour")
        firing = [alert_event("DataDriftDetected", "firing", feature=f) for f in features]
        for e in firing:
            jsonschema.validate(e, schema)
        produce(kafka_bootstrap, alerts, firing + firing, key="fingerprint")
        wait_for(lambda: set(am_alerts("DataDriftDetected")) == set(features), 60,
                 "the three alerts in Alertmanager", diagnostics)  # fmt: skip
        got = am_alerts("DataDriftDetected")["transaction_amount"]
        assert got["labels"] == {
            "alertname": "DataDriftDetected", "severity": "warning", "category": "data_quality",
            "model": "fraud-detector", "variant": "all", "window": "current", "feature": "transaction_amount",
            "monitor": "streamon",  # --label: Prometheus' external_labels, so both sources agree
        }  # fmt: skip
        assert got["annotations"]["summary"] == "DataDriftDetected on fraud-detector"
        assert got["annotations"]["fingerprint"] == firing[0]["fingerprint"]
        assert got["status"]["state"] == "active"
        assert got["generatorURL"].endswith("/d/streamon-data-drift?var-model=fraud-detector")

        # Alertmanager notified the receiver ONCE for the group, with all three alerts.
        def grouped() -> list[Any]:
            return [n for n in recorder.bodies("/alertmanager")
                    if n["groupLabels"] == {"alertname": "DataDriftDetected", "category": "data_quality"}
                    and n["status"] == "firing"]  # fmt: skip

        wait_for(lambda: bool(grouped()), 20, "Alertmanager's grouped notification", diagnostics)
        first = grouped()[0]
        assert sorted(a["labels"]["feature"] for a in first["alerts"]) == sorted(features), first

        # ---- 2. the firing ones a third time (duplicates), then one resolve, twice
        resolved = alert_event("DataDriftDetected", "resolved", feature="transaction_amount")
        jsonschema.validate(resolved, schema)
        produce(kafka_bootstrap, alerts, [*firing, resolved, resolved], key="fingerprint")
        wait_for(lambda: "transaction_amount" not in am_alerts("DataDriftDetected"), 30,
                 "the resolve in Alertmanager", diagnostics)  # fmt: skip
        wait_for(
            lambda: any(a["status"] == "resolved" and a["labels"].get("feature") == "transaction_amount"
                        for n in recorder.bodies("/alertmanager") for a in n["alerts"]),
            20, "Alertmanager's resolved notification", diagnostics,
        )  # fmt: skip
        time.sleep(2)  # anything the router would (wrongly) forward again has had time to arrive
        fps = [e["fingerprint"] for e in firing]
        assert generic() == Counter(
            {
                (poison["fingerprint"], "firing"): 1,
                (warmup["fingerprint"], "firing"): 1,
                **{(fp, "firing"): 1 for fp in fps},
                (fps[0], "resolved"): 1,
            }
        ), generic()
        assert recorder.bodies("/generic")[2] in firing  # the event's JSON as published

        # ---- 3. Alertmanager down: alerts produced meanwhile must all arrive once it is back
        am.kill()
        during = [alert_event("ModelAccuracyDegraded", "firing", category="model_performance", model=m)
                  for m in ("model-a", "model-b")]  # fmt: skip
        produce(kafka_bootstrap, alerts, during, key="fingerprint")
        wait_for(lambda: router.text().count("failed (attempt") >= 3, 30,
                 "the router's retry log lines", diagnostics)  # fmt: skip
        failure = next(line for line in router.text().splitlines() if "failed (attempt" in line)
        assert "ModelAccuracyDegraded firing" in failure and f"alertmanager {am.url}" in failure, failure
        assert "retrying in" in failure
        # Each target is retried on its own (the webhook took the event), but the agent holds at
        # the event Alertmanager has not accepted: the next one waits (offsets not committed past it).
        time.sleep(2)
        assert sum(generic()[(e["fingerprint"], "firing")] for e in during) == 1, generic()
        assert router.alive(), diagnostics()
        am.start()  # same port, same storage
        wait_for(lambda: set(am_alerts("ModelAccuracyDegraded")) == {"model-a", "model-b"}, 30,
                 "the alerts produced while Alertmanager was down", diagnostics)  # fmt: skip
        wait_for(
            lambda: any(sorted(a["labels"]["model"] for a in n["alerts"]) == ["model-a", "model-b"]
                        for n in recorder.bodies("/alertmanager")
                        if n["groupLabels"].get("alertname") == "ModelAccuracyDegraded"),
            20, "one grouped notification with both", diagnostics,
        )  # fmt: skip
        # The restarted Alertmanager had forgotten the still-firing drift alerts: re-asserted.
        wait_for(lambda: set(am_alerts("DataDriftDetected")) == set(features[1:]), 20,
                 "the firing alerts re-asserted after the restart", diagnostics)  # fmt: skip

        # ---- 4. a restarted router does not forward again what it already forwarded
        assert router.stop() == 0, diagnostics()
        before = generic()
        marker = alert_event("ROIBelowThreshold", "firing", category="business_impact")
        produce(kafka_bootstrap, alerts, [*firing[1:], *during, resolved, marker], key="fingerprint")
        router.start()
        wait_for(lambda: generic()[(marker["fingerprint"], "firing")] == 1, 60,
                 "the router to come back", diagnostics)  # fmt: skip
        time.sleep(2)
        assert generic() == before + Counter({(marker["fingerprint"], "firing"): 1}), generic()
        assert max(generic().values()) == 1
        assert "already forwarded; skipped" in router.text()
        # The rejected alert is never part of a re-assertion batch (which it would spoil).
        resends = [line for line in router.text().splitlines() if "re-sending" in line]
        assert not any("HTTP 400" in line for line in resends), resends
    finally:
        GUARDS.remove(router_alive)
        if router.proc is not None and router.alive():
            router.stop(signal.SIGKILL)
        am.kill()
