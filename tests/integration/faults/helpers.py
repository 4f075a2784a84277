"""Fault-suite helpers on top of tests/integration/harness.py (see this package's conftest).

A :class:`FaultBroker` is one test module's own broker that can be crashed, stopped and
brought back on the same data and port. A :class:`Scenario` is one stream consumed by
supervised worker processes, with the four checks every fault test ends with.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from streamon import replay
from streamon.config import Settings
from streamon.core.stages.join import Joiner
from streamon.engine import build_engine
from streamon.exporter import render
from streamon.runtime.store import RocksStore
from tests.integration import harness as h

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT / "deploy" / "kafka") not in sys.path:  # tests/conftest.py puts it there too
    sys.path.insert(0, str(ROOT / "deploy" / "kafka"))

import broker as broker_script  # noqa: E402

# Broker settings of the fault brokers: fast re-registration after a SIGKILL, killed
# producers' transactions aborted within seconds, no rebalance delay, one partition for
# the offsets and transaction-state topics (broker.py's defaults hold the last two).
FAULT_BROKER_PROPERTIES = {
    **broker_script.FAST_RECOVERY,
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.num.partitions": "1",
}
STALL_TIMEOUT_S = 20.0  # kafka.stall_timeout of the scenarios (the default is minutes)
SESSION_TIMEOUT_S = 6.0  # kafka.session_timeout: the smallest the broker accepts


# --------------------------------------------------------------------------- broker


class FaultBroker:
    """A broker of one's own: ``crash`` (SIGKILL) / ``stop`` (SIGTERM) keep its data,
    ``start`` brings it back on the same data, cluster id and port."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.info = broker_script.start(state_dir, properties=FAULT_BROKER_PROPERTIES)
        self.bootstrap = self.info.bootstrap
        self.outages: list[tuple[str, float]] = []  # (how, seconds down): for failure messages

    def up(self) -> bool:
        return broker_script.running(self.state_dir) is not None

    def crash(self) -> None:
        broker_script.crash(self.state_dir)

    def stop(self) -> None:
        broker_script.stop(self.state_dir, keep_data=True)

    def start(self) -> None:
        info = broker_script.start(self.state_dir, keep_data=True)
        assert info.bootstrap == self.bootstrap, (info.bootstrap, self.bootstrap)
        self.info = info

    def restart(self, graceful: bool = False, down_s: float = 0.0) -> None:
        """Crash (or stop) it, keep it down ``down_s`` seconds, start it again."""
        t0 = time.monotonic()
        self.stop() if graceful else self.crash()
        time.sleep(down_s)
        self.start()
        self.outages.append(("SIGTERM" if graceful else "SIGKILL", round(time.monotonic() - t0, 1)))

    @contextlib.contextmanager
    def down(self, graceful: bool = False) -> Iterator[None]:
        """``with broker.down(): ...`` runs the block while the broker is down."""
        t0 = time.monotonic()
        self.stop() if graceful else self.crash()
        try:
            yield
        finally:
            self.start()
            self.outages.append(("SIGTERM" if graceful else "SIGKILL", round(time.monotonic() - t0, 1)))

    def close(self) -> None:
        broker_script.stop(self.state_dir)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def log_tail(self, n: int = 20) -> str:
        lines = Path(self.info.log_file).read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


class SessionBroker:
    """The shared session broker (STREAMON_TEST_BOOTSTRAP) as a Scenario's broker, for tests
    whose faults are in the data or on the worker's host: it cannot be crashed or stopped."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.outages: list[tuple[str, float]] = []  # none: for the failure messages


# --------------------------------------------------------------------------- streams


def stream(
    n: int = 4000, seed: int = 1, ghosts: int = 20, **kw: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Predictions and labels (harness.traffic) plus ``ghosts`` labels whose prediction never
    comes, early in the stream: they are orphaned well before its end, in every partition."""
    preds, labels = h.traffic(n, seed=seed, **kw)
    early = [p["ts"] for p in preds[: max(1, len(preds) // 10)]]
    orphans = [
        {"prediction_id": f"ghost-{seed}-{i}", "label": i % 2, "ts": early[i % len(early)]}
        for i in range(ghosts)
    ]
    return preds, orphans + labels


@dataclass
class Expected:
    """What an uninterrupted run gives: ``streamon replay`` over the same events."""

    samples: dict[tuple, float]
    orphans: int
    alerts: list[dict[str, Any]]


def replay_expected(settings: Settings, tmp: Path, preds: list[dict], labels: list[dict]) -> Expected:
    """harness.replay_samples, keeping the replay's join counts and alert events."""
    pp, lp = tmp / f"p-{uuid.uuid4().hex[:6]}.jsonl", tmp / f"l-{uuid.uuid4().hex[:6]}.jsonl"
    pp.write_bytes(b"\n".join(orjson.dumps(e) for e in preds))
    lp.write_bytes(b"\n".join(orjson.dumps(e) for e in labels))
    runs: list[replay.Replay] = []

    class Recorded(replay.Replay):  # replay_files keeps its Replay to itself: note it on the way
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            runs.append(self)

    with _patched(replay, "Replay", Recorded):
        result = replay.replay_files(build_engine(settings), pp, lp)
    (run,) = runs
    return Expected(
        h.model_samples(render(result.snapshot).decode()), run.stage1.joiner.stats.orphaned, result.alerts
    )


@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


# --------------------------------------------------------------------------- stall sampler


def _metrics(text: str) -> tuple[dict[str, float], float, float]:
    """(last commit time by stage, input lag, partials lag) of one /metrics text."""
    commits: dict[str, float] = {}
    lag_in = lag_partials = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "streamon_last_commit_timestamp_seconds":
                commits[s.labels.get("stage", "1")] = s.value
            elif s.name == "streamon_consumer_lag_messages":
                if "partial" in s.labels.get("topic", ""):
                    lag_partials += s.value
                else:
                    lag_in += s.value
    return commits, lag_in, lag_partials


@dataclass
class Stall:
    worker: str
    stage: str
    lag: float
    seconds_since_commit: float
    at: float  # wall clock


class StallSampler:
    """Scrapes every live worker's /metrics about once a second in a background thread.

    A worker counts as stalled when it is alive, has lag > 0 and its last commit of that
    stage (``streamon_last_commit_timestamp_seconds{stage}``; stage 1 pairs with the input
    lag, stage 2 with a partials lag) is older than ``stall_timeout + slack`` seconds. A
    worker that has not committed since it started counts from its start. ``slack`` covers
    the worker's own check interval, its exit and the sampling period.
    """

    def __init__(self, stall_timeout: float, slack: float = 5.0, period: float = 1.0) -> None:
        self.stall_timeout, self.slack, self.period = stall_timeout, slack, period
        self.workers: dict[str, h.WorkerProc] = {}
        self.started: dict[str, float] = {}  # wall clock start of each worker's current process
        self.violations: list[Stall] = []
        self.served: set[int] = set()  # pids of worker processes that answered a scrape
        self.samples = 0
        self.seen_commit_metric = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="stall-sampler", daemon=True)

    def watch(self, worker: h.WorkerProc) -> None:
        with self._lock:
            self.workers[worker.instance] = worker
            self.started[worker.instance] = time.time()

    def start(self) -> StallSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            with self._lock:
                watched = [(w, self.started[name]) for name, w in self.workers.items()]
            for w, started in watched:
                if w.alive():
                    self.sample(w, started)

    def sample(self, w: h.WorkerProc, started: float) -> None:
        text = w.scrape()
        if text is None or not w.alive():
            return
        if w.proc is not None:
            self.served.add(w.proc.pid)
        self.samples += 1
        self.seen_commit_metric |= "streamon_last_commit_timestamp_seconds" in text
        self.violations += self.stalls(w.instance, text, started, time.time())

    def stalls(self, worker: str, text: str, started: float, now: float) -> list[Stall]:
        """The stages of one /metrics text that count as stalled at ``now``."""
        commits, lag_in, lag_partials = _metrics(text)
        out = []
        for stage, lag in (("1", lag_in), ("2", lag_partials)):
            last = max(commits.get(stage, 0.0), started)
            if lag > 0 and now - last > self.stall_timeout + self.slack:
                out.append(Stall(worker, stage, lag, round(now - last, 1), now))
        return out


# --------------------------------------------------------------------------- scenario


@dataclass
class Scenario:
    """One stream, its config and supervised workers, on a FaultBroker.

    Workers are started with :meth:`worker`; a supervisor thread restarts any worker that
    exits on its own (as systemd or Kubernetes would), so a worker that gives up on a stalled
    Kafka call comes back. :meth:`kill` / :meth:`terminate` end one on purpose (restart it
    with :meth:`worker` again, same name = same --instance-id and state dir).
    """

    broker: FaultBroker | SessionBroker
    tmp: Path
    config: Path
    settings: Settings
    sampler: StallSampler
    restart_delay: float = 1.0
    max_exits: int = 10  # exits on their own before wait_consumed gives up
    workers: dict[str, h.WorkerProc] = field(default_factory=dict)
    exits: list[tuple[str, int]] = field(default_factory=list)  # (worker, exit code): exits on their own
    # The same for processes that had answered a /metrics scrape, i.e. were past their start
    # (a worker refuses to start, exit 3, while Kafka is unreachable).
    running_exits: list[tuple[str, int]] = field(default_factory=list)
    preds: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    _stopped: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None

    # ------------------------------------------------------------ topics and events

    @property
    def topics(self) -> Any:
        return self.settings.kafka.topics

    def produce(self, preds: list[dict[str, Any]], labels: list[dict[str, Any]]) -> None:
        """Produce events (remembered for the checks); waits until the broker acknowledged them."""
        h.produce(self.broker.bootstrap, self.topics.predictions, preds)
        h.produce(self.broker.bootstrap, self.topics.labels, labels)
        self.preds += preds
        self.labels += labels

    # ------------------------------------------------------------ workers

    def worker(self, name: str) -> h.WorkerProc:
        """Start (or restart) the worker ``name``: --instance-id name, state dir tmp/name."""
        with self._lock:
            old = self.workers.get(name)
            assert old is None or not old.alive(), f"worker {name} is running"
            w = h.WorkerProc(self.config, self.tmp / name, name)
            if old is not None:
                w.port = old.port  # scrapers keep their address
            w.start()
            self.workers[name] = w
            self._stopped.discard(name)
        self.sampler.watch(w)
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
            self._supervisor.start()
        return w

    def kill(self, name: str) -> None:
        """SIGKILL the worker; it stays down until :meth:`worker` starts it again."""
        with self._lock:
            self._stopped.add(name)
            w = self.workers[name]
        if w.alive():
            w.kill()

    def terminate(self, name: str, timeout: float = 60) -> int:
        """SIGTERM the worker and wait for it; returns its exit code. A worker still running
        after ``timeout`` fails the test with its log tail and threads' native stacks."""
        with self._lock:
            self._stopped.add(name)
            w = self.workers[name]
        try:
            return w.terminate(timeout)
        except subprocess.TimeoutExpired:
            stacks = _native_stacks(w.proc.pid) if w.proc is not None else ""
            w.kill()
            raise AssertionError(
                f"worker {name} still running {timeout:g}s after SIGTERM\n{w.tail(40)}\n{stacks}"
            ) from None

    def live(self) -> list[h.WorkerProc]:
        with self._lock:
            return [w for w in self.workers.values() if w.alive()]

    def _supervise(self) -> None:
        while not self._done.wait(0.5):
            with self._lock:
                gone = [
                    (n, w)
                    for n, w in self.workers.items()
                    if n not in self._stopped and w.proc is not None and w.proc.poll() is not None
                ]
            for name, w in gone:
                assert w.proc is not None
                self.exits.append((name, w.proc.returncode))
                if w.proc.pid in self.sampler.served:
                    self.running_exits.append((name, w.proc.returncode))
                time.sleep(self.restart_delay)
                if not self._done.is_set():
                    with self._lock:
                        if name in self._stopped:
                            continue
                    self.worker(name)

    def close(self) -> None:
        self._done.set()
        if self._supervisor is not None:
            self._supervisor.join(10)
        self.sampler.stop()
        for w in list(self.workers.values()):
            if w.alive():
                try:
                    w.terminate(30)
                except Exception:
                    w.kill()

    def tails(self, n: int = 25) -> str:
        return "\n".join(f"--- {name}\n{w.tail(n)}" for name, w in self.workers.items())

    # ------------------------------------------------------------ waiting

    def produce_tail(self, per_partition: int = 3) -> None:
        """A few predictions and labels in every input partition, ``windows.orphan_grace``
        (+2 buckets) after the newest event so far, for :meth:`wait_consumed` (see there)."""
        w = self.settings.windows
        newest = max(e["ts"] for e in [*self.preds, *self.labels])
        at = newest + w.orphan_grace + 2 * w.bucket
        assert at < time.time(), "the tail would lie in the future: use a shorter windows.orphan_grace"
        template = self.preds[-1]
        producer = Producer({"bootstrap.servers": self.broker.bootstrap, "linger.ms": 5})
        for part in range(self.settings.kafka.partitions):
            for i in range(per_partition):
                pid = f"tail-{part}-{i}-{uuid.uuid4().hex[:6]}"
                pred = {**template, "prediction_id": pid, "ts": at + i}
                label = {"prediction_id": pid, "label": i % 2, "ts": at + i + 1}
                # Explicit partitions: every partition's watermark must pass the orphans' grace.
                producer.produce(self.topics.predictions, orjson.dumps(pred), pid.encode(), partition=part)
                producer.produce(self.topics.labels, orjson.dumps(label), pid.encode(), partition=part)
                self.preds.append(pred)
                self.labels.append(label)
        assert producer.flush(60) == 0

    def wait_consumed(
        self, timeout: float = 120.0, stable_for: float = 4.0, tail: bool = True
    ) -> dict[tuple, float]:
        """Until both groups committed everything produced and the live workers' model series
        are stable for ``stable_for`` seconds; returns their union. Workers may restart meanwhile.

        ``tail``: once everything is consumed, :meth:`produce_tail` and wait again. A label is
        orphaned ``windows.orphan_grace`` after the later of its time and the partition's event
        time when it is read, so how many are orphaned by the end of a stream depends on the
        order in which the worker happened to read the two topics; past the tail every label
        without its prediction is orphaned whatever the order, as in replay.
        """
        deadline = time.monotonic() + timeout
        if tail:
            self._wait(deadline, timeout, stable_for=0.0)
            self.produce_tail()
        return self._wait(deadline, timeout, stable_for)

    def _wait(self, deadline: float, timeout: float, stable_for: float) -> dict[tuple, float]:
        b, t = self.broker.bootstrap, self.topics
        inputs = [t.predictions, t.labels]
        group = self.settings.kafka.group_id
        last: dict[tuple, float] | None = None
        merged: dict[tuple, float] = {}
        progress = (0, 0, 0, 0)
        since = time.monotonic()
        while time.monotonic() < deadline:
            if len(self.exits) > self.max_exits:
                break  # a crash loop: no point waiting
            try:
                progress = (
                    h.committed_total(b, group, inputs),
                    h.end_offsets(b, inputs),
                    h.committed_total(b, f"{group}-aggregate", [t.partials]),
                    h.end_offsets(b, [t.partials]),
                )
                caught_up = progress[0] >= progress[1]
                # Exact per partition (h.partials_applied): a slack for the transaction markers
                # let a final transaction of partials pass as merged before stage 2 read it.
                partials_done = caught_up and h.partials_applied(b, self.settings)
            except Exception:
                progress = (0, 1, 0, 1)  # the broker may be coming back
                caught_up = partials_done = False
            merged = {}
            for w in self.live():
                text = w.scrape()
                if text:
                    merged.update(h.model_samples(text))
            if caught_up and partials_done and merged and last is not None and not h.diff(merged, last):
                if time.monotonic() - since >= stable_for:
                    return merged
            else:
                since = time.monotonic()
            last = merged
            time.sleep(1.0)
        raise AssertionError(
            f"not consumed in {timeout:.0f}s: input committed/end {progress[:2]}, partials {progress[2:]}, "
            f"{len(merged)} model series; exits {self.exits}; broker outages {self.broker.outages}\n"
            + self.tails()
        )

    # ------------------------------------------------------------ checks

    def orphans(self) -> int:
        """Labels orphaned, summed over the input partitions, read from the join stores the
        workers left (call after they stopped): per partition the store that reflects the
        group's committed offsets. The workers' counters cannot be summed: a partition that
        moved is counted by its old and its new owner."""
        b, t = self.broker.bootstrap, self.topics
        c = Consumer({"bootstrap.servers": b, "group.id": self.settings.kafka.group_id})
        try:
            parts = sorted(c.list_topics(t.predictions, timeout=10).topics[t.predictions].partitions)
            tps = [TopicPartition(topic, p) for topic in (t.predictions, t.labels) for p in parts]
            committed = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in c.committed(tps, timeout=30)}
        finally:
            c.close()
        w = self.settings.windows
        total = 0
        for p in parts:
            want = {t.predictions: committed[(t.predictions, p)], t.labels: committed[(t.labels, p)]}
            found: list[tuple[dict[str, int], int]] = []
            for path in self.tmp.glob(f"*/{self.settings.kafka.group_id}-{t.predictions}-{p}"):
                copy = self.tmp / f"inspect-{uuid.uuid4().hex[:6]}"
                shutil.copytree(path, copy)  # a copy: RocksDB may have left its LOCK behind
                store = RocksStore(copy)
                try:
                    marker = store.offsets() or {}
                    found.append((marker, Joiner(store, w.label_horizon, w.orphan_grace).stats.orphaned))
                finally:
                    store.close()
                    shutil.rmtree(copy, ignore_errors=True)
            current = [n for marker, n in found if {k: marker.get(k, 0) for k in want} == want]
            assert current, f"no join store of partition {p} reflects the committed offsets {want}: {found}"
            assert len(set(current)) == 1, f"stores of partition {p} disagree: {found}"
            total += current[0]
        return total

    def alerts(self) -> list[dict[str, Any]]:
        return [orjson.loads(m.value()) for m in h.read_topic(self.broker.bootstrap, self.topics.alerts)]

    def check(self, live: dict[tuple, float], expected: Expected | None = None) -> Expected:
        """The four checks, after :meth:`wait_consumed` returned ``live``. Stops the workers.

        (i) the model series equal ``streamon replay`` over the same events; (ii) the orphan
        count equals replay's; (iii) no fingerprint of a model alert (not the per-worker host
        and lag rules) fires twice without resolving in between;
        (iv) no worker was alive, lagging and not committing for longer than kafka.stall_timeout.
        """
        expected = expected or replay_expected(self.settings, self.tmp, self.preds, self.labels)
        self.close()
        problems = []
        d = h.diff(live, expected.samples)
        if d:
            problems.append(f"(i) {len(d)} model series differ from replay, e.g. {d[:5]}")
        orphans = self.orphans()
        if orphans != expected.orphans:
            problems.append(f"(ii) {orphans} labels orphaned, replay says {expected.orphans}")
        state: dict[str, str] = {}
        # Host and lag rules run per worker on wall-clock samples (labelled worker=...): not
        # exactly-once state, and they depend on the machine's load, not on the stream.
        for a in (a for a in self.alerts() if "worker" not in a.get("labels", {})):
            if a["status"] == "firing" and state.get(a["fingerprint"]) == "firing":
                problems.append(f"(iii) duplicate firing alert {a['alertname']} {a['fingerprint']}")
            state[a["fingerprint"]] = a["status"]
        if self.sampler.samples and not self.sampler.seen_commit_metric:
            problems.append("(iv) no scrape had streamon_last_commit_timestamp_seconds: nothing checked")
        if self.sampler.violations:
            v = self.sampler.violations
            problems.append(
                f"(iv) {len(v)} stalled samples, first {v[0]}, workers {sorted({s.worker for s in v})}"
            )
        assert not problems, "\n".join(problems) + f"\nexits {self.exits}\n" + self.tails()
        return expected


def scenario_settings(
    bootstrap: str,
    partitions: int = 2,
    stall_timeout: float = STALL_TIMEOUT_S,
    session_timeout: float = SESSION_TIMEOUT_S,
    immediate_alerts: bool = True,
    client: dict[str, Any] | None = None,
    **windows: Any,
) -> dict[str, Any]:
    """harness.settings_dict with the fault suite's short timeouts (set when the configuration
    knows the key); ``client``: librdkafka properties for kafka.client."""
    d = h.settings_dict(bootstrap, partitions=partitions, **windows)
    d["kafka"]["client"] = {**d["kafka"].get("client", {}), **(client or {})}
    for key, value in (("session_timeout", session_timeout), ("stall_timeout", stall_timeout)):
        if key in d["kafka"]:  # keys of the configuration in use only
            d["kafka"][key] = value
    if immediate_alerts:
        for rule in d["alerts"]["rules"]:
            rule["for"] = 0  # a catching-up worker sees event time jump: fire at the first breach
    return d


def make_scenario(broker: FaultBroker | SessionBroker, tmp: Path, d: dict[str, Any]) -> Scenario:
    tmp.mkdir(parents=True, exist_ok=True)
    config, settings = h.write_config(tmp, d)
    # The parsed value: a config may spell it "2m" (configs/monitoring_config.yaml does).
    stall = float(getattr(settings.kafka, "stall_timeout", STALL_TIMEOUT_S))
    assert math.isfinite(stall)
    return Scenario(broker, tmp, config, settings, StallSampler(stall).start())


def _native_stacks(pid: int) -> str:
    """Every thread's native stack of a hung process (gdb, when installed), for the report."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return "(no gdb for the stacks)"
    try:
        out = subprocess.run(
            [gdb, "-p", str(pid), "-batch", "-ex", "thread apply all bt 20"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return "(gdb timed out)"
    return "\n".join(line for line in out.stdout.splitlines() if line.startswith(("#", "Thread")))


def send(w: h.WorkerProc, sig: signal.Signals) -> None:
    """Send a signal to a worker without waiting for it."""
    if w.proc is not None and w.proc.poll() is None:
        w.proc.send_signal(sig)
