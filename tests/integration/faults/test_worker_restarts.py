"""Worker restarts (SIGTERM, SIGKILL) with join state mid-horizon, on a broker of our own.

- A restarted worker continues its join stores exactly: labels waiting for predictions not
  yet produced still join, labels whose prediction never comes are orphaned after the grace
  period (counted as ``streamon replay`` counts them), records past their horizon leave the
  store (it does not grow with restarts), the pending gauge equals the records in the
  stores, and the model series equal replay.
- Static membership: a worker restarted with the same ``--instance-id`` and state dir gets
  its own partitions back and restores nothing, and the other worker's assignment does not
  change.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from streamon.core.stages.join import Joiner
from streamon.runtime.store import RocksStore
from tests.integration import harness as h
from tests.integration.faults import helpers as fh

pytestmark = pytest.mark.integration

HORIZON = 4 * 3600.0  # windows.label_horizon: the stream spans about twice as much
GRACE = 600.0  # windows.orphan_grace


def _gauges(w: h.WorkerProc) -> dict[tuple[str, str], float]:
    text = w.scrape()
    assert text is not None, w.tail()
    return _parse(text)


def _parse(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("streamon_"):
                out[(s.name, s.labels.get("kind", ""))] = s.value
    return out


def _pending_labels(sc: fh.Scenario, expect: float, timeout: float = 60.0) -> float:
    """streamon_join_store_pending{kind="label"} over the workers once all are ready and it is
    ``expect`` (or the last value seen after ``timeout``: a rebalance may still be moving them)."""
    deadline = time.monotonic() + timeout
    seen = -1.0
    while time.monotonic() < deadline:
        live = sc.live()
        if live and _ready(*live):
            texts = [w.scrape() for w in live]
            if all(texts):
                seen = sum(_parse(t)[("streamon_join_store_pending", "label")] for t in texts if t)
                if seen == expect:
                    return seen
        time.sleep(0.5)
    return seen


def _wait_committed(sc: fh.Scenario, timeout: float = 60.0) -> None:
    t = sc.topics
    inputs = [t.predictions, t.labels]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if h.committed_total(sc.broker.bootstrap, sc.settings.kafka.group_id, inputs) >= h.end_offsets(
            sc.broker.bootstrap, inputs
        ):
            return
        time.sleep(0.5)
    raise AssertionError("input not committed in time\n" + sc.tails())


def _stores(sc: fh.Scenario) -> list[dict[str, Any]]:
    """What the join stores that reflect the group's committed offsets hold (workers stopped)."""
    t = sc.topics
    group = sc.settings.kafka.group_id
    out = []
    for path in sorted(sc.tmp.glob(f"*/{group}-{t.predictions}-*")):
        copy = sc.tmp / f"inspect-{uuid.uuid4().hex[:6]}"
        shutil.copytree(path, copy)
        store = RocksStore(copy)
        try:
            j = Joiner(store, HORIZON, GRACE)
            preds = [orjson.loads(v) for _, v in store.items(b"p:")]
            labels = [orjson.loads(v) for _, v in store.items(b"l:")]
            out.append({
                "path": path, "marker": store.offsets() or {}, "joiner": j, "preds": preds,
                "labels": labels, "index": sum(1 for _ in store.items(b"x:")),
            })  # fmt: skip
        finally:
            store.close()
            shutil.rmtree(copy, ignore_errors=True)
    return out


def _assigned(w: h.WorkerProc) -> list[list[int]]:
    """The stage-1 assignments of the worker's log, oldest first."""
    assert w.log is not None
    out = []
    for line in w.log.read_text(errors="replace").splitlines():
        if line.startswith("{") and "assigned input partitions" in line:
            out.append(orjson.loads(line)["partitions"])
    return out


def test_restarts_mid_horizon_continue_the_join_exactly(scenario: Any, tmp_path: Path) -> None:
    sc: fh.Scenario = scenario(partitions=2, label_horizon=HORIZON, orphan_grace=GRACE)
    n = 2400
    preds, labels = h.traffic(n, rate=0.1, label_delay_s=300.0)  # spans ~6.7 h of event time
    t1, t2 = preds[n // 3]["ts"], preds[2 * n // 3]["ts"]
    early = {p["prediction_id"] for p in preds[n // 3 : n // 3 + 150]}  # their labels come first
    # Labels whose prediction never comes, just before the first restart: waiting across it.
    ghosts = [{"prediction_id": f"ghost-{i}", "label": i % 2, "ts": t1 - 30.0 - i} for i in range(40)]
    first = [lab for lab in labels if lab["ts"] < t1 or lab["prediction_id"] in early]
    second = [lab for lab in labels if t1 <= lab["ts"] < t2 and lab["prediction_id"] not in early]
    third = [lab for lab in labels if lab["ts"] >= t2 and lab["prediction_id"] not in early]

    sc.worker("w1")
    sc.worker("w2")
    sc.produce(preds[: n // 3], first + ghosts)
    _wait_committed(sc)
    waiting = len(early) + len(ghosts)  # every other label of phase 1 found its prediction
    assert _pending_labels(sc, waiting) == waiting
    # SIGTERM with labels waiting for predictions not produced yet and for ones that never come.
    assert sc.terminate("w1") == 0
    sc.worker("w1")
    assert _pending_labels(sc, waiting) == waiting  # the restarted worker's stores count them
    sc.produce(preds[n // 3 : 2 * n // 3], second)
    time.sleep(1.0)
    sc.kill("w2")  # SIGKILL mid-stream
    sc.worker("w2")
    _wait_committed(sc, timeout=90)
    sc.produce(preds[2 * n // 3 :], third)
    live = sc.wait_consumed(timeout=90)
    gauges = [_gauges(w) for w in sc.live()]
    pending = {k: sum(g[("streamon_join_store_pending", k)] for g in gauges) for k in ("prediction", "label")}

    expected = sc.check(live)  # (i) ml_* == replay, (ii) orphans == replay, ...; stops the workers
    assert expected.orphans >= len(ghosts)
    stores = [s for s in _stores(sc) if s["marker"]]
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for s in stores:
        by_partition.setdefault(s["path"].name, []).append(s)
    current = [max(group, key=lambda s: sum(s["marker"].values())) for group in by_partition.values()]
    assert len(current) == 2
    for s in current:
        j = s["joiner"]
        # The counters are the records; one index entry per record.
        assert (j.pending_predictions, j.pending_labels) == (len(s["preds"]), len(s["labels"]))
        assert s["index"] == len(s["preds"]) + len(s["labels"])
        # Nothing stays past its time: predictions older than the horizon and labels past their
        # grace left the store although they were written before a restart.
        assert all(p[2] + HORIZON > j.watermark for p in s["preds"]), s["path"]
        assert all(lab[2] > j.watermark for lab in s["labels"]), s["path"]
        assert len(s["preds"]) < 0.75 * n / 2  # about a horizon's worth (60%) of the partition's
    # The pending gauge of the live workers is what their stores hold.
    assert pending == {
        "prediction": sum(len(s["preds"]) for s in current),
        "label": sum(len(s["labels"]) for s in current),
    }


def test_static_membership_restart_gets_its_partitions_back(scenario: Any) -> None:
    # A session timeout the restart surely fits in, however slow the machine (a restart that
    # outlasts it is a crash: the partitions would move, see docs/failure-semantics.md).
    sc: fh.Scenario = scenario(partitions=4, session_timeout=30.0)
    preds, labels = h.traffic(1200)
    w1, w2 = sc.worker("w1"), sc.worker("w2")
    sc.produce(preds[:600], [lab for lab in labels if lab["ts"] < preds[600]["ts"]])
    _wait_committed(sc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (_assigned(w1) and _assigned(w2) and _ready(w1, w2)):
        time.sleep(0.3)
    mine, theirs = _assigned(w1)[-1], _assigned(w2)[-1]
    assert sorted(mine + theirs) == [0, 1, 2, 3] and mine and theirs
    before, n1, n2 = _gauges(w2), len(_assigned(w1)), len(_assigned(w2))

    assert sc.terminate("w1") == 0  # clean shutdown: the member stays in the group
    sc.produce(preds[600:], [lab for lab in labels if lab["ts"] >= preds[600]["ts"]])  # the gap
    w1 = sc.worker("w1")  # same --instance-id and state dir
    sc.wait_consumed(timeout=45)
    assert len(_assigned(w1)) == n1 + 1 and _assigned(w1)[-1] == mine  # its own partitions back
    # The other worker was not disturbed: no new assignment (no rebalance), nothing restored ...
    later = _gauges(w2)
    assert len(_assigned(w2)) == n2 and _assigned(w2)[-1] == theirs
    assert later[("streamon_rebalances_total", "")] == before[("streamon_rebalances_total", "")]
    # (it may have restored at its first assignment, when it joined after w1 had committed)
    restored = ("streamon_restored_messages_total", "")
    assert later[restored] == before[restored]
    # ... and the restarted worker's stores were current: its restore read nothing from the
    # topics (the gap is consumed as ordinary input).
    assert _gauges(w1)[("streamon_restored_messages_total", "")] == 0
    sc.check(sc.wait_consumed(timeout=30))


def _ready(*workers: h.WorkerProc) -> bool:
    for w in workers:
        try:
            if requests.get(w.url("/readyz"), timeout=2).status_code != 200:
                return False
        except requests.RequestException:
            return False
    return True
