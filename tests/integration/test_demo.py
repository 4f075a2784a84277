"""``streamon demo --headless`` end to end, on its embedded librdkafka mock cluster.

The demo needs no broker: these tests check what a user sees, i.e. that the output
names the mock cluster, /metrics answers while it runs, the injected drift raises
the alerts it should (and none before it), and both ways of stopping exit 0.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STREAMON = str(Path(sys.executable).parent / "streamon")
ALERT = re.compile(r"^ALERT (firing|resolved) (\w+) model=(\S+)(?: feature=(\S+))?")
STATUS = re.compile(r"^\[\s*(\d+)s\]")


class Demo:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [STREAMON, "demo", "--headless", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, bufsize=1,
        )  # fmt: skip
        self.lines: list[str] = []
        self.new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self.new.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.proc.poll() is not None and self.new.empty():
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines[-40:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def output(self) -> str:
        return "\n".join(self.lines)


def _scrape(url: str) -> str | None:
    try:
        r = requests.get(url, timeout=5)
    except requests.RequestException:
        return None
    return r.text if r.status_code == 200 else None


def test_demo_fires_alerts_for_the_injected_drift_and_serves_metrics() -> None:
    demo = Demo("--duration", "150", "--drift-after", "20")
    try:
        url = demo.wait_for(r"metrics at (http://\S+/metrics)", 60).group(1)
        assert "embedded librdkafka mock cluster" in demo.output()
        assert "not a real Kafka broker" in demo.output()
        scraped = None
        wanted = {"transaction_amount", "score"}  # sudden covariate shift, degraded scores
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and demo.proc.poll() is None:
            if scraped is None:
                text = _scrape(url)
                if text and "ml_data_drift_psi_score{" in text and "streamon_events_processed_total" in text:
                    scraped = text
            severe = {
                m.group(4)
                for line in demo.lines
                if (m := ALERT.match(line)) and m.group(2) == "SevereDataDrift"
            }
            if scraped and wanted <= severe:
                break
            time.sleep(2)
        assert demo.proc.poll() is None, "the demo ended before the alerts:\n" + demo.output()
        demo.proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        assert demo.proc.wait(60) == 0, demo.output()
    finally:
        demo.stop()
    out = demo.output()
    assert scraped is not None, f"/metrics never served model metrics at {url}:\n{out}"
    assert 'ml_model_accuracy{model="fraud-detector",variant="all",window="current"}' in scraped
    alerts = [(i, m) for i, line in enumerate(demo.lines) if (m := ALERT.match(line))]
    firing = {(m.group(2), m.group(4)) for _, m in alerts if m.group(1) == "firing"}
    assert {("SevereDataDrift", "transaction_amount"), ("SevereDataDrift", "score")} <= firing, out
    # Alerts are about the demo config's models (binary, regression, multiclass) and nothing else.
    assert {m.group(3) for _, m in alerts} <= {"fraud-detector", "credit-limit", "tx-router"}, out
    # Nothing fires before the drift is injected (20 s): the first alert comes after a status line past it.
    drift_seen = next(
        i for i, line in enumerate(demo.lines) if (s := STATUS.match(line)) and int(s.group(1)) >= 20
    )
    assert alerts[0][0] > drift_seen, out
    assert re.search(r"stopped after \d+s: .* \d+ alerts fired", out), out
    assert "Traceback" not in out


def test_demo_duration_bounds_the_run_and_exits_0() -> None:
    demo = Demo("--duration", "12")
    try:
        assert demo.proc.wait(90) == 0, demo.output()
    finally:
        demo.stop()
    time.sleep(0.5)  # let the reader thread drain
    out = demo.output()
    assert "embedded librdkafka mock cluster — for demos only, not a real Kafka broker" in out
    assert re.search(r"stopped after 1[2-9]s", out), out
    assert "Traceback" not in out
