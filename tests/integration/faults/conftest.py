"""The fault suite: streamon workers under broker and worker failures, on a broker of their own.

Every module here gets its OWN broker (``fault_broker``, started by deploy/kafka/broker.py
with fast-recovery settings, never the shared STREAMON_TEST_BOOTSTRAP one), so a test may
SIGKILL it, keep it down and bring it back on the same data and port:

    broker.crash()                 # SIGKILL, data kept       broker.stop()  # SIGTERM, data kept
    broker.start()                 # same data, cluster id, port
    broker.restart(down_s=5)       # crash, 5 s down, start   with broker.down(): ...

``scenario(...)`` makes a :class:`helpers.Scenario`: unique topics, a config with short
timeouts (``kafka.session_timeout`` 6 s, ``kafka.stall_timeout`` 20 s, alert rules with
``for: 0``; keyword arguments go to ``helpers.scenario_settings``), supervised workers (a
worker that exits on its own is restarted after 1 s and recorded in ``scenario.exits``)
and a stall sampler scraping every live worker's /metrics each second. A test produces a
stream, starts workers, injects its faults, then:

    live = sc.wait_consumed()      # both groups committed everything; model series stable
    sc.check(live)                 # the four checks, then the workers are stopped

``wait_consumed`` then produces a small tail, ``windows.orphan_grace`` later in event time,
and waits again: past it every label without its prediction is orphaned whatever order the
worker read the topics in (``tail=False`` to leave event time alone). ``check`` asserts
(i) the workers' model series (``ml_*``) equal ``streamon replay`` over the same events,
(ii) the labels orphaned (read from the join stores the workers left) equal replay's,
(iii) no model alert fingerprint fires twice without resolving in between (the per-worker
host and lag rules are left out), (iv) no worker was alive with lag > 0 and its
``streamon_last_commit_timestamp_seconds`` older than ``kafka.stall_timeout`` (+5 s slack).
``scenario.running_exits`` lists the exits of workers that were past their start.
``session_scenario(d)`` makes one from a settings dict ``d`` on the shared session broker,
for faults in the data or on the worker's host (no broker to crash, none to start).
``helpers.stream()`` makes a small stream with a few orphan labels. Keep streams small (a
few thousand events) and windows short: the whole suite has a budget of about 8 minutes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.faults.helpers import (
    FaultBroker,
    Scenario,
    SessionBroker,
    make_scenario,
    scenario_settings,
)


@pytest.fixture(scope="module")
def fault_broker() -> Iterator[FaultBroker]:
    """This module's own broker, deleted with its data at the end of the module."""
    broker = FaultBroker(Path(tempfile.mkdtemp(prefix="streamon-fault-kafka-")))
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def broker(fault_broker: FaultBroker) -> FaultBroker:
    """The module's broker, running (a test before may have left it down)."""
    if not fault_broker.up():
        fault_broker.start()
    return fault_broker


@pytest.fixture
def scenario(broker: FaultBroker, tmp_path: Path) -> Iterator[Callable[..., Scenario]]:
    """``scenario(partitions=2, stall_timeout=20, **windows)`` -> a Scenario; closed after the test."""
    made: list[Scenario] = []

    def make(**kw: Any) -> Scenario:
        sc = make_scenario(broker, tmp_path / f"sc{len(made)}", scenario_settings(broker.bootstrap, **kw))
        made.append(sc)
        return sc

    yield make
    for sc in made:
        sc.close()


@pytest.fixture
def session_scenario(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Scenario]]:
    """``session_scenario(d)`` -> a Scenario on the shared session broker, from the settings
    dict ``d`` (``scenario_settings(kafka_bootstrap, ...)`` or any config); closed after the test."""
    made: list[Scenario] = []

    def make(d: dict[str, Any]) -> Scenario:
        sc = make_scenario(SessionBroker(kafka_bootstrap), tmp_path / f"sc{len(made)}", d)
        made.append(sc)
        return sc

    yield make
    for sc in made:
        sc.close()
