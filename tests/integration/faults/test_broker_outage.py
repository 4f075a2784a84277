"""The broker goes away mid-stream: workers recover, or exit non-zero with one line and are
restarted; either way the final metrics equal replay, nothing lost or counted twice, and no
worker stays alive lagging without committing past kafka.stall_timeout.

On this module's own broker (``fault_broker``): it is SIGKILLed and brought back on the
same data. Workers run under the scenario's supervisor, which restarts those that exit.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import yaml

from tests.integration import harness as h
from tests.integration.faults.helpers import Scenario, stream

pytestmark = pytest.mark.integration

SHUTDOWN_GRACE_S = 8.0


def _configure(sc: Scenario, **kafka: float) -> None:
    """Set more kafka.* keys in the scenario's config file (before any worker starts).

    Clients retry a broker at least every second (librdkafka's default backoff grows to
    10 s): the test sees the return of the broker sooner, the worker does the same things."""
    d = yaml.safe_load(sc.config.read_text())
    d["kafka"].update(kafka)
    d["kafka"]["client"] = {**d["kafka"].get("client", {}), "reconnect.backoff.max.ms": 1000}
    sc.config.write_text(yaml.safe_dump(d, sort_keys=False))


def _mid_stream(sc: Scenario, name: str, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while h.processed([sc.workers[name]], sc.topics.predictions) < at_least:
        assert time.monotonic() < deadline, sc.tails()
        time.sleep(0.1)


def _one_line_exits(sc: Scenario) -> None:
    """Every exit was deliberate: a non-zero code with one line saying why, no traceback."""
    for name, w in sc.workers.items():
        text = Path(w.log).read_text(errors="replace") if w.log else ""
        assert "Traceback" not in text, f"{name}:\n{text[-3000:]}"
        for line in text.splitlines():
            if line.startswith("{"):
                orjson.loads(line)  # a JSON log line
            else:  # the CLI's own line, printed once when a worker gives up
                assert line.startswith("error: "), f"{name}: not a log line: {line!r}"
    for name, code in sc.exits:
        assert code != 0, f"{name} exited 0 on its own"
        assert code in (3, 4), f"{name} exited {code}: 3 = Kafka unreachable at start, 4 = stalled"


def test_broker_sigkill_and_restart_on_the_same_data_mid_stream(scenario, broker) -> None:
    """Down ~17 s, killed while stage 1 has transactions in flight (the hang that used to
    block send_offsets_to_transaction for minutes, deaf to SIGTERM)."""
    sc = scenario(partitions=2)
    _configure(sc, batch_size=500, flush_interval=0.2)
    preds, labels = stream(3000, seed=41)
    sc.worker("w1")
    h.wait_ready(sc.live(), timeout=60, settle=1.0)
    sc.produce(preds, labels)
    _mid_stream(sc, "w1", 300)
    broker.restart(down_s=17)
    live = sc.wait_consumed(timeout=120)
    _one_line_exits(sc)
    sc.check(live)


def test_broker_down_two_minutes(scenario, broker) -> None:
    """Down 2 minutes, longer than kafka.stall_timeout (20 s): the worker with work exits 4 in
    one line and its restarts fail in one line (exit 3) until the broker is back; a SIGTERM
    during the outage ends a worker within kafka.shutdown_grace. Then the stream completes."""
    sc = scenario(partitions=2)
    _configure(sc, batch_size=500, flush_interval=0.2, shutdown_grace=SHUTDOWN_GRACE_S)
    sc.max_exits = 200  # restarts during the outage fail at start, by design
    preds, labels = stream(3000, seed=43)
    sc.worker("w1")
    sc.worker("w2")
    h.wait_ready(sc.live(), timeout=60, settle=1.0)
    sc.produce(preds, labels)
    _mid_stream(sc, "w1", 200)
    started = time.monotonic()
    broker.crash()
    time.sleep(3)
    # SIGTERM while the brokers are gone (w2 may be inside a transaction that cannot finish).
    assert sc.workers["w2"].alive(), sc.tails()
    code = sc.terminate("w2", timeout=SHUTDOWN_GRACE_S + 20)  # TimeoutExpired if it hangs
    assert code in (0, 4), f"w2 exited {code} after SIGTERM\n{sc.tails()}"
    text = sc.workers["w2"].tail(200)
    assert "SIGTERM received" in text and "Traceback" not in text, text
    if code == 4:  # past the grace: the watchdog's one line says so
        assert f"shutdown did not finish within {SHUTDOWN_GRACE_S:g}s" in text, text
    sc.worker("w2")  # back under the supervisor: fails at start (exit 3) while the broker is down
    time.sleep(max(0.0, 120 - (time.monotonic() - started)))
    broker.start()
    broker.outages.append(("SIGKILL", round(time.monotonic() - started, 1)))
    live = sc.wait_consumed(timeout=120)
    _one_line_exits(sc)
    sc.check(live)
