"""streamon.runtime.liveness: error classes, the state-dir check and lock, the watchdog."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from streamon.errors import InputError
from streamon.runtime.liveness import (
    ABORT,
    EXIT_STALLED,
    FATAL,
    FENCED,
    RETRY,
    Watchdog,
    backoff,
    classify,
    lock_state_dir,
)

STREAMON = str(Path(sys.executable).parent / "streamon")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("err", "action"),
    [
        (KafkaError(KafkaError._TIMED_OUT, "timed out", retriable=True), RETRY),
        (KafkaError(KafkaError._TIMED_OUT, "timed out"), RETRY),  # transient whatever the flag says
        (KafkaError(KafkaError._TRANSPORT, "broker gone"), RETRY),
        (KafkaError(KafkaError._ALL_BROKERS_DOWN, "all down"), RETRY),
        (KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE, "moving"), RETRY),
        (KafkaError(KafkaError._STATE, "needs abort", txn_requires_abort=True), ABORT),
        # An abortable timeout is aborted, not retried: the transaction is gone.
        (KafkaError(KafkaError._TIMED_OUT, "txn timed out", retriable=True, txn_requires_abort=True), ABORT),
        (KafkaError(KafkaError._FENCED, "fenced", fatal=True), FENCED),
        (KafkaError(KafkaError.PRODUCER_FENCED, "fenced"), FENCED),
        (KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "old epoch"), FENCED),
        (KafkaError(KafkaError._FATAL, "gone for good", fatal=True), FATAL),
        (KafkaError(KafkaError.FENCED_INSTANCE_ID, "same instance id", fatal=True), FATAL),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"), ABORT),
        (None, ABORT),
    ],
)
def test_classify(err: KafkaError | None, action: str) -> None:
    assert classify(err) == action


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff(n) for n in range(1, 30)]
    assert delays[0] == 0.5 and delays == sorted(delays) and max(delays) == 10.0


# --------------------------------------------------------------------------- state dir


def test_state_dir_is_created_and_locked(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b"
    lock = lock_state_dir(path)
    try:
        assert path.is_dir()
        assert f"pid {os.getpid()}" in (path / ".streamon.lock").read_text()
        with pytest.raises(InputError) as second:
            lock_state_dir(path)  # a second worker on the same state dir
        assert str(path) in str(second.value) and "in use by another worker" in str(second.value)
        assert f"pid {os.getpid()}" in str(second.value)
    finally:
        lock.release()
    lock_state_dir(path).release()  # released: usable again


def test_state_dir_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "state"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from streamon.runtime.liveness import lock_state_dir; "
         f"held = lock_state_dir(Path({str(path)!r})); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=f"pid {holder.pid}"):
            lock_state_dir(path)
    finally:
        holder.kill()
        holder.wait()
    lock_state_dir(path).release()  # the kernel released the dead holder's lock


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(InputError, match="is not a directory") as err:
        lock_state_dir(path)
    assert str(path) in str(err.value)


def test_state_dir_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "state"
    with pytest.raises(InputError, match="cannot be created") as err:
        lock_state_dir(path)
    assert str(path) in str(err.value)


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A read-only directory that stays read-only for root: a read-only tmpfs mount, or, where
    mounting is not allowed, a directory under /sys (EPERM for everyone)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(mount)], capture_output=True)
    if done.returncode == 0:
        try:
            yield mount, "read-only file system"
        finally:
            subprocess.run(["umount", str(mount)], check=False)
    else:
        yield Path(f"/sys/streamon-{uuid.uuid4().hex[:6]}"), "cannot be used"


def test_state_dir_read_only(read_only_dir: tuple[Path, str]) -> None:
    path, expected = read_only_dir
    with pytest.raises(InputError) as err:
        lock_state_dir(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value) or "not writable" in str(err.value)


def test_state_dir_on_a_full_disk(tmp_path: Path) -> None:
    """The start-up check on a file system with no space left says so (not "cannot be used")."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    assert done.returncode == 0, f"cannot mount a tmpfs (needs root): {done.stderr.decode().strip()}"
    try:
        with open(mount / "filler", "wb", buffering=0) as f, pytest.raises(OSError):
            while True:
                f.write(b"\0" * 65536)
        path = mount / "state"
        with pytest.raises(InputError, match="is full") as err:
            lock_state_dir(path)
        assert str(path) in str(err.value) and "No space left on device" in str(err.value)
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("kind", ["file", "locked"])
def test_worker_command_state_dir_problem_is_one_line(tmp_path: Path, kind: str) -> None:
    """Checked before Kafka is contacted: one `error:` line naming the path, exit 2."""
    if kind == "file":
        state = tmp_path / "file"
        state.write_text("x")
    else:
        state = tmp_path / "state"
        lock = lock_state_dir(state)
    try:
        done = subprocess.run(
            [STREAMON, "worker", "--config", str(ROOT / "configs" / "monitoring_config.yaml"),
             "--state-dir", str(state), "--bootstrap-servers", "127.0.0.1:1", "--metrics-port", "0"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        if kind == "locked":
            lock.release()
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: state dir ") and str(state) in lines[0], lines
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- watchdog


def test_watchdog_exits_when_stuck() -> None:
    exits: list[int] = []
    stuck = threading.Event()
    dog = Watchdog(
        lambda: "stuck in a call" if stuck.is_set() else None, lambda: None, 5.0, 0.01, exits.append
    )
    dog.start()
    assert exits == []
    stuck.set()
    dog.join(5)
    assert exits == [EXIT_STALLED] and not dog.is_alive()


def test_watchdog_ends_a_shutdown_past_the_grace() -> None:
    exits: list[int] = []
    dog = Watchdog(lambda: None, lambda: None, 0.05, 0.01, exits.append)
    dog.start()
    dog.shutting_down("after SIGTERM")
    dog.join(5)
    assert exits == [EXIT_STALLED]


def test_watchdog_sees_sigterm_while_the_main_thread_is_blocked() -> None:
    """The signal reaches the watchdog through the wakeup fd even though the main thread
    never returns to Python (here: blocked in a C call for the whole test)."""
    code = (
        "import signal, threading, time, os\n"
        "from streamon.runtime.liveness import Watchdog\n"
        "stopped = threading.Event()\n"
        "signal.signal(signal.SIGTERM, lambda *_: stopped.set())\n"
        "dog = Watchdog(lambda: None, lambda: print('stop requested', flush=True), 0.5, 0.05)\n"
        "dog.watch_signals()\n"
        "dog.start()\n"
        "print('ready', flush=True)\n"
        "lock = threading.Lock(); lock.acquire(); lock.acquire()\n"  # blocks forever, in C
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_STALLED
    assert "stop requested" in out
    assert "shutdown did not finish within 0.5s after SIGTERM" in err


def test_default_stall_rule_fires_per_worker_and_stage() -> None:
    from streamon.config import default_settings
    from streamon.core.alerts import AlertEngine
    from streamon.core.stages.evaluate import Sample, Snapshot
    from streamon.engine import build_engine

    rules = [r for r in build_engine(default_settings()).rules if r.alert == "StreamonWorkerStalled"]
    engine = AlertEngine(tuple(rules))

    def at(t: float, seconds: float) -> list[dict]:
        sample = Sample("streamon_worker_stalled_seconds", (("stage", "1"), ("worker", "w1")), seconds)
        return engine.evaluate(Snapshot(t, [sample]))

    assert at(0.0, 30.0) == []
    (event,) = at(5.0, 75.0)
    assert event["status"] == "firing" and event["labels"]["stage"] == "1"
    assert event["description"] == "Stage 1 has had work but committed nothing for 75s"
    (resolved,) = at(10.0, 0.0)
    assert resolved["status"] == "resolved"
