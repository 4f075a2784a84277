"""streamon worker against the real broker: equals replay, scales, survives SIGKILL, rejects bad input."""

from __future__ import annotations

import re
import time

import orjson
import pytest

from tests.integration import harness as h

pytestmark = pytest.mark.integration


# A regression model beside the binary one (streamon.traffic's credit-limit events).
REGRESSION_MODEL = {
    "name": "credit-limit",
    "task": "regression",
    "features": [
        {"name": "income", "type": "numeric"},
        {"name": "utilisation", "type": "numeric"},
        {"name": "tenure_years", "type": "numeric"},
        {"name": "region", "type": "categorical"},
    ],
}
# And a multiclass one (streamon.traffic's transaction-router events).
MULTICLASS_MODEL = {
    "name": "txn-router",
    "task": "multiclass",
    "classes": ["approve", "review", "decline"],
    "features": [
        {"name": "risk", "type": "numeric"},
        {"name": "amount", "type": "numeric"},
        {"name": "channel", "type": "categorical"},
    ],
}
ALL_KINDS = {  # all three kinds of model in one stream
    "models": ("fraud-detector", "credit-limit", "txn-router"),
    "regression": ("credit-limit",),
    "multiclass": ("txn-router",),
}


def _has_every_kind(metrics: dict) -> bool:
    """The regression and multiclass models' own series are there, with numbers (not a
    vacuous equality)."""

    def values(name: str, *labels: tuple[str, str]) -> list[float]:
        return [v for (n, ls), v in metrics.items() if n == name and all(x in ls for x in labels)]

    mae = values("ml_model_mae", ("model", "credit-limit"))
    f1 = values("ml_model_f1_score", ("model", "txn-router"), ("average", "macro"))
    confusion = sum(values("ml_model_confusion_total", ("model", "txn-router"), ("variant", "all")))
    return any(v > 0 for v in mae) and any(0 < v <= 1 for v in f1) and confusion > 0


@pytest.fixture
def setup(kafka_bootstrap, tmp_path):
    def make(partitions: int = 3, immediate_alerts: bool = False, all_kinds: bool = False, **windows):
        d = h.settings_dict(kafka_bootstrap, partitions=partitions, **windows)
        if all_kinds:
            d["models"] += [REGRESSION_MODEL, MULTICLASS_MODEL]
        if immediate_alerts:
            # A worker that catches up on a backlog sees event time jump in few evaluations,
            # and event-time for-durations need several: fire at the first breach instead.
            for rule in d["alerts"]["rules"]:
                rule["for"] = 0
        return h.write_config(tmp_path, d)

    return make


def _stop_all(workers):
    for w in workers:
        if w.alive():
            w.terminate()


def test_worker_matches_replay_and_publishes_alerts(kafka_bootstrap, setup, tmp_path):
    config, settings = setup(immediate_alerts=True)
    preds, labels = h.traffic(12_000)
    t = settings.kafka.topics
    worker = h.WorkerProc(config, tmp_path / "s1", "w1").start()
    try:
        h.produce(kafka_bootstrap, t.predictions, preds)
        h.produce(kafka_bootstrap, t.labels, labels)
        live = h.wait_metrics([worker], settings)
        import requests

        assert requests.get(worker.url("/healthz"), timeout=5).status_code == 200
        assert requests.get(worker.url("/readyz"), timeout=5).status_code == 200
        page = requests.get(worker.url("/report"), timeout=30)
    finally:
        _stop_all([worker])
    # The live report (/report) draws the worker's own state: its numbers are its /metrics.
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    sections = re.findall(r'data-section="fraud-detector/([a-z]+)"', page.text)
    assert {"summary", "performance", "confusion", "drift", "alerts"} <= set(sections), sections
    cells = re.findall(r'data-metric="([^"]+)" data-labels="([^"]*)" data-value="([^"]+)"', page.text)
    assert len(cells) >= 20
    for name, labels_text, value in cells:
        key = (name, tuple(sorted(tuple(kv.split("=", 1)) for kv in labels_text.split(","))))
        assert h.same(float(value), live[key]), (key, value, live[key])
    assert "SevereDataDrift" in page.text  # the alerts it published are in the report's timeline
    expected = h.replay_samples(settings, tmp_path, preds, labels)
    assert len(live) > 100
    assert h.diff(live, expected) == []
    psi = live[("ml_data_drift_psi_score", (("feature", "transaction_amount"), ("model", "fraud-detector"),
                                            ("variant", "all"), ("window", "current")))]  # fmt: skip
    assert psi > 0.2  # the injected drift is seen
    alerts = [orjson.loads(m.value()) for m in h.read_topic(kafka_bootstrap, t.alerts)]
    firing = {(a["alertname"], a["labels"].get("feature")) for a in alerts if a["status"] == "firing"}
    # The final evaluation sees PSI > 0.2 (asserted above): with for 0 it has fired by then.
    assert ("SevereDataDrift", "transaction_amount") in firing
    assert {("ModelPerformanceDegradedHigh", None), ("ModelAccuracyDegraded", None)} & firing
    # Alerts are keyed by fingerprint and never fire twice without resolving in between.
    state: dict[str, str] = {}
    for a in alerts:
        assert not (a["status"] == "firing" and state.get(a["fingerprint"]) == "firing"), a
        state[a["fingerprint"]] = a["status"]


def test_one_and_three_workers_give_identical_metrics(kafka_bootstrap, setup, tmp_path):
    preds, labels = h.traffic(12_000, seed=11, **ALL_KINDS)  # a binary, a regression and a multiclass model
    results = []
    for n_workers in (1, 3):
        config, settings = setup(partitions=6, all_kinds=True)
        t = settings.kafka.topics
        workers = [h.WorkerProc(config, tmp_path / f"s{n_workers}-{i}", f"w{n_workers}-{i}").start()
                   for i in range(n_workers)]  # fmt: skip
        try:
            h.produce(kafka_bootstrap, t.predictions, preds)
            h.produce(kafka_bootstrap, t.labels, labels)
            results.append(h.wait_metrics(workers, settings))
        finally:
            _stop_all(workers)
    assert len(results[0]) > 100 and _has_every_kind(results[0])
    assert h.diff(results[0], results[1]) == []


@pytest.mark.parametrize("takeover", [False, True], ids=["restart", "takeover"])
def test_sigkill_mid_stream_loses_nothing_counts_nothing_twice(kafka_bootstrap, setup, tmp_path, takeover):
    config, settings = setup(partitions=4, all_kinds=True)
    t = settings.kafka.topics
    preds, labels = h.traffic(16_000, seed=23, **ALL_KINDS)  # a binary, a regression and a multiclass model
    victim = h.WorkerProc(config, tmp_path / "victim", "victim").start()
    others = [h.WorkerProc(config, tmp_path / "other", "other").start()] if takeover else []
    try:
        # Both workers in the group before any data, so the victim owns partitions when it is killed.
        h.wait_ready([victim, *others])
        half = len(preds) // 2
        h.produce(kafka_bootstrap, t.predictions, preds[:half])
        h.produce(kafka_bootstrap, t.labels, labels[: len(labels) // 2])
        deadline = time.monotonic() + 120
        while h.processed([victim], t.predictions) < 1000 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert h.processed([victim], t.predictions) >= 1000, victim.tail()
        victim.kill()  # SIGKILL: no goodbye, possibly inside a transaction
        h.produce(kafka_bootstrap, t.predictions, preds[half:])
        h.produce(kafka_bootstrap, t.labels, labels[len(labels) // 2 :])
        # Takeover: the other worker gets every partition, with no local store. Restart: same store and id.
        survivors = others if takeover else [h.WorkerProc(config, tmp_path / "victim", "victim").start()]
        live = h.wait_metrics(survivors, settings, timeout=300)
    finally:
        _stop_all([victim, *others])
        if not takeover:
            _stop_all(survivors)
    expected = h.replay_samples(settings, tmp_path, preds, labels)
    assert h.diff(live, expected) == [] and _has_every_kind(live)
    alerts = [orjson.loads(m.value()) for m in h.read_topic(kafka_bootstrap, t.alerts)]
    state: dict[str, str] = {}
    for a in alerts:
        assert not (a["status"] == "firing" and state.get(a["fingerprint"]) == "firing"), a["alertname"]
        state[a["fingerprint"]] = a["status"]


def test_bad_input_goes_to_dead_letter_and_does_not_count(kafka_bootstrap, setup, tmp_path):
    config, settings = setup(partitions=2)
    t = settings.kafka.topics
    preds, labels = h.traffic(4_000, seed=5)
    now = time.time()
    good = preds[0]
    bad_preds: list[dict | bytes] = [
        b"{not json",
        b"[1, 2, 3]",
        {**good, "prediction_id": "bad-missing", "score": None},
        {k: v for k, v in good.items() if k != "model"} | {"prediction_id": "bad-nomodel"},
        {**good, "prediction_id": "bad-type", "score": "high"},
        {**good, "prediction_id": "bad-range", "score": 1.5},
        {**good, "prediction_id": "bad-model", "model": "who-knows"},
        {**good, "prediction_id": "bad-future", "ts": now + 7 * 86400},
        {**good, "prediction_id": "bad-old", "ts": now - 400 * 86400},
        {**good, "prediction_id": "bad-big", "features": {**good["features"], "blob": "x" * 70_000}},
        {
            **good,
            "prediction_id": "bad-feature",
            "features": {**good["features"], "transaction_hour": "noon"},
        },
        dict(preds[1]),  # a duplicate prediction
    ]
    bad_labels: list[dict | bytes] = [b"\xff\xfe", {"prediction_id": "x", "label": 7, "ts": now - 100}]
    worker = h.WorkerProc(config, tmp_path / "s", "w").start()
    try:
        h.produce(kafka_bootstrap, t.predictions, preds[:2000])
        h.produce(kafka_bootstrap, t.predictions, bad_preds)
        h.produce(kafka_bootstrap, t.predictions, preds[2000:])
        h.produce(kafka_bootstrap, t.labels, labels[:100] + bad_labels + labels[100:])
        live = h.wait_metrics([worker], settings)
        text = worker.scrape() or ""
    finally:
        _stop_all([worker])
    dead = h.read_topic(kafka_bootstrap, t.dead_letter, expect=len(bad_preds) + len(bad_labels))
    reasons = sorted(dict(m.headers())["streamon.reason"].decode() for m in dead)
    assert reasons == sorted([
        "invalid_json", "not_an_object", "wrong_type", "missing_field", "wrong_type", "score_out_of_range",
        "unknown_model", "ts_in_future", "ts_too_old", "too_large", "wrong_type", "duplicate_prediction",
        "invalid_json", "schema_violation",
    ])  # fmt: skip
    assert len(dead) == len(bad_preds) + len(bad_labels)
    assert {m.value() for m in dead} >= {b"{not json", b"\xff\xfe"}  # original bytes kept
    assert 'streamon_events_invalid_total{reason="duplicate_prediction"' in text
    # No bad event counts in a statistic; the integrity rates count the rejected ones, as
    # replay does over the same input: the wrong-typed transaction_hour is seen.
    sent_preds, sent_labels = (
        preds[:2000] + bad_preds + preds[2000:],
        labels[:100] + bad_labels + labels[100:],
    )
    assert h.diff(live, h.replay_samples(settings, tmp_path, sent_preds, sent_labels)) == []
    wrong = (
        "streamon_feature_wrong_type_ratio",
        (
            ("feature", "transaction_hour"),
            ("model", "fraud-detector"),
            ("variant", "all"),
            ("window", "current"),
        ),
    )
    assert live[wrong] > 0  # fmt: skip


def test_corrections_and_orphans(kafka_bootstrap, setup, tmp_path):
    config, settings = setup(partitions=1, orphan_grace=60.0)
    t = settings.kafka.topics
    preds, labels = h.traffic(3_000, seed=9, label_delay_s=60.0)
    first = {e["prediction_id"]: e for e in labels}
    # Correct 100 labels (flip them) after the fact, and send 25 labels for unknown predictions.
    corrected = [dict(e, label=1 - e["label"], ts=e["ts"] + 5) for e in labels[:100]]
    orphans = [{"prediction_id": f"ghost-{i}", "label": 1, "ts": preds[100]["ts"]} for i in range(25)]
    worker = h.WorkerProc(config, tmp_path / "s", "w").start()

    def wait_processed(topic: str, n: int) -> None:
        deadline = time.monotonic() + 120
        while h.processed([worker], topic) < n and time.monotonic() < deadline:
            time.sleep(0.3)
        assert h.processed([worker], topic) >= n, worker.tail()

    try:
        # Orphans first: their grace ends once later predictions move the watermark past it.
        h.produce(kafka_bootstrap, t.labels, orphans)
        wait_processed(t.labels, len(orphans))
        h.produce(kafka_bootstrap, t.predictions, preds)
        wait_processed(t.predictions, len(preds))
        # Corrections after their originals, both after the predictions: each one retracts and re-adds.
        h.produce(kafka_bootstrap, t.labels, labels + corrected)
        live = h.wait_metrics([worker], settings)
        text = worker.scrape() or ""
    finally:
        _stop_all([worker])
    assert "streamon_labels_orphaned_total 25.0" in text
    assert "streamon_label_corrections_total 100.0" in text
    final = dict(first)
    for e in corrected:
        final[e["prediction_id"]] = e
    expected = h.replay_samples(settings, tmp_path, preds, orphans + labels + corrected)
    assert h.diff(live, expected) == []
    # The confusion counts are those of the corrected labels only: retractions removed the old ones.
    truth = {e["prediction_id"]: e["label"] for e in final.values()}
    tp = sum(
        1
        for p in preds
        if p["prediction_id"] in truth and truth[p["prediction_id"]] == 1 and p["score"] >= 0.5
    )
    n_lab = sum(1 for p in preds if p["prediction_id"] in truth)
    key = (
        "streamon_labelled_in_window",
        (("model", "fraud-detector"), ("variant", "all"), ("window", "current")),
    )
    ref_key = (key[0], (("model", "fraud-detector"), ("variant", "all"), ("window", "reference")))
    assert live[key] + live[ref_key] == n_lab
    assert tp > 0


def test_sigterm_commits_and_leaves(kafka_bootstrap, setup, tmp_path):
    config, settings = setup(partitions=2)
    t = settings.kafka.topics
    preds, labels = h.traffic(2_000, seed=3)
    worker = h.WorkerProc(config, tmp_path / "s", "w").start()
    h.produce(kafka_bootstrap, t.predictions, preds)
    h.produce(kafka_bootstrap, t.labels, labels)
    h.wait_metrics([worker], settings)
    assert worker.terminate(timeout=60) == 0
    committed = h.committed_total(kafka_bootstrap, settings.kafka.group_id, [t.predictions, t.labels])
    assert committed >= len(preds) + len(labels)


class _Untouchable:
    """Stands where a Kafka client was: any use of it fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"/metrics used a Kafka client ({name})")


def _samples(text: str, name: str) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        tuple(sorted(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name
    }


def test_health_lag_and_scrape_tell_the_truth_about_a_stalled_worker(kafka_bootstrap, tmp_path):
    """A worker that consumed its input but commits nothing (its batch never flushes before
    kafka.stall_timeout) is stalled: /healthz and /readyz answer 503, the step says why
    (exit code 4), and the lag is the committed one (high watermark - committed offset),
    not the fetch position's (which is at the end). /metrics touches no Kafka client."""
    import requests

    from streamon.errors import WorkerStalledError
    from streamon.runtime.worker import Worker

    d = h.settings_dict(kafka_bootstrap, partitions=1)
    d["kafka"].update(batch_size=100_000, flush_interval=3600, stall_timeout=2)
    _, settings = h.write_config(tmp_path, d)
    t = settings.kafka.topics
    w = Worker(settings, tmp_path / "state", instance_id="stalled", metrics_port=0)
    try:
        w.start()
        deadline = time.monotonic() + 60
        while not w.ready and time.monotonic() < deadline:
            w.step()
        assert w.ready
        assert requests.get(w.http.url("/readyz"), timeout=5).status_code == 200
        preds, labels = h.traffic(300, seed=5)
        h.produce(kafka_bootstrap, t.predictions, preds)
        h.produce(kafka_bootstrap, t.labels, labels)
        stalled = None
        # Until the statistics (every 5 s) have the high watermarks and the batch is all read.
        while time.monotonic() < deadline:
            try:
                w.step()
            except WorkerStalledError as exc:
                stalled = exc
            lag = _samples(_scrape(w), "streamon_consumer_lag_messages")
            if stalled and sum(lag.values()) == len(preds) + len(labels):
                break
        assert stalled is not None and stalled.exit_code == 4
        assert "stage 1 has had work but committed nothing" in str(stalled)
        assert requests.get(w.http.url("/healthz"), timeout=5).status_code == 503
        assert requests.get(w.http.url("/readyz"), timeout=5).status_code == 503
        # The main loop is not running now and the clients are out of reach: /metrics answers.
        clients = w.c1, w.c2, w.p1, w.p2, w.admin
        w.c1 = w.c2 = w.p1 = w.p2 = w.admin = _Untouchable()  # type: ignore[assignment]
        try:
            text = _scrape(w)
        finally:
            w.c1, w.c2, w.p1, w.p2, w.admin = clients  # type: ignore[assignment]
        lag = _samples(text, "streamon_consumer_lag_messages")
        assert lag == {
            (("partition", "0"), ("topic", t.labels)): float(len(labels)),
            (("partition", "0"), ("topic", t.predictions)): float(len(preds)),
        }
        stalled_s = _samples(text, "streamon_worker_stalled_seconds")
        assert stalled_s[(("stage", "1"),)] >= 2.0
        assert _samples(text, "streamon_last_commit_timestamp_seconds")[(("stage", "1"),)] == 0.0
    finally:
        w.close()


def test_a_group_join_that_never_completes_is_a_stall(kafka_bootstrap, tmp_path):
    """A peer in the worker's stage-1 group that stops polling (a process hung inside its
    client, or blocked in a rebalance callback) keeps the worker's join from completing: the
    worker never gets an assignment, so it cannot see its lag. It counts as stalled after
    kafka.stall_timeout, /healthz says so, and the step says why (exit code 4)."""
    import requests
    from confluent_kafka import Consumer

    from streamon.errors import WorkerStalledError
    from streamon.runtime.worker import Worker

    d = h.settings_dict(kafka_bootstrap, partitions=1)
    d["kafka"].update(stall_timeout=3)
    _, settings = h.write_config(tmp_path, d)
    t = settings.kafka.topics
    from confluent_kafka.admin import AdminClient

    from streamon.runtime.topics import ensure_topics

    ensure_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), settings)
    peer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": settings.kafka.group_id,
            "partition.assignment.strategy": "range",
            "max.poll.interval.ms": 120_000,  # the broker waits this long for its rejoin
            "session.timeout.ms": 30_000,
        }
    )
    assigned: list[int] = []
    peer.subscribe(
        [t.predictions, t.labels], on_assign=lambda c, parts: assigned.extend(p.partition for p in parts)
    )
    deadline = time.monotonic() + 60
    while not assigned and time.monotonic() < deadline:
        peer.poll(0.2)
    assert assigned, "the peer never joined"
    # From here on the peer does not poll: the rebalance the worker's join starts cannot end.
    w = Worker(settings, tmp_path / "state", instance_id="joining", metrics_port=0)
    try:
        w.start()
        stalled = None
        while stalled is None and time.monotonic() < deadline:
            try:
                w.step()
            except WorkerStalledError as exc:
                stalled = exc
        assert stalled is not None and stalled.exit_code == 4
        assert "stage 1 has had no partitions assigned" in str(stalled), stalled
        assert not w.ready
        assert requests.get(w.http.url("/healthz"), timeout=5).status_code == 503
    finally:
        w.close()
        peer.close()


def test_a_full_local_produce_queue_is_waited_out(kafka_bootstrap, tmp_path):
    """A batch of more dead letters than the producer's local queue holds (here 5 messages,
    ``queue.buffering.max.messages``): produce meets a full queue (BufferError) and the worker
    waits for the broker's acknowledgements instead of ending with a traceback; every bad
    message reaches the dead-letter topic once, and the good ones are counted."""
    d = h.settings_dict(kafka_bootstrap, partitions=1)
    d["kafka"].update(batch_size=500, flush_interval=0.5)
    d["kafka"]["client"] = {"queue.buffering.max.messages": 5}
    config, settings = h.write_config(tmp_path, d)
    t = settings.kafka.topics
    worker = h.WorkerProc(config, tmp_path / "state", "queue").start()
    try:
        h.wait_ready([worker], timeout=60, settle=1.0)
        preds, _ = h.traffic(100, seed=9)
        bad = [f"not json {i}".encode() for i in range(120)]
        h.produce(kafka_bootstrap, t.predictions, [*bad, *preds])
        dead = h.read_topic(kafka_bootstrap, t.dead_letter, timeout=90, expect=len(bad))
        assert sorted(m.value() for m in dead) == sorted(bad)
        deadline = time.monotonic() + 60
        while h.processed([worker], t.predictions) < len(bad) + len(preds):
            assert time.monotonic() < deadline and worker.alive(), worker.log.read_text()[-3000:]
            time.sleep(0.2)
        text = worker.log.read_text()
        assert "Traceback" not in text, text[-3000:]
    finally:
        worker.terminate()


def _scrape(w) -> str:
    import requests

    r = requests.get(w.http.url("/metrics"), timeout=5)
    assert r.status_code == 200, r.text
    return r.text


def test_librdkafka_debug_lines_are_json_log_lines(kafka_bootstrap, tmp_path):
    """With ``debug`` in kafka.client, librdkafka's own lines reach stderr through the JSON
    logger (and its secret scrubber), from every client: both consumers, both producers, the
    admin client and the restore readers. Nothing raw."""
    import re

    d = h.settings_dict(kafka_bootstrap, partitions=1)
    d["kafka"]["client"] = {"debug": "broker"}
    config, _ = h.write_config(tmp_path, d)
    worker = h.WorkerProc(config, tmp_path / "state", "debug").start()
    try:
        h.wait_ready([worker], timeout=60, settle=1.0)
    finally:
        assert worker.terminate(60) == 0
    lines = worker.log.read_text().splitlines() if worker.log else []
    docs = []
    for line in lines:
        assert line.startswith("{"), f"not a JSON log line: {line[:200]!r}"
        docs.append(orjson.loads(line))
    from_librdkafka = [doc["message"] for doc in docs if doc["logger"] == "streamon.librdkafka"]
    clients = {m for text in from_librdkafka for m in re.findall(r"\[(rdkafka#\w+-\d+)\]", text)}
    consumers = {c for c in clients if "consumer" in c}
    producers = {c for c in clients if "producer" in c}
    # c1, c2 and at least one restore reader; p1, p2 and the admin client (a producer handle).
    assert len(consumers) >= 3 and len(producers) >= 3, sorted(clients)


class _Counted:
    """A Kafka client whose commit_transaction calls are counted (everything else passes)."""

    def __init__(self, inner, counts: dict[str, int], tag: str) -> None:
        self._inner, self._counts, self._tag = inner, counts, tag

    def commit_transaction(self, *args):
        self._counts[self._tag] += 1
        return self._inner.commit_transaction(*args)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


def test_stage2_commits_once_per_flush_interval_and_a_rebuild_rereads_what_it_had_not(
    kafka_bootstrap, tmp_path, monkeypatch
):
    """Stage 2 commits the offsets of the partials it applied with its next evaluation or
    after kafka.flush_interval, not once per stage-1 transaction: 2,000 predictions in 20
    stage-1 transactions cost it no commit of its own here. Applied but not committed,
    partials are read again by a rebuild (what a failed stage-2 transaction or a rebalance
    starts): the rebuilt state equals the one before, nothing lost or counted twice."""
    from streamon.runtime.worker import Worker

    monkeypatch.setenv("STREAMON_EVAL_SECONDS", "3600")  # one evaluation: at the first step
    d = h.settings_dict(kafka_bootstrap, partitions=1)
    d["kafka"].update(batch_size=100, flush_interval=3600)  # stage 1 flushes full batches only
    _, settings = h.write_config(tmp_path, d)
    t = settings.kafka.topics
    w = Worker(settings, tmp_path / "state", instance_id="cadence", metrics_port=0)
    counts = {"s1": 0, "s2": 0}
    try:
        w.start()
        w.p1, w.p2 = _Counted(w.p1, counts, "s1"), _Counted(w.p2, counts, "s2")
        deadline = time.monotonic() + 60
        while not w.ready and time.monotonic() < deadline:
            w.step()
        assert w.ready
        preds, _ = h.traffic(2000, seed=11)
        h.produce(kafka_bootstrap, t.predictions, preds)

        while w.ops.processed[t.predictions] < len(preds):  # counted once its transaction committed
            assert time.monotonic() < deadline, w.ops.processed
            w.step()
        ends = {p: e for p, e in h.committed_ends(kafka_bootstrap, t.partials).items() if e}
        assert ends  # every partial is on the topic now: its committed end is final

        def apply_to_end() -> None:
            until = time.monotonic() + 60
            while any(w._applied2.get(p, -1) + 1 < e for p, e in ends.items()):
                assert time.monotonic() < until, (w._applied2, ends)
                w.step()

        apply_to_end()
        s2_before = counts["s2"]
        assert counts["s1"] >= len(preds) // 100  # a transaction per full batch
        assert s2_before <= 1, counts  # the first step's evaluation; none for the partials
        committed = h.committed_offsets(kafka_bootstrap, f"{settings.kafka.group_id}-aggregate", t.partials)
        assert all(o < 1 for o in committed.values()), committed  # nothing of it committed yet

        def model_samples() -> dict:  # of the state as it is: evaluate_now() would commit it
            snap = w.aggregator.evaluate(w.aggregator.latest)
            return {
                (s.name, s.labels): s.value
                for s in snap.samples
                if not s.name.startswith(h.OPERATIONAL_PREFIXES)
            }

        before = model_samples()
        counted = [
            v
            for (name, labels), v in before.items()
            if name == "streamon_predictions_in_window"
            and {("variant", "all"), ("window", "current")} <= set(labels)
        ]
        assert counted == [len(preds)], counted  # every prediction is in the state compared
        state = w.aggregator
        w._stage2_dirty = True  # as after a failed stage-2 transaction
        w.step()
        assert w.aggregator is not state  # rebuilt: from the committed offsets, then read again
        apply_to_end()
        assert model_samples() == before
    finally:
        w.close()
